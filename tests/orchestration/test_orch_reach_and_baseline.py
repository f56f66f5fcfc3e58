"""Review 19: where a trigger run can really send its work, and the baseline of a run realized on the forecast."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.cli.report import parse_realized, summarize
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key
from tests.prefect_queries import runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)
RAN: list[str] = []


def _pool(name: str, pool_type: str = "process") -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type=pool_type), overwrite=True)
    return name


def _run_existing(flow_obj, flow_run_id):
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _artifact(flow_run_id, key: str) -> str:
    """The run's ``key`` artifact (``care-decision``, ...), keyed per flow (``care-decision-<flow>``)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                     key=ArtifactFilterKey(any_=[artifact_key(key, flow_name)])))
    return str(art.data)


def test_a_region_no_pool_reaches_is_left_out_instead_of_moved_to_on_paper(forecast):
    """The README example (no targets) deployed to a Spanish process pool 'moved' runs to eu-north-1:
    they went back to the same pool, ran in Spain and were accounted as Sweden."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300]), "eu-north-1": forecast(now, [20.0] * 10)}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="unreached-etl")
    def unreached_etl() -> str:
        RAN.append("unreached")
        return "ran"

    dep_id = unreached_etl.to_deployment(name="spain", work_pool_name=_pool("care-eu-south-2")).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(unreached_etl, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        child = next(r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id)
    # time-shifted at home (the 40 at +2 h), not moved to a Sweden nothing runs in
    assert child.job_variables["region"] == "eu-south-2" and pd.Timestamp(child.state.state_details.scheduled_time) == now + 2 * H
    md = _artifact(trigger.id, "care-decision")
    assert ("- warning: eu-north-1 left out: no target names a work pool or deployment for it, and pool care-eu-south-2 (process) "
            "runs in eu-south-2 only; set targets[region].work_pool or use a care-ec2 pool") in md


def test_a_target_naming_the_triggers_own_pool_or_deployment_is_not_a_way_out():
    """Review 21 #4: a region whose target is the trigger's own single-region pool was counted as reachable."""
    from care_flows.orchestration.controller import dispatchable_policy
    from care_flows.policy import CarePolicy

    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1", "eu-west-3"],
                     targets={"eu-south-2": {"work_pool": "workers"}, "eu-north-1": {"work_pool": "workers"},
                              "eu-west-3": {"deployment": "etl/spain"}})
    limited, note = dispatchable_policy(pol, "workers", "process", deployment="spain")
    assert limited.candidate_regions == ["eu-south-2"] and note.startswith("eu-north-1, eu-west-3 left out")
    assert dispatchable_policy(pol, "workers", "process", deployment="other")[0].candidate_regions == ["eu-south-2", "eu-west-3"]
    here, _ = dispatchable_policy(CarePolicy(home_region="eu-south-2", regions=["eu-north-1"]), "workers", "process", here="eu-north-1")
    assert here.home_region == "eu-north-1" and here.candidate_regions == ["eu-north-1"]  # where it runs, by its region variable


def test_a_care_ec2_pool_still_moves_the_run_by_its_region_variable(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="ec2-moved-etl")
    def ec2_moved_etl() -> str:
        return "ran"

    from care_flows.aws.worker import CareEC2Worker

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.actions import WorkPoolCreate

        client.create_work_pool(WorkPoolCreate(name="care-reach-ec2", type="care-ec2",
                                               base_job_template=CareEC2Worker.get_default_base_job_template()), overwrite=True)
    dep_id = ec2_moved_etl.to_deployment(name="ec2", work_pool_name="care-reach-ec2").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(ec2_moved_etl, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        child = next(r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id)
    assert child.job_variables["region"] == "eu-north-1" and "left out" not in _artifact(trigger.id, "care-decision")


def test_a_run_realized_on_the_forecast_is_compared_with_the_same_slice_of_the_home_forecast():
    """With the embedded data at a date past its trace, the realized intensity is the plan's forecast
    over the minutes the body ran; the baseline was the whole planned window's mean, so a local run
    now at home showed -21.6 % 'saved'. It is now the same slice of the home forecast: nothing saved."""
    t0 = pd.Timestamp("2026-06-01T08:30:00Z")  # the planned hour spans two forecast hours
    clock = [t0]

    @care(policy=dict(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="1h"),
          clock=lambda: clock[0], sample_usage=False)  # the embedded source: no observed data for 2026
    @flow(name="forecast-realized-etl")
    def forecast_realized_etl() -> str:
        clock[0] = clock[0] + pd.Timedelta(minutes=15)  # the body "takes" 15 minutes
        return "ran"

    state = forecast_realized_etl(return_state=True)
    assert state.is_completed()
    figures = parse_realized(_artifact(state.state_details.flow_run_id, "care-realized"))
    assert figures["realized_from"].endswith("forecast") and figures["region"] == "eu-south-2"
    assert figures["baseline_g_per_kwh"] != pytest.approx(figures["realized_g_per_kwh"], rel=1e-3)  # the hour's mean differs
    assert figures["baseline_realized_g_per_kwh"] == pytest.approx(figures["realized_g_per_kwh"], rel=1e-6)
    row = summarize([{**figures, "flow": "forecast-realized-etl", "job": "j1"}])["flows"][0]
    assert abs(row["saved_pct"]["value"]) < 0.01  # 0 up to the artifact's rounding (it was -21.6 % in review 19)


def _artifacts(flow_run_id, key: str) -> list[str]:
    return [_artifact(flow_run_id, key)]


def _children(dep_ids, trigger_id):
    with get_client(sync_client=True) as client:
        return [r for r in runs_of(client, *dep_ids) if r.deployment_id in dep_ids and r.id != trigger_id]


def test_a_deployment_whose_region_variable_says_sweden_is_planned_in_sweden(forecast):
    """Review 21 #1: a process deployment whose job variable `region` says where it runs: dispatchable_policy ignored it (pool_region: no target, no suffix -> home), leaves out
    eu-north-1 and 'runs now at home' by dispatching back to the same Swedish pool with region=eu-south-2."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="reach-region-var-etl")
    def region_var_etl() -> str:
        RAN.append("region-var")
        return "ran"

    dep_id = region_var_etl.to_deployment(name="se", work_pool_name=_pool("se-workers"),
                                          job_variables={"region": "eu-north-1"}).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(region_var_etl, trigger.id).is_completed()
    kids = _children({dep_id}, trigger.id)
    decision = _artifacts(trigger.id, "care-decision")
    _ = ("children:", [(k.job_variables, k.work_pool_name) for k in kids])
    _ = ("decision:", decision[0][:1500] if decision else None)
    # the run is where it is (Sweden, the greener region): the body runs here, nothing dispatched
    assert not kids and RAN[-1] == "region-var" and decision[0].startswith("# CaRE decision: run now in eu-north-1")


def test_a_trigger_in_the_swedish_pool_dispatches_a_home_plan_to_the_home_pool(forecast):
    """Review 21: a trigger deployed in care-eu-north-1, home eu-south-2 has its own
    target pool; a 'now at home' plan goes to the Spanish deployment, not into the Swedish body."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [20.0] * 10), "eu-north-1": forecast(now, [300.0] * 10)}
    targets = {"eu-south-2": {"work_pool": "care-eu-south-2"}, "eu-north-1": {"work_pool": "care-eu-north-1"}}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h",
                      targets=targets), signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="reach-se-trigger-etl")
    def se_trigger_etl() -> str:
        RAN.append("se-trigger")
        return "ran"

    es = se_trigger_etl.to_deployment(name="es", work_pool_name=_pool("care-eu-south-2")).apply()
    se = se_trigger_etl.to_deployment(name="se", work_pool_name=_pool("care-eu-north-1")).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(se)
    assert _run_existing(se_trigger_etl, trigger.id).is_completed()
    kids = _children({es, se}, trigger.id)
    assert len(kids) == 1 and kids[0].deployment_id == es and kids[0].job_variables["region"] == "eu-south-2"


@pytest.mark.parametrize("planner", ["window", "auto"])
def test_a_deferred_run_on_a_forecast_only_source_has_realized_figures_for_care_report(forecast, planner):
    """The source has no observed data (a callable forecast, like the embedded data past its trace):
    the trigger defers the run 2 h at home (300 -> 40 g/kWh). Review 21 #2: the dispatched run's plan came
    from the `care` marker, without forecasts: realized and baseline were None, so care report left every
    shifted job out of 'saved'; the forecasts are now issued again at the plan's decision time."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    series = forecast(now, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])

    def signal(region, start, span):  # a callable source: no history()
        return series

    clock = [now]

    @care(policy=dict(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="6h"),
          signal=signal, clock=lambda: clock[0], planner=planner, sample_usage=False)
    @flow(name=f"reach-forecast-only-{planner}")
    def forecast_only_etl() -> str:
        clock[0] = clock[0] + pd.Timedelta(minutes=30)
        return "ran"

    dep_id = forecast_only_etl.to_deployment(name=f"es-{planner}", work_pool_name=_pool("care-eu-south-2")).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(forecast_only_etl, trigger.id).is_completed()
    [child] = _children({dep_id}, trigger.id)
    assert child.job_variables["region"] == "eu-south-2"
    clock[0] = now + 2 * H  # the worker starts it at its scheduled time
    assert _run_existing(forecast_only_etl, child.id).is_completed()
    [md] = _artifacts(child.id, "care-realized")
    figures = parse_realized(md)
    _ = ({k: figures.get(k) for k in ("realized_g_per_kwh", "realized_from", "baseline_realized_g_per_kwh", "baseline_g_per_kwh", "realized_kwh")})
    row = summarize([{**figures, "flow": "f", "job": "j"}])["flows"][0]
    _ = ("report row saved:", row["saved_g"], row["saved_pct"])
    assert figures["realized_g_per_kwh"] == pytest.approx(40.0)  # the plan's forecast over the 30 min it ran
    assert row["saved_g"]["jobs"] == 1 and figures["baseline_realized_g_per_kwh"] == pytest.approx(300.0)
    assert figures["realized_kwh"] is not None  # the window planner prices nothing, but its power is known


@pytest.mark.parametrize("given_as", ["callable", "mapping"])
def test_a_local_wait_locally_run_longer_than_the_forecast_is_not_credited_the_green_hour_for_all_of_it(forecast, monkeypatch, given_as):
    """Review 21 #3 (review 22 #3: also for a forecast given as a mapping). wait_locally: 1 h planned
    into the green hour at +2 h (deadline 3 h); the body really takes 3 h.
    Realized = the plan's forecast over [+2 h, +5 h): only [+2 h, +3 h) is covered, so 40 g/kWh for all
    3 h; baseline = home forecast over [0, 3 h) = 213 g/kWh (fully covered). The report credits the
    2 h past the forecast's end as green."""
    import types

    import care_flows.orchestration.decorator as deco

    now = pd.Timestamp.now(tz="UTC").floor("h")
    series = forecast(now, [300, 300, 40])
    clock = [now]

    def signal(region, start, span):
        return series

    if given_as == "mapping":
        signal = {"eu-south-2": series}  # noqa: F811

    def fake_sleep(s):
        clock[0] = clock[0] + pd.Timedelta(seconds=s)

    monkeypatch.setattr(deco, "time", types.SimpleNamespace(sleep=fake_sleep))

    @care(policy=dict(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="3h"),
          signal=signal, clock=lambda: clock[0], sample_usage=False, wait_locally=True)
    @flow(name=f"reach-long-local-{given_as}")
    def long_local() -> str:
        clock[0] = clock[0] + 3 * H
        return "ran"

    state = long_local(return_state=True)
    [md] = _artifacts(state.state_details.flow_run_id, "care-realized")
    figures = parse_realized(md)
    _ = ({k: figures.get(k) for k in ("started", "finished", "realized_g_per_kwh", "baseline_realized_g_per_kwh", "realized_kwh")})
    row = summarize([{**figures, "flow": "f", "job": "j"}])["flows"][0]
    _ = ("saved:", row["saved_g"], row["saved_pct"])
    # both figures should describe the same stretch of data: either both over the covered hour or neither
    assert figures["realized_g_per_kwh"] is None and row["saved_pct"]["value"] is None  # unknown, not 81 % saved


def test_the_controller_plans_a_single_region_pool_where_its_region_variable_says(forecast):
    """Review 22 #1: a process deployment in pool se-workers with region=eu-north-1 was planned at home
    (the pool's name says nothing) and its region variable overwritten with eu-south-2."""
    from care_flows.orchestration.controller import control_once
    from care_flows.policy import CarePolicy

    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run - 2 * H, [300.0] * 14), "eu-north-1": forecast(t_run - 2 * H, [20.0] * 14)}
    spec = dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h")

    @flow(name="reach-ctl-se")
    def ctl_se() -> str:
        return "ran"

    dep = ctl_se.to_deployment(name="se", work_pool_name=_pool("se-workers-ctl"), job_variables={"region": "eu-north-1"}, tags=["care"]).apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        [action] = [a for a in control_once(client, signal=fc, default_policy=CarePolicy(**spec)) if a.flow_run_id == str(run.id)]
        after = client.read_flow_run(run.id)
    assert action.region == "eu-north-1" and after.job_variables["region"] == "eu-north-1"
    assert "time shift only: pool se-workers-ctl runs in eu-north-1" in action.reason


def test_forecasts_issued_again_from_another_source_than_the_plans_are_not_used():
    """Review 22 #2: a plan made on Electricity Maps, re-issued at the run's end from another source
    (a fallback), was set against the plan's baseline and counted as a saving."""
    from care_flows.orchestration.checkpoint import RunState
    from care_flows.orchestration.decorator import CareConfig, _with_forecasts
    from care_flows.orchestration.plan import Plan
    from care_flows.policy import CarePolicy

    t = pd.Timestamp("2026-03-02T00:00Z")

    def source(name: str):
        def signal(region, start, span):
            idx = pd.date_range(start, start + span, freq="1h", inclusive="left")
            s = pd.Series([100.0] * len(idx), index=idx, name="g_per_kwh")
            s.attrs["source"] = name
            return s
        return signal

    plan = Plan(region="eu-south-2", start=t + H, end=t + 2 * H, decided_at=t, deadline=t + 6 * H, home_region="eu-south-2",
                now_here=False, source="electricitymaps")
    state = RunState(policy=CarePolicy(), plan=plan, region="eu-south-2")
    assert _with_forecasts(CareConfig(CarePolicy(), signal=source("embedded")), state).forecast is None
    again = _with_forecasts(CareConfig(CarePolicy(), signal=source("electricitymaps")), state)
    assert again.forecast is not None and again.home_forecast is not None
    # the plan's own reach, to its deadline (review 22 #4: an hour more, so a run overrunning its
    # plan had figures when rebuilt from the marker and none when it held its own plan)
    assert again.forecast.index[-1] + H == plan.deadline


def test_a_window_plans_power_is_known_in_every_region_its_price_only_in_its_own():
    """Review 22 #5: a local run at home of a window plan that chose eu-north-1 had no kWh."""
    from care_flows.orchestration.artifacts import _run_rates
    from care_flows.orchestration.plan import Plan

    t = pd.Timestamp("2026-03-02T00:00Z")
    plan = Plan(region="eu-north-1", start=t, end=t + 2 * H, decided_at=t, deadline=t + 6 * H, home_region="eu-south-2",
                now_here=False, planner="window", expected_g=4.0, expected_g_per_kwh=20.0, expected_usd=0.2)
    assert _run_rates(plan, "eu-south-2") == (pytest.approx(0.1), None)
    assert _run_rates(plan, "eu-north-1") == (pytest.approx(0.1), pytest.approx(0.1))


def test_a_region_variable_that_names_no_aws_region_is_not_taken_for_one(forecast):
    """Review 23 #1: a template's own region variable ('local') was taken as where the run is, and every
    trigger run became 'run now (planning failed): local: no forecast'."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 40] + [300] * 7)}

    @care(policy=dict(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="6h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="reach-localvar-etl")
    def localvar_etl() -> str:
        return "ran"

    dep_id = localvar_etl.to_deployment(name="d", work_pool_name=_pool("care-eu-south-2"), job_variables={"region": "local"}).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(localvar_etl, trigger.id).is_completed()
    md = _artifact(trigger.id, "care-decision")
    assert md.startswith("# CaRE decision: deferred to") and "planning failed" not in md
    from care_flows.orchestration.controller import run_location
    from care_flows.policy import CarePolicy

    assert run_location(CarePolicy(), "care-eu-north-1", "docker", {"region": "local"}, None) == "eu-north-1"


def test_a_home_region_override_does_not_relocate_a_pool_that_says_nothing_of_where_it_is(forecast):
    """Review 23 #2: pool 'workers' (no region in its name, no target, no region variable) runs where the
    application's home is; a run's home_region override made CaRE take it for Sweden, run the body in
    Spain and account it at Sweden's intensity."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}

    @care(policy=dict(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="1h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="reach-workers-etl")
    def workers_etl() -> str:
        return "ran"

    dep_id = workers_etl.to_deployment(name="d", work_pool_name=_pool("workers")).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"care_overrides": {"home_region": "eu-north-1"}})
    assert _run_existing(workers_etl, trigger.id).is_completed()
    md = _artifact(trigger.id, "care-decision")
    assert md.startswith("# CaRE decision: run now in eu-south-2")
    assert "eu-north-1 left out: no target names a work pool or deployment for it, and pool workers (process) runs in eu-south-2 only" in md
    assert parse_realized(_artifact(trigger.id, "care-realized"))["region"] == "eu-south-2"
