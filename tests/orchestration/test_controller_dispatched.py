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
from tests.orchestration.test_start_check import BODY, H, _dispatched, _others, _policy, _run_existing

pytestmark = pytest.mark.usefixtures("prefect_harness")


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

    dep_id, trigger, _, child = _dispatched(replanned_etl, "controller-dispatched")
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
    assert marker[START_CHECKS] == 0  # kept: if the controller stops, the run still checks its plan at start
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

    dep_id, trigger, _, child = _dispatched(injected_etl, "controller-injected")
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


# ------------------------------------------------------------------------------ review 37b


def _trigger_with(dep_id, **kw):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(dep_id, parameters={"day": "d1"}, **kw)


def _pass(clock, signal, **kw):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return control_once(client, lookahead=timedelta(hours=24), signal=signal, clock=lambda: clock[0], min_lead=timedelta(seconds=30), **kw)


def _deferred_3h_ahead(forecast, monkeypatch, name):
    """A @care flow's trigger run at ``now`` (the hour), deferring its 1 h of work to now + 3 h (20 g/kWh there,
    300 elsewhere); the controller may re-plan it. Returns ``(now, clock, dispatched run)``."""
    monkeypatch.setattr(decorator_module, "_controller_may_replan", lambda config: True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    fc = {"eu-south-2": forecast(now, [300, 300, 300, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=_policy(), signal=fc, clock=lambda: clock[0], planner="window")
    @flow(name=f"{name}-etl")
    def etl(day: str = "x") -> str:
        return day

    dep_id, trigger, _, child = _dispatched(etl, name)
    return now, clock, child


def test_a_replan_keeps_the_triggers_overrides_planner_and_work(forecast, monkeypatch):
    """Review 37b H1 and M2: a backfill's per-run expected_duration (care_overrides of the trigger run) is not
    replaced by the learned duration, the plan keeps its overrides, and the flow's window planner plans it again."""
    from care_flows.orchestration.learned_duration import record_run

    monkeypatch.setattr(decorator_module, "_controller_may_replan", lambda config: True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    for i in range(3):  # the flow's usual runs take 1 h
        record_run(CarePolicy(**_policy()), "backfill-etl", run_id=f"r{i}", finished=now - (i + 1) * H, duration_s=3600.0)
    fc = {"eu-south-2": forecast(now, [300, 300, 300, 20, 20, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=_policy(deadline_within="10h"), signal=fc, clock=lambda: clock[0], planner="window", sample_usage=False)
    @flow(name="backfill-etl")
    def backfill_etl(day: str = "x") -> str:
        return day

    dep_id = backfill_etl.to_deployment(name="controller-overrides").apply()
    trigger = _trigger_with(dep_id, job_variables={"care_overrides": {"expected_duration": "3h"}})
    _run_existing(backfill_etl, trigger.id)
    (child,) = _others(dep_id, trigger.id)
    first = Plan.from_dict(child.job_variables["care"]["plan"])
    assert first.work == 3 * H
    clock[0] = now + H
    fresh = {"eu-south-2": forecast(now + H, [300, 300, 300, 300, 300, 20, 20, 20, 300, 300, 300])}
    actions = [a for a in _pass(clock, fresh) if a.flow_run_id == str(child.id)]
    assert [a.action for a in actions] == ["replanned"], actions
    moved = Plan.from_dict(_read(child.id).job_variables["care"]["plan"])
    assert moved.work == 3 * H and moved.end <= moved.deadline == first.deadline
    assert moved.overrides == {"expected_duration": "3h"} and moved.planner == first.planner == "window"
    assert moved.expected_g_per_kwh == 20.0 and moved.savings_pct > 90


def test_a_replan_on_another_source_than_the_triggers_is_not_made_and_is_tried_again_later(forecast, monkeypatch):
    """Review 37b M1 and M5: a fallback or --source forecast does not move a run planned on the flow's own
    source; a failing re-plan moves replan_at on, so the run does not take the head of every pass's budget."""
    from care_flows.errors import ProviderError

    now, clock, child = _deferred_3h_ahead(forecast, monkeypatch, "controller-source")
    clock[0] = now + H
    other = {"eu-south-2": forecast(now + H, [20, 300, 300, 300, 300, 300, 300, 300], source="embedded")}
    (action,) = [a for a in _pass(clock, other) if a.flow_run_id == str(child.id)]
    assert action.action == "skipped" and "came from embedded, not from synthetic" in action.reason, action
    run = _read(child.id)
    assert _scheduled_at(run) == now + 3 * H and run.job_variables["care"]["replan_at"] == (now + 2 * H).isoformat()
    assert START_CHECKS in run.job_variables["care"]  # not re-planned: its check at start still applies

    def down(region, start, span):
        raise ProviderError("electricitymaps: HTTP 503 for zone ES; try again later")

    clock[0] = now + 2 * H
    (action,) = [a for a in _pass(clock, down) if a.flow_run_id == str(child.id)]
    assert action.action == "failed" and "HTTP 503" in action.reason and "next try at" in action.reason
    assert _read(child.id).job_variables["care"]["replan_at"] == (now + 3 * H).isoformat()


def test_interruptible_flows_are_left_to_their_segments_and_a_region_move_drops_the_old_targets_variables(forecast, monkeypatch):
    """Review 37b M3 (an interruptible flow is not re-planned as one piece) and H2/L1 (a cron run in a care-ec2
    pool moved to another region loses the last region's subnet, and the move is news)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from care_flows.orchestration.controller import trigger_replan_fields

    t = pd.Timestamp("2026-01-01T00:00Z")
    one = Plan("eu-south-2", t + 3 * H, t + 4 * H, t, t + 8 * H, "eu-south-2", False)
    assert trigger_replan_fields(CarePolicy(interruptible=True), one, t) == {}
    assert trigger_replan_fields(CarePolicy(interruptible=True, threshold_g_per_kwh=50), one, t) == {}
    recorded = trigger_replan_fields(CarePolicy(regions=["eu-north-1"], targets={"eu-north-1": {"job_variables": {"env": {"TOKEN": "s3cret"}}}}), one, t)
    assert recorded["policy"]["targets"] == {} and "s3cret" not in str(recorded)  # no target (nor its secrets) recorded

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="r37b-ec2", type="care-ec2"))
        except Exception:  # noqa: BLE001 - another test made it
            pass
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h",
                     targets={"eu-south-2": {"job_variables": {"subnet_id": "subnet-0es", "image_id": "ami-0es"}}})

    @flow(name="cron-ec2-etl")
    def cron_ec2_etl() -> str:
        return "x"

    dep_id = cron_ec2_etl.to_deployment(name="cron-ec2", tags=["care"], work_pool_name="r37b-ec2").apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep_id, state=__import__("prefect").states.Scheduled(
            scheduled_time=(now + 2 * H).to_pydatetime()))
    home_green = {"eu-south-2": forecast(now, [300] * 2 + [20] * 10), "eu-north-1": forecast(now, [200] * 12)}
    (first,) = [a for a in _pass(clock, home_green, default_policy=pol) if a.flow_run_id == str(run.id)]
    assert first.region == "eu-south-2" and _read(run.id).job_variables["subnet_id"] == "subnet-0es"
    clock[0] = now + H
    north_green = {"eu-south-2": forecast(now + H, [300] * 11), "eu-north-1": forecast(now + H, [10] * 11)}
    (again,) = [a for a in _pass(clock, north_green, default_policy=pol) if a.flow_run_id == str(run.id)]
    assert again.region == "eu-north-1" and again.action == "replanned" and again.news, again
    job_vars = _read(run.id).job_variables
    assert job_vars["region"] == "eu-north-1" and "subnet_id" not in job_vars and "image_id" not in job_vars


def test_a_right_sized_runs_start_only_is_replanned_keeping_its_type_and_energy(forecast, monkeypatch):
    """Review 37c H1 and M2: the trigger sized the run from its usage history (a light flow); a re-plan on the
    same forecast keeps its start, type, energy and savings, and the run's job variables (a target's
    ttl_minutes) are left as the trigger set them."""
    from care_flows.usage_capture import UsageStore

    monkeypatch.setattr(decorator_module, "_controller_may_replan", lambda config: True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    t = pd.date_range("2026-01-01T00:00Z", periods=15 * 12, freq="5s", tz="UTC")  # 15 min of a light flow's usage
    UsageStore().append("sized-light-etl", pd.DataFrame({"time": t, "cpu_vcpu": 0.3, "memory_gib": 1.0, "n_processes": 2}))
    fc = {"eu-south-2": forecast(now, [300, 300, 300, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=_policy(targets={"eu-south-2": {"job_variables": {"ttl_minutes": 720}}}), signal=fc, clock=lambda: clock[0],
          sample_usage=False)
    @flow(name="sized-light-etl")
    def sized_light_etl(day: str = "x") -> str:
        return day

    dep_id, trigger, _, child = _dispatched(sized_light_etl, "controller-sized")
    first = Plan.from_dict(child.job_variables["care"]["plan"])
    assert first.sizing.startswith("usage history") and child.job_variables["ttl_minutes"] == 720
    assert child.job_variables["care"]["ttl_pinned"] is True  # the worker keeps the target's 720 as it is
    clock[0] = now + H
    same = {"eu-south-2": forecast(now + H, [300, 300, 20, 300, 300, 300, 300, 300, 300])}
    (action,) = [a for a in _pass(clock, same) if a.flow_run_id == str(child.id)]
    assert action.action == "kept", action
    run = _read(child.id)
    again = Plan.from_dict(run.job_variables["care"]["plan"])
    assert (again.start, again.instance_type, again.expected_g, again.savings_pct) == (first.start, first.instance_type, first.expected_g,
                                                                                       first.savings_pct)
    assert {k: v for k, v in run.job_variables.items() if k != "care"} == {k: v for k, v in child.job_variables.items() if k != "care"}
    assert run.job_variables["care"]["ttl_pinned"] is True


def test_a_cached_forecast_is_the_providers_own_and_a_short_one_moves_nothing(forecast, monkeypatch):
    """Review 37d H1 and M1: a fresh cache entry ('cache:<provider>') is the provider's data, so the run is
    re-planned; a forecast that stops before the latest start and its work does not pull the run forward."""
    now, clock, child = _deferred_3h_ahead(forecast, monkeypatch, "controller-cached")
    clock[0] = now + H
    short = {"eu-south-2": forecast(now + H, [250, 300], source="synthetic")}  # 2 h: it does not reach the planned window
    (action,) = [a for a in _pass(clock, short) if a.flow_run_id == str(child.id)]
    assert action.action == "skipped" and "does not cover" in action.reason, action
    assert _scheduled_at(_read(child.id)) == now + 3 * H
    clock[0] = now + 2 * H
    cached = {"eu-south-2": forecast(now + 2 * H, [20, 300, 300, 300, 300, 300, 300], source="cache:synthetic")}
    (action,) = [a for a in _pass(clock, cached) if a.flow_run_id == str(child.id)]
    assert action.action == "replanned" and action.new_start == (now + 2 * H).isoformat(), action


def test_a_first_plan_to_another_region_is_a_move_and_a_failed_replan_counts_as_failed(forecast):
    """Review 37d L1 (a cron run in a care-ec2 pool with no region variable, planned straight to eu-north-1,
    is reported and tagged as moved) and L6 (the pass summary counts a failed re-plan as failed)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Scheduled

    from care_flows.cli.controller import summary_line
    from care_flows.orchestration.controller import ControllerAction
    from care_flows.orchestration.dispatch import MOVED_TAG

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="r37d-ec2", type="care-ec2"))
        except Exception:  # noqa: BLE001 - another test made it
            pass
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h")

    @flow(name="cron-ec2-first")
    def cron_ec2_first() -> str:
        return "x"

    dep_id = cron_ec2_first.to_deployment(name="cron-ec2-first", tags=["care"], work_pool_name="r37d-ec2").apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=(now + 2 * H).to_pydatetime()))
    north = {"eu-south-2": forecast(now, [300] * 12), "eu-north-1": forecast(now, [20] * 12)}
    (first,) = [a for a in _pass(clock, north, default_policy=pol) if a.flow_run_id == str(run.id)]
    assert first.region == "eu-north-1" and first.action == "moved" and first.news, first
    assert MOVED_TAG in _read(run.id).tags

    failed = ControllerAction(flow_run_id="1", flow_run_name="r", deployment="f/d", action="failed", reason="HTTP 503", waiting=True)
    assert "1 failed" in summary_line([failed]) and "0 waiting" in summary_line([failed])


class _Meanwhile:
    """A Prefect client through which ``meanwhile`` happens to one run just before the controller's
    first write to it (the window between the pass reading the run and moving it)."""

    def __init__(self, inner, run_id, meanwhile):
        self.inner, self.run_id, self.meanwhile, self.done = inner, str(run_id), meanwhile, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def update_flow_run(self, flow_run_id, **kw):
        if str(flow_run_id) == self.run_id and not self.done:
            self.done = True
            self.meanwhile(self.inner)
        return self.inner.update_flow_run(flow_run_id, **kw)


@pytest.mark.parametrize("what", ["dispatched", "cron"])
def test_a_run_rescheduled_by_hand_while_a_pass_plans_it_keeps_the_users_time(forecast, monkeypatch, what):
    """Review 37d L5: the pass read the run, then a user rescheduled it before the pass moved it. The
    move would overwrite the user's time; the pass reads the run again and leaves it, and the next pass
    sees a run rescheduled outside CaRE."""
    from prefect import get_client
    from prefect.states import Scheduled

    if what == "dispatched":
        now, clock, child = _deferred_3h_ahead(forecast, monkeypatch, "r39-race")
        clock[0] = now + H
        signal = {"eu-south-2": forecast(now + H, [20, 300, 300, 300, 300, 300, 300, 300])}  # brings it forward
        kw = {}
    else:
        now = pd.Timestamp.now(tz="UTC").floor("h")
        clock = [now]

        @flow(name="r39-race-cron")
        def race_cron() -> str:
            return "x"

        dep_id = race_cron.to_deployment(name="r39-race-cron", tags=["care"]).apply()
        child = _trigger_with(dep_id, state=Scheduled(scheduled_time=(now + H).to_pydatetime()))
        signal = {"eu-south-2": forecast(now, [300, 300, 300, 20] + [300] * 8)}  # moves it to now + 3 h
        kw = {"default_policy": CarePolicy(home_region="eu-south-2", expected_duration="1h", deadline_within="8h")}
    by_hand = now + 6 * H

    def reschedule(client):
        client.set_flow_run_state(child.id, Scheduled(scheduled_time=by_hand.to_pydatetime()), force=True)

    with get_client(sync_client=True) as inner:
        actions = control_once(_Meanwhile(inner, child.id, reschedule), lookahead=timedelta(hours=24), signal=signal,
                               clock=lambda: clock[0], min_lead=timedelta(seconds=30), **kw)
    (action,) = [a for a in actions if a.flow_run_id == str(child.id)]
    assert action.action == "skipped" and "rescheduled to" in action.reason, action
    assert _scheduled_at(_read(child.id)) == by_hand
    (again,) = [a for a in _pass(clock, signal, **kw) if a.flow_run_id == str(child.id)]
    assert again.action == "skipped" and "rescheduled outside CaRE" in again.reason, again
    assert _scheduled_at(_read(child.id)) == by_hand


@pytest.mark.parametrize("what", ["started", "rescheduled"])
def test_a_run_a_worker_started_or_a_user_moved_after_the_pass_read_it_gets_nothing_written(forecast, monkeypatch, what):
    """Review 37d L5 / 39d M1: a pass reads every run first, then plans them one by one (minutes, maybe); a run
    a worker started (the server accepts a Scheduled over a Running state) or a user moved meanwhile is read
    again before anything is written, and keeps its state, time and job variables."""
    from prefect import get_client
    from prefect.states import Running, Scheduled

    now, clock, child = _deferred_3h_ahead(forecast, monkeypatch, f"r39-race-{what}")
    clock[0] = now + H
    signal = {"eu-south-2": forecast(now + H, [20, 300, 300, 300, 300, 300, 300, 300])}

    with get_client(sync_client=True) as inner:
        real_read, started = inner.read_flow_run, []

        def read_after_start(flow_run_id):  # the worker (or user) acts after the pass's list read, before it plans this run
            if str(flow_run_id) == str(child.id) and not started:
                state = Running() if what == "started" else Scheduled(scheduled_time=(now + 6 * H).to_pydatetime())
                started.append(inner.set_flow_run_state(child.id, state, force=True))
            return real_read(flow_run_id)

        client = _Meanwhile(inner, child.id, lambda _: None)
        client.read_flow_run = read_after_start
        actions = control_once(client, lookahead=timedelta(hours=24), signal=signal, clock=lambda: clock[0], min_lead=timedelta(seconds=30))
    (action,) = [a for a in actions if a.flow_run_id == str(child.id)]
    assert action.action == "skipped" and action.reason.startswith("not planned: it "), action
    after = _read(child.id)
    assert after.job_variables == child.job_variables and sorted(after.tags) == sorted(child.tags)  # nothing written
    if what == "started":
        assert "became Running" in action.reason and after.state.type.value == "RUNNING"
    else:
        assert "rescheduled to" in action.reason and _scheduled_at(after) == now + 6 * H
