"""Overhead of ``@care`` on a flow that decides "now": decorated vs undecorated, in one run.

Both flows do the same small numpy job against one Prefect test server (started once, not
timed). The decorated one also plans with the embedded signal + planner (warm cache) and writes
its decision and realized-figures artifacts. Targets: < 1 s added per run, < 100 ms for the plan.

A worker starts each deployment run in a new Python process, where ``@care`` also costs importing
``care_flows`` and a cold first plan (the embedded tables read, the planner's modules imported):
the "cold" rows time those in fresh processes (``python -c``, after ``import prefect``).

    .venv/bin/python benchmarks/bench_overhead.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["run"]


def _work(n: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, n))
    return float(np.linalg.norm(a @ a.T))


def _stats(name: str, samples: list[float], target: str = "") -> dict[str, Any]:
    return {
        "case": name,
        "n": len(samples),
        "median_ms": 1000 * statistics.median(samples),
        "p90_ms": 1000 * float(np.percentile(samples, 90)),
        "min_ms": 1000 * min(samples),
        "target": target,
    }


_COLD = """
import time
t0 = time.perf_counter()
import prefect, prefect.flows
t1 = time.perf_counter()
import pandas as pd
from care_flows.orchestration import care
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy
t2 = time.perf_counter()
plan_run(CarePolicy(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], expected_duration="1h", deadline_within="12h",
                    vcpu=2, memory_gib=8), pd.Timestamp.now(tz="UTC"))
print(t2 - t1, time.perf_counter() - t2)
"""


def _cold(reps: int) -> tuple[list[float], list[float]]:
    """Seconds to import care_flows (prefect already imported) and of the first plan, each in a fresh process."""
    import subprocess

    imports, plans = [], []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, check=True).stdout.split()
        imports.append(float(out[-2]))
        plans.append(float(out[-1]))
    return imports, plans


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Rows: undecorated run, decorated run, added time, plan only (warm), and the cold-process costs."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_LOGGING_LEVEL, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from care_flows.orchestration import care
    from care_flows.orchestration.plan import plan_run
    from care_flows.policy import CarePolicy

    reps = 5 if quick else 15
    # no slack (deadline == duration): the plan is "now, here" by construction
    policy = CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="1h")

    def body(n: int = 200) -> float:
        return _work(n)

    plain = flow(name="bench-plain")(body)
    decorated = care(policy=policy)(flow(name="bench-care")(body))

    plan_samples = []
    plan_run(policy, pd.Timestamp.now(tz="UTC"))  # warm: signal cache, price/power tables
    for _ in range(reps * 2):
        t = time.perf_counter()
        p = plan_run(policy, pd.Timestamp.now(tz="UTC"))
        plan_samples.append(time.perf_counter() - t)
    assert p.now_here, "the benchmark policy must decide 'now, here'"

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOGGING_LEVEL: "WARNING"}):
        with prefect_test_harness(server_startup_timeout=180):
            plain(), decorated()  # warm both paths
            a, b = [], []
            for _ in range(reps):  # interleaved, same conditions
                t = time.perf_counter()
                plain()
                a.append(time.perf_counter() - t)
                t = time.perf_counter()
                decorated()
                b.append(time.perf_counter() - t)
    added = [y - x for x, y in zip(a, b)]
    imports, cold_plans = _cold(3 if quick else 5)
    return [
        _stats("flow, undecorated", a),
        _stats("flow, @care deciding now", b),
        _stats("added by @care (paired)", added, "< 1000 ms"),
        _stats("plan only (warm cache)", plan_samples, "< 100 ms"),
        _stats("cold: import care_flows", imports),
        _stats("cold: first plan", cold_plans),
    ]


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path
    rows = run(quick=parse(__doc__).quick)
    cols = list(rows[0])
    print("  ".join(f"{c:>24}" if i == 0 else f"{c:>10}" for i, c in enumerate(cols)))
    for r in rows:
        print("  ".join(f"{r[c]:>24}" if i == 0 else (f"{r[c]:>10.1f}" if isinstance(r[c], float) else f"{r[c]!s:>10}") for i, c in enumerate(cols)))
