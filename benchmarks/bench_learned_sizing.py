"""How long planning spends sizing a run from its flow's usage history (``learned_sizing``).

    .venv/bin/python benchmarks/bench_learned_sizing.py            # full size
    .venv/bin/python benchmarks/bench_learned_sizing.py --quick

Histories are written to a temporary local store at 10-second maxima (what ``@care`` records):

- ``daily 1 h flow, 1 year``: one hour-long run a day for 365 days (131,400 rows; quantiles and
  the memory maximum read up to the last 14 days of running, the forecaster the last 3 days);
- ``service, 14 days unbroken``: a flow that never stops (120,960 rows, daily period searched).

For each, the first ``learned_need`` (read + forecast: seconds and peak traced memory) and a
memoised ``need_for_policy`` call (what a controller pass pays for the second and later runs of the
same flow), for an expected duration of 1 h and 24 h. Goals: about a second cold, well under a
millisecond memoised, and a peak small enough for a trigger run on a small instance (< 150 MiB).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from care_flows.forecast.usage import forecast_usage  # noqa: E402
from care_flows.orchestration.learned_sizing import learned_need, need_for_policy  # noqa: E402
from care_flows.policy import CarePolicy  # noqa: E402
from care_flows.usage_capture import UsageStore  # noqa: E402

__all__ = ["run"]


def _histories(quick: bool) -> dict[str, pd.DatetimeIndex]:
    days = 30 if quick else 365
    daily = pd.DatetimeIndex(np.concatenate([
        pd.date_range(pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=d), periods=360, freq="10s").values for d in range(days)
    ]), tz="UTC")
    service = pd.date_range("2025-01-01", periods=(3 if quick else 14) * 1440 * 6, freq="10s", tz="UTC")
    return {f"daily 1 h flow, {days} days": daily, f"service, {3 if quick else 14} days unbroken": service}


def run(quick: bool = False) -> list[dict]:
    logging.disable(logging.WARNING)  # "no daily/weekly period" notes
    rows = []
    rng = np.random.default_rng(0)
    for name, times in _histories(quick).items():
        store = UsageStore(tempfile.mkdtemp(prefix="care-bench-usage-"))
        store.append("flow", pd.DataFrame({"time": times, "cpu_vcpu": 1 + rng.random(len(times)), "memory_gib": 2.0, "n_processes": 1}))
        for hours in (1, 24):
            tracemalloc.start()
            t0 = time.perf_counter()
            cold = learned_need(store, "flow", duration_s=hours * 3600)
            cold_s = time.perf_counter() - t0
            peak_mib = tracemalloc.get_traced_memory()[1] / 2**20  # numpy reports its buffers to tracemalloc
            tracemalloc.stop()
            policy = CarePolicy(expected_duration=f"{hours}h")
            need_for_policy(policy, "flow", store)  # fill the memo
            t0 = time.perf_counter()
            need_for_policy(policy, "flow", store)
            memo_s = time.perf_counter() - t0
            assert cold is not None
            rows.append({"history": name, "rows": len(times), "expected_duration_h": hours, "cold_s": round(cold_s, 3), "peak_mib": round(peak_mib),
                         "memoised_s": round(memo_s, 5), "peak_vcpu": cold.need.peak_vcpu, "peak_memory_gib": cold.need.peak_memory_gib})
    # for comparison: one forecast as first shipped (4 h ahead over 14 days of one-minute steps)
    y = 1 + rng.random((3 if quick else 14) * 1440)
    tracemalloc.start()
    t0 = time.perf_counter()
    forecast_usage(y, 240, period=None, step_s=60.0)
    wide_s = time.perf_counter() - t0
    wide_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rows.append({"history": f"forecast_usage alone, {len(y)} steps, 240 ahead (uncapped)", "rows": len(y), "expected_duration_h": 4,
                 "cold_s": round(wide_s, 3), "peak_mib": round(wide_mib), "memoised_s": float("nan"), "peak_vcpu": float("nan"),
                 "peak_memory_gib": float("nan")})
    logging.disable(logging.NOTSET)
    return rows


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path
    out = run(quick=parse(__doc__).quick)
    cols = list(out[0])
    print(" | ".join(cols))
    for r in out:
        print(" | ".join(str(r[c]) for c in cols))
