"""care controller re-plans the runs @care triggers dispatched (receding horizon, the flow's own policy),
against a real Prefect server (the session harness)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow

from care_flows.orchestration import care
from care_flows.orchestration import decorator as decorator_module
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.decorator import CareConfig, _controller_may_replan
from care_flows.orchestration.plan import Plan
from care_flows.orchestration.start_check import START_CHECKS
from care_flows.policy import CarePolicy
from tests.orchestration.test_start_check import BODY, H, _others, _run_existing, _trigger

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _policy(**kw):
    return dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h", **kw)


def _read(run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _scheduled_at(run) -> pd.Timestamp:
    return pd.Timestamp(run.state.state_details.scheduled_time)


def test_the_controller_replans_a_triggers_run_with_the_flows_policy_and_the_same_deadline(forecast, monkeypatch):
    monkeypatch.setattr(decorator_module, "_controller_may_replan", lambda config: True)  # the flow's signal is a test double
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    fc = {"eu-south-2": forecast(now, [300, 300, 300, 20, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    @care(policy=_policy(), signal=fc, clock=lambda: clock[0], planner="window")
    @flow
    def replanned_etl(day: str = "x") -> str:
        BODY.append(day)
        return day

    dep_id = replanned_etl.to_deployment(name="controller-dispatched").apply()
    trigger = _trigger(dep_id)
    _run_existing(replanned_etl, trigger.id)
    (child,) = _others(dep_id, trigger.id)
    marker = child.job_variables["care"]
    assert marker["policy"]["home_region"] == "eu-south-2" and marker["replans"] == 0 and _scheduled_at(child) == now + 3 * H
    first = Plan.from_dict(marker["plan"])

    # an hour later the fresh forecast says now: the controller brings the run forward, with the flow's
    # own policy (not its default) and to the deadline the trigger planned with
    clock[0] = now + H
    fresh = {"eu-south-2": forecast(now + H, [20, 300, 300, 300, 300, 300, 300, 300])}
    from prefect import get_client

    with get_client(sync_client=True) as client:
        actions = control_once(client, lookahead=timedelta(hours=24), default_policy=CarePolicy(home_region="eu-west-3", expected_duration="3h"),
                               signal=fresh, clock=lambda: clock[0], min_lead=timedelta(seconds=30))
    mine = [a for a in actions if a.flow_run_id == str(child.id)]
    assert len(mine) == 1 and mine[0].action == "replanned" and mine[0].region == "eu-south-2", actions
    run = _read(child.id)
    assert _scheduled_at(run) == now + H
    marker = run.job_variables["care"]
    moved = Plan.from_dict(marker["plan"])
    assert marker["replans"] == 1 and marker["root"] == str(trigger.id) and marker["policy"] == child.job_variables["care"]["policy"]
    assert START_CHECKS not in marker  # the controller re-plans it: no second guess at start
    assert moved.work == first.work == H  # the flow's 1 h, not the default policy's 3 h
    assert moved.deadline == first.deadline and moved.baseline_g == first.baseline_g and moved.expected_g_per_kwh == 20.0

    # it runs the body at the new start, without a check at start
    state = _run_existing(replanned_etl, child.id)
    assert state.result() == "d1" and BODY == ["d1"] and _others(dep_id, trigger.id, child.id) == []


def test_runs_of_a_flow_with_an_injected_signal_or_planner_are_left_to_their_plan(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 300, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=_policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def injected_etl(day: str = "x") -> str:
        return day

    dep_id = injected_etl.to_deployment(name="controller-injected").apply()
    trigger = _trigger(dep_id)
    _run_existing(injected_etl, trigger.id)
    (child,) = _others(dep_id, trigger.id)
    assert "policy" not in child.job_variables["care"] and child.job_variables["care"][START_CHECKS] == 0
    from prefect import get_client

    with get_client(sync_client=True) as client:
        actions = control_once(client, lookahead=timedelta(hours=24), signal=fc, clock=lambda: now + H, min_lead=timedelta(seconds=30))
    assert str(child.id) not in {a.flow_run_id for a in actions}
    assert _scheduled_at(_read(child.id)) == now + 3 * H
    # the rule itself: only a flow that plans as the controller would (the policy's source, CaRE's planners)
    assert _controller_may_replan(CareConfig(_policy()))
    assert not _controller_may_replan(CareConfig(_policy(), signal=fc))
    assert not _controller_may_replan(CareConfig(_policy(), planner=lambda policy, now: None))
