"""Planning throughput: plans per second over a 72 h forecast at 5-minute steps (864 slots).

    .venv/bin/python benchmarks/bench_planning.py [--quick]

Every plan is a 2 h job (24 slots) whose window is the whole forecast (841 candidate starts).
Rows (all on one core; numpy's own threading is pinned to 1 thread):

- ``contiguous, batch kernel (one forecast, many jobs)``: :func:`best_contiguous_starts`
  + :func:`run_now_means` for jobs with random earliest starts and deadlines on one forecast;
- ``contiguous, batch kernel (one forecast per job)``: :func:`best_contiguous_starts_rows`
  on a ``(jobs, 864)`` forecast matrix (the simulator's case: a forecast issued per arrival);
- ``contiguous, plan_contiguous (pandas API, one plan per call)``: the full library call with
  Series in and :class:`TimePlan` out;
- ``contiguous, per-window Python loop``: the straightforward baseline, measured in the same
  run: for each start ``values[i:i+n].mean()`` and keep the smallest (ties -> earliest);
- ``interruptible``: :func:`plan_interruptible` without limits (stable sort of units) and with
  ``min_segment=30min, max_segments=3`` (the exact DP); and a long window on a fine unit (review
  32 #2): 61 min within 120 days of hourly forecast, "now" 3 s past the hour, at most 2 segments:
  172,800 one-minute units, planned coarse-to-fine within the DP time budget (was 4 s a plan).

Rates are plans per CPU second of this process (``time.process_time``), i.e. one core's
throughput even when other work shares the machine. ``speedup_vs_loop`` is plans/s divided
by the loop's plans/s. Targets: >= 20,000 contiguous
plans/s on one core and >= 20x the loop.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from care_flows.planning.windows import (  # noqa: E402
    best_contiguous_starts,
    best_contiguous_starts_rows,
    plan_contiguous,
    plan_interruptible,
    run_now_means,
)

__all__ = ["run", "loop_best_start"]

SLOTS = 72 * 12  # 72 h at 5 minutes
JOB_SLOTS = 24  # 2 h
T0 = pd.Timestamp("2023-06-01T00:00:00Z")


def loop_best_start(values: np.ndarray, first: int, last: int, n: int) -> tuple[int, float]:
    """The straightforward per-window loop: mean of each window, keep the first minimum."""
    best_i, best = first, float("inf")
    for i in range(first, last + 1):
        m = values[i : i + n].mean()
        if m < best:
            best_i, best = i, m
    return best_i, float(best)


def _forecast(rng: np.random.Generator, n: int = SLOTS) -> np.ndarray:
    t = np.arange(n)
    return 200 + 120 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 15, n)


def _rate(fn: Callable[[], int], min_time_s: float) -> float:
    """Plans per CPU second: repeat ``fn`` (which returns how many plans it made) for min_time_s.

    CPU time of this process (numpy pinned to one thread), so other load on a shared machine
    does not count against the code measured.
    """
    fn()  # warm-up
    plans, t0 = 0, time.process_time()
    while True:
        plans += fn()
        elapsed = time.process_time() - t0
        if elapsed >= min_time_s:
            return plans / elapsed


def run(quick: bool = False) -> list[dict]:
    """Measure every row; returns the table rows."""
    rng = np.random.default_rng(42)
    min_time = 0.3 if quick else 1.5
    values = _forecast(rng)
    series = pd.Series(values, index=pd.date_range(T0, periods=SLOTS, freq="5min", tz="UTC"), name="g_per_kwh")
    last_start = SLOTS - JOB_SLOTS
    earliest, deadline, duration = T0, T0 + pd.Timedelta(minutes=5 * SLOTS), pd.Timedelta("2h")

    jobs = 2_000 if quick else 20_000
    first = rng.integers(0, last_start // 2, jobs)
    last = np.minimum(first + rng.integers(0, last_start, jobs), last_start)

    def batch_one_forecast() -> int:
        starts = best_contiguous_starts(values, first, last, JOB_SLOTS)
        run_now_means(values, starts, JOB_SLOTS)
        run_now_means(values, first, JOB_SLOTS)
        return jobs

    matrix = np.stack([_forecast(rng) for _ in range(200 if quick else 2_000)])
    row_last = np.full(len(matrix), last_start)

    def batch_rows() -> int:
        best_contiguous_starts_rows(matrix, row_last, JOB_SLOTS)
        return len(matrix)

    def api_contiguous() -> int:
        plan_contiguous(series, duration, earliest, deadline)
        return 1

    def loop() -> int:
        loop_best_start(values, 0, last_start, JOB_SLOTS)
        return 1

    def api_interruptible() -> int:
        plan_interruptible(series, duration, earliest, deadline)
        return 1

    def api_interruptible_dp() -> int:
        plan_interruptible(series, duration, earliest, deadline, min_segment="30min", max_segments=3)
        return 1

    hours = 24 * 122
    hourly = pd.Series(_forecast(rng, hours), index=pd.date_range(T0, periods=hours, freq="h", tz="UTC"), name="g_per_kwh")
    off_grid_now = T0 + pd.Timedelta("8h3s")

    def api_interruptible_long() -> int:
        plan_interruptible(hourly, "61min", off_grid_now, off_grid_now + pd.Timedelta("120D"), max_segments=2)
        return 1

    # the kernels and the loop agree on the plan being measured
    i_loop, m_loop = loop_best_start(values, 0, last_start, JOB_SLOTS)
    i_kernel = int(best_contiguous_starts(values, np.array([0]), np.array([last_start]), JOB_SLOTS)[0])
    p = plan_contiguous(series, duration, earliest, deadline)
    assert i_kernel == i_loop and p.start == T0 + pd.Timedelta(minutes=5 * i_loop), (i_kernel, i_loop, p.start)
    assert abs(p.expected_g_per_kwh - m_loop) < 1e-9

    loop_rate = _rate(loop, min_time)
    rows = []
    for name, fn in (
        ("contiguous, batch kernel (one forecast, many jobs)", batch_one_forecast),
        ("contiguous, batch kernel (one forecast per job)", batch_rows),
        ("contiguous, plan_contiguous (pandas API, one plan per call)", api_contiguous),
        ("contiguous, per-window Python loop (baseline)", None),
        ("interruptible, plan_interruptible (no limits)", api_interruptible),
        ("interruptible, plan_interruptible (min 30 min, max 3 segments; DP)", api_interruptible_dp),
        ("interruptible, 61 min within 120 days hourly, max 2 segments (coarse-to-fine DP)", api_interruptible_long),
    ):
        rate = loop_rate if fn is None else _rate(fn, min_time if "DP" not in name else min_time / 2)
        rows.append(
            {
                "plan": name,
                "plans_per_s": round(rate, 1),
                "us_per_plan": round(1e6 / rate, 1),
                "speedup_vs_loop": round(rate / loop_rate, 1),
            }
        )
    return rows


def _print(rows: list[dict]) -> None:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))


if __name__ == "__main__":
    from _args import parse  # the script's own folder is on sys.path

    quick = parse(__doc__).quick
    print(f"72 h forecast at 5-minute steps ({SLOTS} slots), 2 h job ({JOB_SLOTS} slots), one core\n")
    _print(run(quick=quick))
