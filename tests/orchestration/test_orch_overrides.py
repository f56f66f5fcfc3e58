"""Per-deployment and per-run policy overrides (the ``care_overrides`` job variable)."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.errors import ConfigError
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.overrides import apply_overrides, overrides_from
from care_flows.orchestration.plan import Plan
from care_flows.policy import CarePolicy
from tests.prefect_queries import runs_of

H = pd.Timedelta(hours=1)
SEEN: list[tuple] = []


# -- pure --------------------------------------------------------------------------------------

def test_a_runs_overrides_win_over_its_deployments_field_by_field_and_json_text_is_read():
    got = overrides_from({"care_overrides": {"deadline_within": "2h", "vcpu": 8}, "region": "eu-south-2"},
                         {"care_overrides": '{"vcpu": 2, "priorities": ["cost", "carbon"]}'})
    assert got == {"deadline_within": "2h", "vcpu": 2, "priorities": ["cost", "carbon"]}
    assert overrides_from(None, {}, {"care_overrides": None}, {"care_overrides": ""}) == {}
    # a run's explicit null: the application's policy, without its deployment's overrides (review 19)
    assert overrides_from({"care_overrides": {"vcpu": 8}}, {"care_overrides": None}) == {}
    assert overrides_from({"care_overrides": {"vcpu": 8}}, {"region": "eu-north-1"}) == {"vcpu": 8}


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
    ({"priorities": ["costs"]}, r"^invalid care_overrides job variable: priorities.0: Input should be 'carbon', 'cost', 'latency' or 'resource' \(got 'costs'\); did you mean 'cost'\?$"),
    ({"priorities": 5}, r"^invalid care_overrides job variable: priorities: Input should be a valid list \(got 5\)$"),  # "cost" is ["cost"] (review 41e M3)
    ({"regions": ["eu-nowhere-1"]}, r"^invalid care_overrides job variable: .*eu-nowhere-1"),
    ({"threshold_g_per_kwh": 100}, r"^invalid care_overrides job variable: .*interruptible"),  # checked as a whole policy
])
def test_an_invalid_override_is_one_config_error_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(CarePolicy(), overrides)
    assert "\n" not in str(info.value)


def test_priorities_replace_the_policys_weights_which_would_otherwise_decide():
    """Review 18 D1: with the application's weights kept, a priorities override changed nothing."""
    app = CarePolicy(regions=["eu-north-1"], weights={"carbon": 1.0})
    assert apply_overrides(app, {"priorities": ["cost", "carbon"]}).weights is None
    both = apply_overrides(app, {"priorities": ["cost"], "weights": {"cost": 1.0}})
    assert both.weights == {"cost": 1.0}  # given together: weights decide, as in any policy


def test_a_home_region_override_moves_the_home_instead_of_adding_one():
    """Review 18 D2: the old home stayed a candidate (the policy check writes the home into regions)."""
    alone = CarePolicy(home_region="eu-south-2", regions=[])
    assert apply_overrides(alone, {"home_region": "eu-north-1"}).candidate_regions == ["eu-north-1"]
    pair = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"])
    assert apply_overrides(pair, {"home_region": "eu-north-1"}).candidate_regions == ["eu-north-1"]
    kept = apply_overrides(pair, {"home_region": "eu-north-1", "regions": ["eu-south-2"]})
    assert kept.candidate_regions == ["eu-north-1", "eu-south-2"]


def test_targets_merge_region_by_region_like_care_targets():
    """Review 18 D5: a run's target for one region wiped the application's others."""
    app = CarePolicy(regions=["eu-north-1", "eu-west-3"], targets={"eu-north-1": {"work_pool": "care-eu-north-1"}})
    got = apply_overrides(app, {"targets": {"eu-west-3": {"work_pool": "care-eu-west-3"}}})
    assert {r: t.work_pool for r, t in got.targets.items()} == {"eu-north-1": "care-eu-north-1", "eu-west-3": "care-eu-west-3"}


def test_the_artifact_line_is_bounded_and_a_backtick_cannot_end_its_code_span():
    """Review 18 D7: a 200 KB override became a 200 KB log, artifact and reason line; a backtick injected markdown."""
    from care_flows.orchestration.artifacts import decision_markdown

    t = pd.Timestamp("2026-03-02T00:00Z")
    plan = Plan(region="eu-south-2", start=t, end=t + H, decided_at=t, deadline=t + 4 * H, home_region="eu-south-2",
                now_here=True, overrides={"usage_key": "x` ![i](http://127.0.0.1/p.png) `" + "y" * 200_000})
    line = next(x for x in decision_markdown(plan, action="run now").splitlines() if "Policy overrides" in x)
    assert len(line) < 500 and line.count("`") == 4 and "(200045 characters)" in line
    # a token a user put in a target's env is not echoed into the artifact (nor the log: same text)
    plan.overrides = {"targets": {"eu-north-1": {"job_variables": {"env": {"DB_PASSWORD": "hunter2", "DB_URL": "postgresql://u:pw2@db/x"}}}}}
    line = next(x for x in decision_markdown(plan, action="run now").splitlines() if "Policy overrides" in x)
    assert "hunter2" not in line and "pw2" not in line and line.count('"***"') == 2


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

    flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name  # the key names the run's flow
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                key=ArtifactFilterKey(any_=[artifact_key("care-decision", flow_name)])))
    return str(arts[0].data)


@pytest.mark.usefixtures("prefect_harness")
def test_deployment_and_run_overrides_change_the_plan_and_the_dispatched_run_keeps_them(forecast):
    """The application moves to Sweden at once; the deployment's team keeps its runs in Spain and the
    person triggering one run gives it a 3 h deadline: the run is deferred 1 h in Spain (the green
    hours at +2 h no longer fit), and the dispatched run executes under the same overrides."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300]),
          "eu-north-1": forecast(now, [20.0] * 10)}
    # start_margin 0: the hand-computed windows below may end at the deadline itself
    app = dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="2h", deadline_within="8h", start_margin="0s")

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
        child = next(r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id)
        md = _decision(client, trigger.id)
    assert pd.Timestamp(child.state.state_details.scheduled_time) == now + H and child.job_variables["region"] == "eu-south-2"
    assert child.job_variables["care"]["plan"]["overrides"] == {"regions": ["eu-south-2"], "deadline_within": "3h"}
    assert '- **Policy overrides** (job variable `care_overrides`): `regions=["eu-south-2"], deadline_within="3h"`' in md
    state = _run_existing(overridden_etl, child.id)
    assert state.is_completed() and SEEN == [(["eu-south-2"], pd.Timedelta(hours=3).to_pytimedelta())]


@pytest.mark.usefixtures("prefect_harness")
def test_a_misspelt_variable_name_is_named_in_the_decision_instead_of_ignored(forecast):
    """Review 19 #4: care_override={...} was dropped without a word (Prefect accepts any job variable)."""
    now = pd.Timestamp.now(tz="UTC").floor("h")

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="1h"),
          signal={"eu-south-2": forecast(now, [300.0] * 10)}, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="misspelt-etl")
    def misspelt_etl() -> str:
        return "ran"

    dep_id = misspelt_etl.to_deployment(name="misspelt").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care_override": {"deadline_within": "2h"}})
        assert _run_existing(misspelt_etl, trigger.id).is_completed()
        md = _decision(client, trigger.id)
    assert "- warning: job variable 'care_override' is not read by CaRE; did you mean 'care_overrides'?" in md

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"]), signal={}, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="misspelt-unplanned-etl")
    def unplanned_etl() -> str:  # no carbon data: planning fails and the run runs now (review 21 #6: the note lost the warning)
        return "ran"

    dep_id = unplanned_etl.to_deployment(name="unplanned").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care-overrides": {"vcpu": 1}})
        assert _run_existing(unplanned_etl, trigger.id).is_completed()
        md = _decision(client, trigger.id)
    assert md.startswith("# CaRE decision: run now (planning failed)")
    assert "- warning: job variable 'care-overrides' is not read by CaRE; did you mean 'care_overrides'?" in md


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
    assert "- **Sized from**: declared need 1 vCPU, 2 GiB (given in care_overrides)" in md  # not "under 10 min of usage history"


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_whose_duration_was_given_is_not_recorded_in_the_flows_duration_history(forecast):
    """Review 18: a few backfills with their own expected_duration moved the p90 the nightly runs are planned with."""
    from care_flows.usage_capture import default_usage_store

    now = pd.Timestamp.now(tz="UTC").floor("h")

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="1h"),
          signal={"eu-south-2": forecast(now, [300.0] * 10)}, planner="window")  # the real clock: bodies are timed
    @flow(name="recorded-etl")
    def recorded_etl() -> str:
        return "ok"

    dep_id = recorded_etl.to_deployment(name="recorded").apply()
    with get_client(sync_client=True) as client:
        backfill = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"expected_duration": "1h"}})
        nightly = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(recorded_etl, backfill.id).is_completed()
    assert default_usage_store().load_runs("recorded-etl") == []
    assert _run_existing(recorded_etl, nightly.id).is_completed()
    assert [r.run_id for r in default_usage_store().load_runs("recorded-etl")] == [str(nightly.id)]

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"]), signal={}, planner="window")  # no data: no plan
    @flow(name="unplanned-recorded-etl")
    def unplanned_recorded_etl() -> str:
        return "ok"

    dep_id = unplanned_recorded_etl.to_deployment(name="recorded").apply()
    with get_client(sync_client=True) as client:  # review 23 #3: without a plan the given duration was forgotten
        backfill = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"expected_duration": "6h"}})
    assert _run_existing(unplanned_recorded_etl, backfill.id).is_completed()
    assert default_usage_store().load_runs("unplanned-recorded-etl") == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_deployment_that_cannot_be_read_fails_the_trigger_instead_of_dropping_its_constraints(forecast, monkeypatch):
    """Review 18 D4: a read error planned with the application's policy, moving data a deployment kept in Spain."""
    from prefect.client.orchestration import SyncPrefectClient

    now = pd.Timestamp.now(tz="UTC").floor("h")

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"]), clock=lambda: now, planner="window", sample_usage=False,
          signal={"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)})
    @flow(name="resident-etl")
    def resident_etl() -> str:
        SEEN.append(("resident",))
        return "ran"

    dep_id = resident_etl.to_deployment(name="resident", work_pool_name=_pool("care-overrides"),
                                        job_variables={"care_overrides": {"regions": ["eu-south-2"]}}).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    real = SyncPrefectClient.read_deployment

    def flaky(self, deployment_id, *a, **k):
        if str(deployment_id) == str(dep_id):
            raise httpx.ReadTimeout("timed out")
        return real(self, deployment_id, *a, **k)

    monkeypatch.setattr(SyncPrefectClient, "read_deployment", flaky)
    state = _run_existing(resident_etl, trigger.id)
    monkeypatch.undo()
    assert state.is_failed() and ("resident",) not in SEEN
    assert f"could not read deployment {dep_id}'s job variables, which may hold care_overrides (timed out); the run was not planned" in state.message
    with get_client(sync_client=True) as client:
        assert [r.id for r in runs_of(client, dep_id) if r.deployment_id == dep_id] == [trigger.id]  # nothing dispatched


@pytest.mark.usefixtures("prefect_harness")
def test_now_here_for_an_overridden_home_dispatches_to_it_instead_of_running_where_the_trigger_is(forecast):
    """Review 18 D3: a care-ec2 deployment in eu-south-2 whose run moved its home to eu-north-1 ran the body
    in Spain and reported and accounted it as Sweden."""
    now = pd.Timestamp.now(tz="UTC").floor("h")

    @care(policy=dict(home_region="eu-south-2", regions=[], deadline_within="1h", expected_duration="1h"), clock=lambda: now,
          planner="window", sample_usage=False, signal={"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)})
    @flow(name="homed-etl")
    def homed_etl() -> str:
        SEEN.append(("homed",))
        return "ran"

    from prefect.client.schemas.actions import WorkPoolCreate

    from care_flows.aws.worker import CareEC2Worker

    with get_client(sync_client=True) as client:  # a care-ec2 pool launches where the region variable says
        client.create_work_pool(WorkPoolCreate(name="care-overrides-ec2", type="care-ec2",
                                               base_job_template=CareEC2Worker.get_default_base_job_template()), overwrite=True)
    dep_id = homed_etl.to_deployment(name="spain", work_pool_name="care-overrides-ec2", job_variables={"region": "eu-south-2"}).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"home_region": "eu-north-1"}})
    state = _run_existing(homed_etl, trigger.id)
    assert state.is_completed() and ("homed",) not in SEEN  # not run here, in Spain
    with get_client(sync_client=True) as client:
        child = next(r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id)
        md = _decision(client, trigger.id)
    assert child.job_variables["region"] == "eu-north-1" and md.startswith("# CaRE decision: moved to eu-north-1, starting now")
    # without an override, the same deployment's "now, here" runs in this run, in its own region
    with get_client(sync_client=True) as client:
        plain = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(homed_etl, plain.id).is_completed() and SEEN.pop() == ("homed",)


# -- care controller ------------------------------------------------------------------------------

@flow(name="ctl-overridden")
def ctl_overridden(day: str = "x") -> str:
    return day


@pytest.mark.usefixtures("prefect_harness")
def test_the_controller_applies_the_deployments_and_the_runs_overrides(forecast):
    care_dep = ctl_overridden.to_deployment(
        name="cron-overridden", tags=["care"], work_pool_name=_pool("care-overrides-ctl"), parameters={"care_policy": {"home_region": "eu-south-2", "regions": ["eu-south-2"],
                                                                           "expected_duration": "1h", "deadline_within": "8h",
                                                                           "start_margin": "0s"}},  # windows may end at the deadline
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


def test_a_runs_priorities_win_over_its_deployments_weights():
    """Review 42a M2: the layers were merged field by field first, so the deployment's weights counted as
    given and a run's documented ``{"priorities": [...]}`` override changed nothing, without a word."""
    from care_flows.orchestration.overrides import apply_overrides, overrides_from
    from care_flows.policy import CarePolicy

    app = CarePolicy(regions=["eu-north-1"])
    deployment = {"care_overrides": {"weights": {"cost": 0.8, "carbon": 0.2}}}
    run = {"care_overrides": {"priorities": ["carbon", "cost"]}}
    policy = apply_overrides(app, overrides_from(deployment, run))
    assert policy.weights is None and [o.value for o in policy.priorities][:2] == ["carbon", "cost"]
    # the other way round, and a run that sets both, keep the run's choice
    assert apply_overrides(app, overrides_from(deployment, {"care_overrides": {"vcpu": 2}})).weights is not None
    both = apply_overrides(app, overrides_from(deployment, {"care_overrides": {"priorities": ["cost"], "weights": {"carbon": 1}}}))
    assert {k.value: v for k, v in both.weights.items()} == {"carbon": 1.0}
