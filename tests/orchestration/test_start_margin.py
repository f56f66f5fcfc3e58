"""A run that does not start now needs time to be picked up and started: plans end the policy's
``start_margin`` before the deadline (review 48c L4), the first plan, the check at start and the
controller's re-plan alike, while starting now stays possible however tight the deadline."""

from __future__ import annotations

import pandas as pd
import pytest

from care_flows.errors import ConfigError
from care_flows.orchestration.plan import Plan, plan_run, planning_deadline
from care_flows.orchestration.start_check import check_at_start, replanned_start
from care_flows.policy import CarePolicy

T0 = pd.Timestamp("2026-03-02T00:00Z")
H = pd.Timedelta(hours=1)
M = pd.Timedelta(minutes=1)


def _hourly(values, start=T0):
    return pd.Series([float(v) for v in values], index=pd.date_range(start, periods=len(values), freq="h"))


# green from +3 h to the end: the greenest 1 h window of a 4 h deadline ends at the deadline itself
FC = {"eu-south-2": _hourly([300, 300, 100, 20, 20, 20, 20, 20])}


def _policy(**kw):
    return CarePolicy(**{"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "4h", **kw})


@pytest.mark.parametrize("planner", ["decide", "window"])
def test_a_deferred_plan_ends_the_margin_before_the_deadline_and_keeps_the_real_deadline(planner):
    plan = plan_run(_policy(), T0, forecasts=FC, planner=planner)
    assert plan.deadline == T0 + 4 * H  # deadline_met and re-plans measure against the run's own deadline
    assert plan.start > T0 and plan.end <= T0 + 4 * H - 2 * M  # default start_margin: 2 min
    if planner == "decide":  # starts anywhere: the latest start that leaves the margin, mostly green
        assert plan.end == T0 + 4 * H - 2 * M
    else:  # slot starts only: the green hour at +3 h no longer fits, so the next-greenest fitting window
        assert plan.start == T0 + 2 * H
    zero = plan_run(_policy(start_margin="0s"), T0, forecasts=FC, planner=planner)
    assert zero.start == T0 + 3 * H and zero.end == zero.deadline == T0 + 4 * H  # as before the margin


@pytest.mark.parametrize("planner", ["decide", "window"])
def test_a_deadline_with_no_room_for_the_margin_still_runs_now(planner):
    tight = _policy(deadline_within="61min")  # 1 min of slack < 2 min of margin
    plan = plan_run(tight, T0, forecasts=FC, planner=planner)
    assert plan.start == T0 and plan.end == T0 + H and plan.deadline == T0 + 61 * M


def test_a_margin_longer_than_the_slack_leaves_only_now():
    assert planning_deadline(T0 + 4 * H, T0, H, 5 * H) == T0 + H
    assert planning_deadline(T0 + 4 * H, T0, H, 0 * M) == T0 + 4 * H
    assert planning_deadline(T0 + 30 * M, T0, H, 5 * M) == T0 + 30 * M  # an unmeetable deadline is left to the planner's warning


def _dispatched(start):
    return Plan("eu-south-2", start, start + H, T0, T0 + 4 * H, "eu-south-2", False, expected_g=1.0, expected_g_per_kwh=20.0)


def test_the_check_at_start_and_the_controller_re_plan_leave_the_margin_too():
    now = T0 + H
    fc = _hourly([300, 300, 20, 20, 20], start=now)  # green from +2 h, issued at +1 h
    later, _ = check_at_start(_dispatched(now), fc, now, start_margin=pd.Timedelta(minutes=2))
    assert later is not None and later.end == T0 + 4 * H - 2 * M and later.deadline == T0 + 4 * H
    later0, _ = check_at_start(_dispatched(now), fc, now, start_margin=pd.Timedelta(0))
    assert later0.end == T0 + 4 * H
    moved = replanned_start(_dispatched(T0 + 3 * H), fc, now, start_margin=pd.Timedelta(minutes=2))
    assert moved is not None and moved.end == T0 + 4 * H - 2 * M


def test_start_margin_is_a_policy_duration():
    assert _policy(start_margin="10m").start_margin == pd.Timedelta(minutes=10).to_pytimedelta()
    assert _policy().start_margin == pd.Timedelta(minutes=2).to_pytimedelta()
    with pytest.raises(ConfigError, match="start_margin '-1m' is negative"):
        _policy(start_margin="-1m")
