"""Review 19: where a trigger run can really send its work, and the baseline of a run realized on the forecast."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.cli.report import parse_realized, summarize
from care_flows.orchestration import care

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
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                     key=ArtifactFilterKey(any_=[key])))
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
        child = next(r for r in client.read_flow_runs() if r.deployment_id == dep_id and r.id != trigger.id)
    # time-shifted at home (the 40 at +2 h), not moved to a Sweden nothing runs in
    assert child.job_variables["region"] == "eu-south-2" and pd.Timestamp(child.state.state_details.scheduled_time) == now + 2 * H
    md = _artifact(trigger.id, "care-decision")
    assert ("- warning: eu-north-1 left out: no target names a work pool or deployment for it, and pool care-eu-south-2 (process) "
            "runs in eu-south-2 only; set targets[region].work_pool or use a care-ec2 pool") in md


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
        child = next(r for r in client.read_flow_runs() if r.deployment_id == dep_id and r.id != trigger.id)
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
