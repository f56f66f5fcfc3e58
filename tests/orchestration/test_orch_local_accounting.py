"""A local call (no deployment) runs the body now at home whatever the plan says: its realized
figures must not carry the deployed plan's expected saving (review 19, low: `care report` summed it)."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.cli.report import parse_realized, summarize
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _artifact(flow_run_id, key: str) -> str:
    """The run's ``key`` artifact (``care-decision``, ...), keyed per flow (``care-decision-<flow>``)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                     key=ArtifactFilterKey(any_=[artifact_key(key, flow_name)])))
    return str(art.data)


@pytest.mark.parametrize("planner", ["auto", "window"])
def test_a_local_call_is_accounted_as_run_now_at_home_not_as_the_deployed_plan(forecast, planner, run_log, caplog):
    caplog.set_level(logging.INFO, logger="prefect.flow_runs")  # the local-run line is INFO
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [60, 60, 20, 60, 60, 60, 60, 60, 60, 60])}
    clock = [now]

    @care(policy=dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h"),
          signal=fc, clock=lambda: clock[0], planner=planner, sample_usage=False)
    @flow(name=f"local-accounting-{planner}")
    def local_accounting() -> str:
        clock[0] = clock[0] + pd.Timedelta(hours=1)
        return "ran"

    state = local_accounting(return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    decision = _artifact(run_id, "care-decision")
    assert decision.startswith("# CaRE decision: local run now in eu-south-2; deployed, it would start at "), decision[:120]
    # review 40a L6: without targets only a care-ec2 pool reaches eu-north-1 (a process pool shifts in time at home)
    assert "in eu-north-1 (from a care-ec2 pool, or with targets['eu-north-1'] naming a pool there)" in decision.splitlines()[0]
    assert "- **Note**: a local call runs now in eu-south-2" in decision
    # the log line's grams in significant digits, as the artifact's: a short run read "expected 0.0 g vs 0.0 g" (review 46c L1)
    [line] = [r.getMessage() for r in run_log if "; deployed, it would" in r.getMessage()]
    assert re.search(r"; expected \d\.\d\d+ g vs \d\.\d\d+ g now at home$", line), line
    figures = parse_realized(_artifact(run_id, "care-realized"))
    assert figures["region"] == "eu-south-2"
    # the plan (Sweden, 2 h later) expected 20 g/kWh; this call ran in Spain now at 300 g/kWh
    assert figures["expected_g_per_kwh"] == pytest.approx(300.0) and figures["baseline_g_per_kwh"] == pytest.approx(300.0)
    assert figures["expected_g"] == pytest.approx(figures["baseline_g"])
    assert figures["realized_g_per_kwh"] == pytest.approx(300.0)
    if planner == "auto":  # the planner prices the home instance; the window planner prices nothing
        assert figures["expected_usd"] == pytest.approx(figures["realized_usd"], rel=1e-3)
    row = summarize([{**figures, "flow": "f", "job": "j"}])["flows"][0]
    assert row["expected_g"]["value"] == pytest.approx(row["baseline_g"]["value"])
    assert abs(row["saved_g"]["value"]) < 1e-3  # the artifact rounds to 6 digits


def test_a_local_call_runs_an_interruptible_plan_in_one_piece_and_is_accounted_so(forecast, monkeypatch):
    """Review 26 L1: wait_locally slept until the first green slot, then ran straight through the
    dirty hour between the segments (no deployment to continue in); its expected figures were the
    segments' 20 g/kWh, a saving no run made."""
    import types

    import care_flows.orchestration.decorator as deco
    from care_flows.orchestration.checkpoint import checkpoint

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 20, 300, 20, 300, 300, 300, 300, 300, 300])}
    clock = [now]
    monkeypatch.setattr(deco, "time", types.SimpleNamespace(sleep=lambda s: clock.__setitem__(0, clock[0] + pd.Timedelta(seconds=s))))

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="6h", interruptible=True),
          signal=fc, clock=lambda: clock[0], planner="window", sample_usage=False, wait_locally=True)
    @flow(name="local-interruptible")
    def local_interruptible() -> str:
        for _ in range(4):
            checkpoint()  # a local call cannot leave at a checkpoint: it runs on
            clock[0] = clock[0] + pd.Timedelta(minutes=30)
        return "ran"

    state = local_interruptible(return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    decision = _artifact(run_id, "care-decision")
    assert "- **Note**: a local call cannot pause between the segments below: it runs its 2h in one piece from " in decision, decision[:400]
    figures = parse_realized(_artifact(run_id, "care-realized"))
    assert figures["started"] == now + pd.Timedelta(hours=1) and figures["duration_s"] == 7200
    # the two hours it really ran, 20 then 300 g/kWh: 160 expected, as realized
    assert figures["expected_g_per_kwh"] == pytest.approx(160.0) and figures["realized_g_per_kwh"] == pytest.approx(160.0)


def test_a_tenth_of_a_second_run_now_at_home_shows_no_saving_in_care_report(forecast):
    """Review 29 M1: kWh rounded to 6 decimals (1e-06) against realized gCO2eq from the unrounded
    kWh made care report show 18.8 % saved for the README's own example runs, which all ran now at home."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [89.163] * 10)}
    clock = [now]

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="1h", vcpu=2, memory_gib=8),
          signal=fc, clock=lambda: clock[0], sample_usage=False)
    @flow(name="tiny-local")
    def tiny_local() -> str:
        clock[0] = clock[0] + pd.Timedelta(milliseconds=130)
        return "ran"

    rows = []
    for i in range(3):
        state = tiny_local(return_state=True)
        rows.append({**parse_realized(_artifact(state.state_details.flow_run_id, "care-realized")), "flow": "tiny-local", "job": f"j{i}"})
    assert all(r["realized_kwh"] < 1e-5 for r in rows)  # the size of the README's example runs
    row = summarize(rows)["flows"][0]
    assert row["saved_pct"]["value"] == pytest.approx(0.0, abs=1e-3), row["saved_pct"]
