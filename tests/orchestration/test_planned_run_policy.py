"""A planned run carries what it was planned with (review 46c M1): when its ``@care`` policy block is
deleted (or renamed, or no longer validates) while the run waits for its green window, the run still
runs as planned, with a warning; before, it failed with ``ConfigError`` and the deferred work was lost
(the trigger had already ended ``Deferred``). A trigger with no policy still fails, loudly. And a
trigger whose dispatch created the run but lost the answer is Deferred to that run (review 46e M1)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.errors import ConfigError
from care_flows.orchestration import care
from tests.prefect_queries import runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

H = pd.Timedelta(hours=1)


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _defer_then_delete_the_block(make, name, ran):
    """Deploy ``make()``'s flow, run a trigger that defers the work (nothing ran), then delete the policy
    block ``name`` while the dispatched run waits; returns that run."""
    job = make()
    dep = job.to_deployment(name=name).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep)
    assert _run_existing(job, trigger.id).is_completed() and ran == []  # deferred to the green hour
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep) if r.deployment_id == dep and r.id != trigger.id]
        client.delete_block_document(CarePolicyBlock.load(name)._block_document_id)
    return child


def test_a_deferred_run_whose_policy_block_was_deleted_still_runs_as_planned(run_log):
    name, replan_every = "planned-policy-once", None
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "instance_type": "t3.large", "replan_every": replan_every}).save(name, overwrite=True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    trace = pd.Series([300.0, 300.0, 20.0] + [300.0] * 21, index=pd.date_range(now, periods=24, freq="1h"), name="g_per_kwh")
    trace.attrs["source"] = "synthetic"
    ran = []

    def make():  # a new process's flow object: its policy is looked up again (the first caches the block's)
        @care(policy=name, signal=lambda region, start, horizon: trace.copy(), sample_usage=False)
        @flow(name=name)
        def job(n: int = 1) -> int:
            ran.append(n)
            return n

        return job

    child = _defer_then_delete_the_block(make, name, ran)
    state = _run_existing(make(), child.id)
    assert state.is_completed(), state.message
    assert ran == [1]
    warned = [r.getMessage() for r in run_log if "this run was planned already, so it runs" in r.getMessage()]
    assert len(warned) == 1 and f"no CarePolicyBlock named '{name}'" in warned[0]
    assert "as its plan says (region, instance type, work), without the check at start" in warned[0]


def test_the_policy_a_trigger_recorded_in_the_marker_wins_over_one_made_from_the_plan():
    """A marker the controller may re-plan holds the trigger's policy (narrowed): that one is used, with the
    plan's overrides; without it the policy is made from the plan and flagged rebuilt."""
    from care_flows.orchestration.controller import trigger_replan_fields
    from care_flows.orchestration.decorator import _policy_of_plan
    from care_flows.orchestration.plan import Plan
    from care_flows.policy import CarePolicy

    t = pd.Timestamp("2026-01-01T00:00Z")
    plan = Plan("eu-north-1", t + 3 * H, t + 4 * H, t, t + 8 * H, "eu-south-2", False, instance_type="m5.large", source="embedded")
    mine = CarePolicy(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], min_savings_pct=50, carbon_source="gb",
                      signal="direct")
    marker = {"plan": plan.to_dict(), **trigger_replan_fields(mine, plan, t)}
    policy, rebuilt = _policy_of_plan(marker, plan, {"tolerance_pct": 2})
    assert not rebuilt and policy.min_savings_pct == 50 and policy.carbon_source == "gb" and policy.tolerance_pct == 2
    policy, rebuilt = _policy_of_plan({"plan": plan.to_dict()}, plan, {})
    assert rebuilt and policy.home_region == "eu-south-2" and policy.regions == ["eu-south-2", "eu-north-1"]
    assert policy.carbon_source == "embedded" and policy.instance_type == "m5.large"


@pytest.mark.parametrize("planner", ["decide", "window"])
def test_a_policy_rebuilt_from_the_plan_keeps_the_signal_kind_it_planned_on(planner):
    """Review 46f L1: the plan did not record the signal kind, so a policy rebuilt from it took the source's
    default (embedded: lifecycle) and the realized figures used another emission factor than the plan's
    (direct): 169.6 vs 123.1 g/kWh over the same run. A kind the rebuilt source does not serve is left out."""
    from care_flows.orchestration.decorator import _policy_of_plan
    from care_flows.orchestration.plan import Plan, plan_run
    from care_flows.policy import CarePolicy

    mine = CarePolicy(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], expected_duration="1h",
                      deadline_within="8h", signal="direct")
    plan = plan_run(mine, pd.Timestamp("2023-03-01T00:00Z"), planner=planner)
    assert plan.signal == "direct"
    stored = Plan.from_dict(plan.to_dict())  # as the run's care marker carries it
    assert stored.signal == "direct"
    rebuilt, is_rebuilt = _policy_of_plan({"plan": plan.to_dict()}, stored, {})
    assert is_rebuilt and rebuilt.carbon_source == "embedded" and rebuilt.signal == "direct"
    older = {k: v for k, v in plan.to_dict().items() if k != "signal"}  # a marker an older CaRE wrote
    assert _policy_of_plan({}, Plan.from_dict(older), {})[0].signal == "lifecycle"
    stored.signal = "marginal"  # not served by the embedded source: the source's own kind, not a failed rebuild
    assert _policy_of_plan({}, stored, {})[0].signal == "lifecycle"


def test_a_policy_rebuilt_from_the_plan_decides_nothing_again(run_log):
    """Review 46d M1: without the trigger's policy in the marker (a policy that plans once), the policy made
    from the plan had default settings, so the run was checked at start and handed on for a 10 % saving
    against the user's 50 % minimum, while the log said it ran as planned."""
    name = "planned-policy-rebuilt"
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h",
                            "instance_type": "t3.large", "replan_every": None, "min_savings_pct": 50}).save(name, overwrite=True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    at_decision = pd.Series([300.0, 300.0, 20.0] + [300.0] * 21, index=pd.date_range(now, periods=24, freq="1h"), name="g_per_kwh")
    at_start = pd.Series([300.0, 300.0, 100.0, 300.0, 300.0, 90.0] + [300.0] * 18, index=at_decision.index, name="g_per_kwh")
    for s in (at_decision, at_start):
        s.attrs["source"] = "synthetic"
    clock, ran = [now], []

    def make():
        @care(policy=name, signal=lambda region, start, horizon: (at_decision if clock[0] == now else at_start).copy(),
              clock=lambda: clock[0], sample_usage=False)
        @flow(name=name)
        def job(n: int = 1) -> int:
            ran.append(n)
            return n

        return job

    child = _defer_then_delete_the_block(make, name, ran)
    assert "policy" not in child.job_variables["care"]  # plans once: no trigger policy recorded
    clock[0] = now + 2 * H  # the planned start; a later start would save 10 %
    state = _run_existing(make(), child.id)
    assert state.is_completed() and state.name == "Completed" and ran == [1]
    assert not [r for r in run_log if "check at start" in r.getMessage().lower() and "hand" in r.getMessage().lower()]


def test_a_trigger_whose_policy_block_does_not_exist_fails_with_the_policys_error(run_log):
    @care(policy="no-such-policy-block", sample_usage=False)
    @flow(name="planned-policy-missing")
    def job() -> int:
        return 1

    state = job(return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="no CarePolicyBlock named 'no-such-policy-block'"):
        state.result()


def test_a_trigger_whose_dispatch_answer_was_lost_is_deferred_to_the_run_it_created(monkeypatch):
    """Review 46e M1: the server created the run but its answer was lost (a 504 from a proxy); the trigger
    ended Failed (hooks fired, no decision) while the run it created stayed scheduled: an operator re-running
    the deployment would do the work twice. Like the continuation and the check at start, it now looks the
    run up by its idempotency key."""
    import care_flows.orchestration.decorator as deco
    from care_flows.errors import OrchestrationError

    real = deco.dispatch_run

    def lost_answer(**kw):
        real(**kw)
        raise OrchestrationError("could not dispatch a run: Server error '504 Gateway Timeout'")

    monkeypatch.setattr(deco, "dispatch_run", lost_answer)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    trace = pd.Series([300.0, 300.0, 20.0] + [300.0] * 21, index=pd.date_range(now, periods=24, freq="1h"), name="g_per_kwh")
    trace.attrs["source"] = "synthetic"
    ran = []

    @care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h"},
          signal=lambda region, start, horizon: trace.copy(), sample_usage=False)
    @flow(name="lost-dispatch-answer")
    def job(n: int = 1) -> int:
        ran.append(n)
        return n

    dep = job.to_deployment(name="lost-answer").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep)
    state = _run_existing(job, trigger.id)
    assert state.is_completed() and state.name == "Deferred" and ran == []
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep) if r.deployment_id == dep and r.id != trigger.id]
    assert child.name in state.message and child.state.is_scheduled()

    def nothing_created(**kw):
        raise OrchestrationError("could not dispatch a run: Server error '503 Service Unavailable'")

    monkeypatch.setattr(deco, "dispatch_run", nothing_created)
    with get_client(sync_client=True) as client:
        second = client.create_flow_run_from_deployment(dep)
    assert _run_existing(job, second.id).is_failed()  # nothing was created: the trigger fails (a retry plans again)
