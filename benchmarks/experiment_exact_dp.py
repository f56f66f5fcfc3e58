"""Experiment: what the coarse-to-fine planner saves over the exact DP on the long-window case.

Run: ``.venv/bin/python benchmarks/experiment_exact_dp.py`` (about 15 s; prints seven lines).

The case is the last row of ``benchmarks/bench_planning.py``: a 61-minute job within 120 days of
hourly forecast (the same synthetic series), ``now`` 3 s past the hour, at most 2 segments:
172,800 one-minute units. ``plan_interruptible`` plans it coarse-to-fine because the exact DP's
estimated time is over the 0.3 s budget (``_DP_BUDGET_S``). This script times the shipped plan,
then raises the budget so that the exact DP runs, and times each exact DP on its own (with an
unlimited budget the planner solves every grid it builds, so one plan runs several DPs). Times
are CPU seconds of this process (numpy pinned to one thread), as in ``bench_planning``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import care_flows.planning.windows as windows  # noqa: E402
from bench_planning import T0, _forecast  # noqa: E402


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path

    parse(__doc__, quick=False)  # --help, and no flag taken for "run in full"
    rng = np.random.default_rng(42)
    hours = 24 * 122
    hourly = pd.Series(_forecast(rng, hours), index=pd.date_range(T0, periods=hours, freq="h", tz="UTC"), name="g_per_kwh")
    now = T0 + pd.Timedelta("8h3s")

    def plan() -> tuple[float, object]:
        t = time.process_time()
        p = windows.plan_interruptible(hourly, "61min", now, now + pd.Timedelta("120D"), max_segments=2)
        return time.process_time() - t, p

    shipped, dp = windows._DP_BUDGET_S, windows._dp_segments

    def timed(costs: np.ndarray, need: int, m: int, k_max: int | None) -> np.ndarray | None:
        t = time.process_time()
        result = dp(costs, need, m, k_max)
        print(f"  one exact DP: {len(costs):,} units, {time.process_time() - t:.2f} s CPU "
              f"(the planner's model: {windows._dp_seconds(len(costs), need, m, k_max):.2f} s)")
        return result

    def show(label: str, seconds: str, p: object) -> None:
        segs = ", ".join(f"{s.start:%Y-%m-%d %H:%M}-{s.end:%H:%M}" for s in p.segments)  # type: ignore[attr-defined]
        print(f"{label}: {seconds} s CPU a plan, {p.expected_g_per_kwh:.4f} g/kWh, segments {segs}")  # type: ignore[attr-defined]

    plan()  # warm-up
    times, plans = zip(*(plan() for _ in range(3)))
    show(f"coarse-to-fine (shipped, {shipped:g} s budget)", f"{min(times):.2f}-{max(times):.2f}", plans[0])
    try:
        windows._DP_BUDGET_S, windows._dp_segments = float("inf"), timed
        print("exact (budget unlimited: every grid's exact DP runs):")
        seconds, p = plan()
    finally:
        windows._DP_BUDGET_S, windows._dp_segments = shipped, dp
    show("exact (budget unlimited)", f"{seconds:.2f}", p)

if __name__ == "__main__":
    main()
