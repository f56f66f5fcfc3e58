"""Review 32: a single run never leaves [now, deadline] by float noise, and one-segment limits plan
as the exact contiguous run without a dynamic programme."""

import numpy as np
import pandas as pd

from care_flows.planning.windows import plan_contiguous, plan_interruptible

T0 = pd.Timestamp("2023-06-01T00:00:00Z")
IDX = pd.date_range(T0, periods=24, freq="h", tz="UTC")


def test_a_contiguous_plan_never_starts_before_now_nor_ends_after_the_deadline_by_microseconds():
    fc = pd.Series(np.r_[[100.0] * 8, [10.0] * 2, [100.0] * 14], index=IDX)
    now = pd.Timestamp("2023-06-01T08:00:00.000002Z")  # 2 us past the green slot's start
    p = plan_contiguous(fc, "2h", now, now + pd.Timedelta("6h"))
    assert p.start >= now and p.end - p.start == pd.Timedelta("2h")
    fc2 = pd.Series(np.r_[[100.0] * 10, [10.0] * 2, [100.0] * 12], index=IDX)
    deadline = pd.Timestamp("2023-06-01T11:59:59.999998Z")  # the green start 10:00 is 2 us past the latest start
    p2 = plan_contiguous(fc2, "2h", pd.Timestamp("2023-06-01T07:00:00Z"), deadline)
    assert p2.end <= deadline and p2.start == deadline - pd.Timedelta("2h")


def test_one_segment_limits_are_the_contiguous_plan():
    rng = np.random.default_rng(7)
    idx = pd.date_range(T0, periods=24 * 30, freq="h", tz="UTC")
    fc = pd.Series(rng.uniform(50, 300, len(idx)), index=idx)
    now, deadline = T0 + pd.Timedelta(minutes=17), T0 + pd.Timedelta(days=29)
    c = plan_contiguous(fc, "61min", now, deadline)
    for limits in ({"max_segments": 1}, {"min_segment": "61min"}, {"min_segment": "3h"}):
        p = plan_interruptible(fc, "61min", now, deadline, **limits)
        assert [(s.start, s.end) for s in p.segments] == [(s.start, s.end) for s in c.segments], limits
        assert p.expected_g_per_kwh == c.expected_g_per_kwh
