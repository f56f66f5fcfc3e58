"""A checkpointed flow killed mid-task resumes from its last finished task (issue 9, item 2).

Real processes against the session's Prefect API: ``killable_flow.py`` runs as its own Python
process, is killed with SIGKILL while its second stage runs (no clean-up, no final state: what
an OOM kill or a lost machine does), and is then retried: the same flow run executes again, as
a Prefect retry does. Stage one's result was persisted when it finished (CaRE's
``resumable_task``: persisted result keyed by inputs + task source + the CaRE root run, in the
result storage both processes share), so the second process reads it back instead of running
it; stage two, which never finished, runs again; stage three runs once. A *new* run of the flow
(a re-run, tomorrow's run) computes every stage again: test_orch_flows.py checks that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")
HERE = Path(__file__).resolve().parent


def _env(tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the session's harness server
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),  # shared result storage
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CARE_KILL_MARKS": str(tmp_path / "marks.txt"),
        "CARE_KILL_GO": str(tmp_path / "go"),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])]),
    })
    return env


def _marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_a_checkpointed_flow_killed_mid_task_resumes_from_its_last_finished_task(tmp_path):
    env = _env(tmp_path)
    cmd = [sys.executable, str(HERE / "killable_flow.py"), "5"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 180
        while "start two" not in _marks(tmp_path):
            assert first.poll() is None, first.stdout.read().decode()[-2000:]
            assert time.monotonic() < end, f"stage two never started: {_marks(tmp_path)}"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # mid-task: stage one finished, stage two running
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    run_mark, *marks = _marks(tmp_path)
    assert run_mark.startswith("run ") and marks == ["start one", "done one", "start two"]

    (tmp_path / "go").touch()  # the second attempt may finish stage two
    second = subprocess.run([sys.executable, str(HERE / "killable_flow.py"), "--retry", run_mark[4:]], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert second.stdout.strip().splitlines()[-1] == "8"  # 5 -> 6 -> 7 -> 8
    # the same run; stage one ran once (its persisted result was read back), two again from its start, three once
    assert _marks(tmp_path) == [run_mark, "start one", "done one", "start two", run_mark, "start two", "done two", "start three", "done three"]
