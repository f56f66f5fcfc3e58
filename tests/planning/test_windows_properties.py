"""Hypothesis properties of the temporal-shifting planners."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from care_flows.planning import best_contiguous_starts, plan_contiguous, plan_interruptible, plan_threshold, run_now_means

T0 = pd.Timestamp("2023-01-01T00:00:00Z")
STEPS = {"5min": 5, "15min": 15, "h": 60}
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    freq = draw(st.sampled_from(sorted(STEPS)))
    step_min = STEPS[freq]
    n = draw(st.integers(4, 36))
    values = draw(st.lists(st.integers(0, 500), min_size=n, max_size=n))
    fc = pd.Series(np.array(values, float), index=pd.date_range(T0, periods=n, freq=freq, tz="UTC"))
    total_min = n * step_min
    dur_min = draw(st.integers(1, max(1, total_min // 2)))
    # earliest on a 5-minute grid (may be mid-slot), deadline anywhere up to the forecast end
    earliest_min = draw(st.integers(0, (total_min - 1) // 5)) * 5
    deadline_min = draw(st.integers(earliest_min, total_min))
    return fc, pd.Timedelta(minutes=dur_min), T0 + pd.Timedelta(minutes=earliest_min), T0 + pd.Timedelta(minutes=deadline_min)


def check_segments(plan, duration):
    segs = plan.segments
    assert sum((s.end - s.start for s in segs), pd.Timedelta(0)) == duration
    for a, b in zip(segs, segs[1:]):
        assert a.end < b.start  # ordered, disjoint and merged when adjacent
    assert all(s.end > s.start for s in segs)
    assert plan.start == segs[0].start and plan.end == segs[-1].end


@SETTINGS
@given(cases())
def test_contiguous_meets_deadline_and_never_worse_than_now(case):
    fc, dur, earliest, deadline = case
    p = plan_contiguous(fc, dur, earliest, deadline)
    check_segments(p, dur)
    if p.feasible:
        assert p.end <= deadline and p.start >= earliest
        assert p.expected_g_per_kwh <= p.run_now_g_per_kwh + 1e-9
    else:
        assert p.mode == "now" and p.start == earliest and p.warnings


@SETTINGS
@given(cases(), st.sampled_from([None, 1, 2, 3]), st.sampled_from([None, 5, 15, 60]))
def test_interruptible_never_worse_than_contiguous(case, max_segments, min_segment_min):
    fc, dur, earliest, deadline = case
    min_segment = pd.Timedelta(minutes=min_segment_min) if min_segment_min else None
    c = plan_contiguous(fc, dur, earliest, deadline)
    p = plan_interruptible(fc, dur, earliest, deadline, min_segment=min_segment, max_segments=max_segments)
    check_segments(p, dur)
    if p.feasible:
        assert p.end <= deadline and p.start >= earliest
        assert p.expected_g_per_kwh <= c.expected_g_per_kwh + 1e-9
        assert p.expected_g_per_kwh <= p.run_now_g_per_kwh + 1e-9
        if max_segments is not None:
            assert len(p.segments) <= max_segments
        if min_segment is not None:
            assert all(s.end - s.start >= min(min_segment, dur) for s in p.segments)


@SETTINGS
@given(cases(), st.integers(0, 500))
def test_threshold_always_meets_deadline(case, threshold):
    fc, dur, earliest, deadline = case
    p = plan_threshold(fc, dur, earliest, deadline, threshold_g_per_kwh=threshold)
    check_segments(p, dur)
    if p.feasible:
        assert p.end <= deadline and p.start >= earliest


@SETTINGS
@given(
    st.lists(st.integers(0, 50), min_size=3, max_size=60),
    st.lists(st.tuples(st.integers(0, 59), st.integers(0, 30)), min_size=1, max_size=20),
    st.sampled_from([1, 2, 3, 0.5, 2.25]),
)
def test_batch_kernel_is_the_earliest_argmin(values, jobs, n_slots):
    v = np.array(values, float)
    first = np.array([j[0] for j in jobs])
    last = first + np.array([j[1] for j in jobs])
    got = best_contiguous_starts(v, first, last, n_slots)
    n_starts = int(np.floor(len(v) - n_slots + 1e-9)) + 1
    for j in range(len(jobs)):
        lo, hi = first[j], min(last[j], n_starts - 1)
        if lo > hi:
            assert got[j] == first[j]
            continue
        means = [run_now_means(v, np.array([i]), n_slots)[0] for i in range(lo, hi + 1)]
        best = min(means)
        expect = lo + next(k for k, m in enumerate(means) if m <= best + 1e-9)
        assert run_now_means(v, got[j : j + 1], n_slots)[0] <= best + 1e-9
        assert got[j] == expect


@SETTINGS
@given(cases(), st.integers(-30, 30), st.sampled_from(["contiguous", "interruptible", "threshold"]))
def test_deadline_met_even_when_the_forecast_starts_late_or_early(case, shift_slots, which):
    # a lagging (or early) feed: the forecast is shifted against the planning window
    fc, dur, earliest, deadline = case
    step = fc.index[1] - fc.index[0]
    moved = fc.copy()
    moved.index = fc.index + shift_slots * step
    planner = {"contiguous": plan_contiguous, "interruptible": plan_interruptible,
               "threshold": lambda *a: plan_threshold(*a, percentile=50)}[which]
    try:
        p = planner(moved, dur, earliest, deadline)
    except Exception as exc:  # only "the forecast does not cover the window" is acceptable
        assert "does not cover" in str(exc)
        return
    check_segments(p, dur)
    assert p.start >= earliest
    if p.feasible:
        assert p.end <= deadline
