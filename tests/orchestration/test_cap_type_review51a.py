"""Review 51a H1/H2: a run planned on a dearer type offered for ``max_g_per_run`` (the right-sized type
breaks the cap) runs on that type or is not counted as keeping the cap. On a care-ec2 instance of another
type the trigger starts the work on the planned type; a local call, which cannot choose a type, is counted
as run now at home on the right-sized type; the realized and baseline figures read each its own type's
row. Against a real Prefect server (the session harness)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.orchestration import care
from care_flows.orchestration.artifacts import _baseline_rates, _run_rates
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy
from tests.orchestration.test_orch_instance_review39a import _ec2_pool
from tests.orchestration.test_orch_overrides import _decision
from tests.orchestration.test_start_check import _others, _run_existing

RAN: list[str] = []
# 2 vCPU / 4 GiB in eu-south-2 at 300 g/kWh for 10 minutes: t3.xlarge (right-sized) 1.10 g, c7i-flex.xlarge 0.567 g
CAPPED = dict(home_region="eu-south-2", regions=[], deadline_within="1h", expected_duration="10m", vcpu=2, memory_gib=4, max_g_per_run=0.8)


def _capped(name, now, forecast):
    @care(policy=CAPPED, clock=lambda: now, planner="decide", sample_usage=False, signal={"eu-south-2": forecast(now, [300.0] * 10)})
    @flow(name=name)
    def capped() -> str:
        RAN.append(name)
        return "ran"

    return capped


@pytest.mark.usefixtures("prefect_harness")
def test_a_trigger_on_the_right_sized_type_starts_the_work_on_the_type_that_keeps_the_cap(forecast, monkeypatch):
    # t3.xlarge: big enough, but it emits 1.10 g for a cap of 0.8
    state, dep_id, trigger = trigger_on_ec2(lambda now: _capped("r51a-cap-trigger", now, forecast), "t3.xlarge", monkeypatch)
    assert state.is_completed() and "r51a-cap-trigger" not in RAN
    (child,) = _others(dep_id, trigger.id)
    assert (child.job_variables["region"], child.job_variables["instance_type"]) == ("eu-south-2", "c7i-flex.xlarge")
    with get_client(sync_client=True) as client:
        assert _decision(client, trigger.id).startswith("# CaRE decision: moved to a c7i-flex.xlarge in eu-south-2, starting now")


@pytest.mark.usefixtures("prefect_harness")
def test_a_trigger_already_on_the_cap_type_runs_here(forecast, monkeypatch):
    state, dep_id, trigger = trigger_on_ec2(lambda now: _capped("r51a-cap-here", now, forecast), "c7i-flex.xlarge", monkeypatch)
    assert state.result() == "ran" and RAN.pop() == "r51a-cap-here" and _others(dep_id, trigger.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_local_call_or_a_process_pool_which_cannot_choose_the_type_is_planned_on_the_right_sized_one(forecast, monkeypatch):
    # review 51c M2: planned on the cap type, such a run booked a saving only that type makes
    for md in local_and_process_decisions(lambda name: _capped(name, pd.Timestamp.now(tz="UTC").floor("h"), forecast), "r51a-cap",
                                          RAN, monkeypatch):
        assert "instance type: `t3.xlarge`" in md and "c7i-flex" not in md and "no feasible option" in md, md


def trigger_on_ec2(make_flow, instance_type: str, monkeypatch):
    """Deploy the flow ``make_flow(now)`` gives to a care-ec2 pool and run one trigger of it as if on a CaRE
    instance of ``instance_type`` in eu-south-2; return (its final state, the deployment id, the trigger run)."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    monkeypatch.setenv("CARE_REGION", "eu-south-2")
    monkeypatch.setenv("CARE_INSTANCE_TYPE", instance_type)
    flow_obj = make_flow(now)
    dep_id = flow_obj.to_deployment(name="prod", work_pool_name=_ec2_pool()).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    return _run_existing(flow_obj, trigger.id), dep_id, trigger


def local_and_process_decisions(make_flow, prefix: str, ran: list[str], monkeypatch) -> list[str]:
    """Run the flow ``make_flow(name)`` gives once as a local call and once from a process pool's deployment
    (neither on a CaRE instance); assert each ran its body; return their decision artifacts' markdown."""
    monkeypatch.delenv("CARE_REGION", raising=False)
    monkeypatch.delenv("CARE_INSTANCE_TYPE", raising=False)
    state = make_flow(f"{prefix}-local")(return_state=True)
    assert state.result() == "ran" and ran.pop() == f"{prefix}-local"
    flow_obj = make_flow(f"{prefix}-process")
    dep_id = flow_obj.to_deployment(name="prod", work_pool_name=_process_pool()).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(flow_obj, trigger.id).result() == "ran" and ran.pop() == f"{prefix}-process"
    with get_client(sync_client=True) as client:
        return [_decision(client, run_id) for run_id in (state.state_details.flow_run_id, trigger.id)]


def _process_pool() -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="r51a-process", type="process"), overwrite=True)
    return "r51a-process"


def test_a_region_with_a_target_is_never_offered_a_cap_type(forecast):
    # review 51c M1: a target may pin the type or send the run to a pool that cannot choose one
    now = pd.Timestamp("2026-03-02T00:00:00Z")
    fc = {"eu-south-2": pd.Series(300.0, index=pd.date_range(now, periods=24, freq="h"))}
    free = plan_run(CarePolicy(**CAPPED), now, forecasts=fc, cap_types=True)
    assert free.instance_type == "c7i-flex.xlarge" and free.type_for_cap
    pinned = CarePolicy(**CAPPED, targets={"eu-south-2": {"job_variables": {"instance_type": "t3.xlarge"}}})
    kept = plan_run(pinned, now, forecasts=fc, cap_types=True)
    assert kept.instance_type == "t3.xlarge" and not kept.type_for_cap
    assert plan_run(CarePolicy(**CAPPED), now, forecasts=fc).instance_type == "t3.xlarge"  # off unless asked


def test_realized_and_baseline_rates_read_each_its_own_types_row(forecast):
    now = pd.Timestamp("2026-03-02T00:00:00Z")
    idx = pd.date_range(now, periods=24, freq="h")
    for values in ([200.0] * 4 + [50.0] * 20, [100.0] * 24):  # the cap type planned at 04:00; the cap type now
        fc = {"eu-south-2": pd.Series(values, index=idx)}
        plan = plan_run(CarePolicy(**{**CAPPED, "deadline_within": "8h", "expected_duration": "1h", "max_g_per_run": 1.0 if values[0] == 200 else 2.0}),
                        now, forecasts=fc, cap_types=True)
        assert plan.instance_type == "c7i-flex.xlarge" and plan.type_for_cap and plan.baseline_instance_type == "t3.xlarge"
        kw, usd_per_hour = _run_rates(plan, "eu-south-2")
        assert kw == pytest.approx(plan.energy_kwh) and usd_per_hour == pytest.approx(0.19152)
        base_kw, base_usd = _baseline_rates(plan, None)
        assert base_kw == pytest.approx(plan.baseline_energy_kwh) and base_usd == pytest.approx(0.1824)
        assert plan.as_run_now_at_home().instance_type == "t3.xlarge"
