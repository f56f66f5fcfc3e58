"""Per-deployment and per-run policy overrides (the ``care_overrides`` job variable)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.errors import ConfigError
from care_flows.orchestration import care
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.overrides import apply_overrides, overrides_from
from care_flows.orchestration.plan import Plan
from care_flows.policy import CarePolicy

H = pd.Timedelta(hours=1)
SEEN: list[tuple] = []


# -- pure --------------------------------------------------------------------------------------

def test_a_runs_overrides_win_over_its_deployments_field_by_field_and_json_text_is_read():
    got = overrides_from({"care_overrides": {"deadline_within": "2h", "vcpu": 8}, "region": "eu-south-2"},
                         {"care_overrides": '{"vcpu": 2, "priorities": ["cost", "carbon"]}'})
    assert got == {"deadline_within": "2h", "vcpu": 2, "priorities": ["cost", "carbon"]}
    assert overrides_from(None, {}, {"care_overrides": None}, {"care_overrides": ""}) == {}


def test_overrides_merge_over_the_fields_the_policy_was_given_and_derived_fields_follow():
    app = CarePolicy(regions=["eu-north-1"], deadline_within="12h", carbon_source="embedded")
    got = apply_overrides(app, {"carbon_source": "gb", "weights": {"carbon": 0.5, "cost": 0.5}})
    assert got.carbon_source == "gb" and got.signal == "direct"  # derived from the source, not kept as lifecycle
    assert got.regions == ["eu-south-2", "eu-north-1"] and got.deadline_within == pd.Timedelta(hours=12)
    assert apply_overrides(app, {}) is app


@pytest.mark.parametrize("given, message", [
    ({"care_overrides": "{priorities"}, r"invalid care_overrides job variable: not valid JSON \(line 1, column 2"),
    ({"care_overrides": ["cost"]}, r"invalid care_overrides job variable: list \['cost'\], not a mapping; give a mapping of CarePolicy fields"),
    ({"care_overrides": 3}, r"invalid care_overrides job variable: int 3, not a mapping"),
])
def test_an_override_that_is_not_a_mapping_is_one_line_naming_it(given, message):
    with pytest.raises(ConfigError, match=message):
        overrides_from(given)


@pytest.mark.parametrize("overrides, message", [
    ({"priority": ["cost"]}, r"^invalid care_overrides job variable: unknown field 'priority'; did you mean 'priorities'\?$"),
    ({"deadline_within": "-1h"}, r"^invalid care_overrides job variable: deadline_within: "),
    ({"regions": ["eu-nowhere-1"]}, r"^invalid care_overrides job variable: .*eu-nowhere-1"),
    ({"threshold_g_per_kwh": 100}, r"^invalid care_overrides job variable: .*interruptible"),  # checked as a whole policy
])
def test_an_invalid_override_is_one_config_error_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(CarePolicy(), overrides)
    assert "\n" not in str(info.value)


def test_a_plan_carries_its_overrides_through_the_marker():
    t = pd.Timestamp("2026-03-02T00:00Z")
    plan = Plan(region="eu-south-2", start=t, end=t + H, decided_at=t, deadline=t + 4 * H, home_region="eu-south-2",
                now_here=False, overrides={"priorities": ["cost", "carbon"]})
    assert Plan.from_dict(plan.to_dict()).overrides == {"priorities": ["cost", "carbon"]}
    assert Plan.from_dict({**plan.to_dict(), "overrides": None}).overrides is None  # markers written before overrides existed


# -- @care under the session's Prefect server ----------------------------------------------------

def _run_existing(flow_obj, flow_run_id):
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _pool(name: str) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=True)
    return name


def _decision(client, flow_run_id) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                key=ArtifactFilterKey(any_=["care-decision"])))
    return str(arts[0].data)


@pytest.mark.usefixtures("prefect_harness")
def test_deployment_and_run_overrides_change_the_plan_and_the_dispatched_run_keeps_them(forecast):
    """The application moves to Sweden at once; the deployment's team keeps its runs in Spain and the
    person triggering one run gives it a 3 h deadline: the run is deferred 1 h in Spain (the green
    hours at +2 h no longer fit), and the dispatched run executes under the same overrides."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300]),
          "eu-north-1": forecast(now, [20.0] * 10)}
    app = dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="2h", deadline_within="8h")

    @care(policy=app, signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="overridden-etl")
    def overridden_etl(n: int = 1) -> int:
        from care_flows.orchestration.checkpoint import _CURRENT

        state = _CURRENT.get()
        SEEN.append((state.policy.candidate_regions, state.policy.deadline_within))
        return n

    local = overridden_etl.with_options()  # a local call: no job variables, the application's plan
    assert local(n=5) == 5 and SEEN.pop() == (["eu-south-2", "eu-north-1"], pd.Timedelta(hours=8).to_pytimedelta())
    dep_id = overridden_etl.to_deployment(name="team-es", work_pool_name=_pool("care-overrides"), job_variables={"care_overrides": {"regions": ["eu-south-2"]}}).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"n": 2}, job_variables={"care_overrides": {"deadline_within": "3h"}})
    state = _run_existing(overridden_etl, trigger.id)
    assert state.is_completed() and SEEN == []  # dispatched, the body did not run
    with get_client(sync_client=True) as client:
        child = next(r for r in client.read_flow_runs() if r.deployment_id == dep_id and r.id != trigger.id)
        md = _decision(client, trigger.id)
    assert pd.Timestamp(child.state.state_details.scheduled_time) == now + H and child.job_variables["region"] == "eu-south-2"
    assert child.job_variables["care"]["plan"]["overrides"] == {"regions": ["eu-south-2"], "deadline_within": "3h"}
    assert '- **Policy overrides** (job variable `care_overrides`): `regions=["eu-south-2"], deadline_within="3h"`' in md
    state = _run_existing(overridden_etl, child.id)
    assert state.is_completed() and SEEN == [(["eu-south-2"], pd.Timedelta(hours=3).to_pytimedelta())]


@pytest.mark.usefixtures("prefect_harness")
def test_an_invalid_run_override_fails_the_trigger_run_with_the_one_line_reason(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"]), signal={"eu-south-2": forecast(now, [300.0] * 10)},
          clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="typo-etl")
    def typo_etl() -> str:
        SEEN.append(("typo",))
        return "ran"

    dep_id = typo_etl.to_deployment(name="typo").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"deadlin_within": "2h"}})
    state = _run_existing(typo_etl, trigger.id)
    assert state.is_failed() and ("typo",) not in SEEN
    assert "invalid care_overrides job variable: unknown field 'deadlin_within'; did you mean 'deadline_within'?" in state.message


@pytest.mark.usefixtures("prefect_harness")
def test_an_explicit_duration_and_need_in_the_overrides_are_not_replaced_by_learned_ones(forecast, tmp_path, monkeypatch):
    from care_flows.orchestration import learned_duration
    from care_flows.usage_capture import RunRecord, UsageStore

    store = UsageStore(tmp_path)
    for i in range(5):  # a history that says 3 h
        store.append_run("backfill-etl", RunRecord(run_id=f"r{i}", finished=pd.Timestamp("2026-03-01T00:00Z") + i * H, duration_s=3 * 3600.0))
    monkeypatch.setattr(learned_duration, "_default_store", lambda: store)
    import care_flows.orchestration.decorator as decorator

    def no_learned_need(*_a, **_k):
        raise AssertionError("the learned need was read although the overrides give vcpu and memory_gib")

    monkeypatch.setattr(decorator, "need_for_policy", no_learned_need)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10)}
    assert learned_duration.with_learned_duration(pol, "backfill-etl")[0].expected_duration == pd.Timedelta(hours=3)

    @care(policy=pol, signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="backfill-etl")
    def backfill_etl() -> str:
        from care_flows.orchestration.checkpoint import _CURRENT

        SEEN.append(("backfill", _CURRENT.get().policy.expected_duration))
        return "ok"

    dep_id = backfill_etl.to_deployment(name="backfill").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"expected_duration": "30m", "vcpu": 1, "memory_gib": 2}})
    state = _run_existing(backfill_etl, trigger.id)  # flat forecast: now, here, the body runs
    assert state.is_completed() and SEEN.pop() == ("backfill", pd.Timedelta(minutes=30).to_pytimedelta())
    with get_client(sync_client=True) as client:
        md = _decision(client, trigger.id)
    assert "Duration from" not in md and 'expected_duration="30m"' in md


# -- care controller ------------------------------------------------------------------------------

@flow(name="ctl-overridden")
def ctl_overridden(day: str = "x") -> str:
    return day


@pytest.mark.usefixtures("prefect_harness")
def test_the_controller_applies_the_deployments_and_the_runs_overrides(forecast):
    care_dep = ctl_overridden.to_deployment(
        name="cron-overridden", tags=["care"], work_pool_name=_pool("care-overrides-ctl"), parameters={"care_policy": {"home_region": "eu-south-2", "regions": ["eu-south-2"],
                                                                           "expected_duration": "1h", "deadline_within": "8h"}},
        job_variables={"care_overrides": {"deadline_within": "3h"}}).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 10, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        deployment_only = client.create_flow_run_from_deployment(care_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        with_run = client.create_flow_run_from_deployment(care_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()),
                                                          job_variables={"care_overrides": {"deadline_within": "8h"}})
        typo = client.create_flow_run_from_deployment(care_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()),
                                                      job_variables={"care_overrides": {"vcpus": 4}})
        actions = {a.flow_run_id: a for a in control_once(client, signal=fc)}
        moved = client.read_flow_run(deployment_only.id)
    # deadline 3 h, 1 h of work: the 40 at +2 h is the greenest start that fits; the run's own 8 h reaches the 10 at +3 h
    assert actions[str(deployment_only.id)].new_start == (t_run + 2 * H).isoformat()
    assert "care_overrides: deadline_within=\"3h\"" in actions[str(deployment_only.id)].reason
    assert moved.job_variables["care"]["plan"]["overrides"] == {"deadline_within": "3h"}
    assert actions[str(with_run.id)].new_start == (t_run + 3 * H).isoformat()
    assert actions[str(typo.id)].action == "failed" and "unknown field 'vcpus'; did you mean 'vcpu'?" in actions[str(typo.id)].reason
