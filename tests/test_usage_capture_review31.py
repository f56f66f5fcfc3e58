"""Review 31 #1 and #4: the sampler keeps the CPU of short-lived children (counted once) and does
not count memory that forked workers share once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from care_flows.usage_capture import UsageSampler

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"
# a child that burns CPU itself and runs a grandchild that burns more (reaped by the child)
NESTED = BUSY.format(s=0.1) + f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BUSY.format(s=0.1)!r}], check=True)\n"


def _tree_cpu_s() -> float:
    """CPU seconds of this process and of the children it has reaped (and theirs), as the kernel counts them."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _recorded_cpu_s(sampler: UsageSampler) -> float:
    frame = sampler.to_frame()
    dt = frame["time"].diff().dt.total_seconds().fillna(0.0).to_numpy()
    return float((frame["cpu_vcpu"].to_numpy() * dt).sum())


def _children_cpu_s(run) -> tuple[float, float, UsageSampler]:  # type: ignore[no-untyped-def]
    """(CPU s of the children reaped during ``run(sampler)``, CPU s of the whole tree, the sampler)."""
    before_children = os.times().children_user + os.times().children_system
    before = _tree_cpu_s()
    sampler = UsageSampler(interval_s=run.interval_s)
    with sampler:
        run(sampler)
    children = os.times().children_user + os.times().children_system - before_children
    return children, _tree_cpu_s() - before, sampler


def test_children_shorter_than_the_interval_are_recorded() -> None:
    def run(_sampler: UsageSampler) -> None:
        for _ in range(10):  # each child lives ~0.3 s, the sampler looks every second: most are never seen
            subprocess.run([sys.executable, "-c", BUSY.format(s=0.2)], check=True)

    run.interval_s = 1.0  # type: ignore[attr-defined]
    children_s, tree_s, sampler = _children_cpu_s(run)
    recorded_s = _recorded_cpu_s(sampler)
    assert children_s > 10 * 0.2  # the children really burned their CPU
    # the kernel's own count of this process + its reaped children is what the tree used; the
    # sampler recorded it within 15 %, however loaded the machine (CPU time, not wall time)
    assert 0.85 * tree_s <= recorded_s <= 1.15 * tree_s, (recorded_s, tree_s, children_s)
    assert recorded_s >= 0.85 * children_s


def test_children_seen_alive_zombie_or_with_grandchildren_are_counted_once() -> None:
    def run(sampler: UsageSampler) -> None:
        for _ in range(4):  # seen alive at several samples, then reaped: its CPU moves to our children_*
            subprocess.run([sys.executable, "-c", BUSY.format(s=0.3)], check=True)
        for _ in range(3):  # a grandchild reaped by its parent, then the parent reaped by us
            subprocess.run([sys.executable, "-c", NESTED], check=True)
        zombie = subprocess.Popen([sys.executable, "-c", BUSY.format(s=0.2)])
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        time.sleep(3 * sampler.interval_s)  # sampled as a zombie (final CPU, not reaped yet) ...
        zombie.wait()  # ... then reaped

    run.interval_s = 0.1  # type: ignore[attr-defined]
    children_s, tree_s, sampler = _children_cpu_s(run)
    recorded_s = _recorded_cpu_s(sampler)
    assert children_s > 4 * 0.3 + 3 * 0.2 + 0.2
    assert 0.85 * tree_s <= recorded_s <= 1.15 * tree_s, (recorded_s, tree_s, children_s)
    assert (sampler.to_frame()["cpu_vcpu"] >= 0).all()


FORKED = """
import gc, json, os, time
from care_flows.usage_capture import UsageSampler

size = 256 * 2**20
shared = b"\\x01" * size  # written, so resident; the workers only keep it (copy-on-write)
gc.collect(); gc.freeze(); gc.disable()  # no collection touching (and so copying) shared pages
sampler = UsageSampler(interval_s=1.0)  # sampled by hand: no thread while forking
alone = sampler.sample()
sampler._pss_next = float("inf")  # as if reading PSS were slow: the new processes alone make it read again
pids = []
try:
    for _ in range(3):
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                time.sleep(30)
            finally:
                os._exit(0)
        pids.append(pid)
    time.sleep(0.3)
    together = sampler.sample()
finally:
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
print(json.dumps({"size": size, "alone": [alone.n_processes, alone.memory_gib],
                  "together": [together.n_processes, together.memory_gib],
                  "kinds": [together.memory_kind, sampler.memory_kind]}))
"""


def test_forked_workers_sharing_the_parent_memory_are_not_counted_once_each() -> None:
    # in a fresh interpreter: the process tree is then only it and its workers, not a test worker of
    # a gigabyte (whose own copy-on-write traffic, or a server it started, moved the figure by 67 MiB)
    out = subprocess.run([sys.executable, "-c", FORKED], check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    size = got["size"]
    (alone_n, alone_gib), (together_n, together_gib) = got["alone"], got["together"]
    assert together_n == alone_n + 3
    assert alone_gib * 2**30 >= size  # the allocation is counted ...
    # ... once, not once per worker: summing RSS gave about 4x the parent's memory here
    assert (together_gib - alone_gib) * 2**30 < 0.25 * size, got
    assert got["kinds"] == ["pss", "pss"]  # Linux: proportional set size


def test_memory_falls_back_to_rss_when_pss_is_denied(monkeypatch) -> None:
    def denied(self):  # type: ignore[no-untyped-def]
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    sample = UsageSampler(interval_s=1.0).sample()
    assert sample.memory_kind == "rss" and sample.memory_gib > 0
    assert isinstance(sample.time, pd.Timestamp)


def test_a_final_sample_right_after_the_last_one_is_merged_into_it() -> None:
    sampler = UsageSampler(interval_s=0.3).start()
    seen = len(sampler.samples)
    while len(sampler.samples) < seen + 2:  # stop a moment after the thread sampled
        time.sleep(0.001)
    sampler.stop()
    dt = sampler.to_frame()["time"].diff().dt.total_seconds().iloc[1:]
    # no interval of a few ms (where one 10 ms CPU tick would read as several vCPUs)
    assert (dt >= 0.3 / 2).all(), dt.tolist()


GROWN = """
import json
from care_flows.usage_capture import UsageSampler

sampler = UsageSampler(interval_s=1.0)
first = sampler.sample()
sampler._pss_next = float("inf")  # the next samples estimate: last PSS + RSS change
grown = b"\\x01" * (128 * 2**20)
second = sampler.sample()
print(json.dumps({"grown": len(grown), "first": first.memory_gib, "second": second.memory_gib,
                  "kind": second.memory_kind}))
"""


def test_memory_growth_between_two_pss_reads_is_counted() -> None:
    # in a fresh interpreter, like the test above: no other process of a test worker's tree shrinking meanwhile
    out = subprocess.run([sys.executable, "-c", GROWN], check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert (got["second"] - got["first"]) * 2**30 >= 0.9 * got["grown"], got
    assert got["kind"] == "pss"


def test_a_final_sample_right_after_a_flushed_one_is_not_a_spike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 33 #5: when the thread's last sample was already flushed it cannot be merged; the
    final sample then takes its CPU over both intervals instead of over a few milliseconds."""
    import threading

    from care_flows import usage_capture

    clock = [100.0]
    monkeypatch.setattr(usage_capture.time, "monotonic", lambda: clock[0])
    flushed: list[pd.DataFrame] = []
    sampler = UsageSampler(interval_s=1.0, on_flush=flushed.append)
    totals = iter([(0.0, 2**30, 1), (0.5, 2**30, 1), (0.51, 2**30, 1)])  # CPU s: half a vCPU, then one 10 ms tick
    monkeypatch.setattr(sampler, "_cpu_and_rss", lambda: next(totals))
    sampler.sample()  # the baseline at 100 s
    clock[0] = 101.0
    assert sampler.sample().cpu_vcpu == pytest.approx(0.5)
    sampler.flush()  # kept in the store: it cannot be replaced any more
    done = threading.Thread(target=lambda: None)
    done.start()
    sampler._thread = done  # the sampling thread, already finished
    clock[0] = 101.005  # stop() 5 ms later
    samples = sampler.stop()
    assert len(flushed) == 1 and len(samples) == 3
    assert samples[-1].cpu_vcpu == pytest.approx(0.51 / 1.005)  # over both intervals; was 0.01 / 0.005 = 2 vCPU


def test_a_small_new_command_reads_only_its_own_pss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 33 #4: every sample with a new short command re-read the PSS of the whole tree (the
    big flow process's page tables: 4.5-5.7 % of a core at 4-8 GiB); only a big fork needs that."""
    reads: list[int] = []
    real = psutil.Process.memory_full_info

    def counted(self: psutil.Process):  # type: ignore[no-untyped-def]
        reads.append(self.pid)
        return real(self)

    monkeypatch.setattr(psutil.Process, "memory_full_info", counted)
    sampler = UsageSampler(interval_s=1.0)  # sampled by hand
    sampler.sample()
    assert os.getpid() in reads  # the first sample reads every process
    sampler._pss_next = float("inf")  # not due for a periodic re-read
    reads.clear()
    small = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.2)
        with_command = sampler.sample()
        assert small.pid in reads and os.getpid() not in reads  # the command's PSS only, not the flow's
        assert with_command.memory_kind == "pss"
        reads.clear()
        sampler.sample()
        assert small.pid not in reads and os.getpid() not in reads  # read once
        big = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (96 * 2**20); time.sleep(5)"])
        try:
            deadline = time.monotonic() + 10
            while psutil.Process(big.pid).memory_info().rss < 80 * 2**20 and time.monotonic() < deadline:
                time.sleep(0.05)
            sampler.sample()
            assert os.getpid() in reads and big.pid in reads  # a big newcomer: the whole tree is read again
        finally:
            big.kill()
            big.wait()
    finally:
        small.kill()
        small.wait()
