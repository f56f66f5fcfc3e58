"""``instance_choice: priorities`` in orchestration: a ``@care`` trigger of a care-ec2 deployment is planned
on the lower-power type the priorities chose and starts the work on an instance of that type (its
figures hold only there); a local call or a process pool, which cannot choose a type, and plans made
without ``cap_types`` stay on the right-sized type. The controller's plans of a care-ec2 pool's runs
choose the type too, and a re-plan that changes it is a changed plan. Against a real Prefect server
(the session harness)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.orchestration import care
from care_flows.orchestration.artifacts import _baseline_rates, _run_rates
from care_flows.orchestration.decorator import sizing_line
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy
from tests.orchestration.test_cap_type_review51a import local_and_process_decisions, trigger_on_ec2
from tests.orchestration.test_orch_instance_review39a import _ec2_pool
from tests.orchestration.test_orch_overrides import _decision
from tests.orchestration.test_start_check import _others

RAN: list[str] = []
# 2 vCPU / 8 GiB in eu-south-2: t3.xlarge right-sized (0.1824 USD/h), m7i-flex.xlarge 32 % less power (0.21346 USD/h)
GREEN = dict(home_region="eu-south-2", regions=[], deadline_within="1h", expected_duration="10m", vcpu=2, memory_gib=8,
             instance_choice="priorities")


def _green(name, now, forecast):
    @care(policy=GREEN, clock=lambda: now, planner="decide", sample_usage=False, signal={"eu-south-2": forecast(now, [300.0] * 10)})
    @flow(name=name)
    def green() -> str:
        RAN.append(name)
        return "ran"

    return green


def test_plan_run_weighs_types_only_where_the_runner_can_launch_them(forecast):
    now = pd.Timestamp("2026-03-02T00:00:00Z")
    fc = {"eu-south-2": forecast(now, [300.0] * 24)}
    chosen = plan_run(CarePolicy(**GREEN), now, forecasts=fc, cap_types=True)
    assert (chosen.instance_type, chosen.type_sized_for, chosen.type_not_right_sized, chosen.type_for_cap) == (
        "m7i-flex.xlarge", "priorities", True, False)
    assert chosen.baseline_instance_type == "t3.xlarge" and chosen.as_run_now_at_home().instance_type == "t3.xlarge"
    assert any("32% less power" in w for w in chosen.warnings)
    # realized and baseline figures read each its own type's row
    kw, usd_per_hour = _run_rates(chosen, "eu-south-2")
    assert kw == pytest.approx(chosen.energy_kwh / (10 / 60)) and usd_per_hour == pytest.approx(0.21346)
    assert _baseline_rates(chosen, None)[1] == pytest.approx(0.1824)
    # review 53b L3: the sizing line named the priorities' type as what right-sizing gave
    assert chosen.right_sized_type == "t3.xlarge" and sizing_line(chosen).endswith(
        "-> t3.xlarge; planned on m7i-flex.xlarge (instance_choice: priorities)")
    plain = plan_run(CarePolicy(**GREEN), now, forecasts=fc)  # the default, and the controller's call
    assert sizing_line(plain).endswith("-> t3.xlarge") and plain.right_sized_type == "t3.xlarge"
    assert (plain.instance_type, plain.type_sized_for, plain.type_not_right_sized) == ("t3.xlarge", "cheapest", False)


@pytest.mark.usefixtures("prefect_harness")
def test_a_trigger_on_the_right_sized_type_starts_the_work_on_the_lower_power_type(forecast, monkeypatch):
    # t3.xlarge: big enough, but not the type the plan's figures are for
    state, dep_id, trigger = trigger_on_ec2(lambda now: _green("ic-trigger", now, forecast), "t3.xlarge", monkeypatch)
    assert state.is_completed() and "ic-trigger" not in RAN
    (child,) = _others(dep_id, trigger.id)
    assert (child.job_variables["region"], child.job_variables["instance_type"]) == ("eu-south-2", "m7i-flex.xlarge")
    with get_client(sync_client=True) as client:
        md = _decision(client, trigger.id)
    assert md.startswith("# CaRE decision: moved to a m7i-flex.xlarge in eu-south-2, starting now"), md
    assert "instead of the right-sized t3.xlarge: 32% less power" in md


@pytest.mark.usefixtures("prefect_harness")
def test_a_trigger_already_on_the_lower_power_type_runs_here(forecast, monkeypatch):
    state, dep_id, trigger = trigger_on_ec2(lambda now: _green("ic-here", now, forecast), "m7i-flex.xlarge", monkeypatch)
    assert state.result() == "ran" and RAN.pop() == "ic-here" and _others(dep_id, trigger.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_local_call_or_a_process_pool_is_planned_on_the_right_sized_type(forecast, monkeypatch):
    local, process = local_and_process_decisions(lambda name: _green(name, pd.Timestamp.now(tz="UTC").floor("h"), forecast), "ic", RAN,
                                                 monkeypatch)
    for md, who in ((local, "a run with no deployment of its own"), (process, "pool r51a-process")):
        assert "instance type: `t3.xlarge`" in md and "m7i-flex" not in md, md
        # review 53b M2: said, not silently dropped
        assert f"instance_choice 'priorities' not applied: {who} cannot start the work on another instance type" in md, md


@flow(name="ic-nightly")
def nightly() -> str:
    return "ran"


@pytest.mark.usefixtures("prefect_harness")
def test_the_controller_plans_the_chosen_type_for_a_care_ec2_pool_only(forecast):
    """A care-ec2 pool launches the instance_type the controller writes, so its plan may weigh types; a
    process pool runs on whatever its workers are, so its plan stays on the right-sized type."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Scheduled

    from care_flows.blocks import CarePolicyBlock
    from care_flows.orchestration.controller import control_once

    CarePolicyBlock(policy={**GREEN, "expected_duration": "1h", "deadline_within": "4h"}).save("ic-green", overwrite=True)
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + pd.Timedelta(hours=1)
    fc = {"eu-south-2": forecast(t_run, [300.0] * 10)}
    tags = ["care", "care-policy:ic-green"]
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ic-process", type="process"), overwrite=True)
        deps = {"ec2": nightly.to_deployment(name="ic-ec2", tags=tags, work_pool_name=_ec2_pool()).apply(),
                "process": nightly.to_deployment(name="ic-process", tags=tags, work_pool_name="ic-process").apply()}
        runs = {k: client.create_flow_run_from_deployment(d, state=Scheduled(scheduled_time=t_run.to_pydatetime())) for k, d in deps.items()}
        acts = {a.flow_run_id: a for a in control_once(client, signal=fc)}
        assert {acts[str(r.id)].action for r in runs.values()} == {"kept"}, acts  # flat forecast: planned at its time
        job_vars = {k: client.read_flow_run(r.id).job_variables for k, r in runs.items()}
        md = _latest_decision(client, runs["process"].id)
    assert job_vars["ec2"]["instance_type"] == job_vars["ec2"]["care"]["plan"]["instance_type"] == "m7i-flex.xlarge"
    assert job_vars["process"]["care"]["plan"]["instance_type"] == "t3.xlarge"
    assert job_vars["ec2"]["care"]["plan"]["baseline_instance_type"] == "t3.xlarge"
    # the process pool's plan says the field was not applied, in its line and its decision, as a @care run does
    ignored = "instance_choice 'priorities' not applied: pool ic-process cannot start the work on another instance type"
    assert ignored in acts[str(runs["process"].id)].reason and ignored in md
    assert "not applied" not in acts[str(runs["ec2"].id)].reason


@pytest.mark.usefixtures("prefect_harness")
def test_a_replan_on_another_type_is_a_changed_plan_with_a_new_decision(forecast):
    """Same start and region, another instance type (here the block's need was edited): "replanned", with the
    type change in the reason, the instance_type variable and the decision artifact; before, "kept" and the
    decision still named the old type."""
    from prefect.states import Scheduled

    from care_flows.blocks import CarePolicyBlock
    from care_flows.orchestration.controller import control_once

    pol = {**GREEN, "instance_choice": "cheapest", "expected_duration": "1h", "deadline_within": "4h", "replan_every": "1h"}
    CarePolicyBlock(policy=pol).save("ic-retype", overwrite=True)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + pd.Timedelta(hours=3)
    fc = {"eu-south-2": forecast(t_run, [300.0] * 10)}
    dep = nightly.to_deployment(name="ic-retype", tags=["care", "care-policy:ic-retype"], work_pool_name=_ec2_pool()).apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        (first,) = [a for a in control_once(client, signal=fc, clock=lambda: now) if a.flow_run_id == str(run.id)]
        assert first.action == "kept" and client.read_flow_run(run.id).job_variables["instance_type"] == "t3.xlarge"
        CarePolicyBlock(policy={**pol, "vcpu": 8, "memory_gib": 32}).save("ic-retype", overwrite=True)
        later = now + pd.Timedelta(hours=1)
        (second,) = [a for a in control_once(client, signal=fc, clock=lambda: later) if a.flow_run_id == str(run.id)]
        assert second.action == "replanned" and second.new_start == t_run.isoformat(), second
        assert "instance type now m7i-flex.4xlarge (was t3.xlarge)" in second.reason
        assert client.read_flow_run(run.id).job_variables["instance_type"] == "m7i-flex.4xlarge"
        md = _latest_decision(client, run.id)
    assert "m7i-flex.4xlarge" in md and "re-planned by care controller" in md, md
    assert "- **Note**: planned from its scheduled time: 'decided' and the baseline's 'now' below are that time" in md  # review 53b L2


def _latest_decision(client, flow_run_id) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from care_flows.orchestration.artifacts import artifact_key

    key = artifact_key("care-decision", client.read_flow(client.read_flow_run(flow_run_id).flow_id).name)
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                key=ArtifactFilterKey(any_=[key])))
    return str(max(arts, key=lambda a: a.created).data)


def test_a_targets_region_says_it_offers_only_its_right_sized_type(forecast):
    """Review 53b M1: with targets (the tutorial's set-up) the field did nothing, and nothing said so."""
    now = pd.Timestamp("2026-03-02T00:00:00Z")
    policy = CarePolicy(**{**GREEN, "targets": {"eu-south-2": {"work_pool": "ec2-es"}}})
    plan = plan_run(policy, now, forecasts={"eu-south-2": forecast(now, [300.0] * 24)}, cap_types=True)
    assert plan.instance_type == "t3.xlarge"
    assert ("eu-south-2: instance_choice 'priorities' not applied: its targets entry may pin a type or name a pool that "
            "cannot launch the planned one, so it offers its right-sized type only") in plan.warnings
    assert not any("not applied" in w for w in plan_run(CarePolicy(**GREEN), now, forecasts={"eu-south-2": forecast(now, [300.0] * 24)},
                                                        cap_types=True).warnings)
