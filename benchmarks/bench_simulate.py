"""Speed of ``care simulate``: the 100k-job GAIA Azure trace on a year of hourly carbon data.

    .venv/bin/python benchmarks/bench_simulate.py          # full: 99,988 jobs, ES (+ SE for the spatial row)
    .venv/bin/python benchmarks/bench_simulate.py --quick  # first 10,000 jobs

The trace (arrivals over 365 days, in hours) is anchored at 2022-01-01T00:00Z with 24 h slack;
the embedded Electricity Maps ES trace supplies 2021 as history for the first forecasts. Each
row times, for one policy, reading nothing from disk but: building the simulation context
(validation, pricing) + the policy's decisions + the evaluation on the real trace. The forecasts
(one per distinct arrival hour, per job group) are built on first use and kept, so they count in
the first forecast-driven row's policy_s. Goal: under 60 s per policy on a 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import sys
import time

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data beside the repo

__all__ = ["run"]

GAIA_AZURE = SHARED_DATA / "workload_jobs" / "gaia_azure-100k_jobs.csv"


def run(quick: bool = False) -> list[dict]:
    from care_flows.simulate.engine import SimContext, evaluate, load_trace
    from care_flows.simulate.jobs import convert_gaia, jobs_from_frame
    from care_flows.simulate.policies import POLICIES, run_policy

    frame = convert_gaia(GAIA_AZURE, start="2022-01-01T00:00Z", slack_h=24.0, limit=10_000 if quick else None)
    frame["interruptible"] = False
    jobs = jobs_from_frame(frame)
    rows: list[dict] = []
    for zones in (["ES"], ["ES", "SE"]):
        trace = load_trace([f"embedded:{z}" for z in zones])
        t = time.perf_counter()
        ctx = SimContext.build(trace, jobs, home_region=trace.regions[0])
        build_s = time.perf_counter() - t
        names = list(POLICIES) if len(zones) == 1 else ["care", "oracle", "carbonaware-prefect"]
        for name in names:
            t = time.perf_counter()
            out = evaluate(ctx, run_policy(ctx, name))
            policy_s = time.perf_counter() - t
            doc = out.summary()
            rows.append(
                {
                    "zones": "+".join(zones),
                    "policy": name,
                    "jobs": len(jobs),
                    "context_s": round(build_s, 2),
                    "policy_s": round(policy_s, 2),
                    "total_s": round(build_s + policy_s, 2),
                    "savings_pct": doc["savings_pct"],
                    "deadline_misses": doc["deadline_misses"],
                    "under_60s": build_s + policy_s < 60,
                }
            )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from run import _table  # type: ignore[import-not-found]

    from _args import parse  # the script's own folder is on sys.path
    print(_table(run(quick=parse(__doc__).quick)))
