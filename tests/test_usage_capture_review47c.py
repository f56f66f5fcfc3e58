"""Review 47c H1: the sampler took a sample's time before walking the process tree, and read the CPU
times after it. The walk reads /proc for every process on the machine and, with the flow's own Python
code busy, waits for the GIL at each read: it took 16 ms to 281 ms. A CPU delta over one span divided
by a wall delta over another read a 1-vCPU flow as 2.0 vCPU (the cap) on a machine with 381
processes, and learned sizing chose a type two sizes up (t3.xlarge instead of t3.small, 3.6x the
price). The slow walk is made deterministic here."""

from __future__ import annotations

import subprocess
import sys
import time

from care_flows.usage_capture import UsageSampler

BUSY = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 30: pass\n"  # one vCPU for up to 30 s


def test_a_slow_walk_of_the_process_tree_does_not_inflate_the_cpu_rate(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        sampler = UsageSampler(interval_s=60.0)  # sampled by hand below, not by its thread
        walk = sampler._tree_parts
        delay = {"s": 0.0}

        def slow_walk():  # type: ignore[no-untyped-def]
            time.sleep(delay["s"])  # the walk of a busy machine's /proc while the flow holds the GIL
            return walk()

        monkeypatch.setattr(sampler, "_tree_parts", slow_walk)
        sampler.sample()
        rates = []
        for walk_s in (0.8, 0.0, 0.8, 0.0):
            time.sleep(0.4)
            delay["s"] = walk_s
            rates.append(sampler.sample().cpu_vcpu)
        # the busy child uses at most 1 vCPU (this process sleeps); a walk 0.8 s long read it as up to 3x that
        assert max(rates) <= 1.2, rates
    finally:
        child.kill()
        child.wait()
