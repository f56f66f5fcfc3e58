"""Review 10 #8 and #14: the Prefect server is not the flow's usage; bad histories are named as such."""

import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from care_flows.errors import DataError
from care_flows.usage_capture import UsageSampler, UsageStore, is_prefect_server

SLEEP = "import time; time.sleep(60)"
# a stand-in for Prefect's temporary server (python -m uvicorn ... prefect.server.api.server:create_app)
# that has a child of its own
SERVER = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {SLEEP!r}]); time.sleep(60)"


def test_sampler_leaves_out_the_prefect_server_subprocess_and_its_children():
    server = subprocess.Popen([sys.executable, "-c", SERVER, "--factory", "prefect.server.api.server:create_app"])
    worker = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        deadline = time.monotonic() + 20
        while len(psutil.Process(server.pid).children()) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psutil.Process(server.pid).children(), "the stand-in server did not start its child"
        assert is_prefect_server(psutil.Process(server.pid)) and not is_prefect_server(psutil.Process(worker.pid))
        sampler = UsageSampler(interval_s=1.0)
        seen = {p.pid for p in sampler._tree()}
        assert worker.pid in seen and server.pid not in seen
        assert not seen & {c.pid for c in psutil.Process(server.pid).children()}
        running = {p.pid for p in sampler._tree() if p.status() != psutil.STATUS_ZOMBIE}  # an earlier test's child not reaped yet is no process running
        assert sampler.sample().n_processes == len(running)  # the count is of the tree without any Prefect server
    finally:
        for proc in (server, worker):
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["python", "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"], True),
        (["/venv/bin/uvicorn", "--app-dir", "/venv/lib/prefect", "app"], True),
        (["/venv/bin/prefect", "server", "start"], True),
        (["python", "-m", "prefect.engine"], False),
        (["python", "-m", "uvicorn", "myapp:app"], False),
    ],
)
def test_is_prefect_server_by_command_line(args, expected):
    class Fake:
        def cmdline(self):
            return args

    assert is_prefect_server(Fake()) is expected


def _row(t, cpu=1.0, mem=0.5):
    return pd.DataFrame({"time": [pd.Timestamp(t, tz="UTC")], "cpu_vcpu": [cpu], "memory_gib": [mem], "n_processes": [1]})


def test_negative_usage_is_rejected_on_write_and_skipped_on_read(tmp_path, caplog):
    store = UsageStore(tmp_path)
    with pytest.raises(DataError, match="negative or infinite cpu_vcpu \\(-1\\)"):
        store.append("etl", _row("2026-01-01", cpu=-1.0))
    store.append("etl", _row("2026-01-01T00:00:00"))
    with store.path("etl").open("a") as fh:
        fh.write("2026-01-01T00:00:10+00:00,-1,0.5,1\n2026-01-01T00:00:20+00:00,1,-0.5,1\n")
    frame = store.load("etl")
    assert frame["cpu_vcpu"].tolist() == [1.0] and "skipped 2 malformed row(s)" in caplog.text


def test_a_history_with_epoch_times_says_why_it_has_no_rows(tmp_path):
    (tmp_path / "epoch.csv").write_text("time,cpu_vcpu,memory_gib,n_processes\n1767225600,1.0,0.5,1\n1767225610,1.0,0.5,1\n")
    with pytest.raises(DataError, match="epoch.csv: no valid rows among 2: times are numbers \\(epoch\\?\\), but the history needs ISO 8601"):
        UsageStore(tmp_path).load("epoch")
