"""A run that does not start now needs time to be picked up and started: plans end the policy's
``start_margin`` before the deadline (review 48c L4), the first plan, the check at start and the
controller's re-plan alike, while starting now stays possible however tight the deadline."""

from __future__ import annotations

import importlib

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


def _pause_at_checkpoint(margin: str) -> bool:
    """Whether a checkpoint at 02:00 pauses an interruptible 2 h job (its second segment picked up 5 min
    late, so 61 min done and 59 left; next green slot 05:00, deadline 06:00) for a continuation; the
    dispatcher records instead of creating a run."""
    cp = importlib.import_module("care_flows.orchestration.checkpoint")  # the package exports the function of that name

    pol = _policy(expected_duration="2h", deadline_within="6h", interruptible=True, start_margin=margin)
    segments = [(T0, T0 + 6 * M), (T0 + H, T0 + 2 * H), (T0 + 5 * H, T0 + 5 * H + 54 * M)]
    plan = Plan("eu-south-2", T0, segments[-1][1], T0, T0 + 6 * H, "eu-south-2", True, segments=segments,
                expected_g=1.0, expected_g_per_kwh=20.0)
    now = T0 + 2 * H
    dispatched = []
    state = cp.RunState(policy=pol, plan=plan, region="eu-south-2", clock=lambda: now, segment=1, root="r", work_done_s=6 * 60,
                        segment_started=T0 + H + 5 * M, deployment_id="dep", dispatcher=lambda *args: dispatched.append(args) or "continuation")
    state.last_checkpoint = now - 10 * M
    token = cp._CURRENT.set(state)
    try:
        cp.checkpoint()
    except cp.Continued:
        return True
    finally:
        cp._CURRENT.reset(token)
    assert not dispatched
    return False


def test_a_checkpoint_pauses_only_if_the_rest_fits_the_deadline_after_the_margin():
    # 59 min of work left from 05:00 ends 05:59: with no margin that fits 06:00; with 6 min to pick the
    # continuation up (review 49b M1) it would end 06:05, so the run goes on now instead (ends 02:59)
    assert _pause_at_checkpoint("0s") is True
    assert _pause_at_checkpoint("6m") is False


def test_no_check_at_start_once_a_later_start_cannot_leave_the_margin():
    from care_flows.orchestration.start_check import start_check_due

    plan = _dispatched(T0 + H)  # planned at T0, 1 h of work, deadline T0 + 4 h
    marker = {"start_checks": 0, "segment": 0}
    assert start_check_due(plan, marker, _policy(start_margin="0s"), T0 + 3 * H - 4 * M)
    # picked up at 02:56: a later start would have to end by 03:54, i.e. start by 02:54, so the check could only say "now"
    assert not start_check_due(plan, marker, _policy(start_margin="6m"), T0 + 3 * H - 4 * M)


def test_the_margin_does_not_come_back_as_a_sliver_segment_of_an_interruptible_plan():
    # green 02:00-04:00 is the whole 2 h job with no margin; with 2 min off the deadline the missing
    # 2 min went to the next-cheapest slot, now (100 g/kWh): "run now, pause, resume" (review 49b M2)
    fc = {"eu-south-2": _hourly([100, 300, 20, 20, 300, 300])}
    pol = _policy(expected_duration="2h", deadline_within="4h", interruptible=True)
    assert plan_run(pol.model_copy(update={"start_margin": pd.Timedelta(0).to_pytimedelta()}), T0, forecasts=fc).segments == [(T0 + 2 * H, T0 + 4 * H)]
    plan = plan_run(pol, T0, forecasts=fc)
    assert plan.segments == [(T0 + 2 * H - 2 * M, T0 + 4 * H - 2 * M)] and not plan.now_here
    # a job shorter than the floor (5 x start_margin) runs in one piece; a larger min_segment of the policy stands
    short = plan_run(_policy(expected_duration="6min", deadline_within="4h", interruptible=True), T0, forecasts=fc)
    assert len(short.segments) == 1
