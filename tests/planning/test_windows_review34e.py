"""Review 34b #4: durations / min segments that are not whole minutes on hourly data are solved on
their exact (second-level) grid when the window is short, and the unit grids are built over the
window only (not the whole forecast)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import care_flows.planning.windows as W

T0 = pd.Timestamp("2023-01-01T00:00:00Z")


def _brute_opt(costs: np.ndarray, need: int, m: int, k: int) -> float:
    """Independent exact minimum total cost: ``need`` units in runs of >= ``m`` units (separated
    by at least one unused unit), at most ``k`` runs; a DP over run starts."""
    n = len(costs)
    c = np.concatenate([[0.0], np.cumsum(costs)])
    f = np.full((n + 2, need + 1, k + 1), np.inf)  # f[p]: units < p decided, p free to start a run
    f[0, 0, 0] = 0.0
    best = np.inf
    for p in range(n + 1):
        cur = f[p]
        best = min(best, cur[need].min())
        if p == n or not np.isfinite(cur).any():
            continue
        np.minimum(f[p + 1], cur, out=f[p + 1])
        for length in range(m, min(n - p, need) + 1):
            run = c[p + length] - c[p]
            if p + length == n:
                best = min(best, (cur[need - length, :k] + run).min())
                continue
            tgt = f[p + length + 1, length:, 1:]
            np.minimum(tgt, cur[: need + 1 - length, :k] + run, out=tgt)
    return float(best)


def _unit_costs(fc: pd.Series, start: pd.Timestamp, end: pd.Timestamp, unit: pd.Timedelta) -> np.ndarray:
    step = fc.index[1] - fc.index[0]
    offsets = (start - fc.index[0]) + unit * np.arange((end - start) // unit)
    return fc.to_numpy()[np.asarray(offsets // step, dtype=np.int64)]


def _check(p, now, deadline, duration, k=None, min_segment=None):
    segs = p.segments
    assert segs[0].start >= now and segs[-1].end <= deadline
    assert sum((s.end - s.start for s in segs), pd.Timedelta(0)) == pd.Timedelta(duration)
    assert all(a.end < b.start for a, b in zip(segs, segs[1:]))
    if k is not None:
        assert len(segs) <= k
    if min_segment is not None:
        assert all(s.end - s.start >= pd.Timedelta(min_segment) for s in segs)


def _hourly(values):
    return pd.Series(np.asarray(values, dtype=float), index=pd.date_range(T0, periods=len(values), freq="h", tz="UTC"))


def test_duration_with_seconds_solved_exactly_on_hourly_data():
    # 74 min 30 s, at most 3 segments: 30-second units, 660 in the window (review 34b, r6_no_grid)
    fc = _hourly([300.0, 10.0, 300.0, 300.0, 20.0, 300.0])
    now, deadline = T0 + pd.Timedelta("30min"), T0 + pd.Timedelta("6h")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = W.plan_interruptible(fc, "74min30s", now, deadline, max_segments=3)
    _check(p, now, deadline, "74min30s", k=3)
    costs = _unit_costs(fc, now, deadline, pd.Timedelta("30s"))
    opt = _brute_opt(costs, 149, 1, 3) / 149
    assert p.mode == "interruptible" and not p.warnings
    assert p.expected_g_per_kwh == pytest.approx(opt, abs=1e-9)  # 11.946, contiguous was 66.4
    assert p.expected_g_per_kwh < W.plan_contiguous(fc, "74min30s", now, deadline).expected_g_per_kwh


def test_min_segment_of_two_and_a_half_minutes_solved_exactly():
    # 88 min with segments of at least 2 min 30 s: the gcd is 30 s (120 units per hourly slot)
    fc = _hourly([300.0, 10.0, 300.0, 20.0, 250.0, 300.0])
    now, deadline = T0 + pd.Timedelta("40min"), T0 + pd.Timedelta("5h")
    p = W.plan_interruptible(fc, "88min", now, deadline, min_segment="2min30s", max_segments=3)
    _check(p, now, deadline, "88min", k=3, min_segment="2min30s")
    costs = _unit_costs(fc, now, deadline, pd.Timedelta("30s"))
    opt = _brute_opt(costs, 176, 5, 3) / 176
    assert not p.warnings
    assert p.expected_g_per_kwh == pytest.approx(opt, abs=1e-9)
    assert p.expected_g_per_kwh == pytest.approx((60 * 10 + 28 * 20) / 88, abs=1e-9)


def test_unit_costs_span_the_window_not_the_forecast():
    # three years of hourly data, a 6-hour window, one-minute units: the grids hold about 360
    # units each, and building them allocates about that much, not 60 units per forecast slot
    n = 3 * 8760
    fc = _hourly(np.random.default_rng(0).uniform(50, 300, n))
    now = T0 + pd.Timedelta(days=500, minutes=20)
    w = W._prepare(fc, "61min", now, now + pd.Timedelta("6h"))
    tracemalloc.start()
    try:
        grids = W._unit_grids(w, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert grids and all(unit == 60 * 10**9 and len(costs) <= 360 for unit, _, costs, _, _ in grids)
    assert peak < 200_000  # np.repeat over the forecast took 26,280 x 60 x 8 B = 12.6 MB
