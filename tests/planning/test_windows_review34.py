"""Review 34b #1-#3: every grid whose exact DP fits the time budget is solved (the best plan kept);
coarse-to-fine looks at the cheapest fine unit of each coarse block, not its mean; and its
fallback trims the surplus across several runs instead of giving up to one contiguous run."""

import numpy as np
import pandas as pd
import pytest

from care_flows.planning.windows import plan_interruptible

T0 = pd.Timestamp("2023-01-01T00:00:00Z")


def _check(p, now, deadline, duration, k, min_segment=None):
    segs = [(s.start, s.end) for s in p.segments]
    assert segs[0][0] >= now and segs[-1][1] <= deadline and len(segs) <= k
    assert sum((b - a for a, b in segs), pd.Timedelta(0)) == pd.Timedelta(duration)
    if min_segment is not None:
        assert all(b - a >= pd.Timedelta(min_segment) for a, b in segs)


def test_a_grid_the_old_cell_gate_skipped_is_solved_exactly():
    v = np.full(40, 200.0)
    v[7 * 4 + 3] = 10.0  # 07:45-08:00 very green
    v[0:2] = 10.0  # 00:00-00:30 green
    fc = pd.Series(v, index=pd.date_range(T0, periods=40, freq="15min"))
    now, deadline = T0 + pd.Timedelta("28min"), T0 + pd.Timedelta("7h58min")
    p = plan_interruptible(fc, "2h34min", now, deadline, min_segment="62min", max_segments=2)
    _check(p, now, deadline, "2h34min", 2, "62min")
    # brute force on the 1-minute grid from now to the deadline: 181.4935...; the skipped grid gave 183.96
    assert p.expected_g_per_kwh == pytest.approx(181.493506494, abs=1e-6)


def test_coarse_to_fine_sees_a_green_fine_slot_inside_a_dirty_coarse_block():
    n = 60 * 288
    t = np.arange(n)
    v = 150 + 50 * np.sin(2 * np.pi * t / 288) + t / 288 * 0.5
    v[30 * 288 + 100], v[30 * 288 + 101] = 0.0, 400.0  # one green 5-min slot next to a dirty one
    fc = pd.Series(v, index=pd.date_range(T0, periods=n, freq="5min"))
    now, deadline = T0 + pd.Timedelta("1D"), T0 + pd.Timedelta("59D")
    p = plan_interruptible(fc, "11min", now, deadline, max_segments=2)
    _check(p, now, deadline, "11min", 2)
    assert p.expected_g_per_kwh < 60  # uses the green slot: 55.02 (it was 100.88, one run on the daily low)
    assert any(s.start == T0 + pd.Timedelta(minutes=5 * (30 * 288 + 100)) for s in p.segments)


def test_coarse_to_fine_trims_across_runs_instead_of_falling_back_to_contiguous():
    v = np.full(24 * 380, 300.0)
    for d in range(1, 6):
        v[24 * d + 12 : 24 * d + 14] = 50.0  # five separate 2-hour green pockets
    fc = pd.Series(v, index=pd.date_range(T0, periods=len(v), freq="h"))
    now, deadline = T0 + pd.Timedelta("1h"), T0 + pd.Timedelta("375D")
    p = plan_interruptible(fc, "9h11min", now, deadline, min_segment="101min", max_segments=5)
    _check(p, now, deadline, "9h11min", 5, "101min")
    assert p.expected_g_per_kwh == pytest.approx(50.0) and not p.warnings  # was contiguous at 245.6 with a warning
