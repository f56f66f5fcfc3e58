"""Review 54c: exact times for durations with fractions of a second (L3), and the per-row batch kernel
runs now when no start is left, as the one-forecast kernel does (L2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from care_flows.planning.windows import best_contiguous_starts, best_contiguous_starts_rows, plan_contiguous

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
