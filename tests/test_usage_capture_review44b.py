"""Review 44b: H1, a run shorter than half the sampling interval read its few CPU ticks as a rate over
milliseconds (2-4.5 vCPU on a 2-core machine for a flow that returns at once), and learned sizing then
planned such a flow on a 4-vCPU type; M1, a usage batch the store failed to take was counted as stored
(record_usage swallowed the error), so the minute that held the peak was lost."""

from __future__ import annotations

import errno
import os
import time

import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import record_usage
from care_flows.policy import CarePolicy
from care_flows.usage_capture import UsageSampler, UsageStore


def _spin(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def test_a_run_shorter_than_half_the_interval_never_reads_as_more_cpu_than_it_could_use():
    rates = []
    for _ in range(30):
        with UsageSampler() as sampler:  # interval 1 s, as @care samples
            _spin(0.003)
        rates.append(max(s.cpu_vcpu for s in sampler.samples))
    # 3 ms of work over the 0.5 s the short run's rate is taken over: a few ticks of 10 ms at most
    assert max(rates) <= 0.2, rates
    assert max(rates) <= (os.cpu_count() or 1)


def test_a_busy_run_still_reads_its_cpu_and_no_rate_exceeds_the_machine():
    with UsageSampler(interval_s=0.1) as sampler:
        _spin(0.8)
    cpu = [s.cpu_vcpu for s in sampler.samples]
    assert max(cpu) > 0.3 and max(cpu) <= (os.cpu_count() or 1) + 1e-9, cpu


class _FlakyStore(UsageStore):
    """A store whose first ``fail`` appends raise ENOSPC (a full disk for a moment)."""

    def __init__(self, root, fail: int) -> None:
        super().__init__(root)
        self.fail = fail

    def append(self, deployment, samples, *, run_id=None):
        if self.fail > 0:
            self.fail -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().append(deployment, samples, run_id=run_id)


def test_a_batch_the_store_failed_to_take_is_stored_with_the_next_one(tmp_path):
    store = _FlakyStore(tmp_path, fail=2)
    policy = CarePolicy()
    sampler = UsageSampler(interval_s=0.05,
                           on_flush=lambda frame: record_usage(policy, "blip", frame, store=store, run_id="r1", raise_errors=True))
    sampler.sample()  # the baseline; samples taken by hand, as the thread does, without its timing
    _spin(0.3)
    sampler.sample()  # the peak, in the batches the store refuses
    for _ in range(2):
        with pytest.raises(OSError):
            sampler.flush()
    time.sleep(0.2)
    sampler.sample()
    sampler.flush()  # the next batch: the refused samples go with it
    assert store.fail == 0
    stored = store.load("blip")
    sampled = max(s.cpu_vcpu for s in sampler.samples)
    assert stored["cpu_vcpu"].max() == pytest.approx(sampled) and sampled > 0.2
    assert stored["memory_gib"].max() == pytest.approx(max(s.memory_gib for s in sampler.samples))
    sampler.flush()  # nothing new: nothing stored twice
    assert len(store.load("blip")) == len(stored)


def test_without_raise_errors_recording_still_never_fails(tmp_path):
    store = _FlakyStore(tmp_path, fail=1)
    with UsageSampler(interval_s=0.05) as sampler:
        time.sleep(0.1)
    record_usage(CarePolicy(), "quiet", sampler.to_frame(), store=store)  # logged, not raised
    assert store.fail == 0


def test_a_write_cut_short_by_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """Review 44d M1: the rows written before ENOSPC stayed (one torn), and the batch handed over again was
    stored a second time: 8 rows for 6 times. The file is cut back to its size before the write."""
    from care_flows import usage_capture

    store = UsageStore(tmp_path)
    t = pd.date_range("2026-01-01T00:00Z", periods=6, freq="10s")
    first = pd.DataFrame({"time": t[:3], "cpu_vcpu": 1.0, "memory_gib": 1.0, "n_processes": 1})
    batch = pd.DataFrame({"time": t[3:], "cpu_vcpu": 2.0, "memory_gib": 1.0, "n_processes": 1})
    store.append("etl", first)
    real_write, calls = os.write, [0]

    def half_then_full(fd, data):
        calls[0] += 1
        if calls[0] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(usage_capture.os, "write", half_then_full)
    with pytest.raises(OSError):
        store.append("etl", batch)
    monkeypatch.setattr(usage_capture.os, "write", real_write)
    store.append("etl", batch)  # handed over again
    got = store.load("etl")
    assert got["time"].tolist() == list(t) and got["cpu_vcpu"].tolist() == [1.0] * 3 + [2.0] * 3


def test_the_cpu_bound_is_what_the_process_may_use_not_the_host():
    """Review 44d L3: under taskset -c 0 a sample could read 2.0 vCPU on a 2-CPU host."""
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")  # pragma: no cover - Linux runs it
    code = "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); from care_flows.usage_capture import _CPU_COUNT; print(_CPU_COUNT)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert float(out.strip().splitlines()[-1]) == 1.0


def test_a_cgroup_cpu_quota_bounds_it_too(tmp_path):
    from care_flows import usage_capture

    (tmp_path / "cpu.max").write_text("50000 100000\n")  # a container's --cpus 0.5, at the root of its cgroup namespace
    assert usage_capture.usable_cpus(tmp_path, tmp_path / "no-proc-cgroup") == 0.5


def test_a_first_write_cut_back_leaves_no_history_not_a_malformed_one(tmp_path, monkeypatch):
    """Review 44e L2: the cut-back left a 0-byte file, which load() called malformed until the next write."""
    from care_flows import usage_capture

    store = UsageStore(tmp_path)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(usage_capture.os, "write", full)
    with pytest.raises(OSError):
        store.append("etl", pd.DataFrame({"time": pd.date_range("2026-01-01", periods=2, freq="10s", tz="UTC"),
                                          "cpu_vcpu": 1.0, "memory_gib": 1.0, "n_processes": 1}))
    monkeypatch.undo()
    assert store.path("etl").exists() and store.load("etl").empty


def test_a_store_that_stays_down_is_not_reported_every_minute(tmp_path, caplog):
    """Review 44d L2: with the batch handed over again every minute, a store that stayed down logged two
    warnings a minute for the whole run; now once, then every 10th failure in a row, and a success resets it."""
    import logging

    store = _FlakyStore(tmp_path, fail=25)
    frame = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=2, freq="10s", tz="UTC"), "cpu_vcpu": 1.0,
                          "memory_gib": 1.0, "n_processes": 1})
    with caplog.at_level(logging.WARNING):
        for _ in range(25):
            with pytest.raises(OSError):
                record_usage(CarePolicy(), "down", frame, store=store, run_id="r-down", raise_errors=True)
        said = [r.getMessage() for r in caplog.records if "could not store the usage of 'down'" in r.getMessage()]
        assert len(said) == 3 and "(11 times in a row)" in said[1] and "(21 times in a row)" in said[2], said
        record_usage(CarePolicy(), "down", frame, store=store, run_id="r-down", raise_errors=True)  # stored: the count resets
        store.fail = 1
        caplog.clear()
        with pytest.raises(OSError):
            record_usage(CarePolicy(), "down", frame, store=store, run_id="r-down", raise_errors=True)
        assert [r.getMessage() for r in caplog.records if "could not store" in r.getMessage()][0].startswith(
            "CaRE: could not store the usage of 'down' (")


def _cgroup(tmp_path, proc_lines: list[str], files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "proc-cgroup").write_bytes(("\n".join(proc_lines) + "\n").encode("utf-8", "surrogateescape"))
    return tmp_path, tmp_path / "proc-cgroup"


@pytest.mark.parametrize("proc_lines, files, expected", [
    # v2, a systemd service with CPUQuota=150% on its slice: the quota is on a parent, not the root (review 45b L2)
    (["0::/system.slice/app.service"], {"system.slice/app.service/cpu.max": "max 100000\n", "system.slice/cpu.max": "150000 100000\n",
                                         "cpu.max": "max 100000\n"}, 1.5),
    # v1 (this CI machine's kind): docker --cpus 0.5 on a cgroupfs host
    (["4:memory:/docker/abc", "2:cpu,cpuacct:/docker/abc"], {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                                                             "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 0.5),
    # v1 without a quota (-1) and a v2 root without one: the affinity stands
    (["1:cpu:/", "0::/"], {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n", "cpu.max": "max 100000\n"}, None),
    # the smallest of two quotas on the way up
    (["0::/a/b"], {"a/b/cpu.max": "300000 100000\n", "a/cpu.max": "25000 100000\n"}, 0.25),
    # unreadable or malformed files are no quota
    (["0::/a", "garbage"], {"a/cpu.max": "lots\n"}, None),
    (["0::/a\udcff"], {}, None),  # not UTF-8 (written with surrogateescape below): it runs at import and must not raise
])
def test_the_quota_of_any_cgroup_on_the_way_up_bounds_it(tmp_path, proc_lines, files, expected):
    from care_flows import usage_capture

    affinity = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else usage_capture.usable_cpus()
    got = usage_capture.usable_cpus(*_cgroup(tmp_path, proc_lines, files))
    assert got == (affinity if expected is None else min(affinity, expected))
