"""Usage capture: the sampler sees a child's CPU and memory; the store round-trips."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from care_flows.errors import ConfigError
from care_flows.usage_capture import RunRecord, UsageSample, UsageSampler, UsageStore, default_usage_dir

CHILD = (
    "import time\n"
    "block = bytearray(300 * 1024 * 1024)\n"  # 300 MiB resident
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "end = time.time() + 1.5\n"
    "while time.time() < end: pass\n"  # one core busy
)


def test_sampler_records_child_cpu_and_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with UsageSampler(interval_s=0.2) as sampler:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    frame = sampler.to_frame()
    assert len(frame) >= 4
    assert frame["n_processes"].max() >= 2  # parent + child seen
    assert frame["memory_gib"].max() >= 0.25  # the child's 300 MiB counted
    assert frame["time"].is_monotonic_increasing
    # CPU integrated over the samples accounts for the child's CPU time (the busy loop), less at
    # most the child's last partial interval, however loaded the machine is
    dt = frame["time"].diff().dt.total_seconds().fillna(0.0).to_numpy()
    recorded_cpu_s = float((frame["cpu_vcpu"].to_numpy() * dt).sum())
    assert child_cpu_s > 0.2
    assert recorded_cpu_s >= 0.5 * child_cpu_s - 0.2


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        UsageSampler(interval_s=0)
    with pytest.raises(ConfigError):
        UsageSampler(pid=2**22 + 12345)


def test_store_round_trip_and_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARE_USAGE_DIR", str(tmp_path / "usage"))
    assert default_usage_dir() == tmp_path / "usage"
    store = UsageStore()
    t0 = pd.Timestamp("2024-01-01T00:00:00Z")
    first = [UsageSample(t0 + pd.Timedelta(seconds=i), 0.5 * i, 1.0 + i, 2) for i in range(3)]
    second = [UsageSample(t0 + pd.Timedelta(seconds=10), 2.0, 4.0, 3)]
    store.append("etl/nightly", first)
    store.append("etl/nightly", second)
    frame = store.load("etl/nightly")
    assert frame["cpu_vcpu"].tolist() == [0.0, 0.5, 1.0, 2.0]
    assert frame["memory_gib"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame["time"].iloc[-1] == t0 + pd.Timedelta(seconds=10)
    assert str(frame["time"].dt.tz) == "UTC"
    assert store.path("etl/nightly").parent == tmp_path / "usage"
    assert store.load("other").empty
    with pytest.raises(ConfigError):
        store.path(" ")


def test_store_series_feeds_the_forecaster(tmp_path: Path) -> None:
    from care_flows.forecast.usage import forecast_usage, usage_need

    store = UsageStore(tmp_path)
    t0 = pd.Timestamp("2024-01-01T00:00:00Z")
    # two runs a day apart, sampled every 10 s, 2 vCPU busy then 1 vCPU
    for day in range(2):
        start = t0 + pd.Timedelta(days=day)
        samples = [UsageSample(start + pd.Timedelta(seconds=10 * i), 2.0 if i < 90 else 1.0, 1.5, 1) for i in range(180)]
        store.append("etl/nightly", samples)
    s = store.series("etl/nightly", step_s=300, how="max")
    assert len(s) == 2 * 6 and s.index.tz is not None
    assert s.tolist()[:6] == [2.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    fc = forecast_usage(s.to_numpy(), 3, period=None)
    need = usage_need(fc.values, quantile=1.0, headroom_pct=0)
    assert 0.9 <= need.peak_vcpu <= 2.0
    with pytest.raises(ConfigError):
        store.series("etl/nightly", column="gpu")


def test_store_reads_back_times_with_and_without_fractional_seconds(tmp_path) -> None:
    # a sample taken exactly on a whole second is written without a fraction; one file mixes both
    store = UsageStore(tmp_path)
    for t in ("2026-11-28T23:25:39.284123+00:00", "2026-11-28T23:25:40+00:00"):
        store.append("etl", pd.DataFrame({"time": [pd.Timestamp(t)], "cpu_vcpu": [1.0], "memory_gib": [0.5], "n_processes": [1]}))
    frame = store.load("etl")
    assert [t.isoformat() for t in frame["time"]] == ["2026-11-28T23:25:39.284123+00:00", "2026-11-28T23:25:40+00:00"]


def _append_many(directory: str, worker: int) -> None:
    store = UsageStore(directory)
    t = pd.date_range(f"2026-01-0{worker + 1}T00:00Z", periods=200, freq="1s")
    frame = pd.DataFrame({"time": t, "cpu_vcpu": float(worker), "memory_gib": 1.0, "n_processes": 1})
    for i in range(40):
        store.append("etl", frame.iloc[i * 5 : i * 5 + 5])


def test_concurrent_appends_from_several_processes_keep_every_row_and_one_header(tmp_path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    text = UsageStore(tmp_path).path("etl").read_text()
    assert text.count("time,cpu_vcpu") == 1  # one header, written by whichever process came first
    frame = UsageStore(tmp_path).load("etl")
    assert len(frame) == 4 * 200 and sorted(frame["cpu_vcpu"].value_counts().tolist()) == [200] * 4


def test_an_empty_history_file_gets_its_header(tmp_path) -> None:
    # a process killed between creating the file and writing leaves it empty: the next append
    # decides on the header from the size it sees under the lock, not from the file existing
    store = UsageStore(tmp_path)
    store.path("etl").parent.mkdir(parents=True, exist_ok=True)
    store.path("etl").touch()
    store.append("etl", pd.DataFrame({"time": [pd.Timestamp("2026-01-01", tz="UTC")], "cpu_vcpu": [1.0], "memory_gib": [0.5], "n_processes": [1]}))
    assert len(store.load("etl")) == 1


_KILLED_SCRIPT = """
import sys, time
from care_flows.usage_capture import UsageSampler, UsageStore
store = UsageStore(sys.argv[1])
sampler = UsageSampler(interval_s=0.05, on_flush=lambda f: store.append("victim", f), flush_every_s=0.2).start()
blob = []
while True:  # grow memory until killed, never reaching a clean end
    blob.append(bytearray(2_000_000))
    time.sleep(0.05)
"""


def test_a_process_killed_mid_run_leaves_its_flushed_samples(tmp_path) -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SCRIPT, str(tmp_path)])
    try:
        deadline = time.monotonic() + 30
        path = UsageStore(tmp_path).path("victim")
        while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 400):
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)  # what the OOM killer does: no finally, no atexit
        proc.wait(10)
    frame = UsageStore(tmp_path).load("victim")
    assert len(frame) >= 5
    assert frame["memory_gib"].iloc[-1] > frame["memory_gib"].iloc[0]  # the growth before the kill is kept
    with pytest.raises(ConfigError, match="flush_every_s 0"):
        UsageSampler(flush_every_s=0)


def test_flushes_hand_over_every_sample_exactly_once_and_retry_after_a_failure() -> None:
    handed: list[pd.DataFrame] = []
    failures = {"left": 1}

    def on_flush(frame: pd.DataFrame) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk full")  # the first flush fails: the thread keeps sampling, the batch is retried
        handed.append(frame)

    sampler = UsageSampler(interval_s=0.02, on_flush=on_flush, flush_every_s=0.1).start()
    time.sleep(0.6)
    sampler.stop()
    sampler.flush()  # what the decorator does after stop(): the rest
    assert failures["left"] == 0 and len(handed) >= 2
    together = pd.concat(handed, ignore_index=True)
    pd.testing.assert_frame_equal(together, sampler.to_frame())  # no sample lost, none twice


def test_a_local_history_keeps_its_good_rows_around_a_bad_one(tmp_path, caplog) -> None:
    import logging

    store = UsageStore(tmp_path)
    store.append("etl", pd.DataFrame({"time": [pd.Timestamp("2026-01-01", tz="UTC")], "cpu_vcpu": [1.0], "memory_gib": [0.5], "n_processes": [1]}))
    with store.path("etl").open("a") as fh:
        fh.write("2026-01-01T00:00:10+00:00,abc,0.5,1\nnot a time,1.0,0.5,1\n")
    store.append("etl", pd.DataFrame({"time": [pd.Timestamp("2026-01-01T00:00:20", tz="UTC")], "cpu_vcpu": [2.0], "memory_gib": [0.5], "n_processes": [1]}))
    with caplog.at_level(logging.WARNING, logger="care_flows.usage"):
        frame = store.load("etl")
    assert frame["cpu_vcpu"].tolist() == [1.0, 2.0] and "skipped 2 malformed row(s)" in caplog.text


def _row(t: str, cpu: float) -> pd.DataFrame:
    return pd.DataFrame({"time": [pd.Timestamp(t)], "cpu_vcpu": [cpu], "memory_gib": [0.5], "n_processes": [1]})


def test_a_write_cut_short_by_a_full_disk_costs_its_own_row_not_the_history(tmp_path, caplog) -> None:
    """Review 41c M1: a torn row (no newline) had the next run's first row appended to it; cut after a
    comma, the joined line had six fields and the whole history became unreadable for every later run."""
    import logging

    store = UsageStore(tmp_path)
    store.append("etl", _row("2026-11-02T00:00:00Z", 1.0))
    with store.path("etl").open("ab") as fh:  # what a write cut short by ENOSPC leaves: a partial row, no newline
        fh.write(b"2026-11-02T00:04:10+00:00,2.0")
    store.append("etl", _row("2026-11-03T00:00:00Z", 3.0))
    store.append("etl", _row("2026-11-03T00:00:10Z", 4.0))
    with caplog.at_level(logging.WARNING, logger="care_flows.usage"):
        frame = store.load("etl")
    assert frame["cpu_vcpu"].tolist() == [1.0, 3.0, 4.0]  # the torn row alone is dropped
    assert store.path("etl").read_text().count("\n") == 5


def test_a_line_with_too_many_fields_is_skipped_and_named(tmp_path, caplog) -> None:
    import logging

    store = UsageStore(tmp_path)
    store.append("etl", _row("2026-11-02T00:00:00Z", 1.0))
    with store.path("etl").open("a") as fh:  # e.g. joined by an older CaRE's append after a torn write
        fh.write("2026-11-02T00:04:10+00:00,2.02026-11-03T00:00:00+00:00,3.0,1.0,2,3.0,4.0\n")
    store.append("etl", _row("2026-11-03T00:00:10Z", 4.0))
    with caplog.at_level(logging.WARNING, logger="care_flows.usage"):
        frame = store.load("etl")
    assert frame["cpu_vcpu"].tolist() == [1.0, 4.0]
    assert "skipped 1 line(s) with too many fields (first: 2026-11-02T00:04:10+00:00,2.02026-11-03" in caplog.text


def _append_numbered(directory: str, proc: int, n: int) -> None:
    store = UsageStore(directory)
    for i in range(n):  # each row says who wrote it and which of its rows it is
        t = pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(seconds=10 * (proc * 10_000 + i))
        store.append("svc", pd.DataFrame({"time": [t], "cpu_vcpu": [float(proc * 1000 + i)], "memory_gib": [0.5], "n_processes": [1]}))
        store.append_run("svc", RunRecord(f"r{proc}-{i}", t, 10.0))


def test_the_local_history_keeps_its_newest_rows_and_loses_none_to_concurrent_pruning(tmp_path, monkeypatch) -> None:
    """Review 41b H1: the local store grew by every run, forever, and every plan read all of it
    (a year of a 10-minute flow: 122 MiB, +2.5 s and +370 MiB in each run's process)."""
    import multiprocessing

    from care_flows import usage_capture

    monkeypatch.setattr(usage_capture, "KEEP_ROWS", 60)
    monkeypatch.setattr(usage_capture, "KEEP_RUN_RECORDS", 20)
    ctx = multiprocessing.get_context("fork")  # the children see the small limits
    procs = [ctx.Process(target=_append_numbered, args=(str(tmp_path), p, 80)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    store = UsageStore(tmp_path)
    text = store.path("svc").read_text()
    assert text.count("time,") == 1 and 60 <= len(text.splitlines()) - 1 <= 91
    frame = store.load("svc")
    assert len(frame) == len(text.splitlines()) - 1
    for proc in range(4):  # what each writer kept is the end of what it wrote: no row went to a replaced file
        mine = sorted(int(v) - proc * 1000 for v in frame["cpu_vcpu"] if proc * 1000 <= v < (proc + 1) * 1000)
        assert mine == list(range(80 - len(mine), 80)), (proc, mine)
    assert 20 <= len(store.load_runs("svc")) <= 31


def test_a_short_history_is_not_rewritten(tmp_path) -> None:
    store = UsageStore(tmp_path)
    store.append("etl", _row("2026-11-02T00:00:00Z", 1.0))
    inode = store.path("etl").stat().st_ino
    for i in range(20):
        store.append("etl", _row(f"2026-11-02T00:01:{i:02d}Z", 2.0))
    assert store.path("etl").stat().st_ino == inode and len(store.load("etl")) == 21


def test_the_rows_kept_hold_what_sizing_reads() -> None:
    from care_flows.orchestration.learned_duration import MAX_RUNS as DURATION_RUNS
    from care_flows.orchestration.learned_sizing import MAX_STEPS, RECORD_STEP_S, STEP_S
    from care_flows.usage_capture import KEEP_ROWS, KEEP_RUN_RECORDS

    assert KEEP_ROWS >= MAX_STEPS * STEP_S / RECORD_STEP_S  # 14 days of running, every 10-s row
    assert KEEP_RUN_RECORDS >= DURATION_RUNS


def test_a_child_that_exited_but_was_not_reaped_is_not_counted_as_a_process() -> None:
    """Review 41c L4: n_processes counted a zombie child (its CPU still counts, it runs no more)."""
    sampler = UsageSampler(interval_s=0.05)
    before = sampler.sample().n_processes  # this process, and what else the test session started under it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        assert sampler.sample().n_processes == before + 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            import psutil

            if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        assert sampler.sample().n_processes == before  # exited, not reaped yet
    finally:
        child.wait()
    assert sampler.sample().n_processes == before


def test_without_file_locks_the_history_is_appended_to_and_never_rewritten(tmp_path, monkeypatch) -> None:
    """Review 41d M2: os.pread is Unix-only (every append after the first failed on Windows), and a
    rewrite without a lock could drop another writer's rows."""
    import os

    from care_flows import usage_capture

    monkeypatch.setattr(usage_capture, "fcntl", None)
    monkeypatch.delattr(os, "pread", raising=False)
    monkeypatch.setattr(usage_capture, "KEEP_ROWS", 10)
    store = UsageStore(tmp_path)
    for i in range(40):
        store.append("etl", _row(f"2026-11-02T00:{i:02d}:00Z", float(i)))
    assert store.load("etl")["cpu_vcpu"].tolist() == [float(i) for i in range(40)]
