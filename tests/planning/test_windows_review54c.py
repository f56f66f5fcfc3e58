"""Review 54c: exact times for durations with fractions of a second (L3), the per-row batch kernel
runs now when no start is left, as the one-forecast kernel does (L2), and the DP budget is not spent
on grids another grid of the same unit encloses (L1)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from care_flows.planning.windows import best_contiguous_starts, best_contiguous_starts_rows, plan_contiguous, plan_interruptible

IDX = pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC")


def test_latest_start_and_a_run_now_segment_are_exact_for_a_fractional_second_duration():
    fc = pd.Series([300.0, 100.0, 200.0, 50.0, 60.0, 70.0], index=IDX)
    duration = pd.Timedelta("266.95917s")
    deadline = IDX[0] + pd.Timedelta("3h")
    plan = plan_contiguous(fc, duration, IDX[0], deadline)
    assert plan.latest_start == deadline - duration  # was 1 ns late: a run started then ended after the deadline
    late = plan_contiguous(fc.iloc[2:], duration, IDX[0], IDX[2] + pd.Timedelta("3min"))  # forecast starts after the latest start
    assert late.mode == "now" and late.segments[0].end - late.segments[0].start == duration


def test_the_row_kernel_runs_now_when_no_start_is_left():
    f = np.array([[5.0, 1.0, 1.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    cols, means = best_contiguous_starts_rows(f, np.array([-1, 2]), 2)
    assert cols.tolist() == [0, 0] and means.tolist() == [3.0, 3.0]  # was [inf, 3.0]
    assert best_contiguous_starts(f[0], np.array([0]), np.array([-1]), 2).tolist() == [0]


def test_a_wider_window_never_gives_a_dirtier_plan_through_the_dp_budget():
    # 41 min 16 s on hourly data, at most 2 segments, from 21:54:52: the base unit is 4 s, so the minute, 5- and
    # 15-minute snaps are the base grid cut shorter; solving them first spent the 0.3 s budget and the grid that
    # starts at 21:54:52 was skipped, dropping 8 s of the green current slot (L1)
    vals = [132, 494, 261, 248, 207, 470, 401, 424, 155, 495, 244, 183, 298, 456, 464, 111, 258, 71, 144, 71,
            386, 48, 316, 409, 128, 465, 272, 361, 414]
    fc = pd.Series(np.array(vals, float), index=pd.date_range("2023-01-01", periods=len(vals), freq="h", tz="UTC"))
    earliest, duration = pd.Timestamp("2023-01-01T21:54:52Z"), pd.Timedelta(seconds=2476)
    wide = plan_interruptible(fc, duration, earliest, pd.Timestamp("2023-01-02T02:53:59Z"), max_segments=2)
    narrow = plan_interruptible(fc, duration, earliest, pd.Timestamp("2023-01-02T02:53:00Z"), max_segments=2)
    assert wide.expected_g_per_kwh <= narrow.expected_g_per_kwh  # was 118.307 against 118.048
    assert wide.segments[0].start == earliest  # the rest of the current slot is used from its first second
