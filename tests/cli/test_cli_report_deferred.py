"""`care report` names the runs CaRE deferred that have not run yet (review 48c L5): a deferred run
has no care-realized artifact before its body ends, so a report just after the deferral showed
nothing of it. A real @care trigger defers a run on the Prefect test server."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.cli import main
from care_flows.cli.report import build_report
from care_flows.orchestration import care
from tests.prefect_queries import runs_of

H = pd.Timedelta(hours=1)
NAME = "report-deferred-etl"


def _series(start: pd.Timestamp, values: list[float]) -> pd.Series:
    s = pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1h"), dtype=float)
    s.attrs["source"] = "synthetic"
    return s


@pytest.fixture(scope="module")
def deferred(prefect_harness) -> dict:
    """One trigger run of a flow whose grid is green 3 h from now: it dispatches its work to +3 h."""
    from prefect.flow_engine import run_flow_sync

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": _series(now, [300, 300, 300, 20, 20, 300, 300, 300, 300, 300])}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], deadline_within="8h"), signal=fc, clock=lambda: now,
          sample_usage=False)
    @flow(name=NAME)
    def body(n: int = 1) -> int:
        return n

    dep_id = body.to_deployment(name="report-deferred").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert run_flow_sync(body, flow_run=trigger, parameters={}, return_type="state").is_completed()
    with get_client(sync_client=True) as client:
        (child,) = [r for r in runs_of(client, dep_id) if r.id != trigger.id]
    return {"child": child, "start": now + 3 * H}


def test_a_deferred_run_that_has_not_run_is_in_the_report(deferred, capsys):
    assert main(["report", "--since", "1h", "--flow", NAME, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["flows"] == []  # nothing ran yet, so no care-realized artifact
    (row,) = doc["deferred_runs"]
    assert row == {"flow": NAME, "flow_run_id": str(deferred["child"].id), "name": deferred["child"].name, "state": "Scheduled",
                   "start": deferred["start"].isoformat(), "region": "eu-south-2"}
    assert main(["report", "--since", "1h", "--flow", NAME]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"no care-realized artifacts of flow {NAME} created between ")
    assert out[1] == f"deferred: 1 run planned for later, not started yet (now): {NAME}: 1, next at {deferred['start'].isoformat()}"


def test_only_the_asked_flows_deferred_runs_and_none_once_it_has_started(deferred):
    assert build_report(pd.Timestamp.now(tz="UTC") - H, pd.Timestamp.now(tz="UTC"), flows=["another-flow"])["deferred_runs"] == []
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(deferred["child"].id, Running(), force=True)
        try:
            assert build_report(pd.Timestamp.now(tz="UTC") - H, pd.Timestamp.now(tz="UTC"), flows=[NAME])["deferred_runs"] == []
        finally:
            client.set_flow_run_state(deferred["child"].id, deferred["child"].state, force=True)


# -- which runs count as deferred (review 49b H1, H2, M3) ------------------------------------------

@flow(name="report-deferred-cron")
def cron_flow(n: int = 1) -> int:
    return n


@pytest.fixture(scope="module")
def controlled(prefect_harness) -> dict:
    """A care-tagged deployment with two scheduled runs: the controller keeps one and moves the other 3 h on."""
    from prefect.states import Scheduled

    from care_flows.orchestration.controller import control_once
    from care_flows.orchestration.plan import Plan
    from care_flows.policy import CarePolicy

    dep_id = cron_flow.to_deployment(name="report-deferred-ctl", tags=["care"]).apply()
    t = pd.Timestamp.now(tz="UTC").ceil("h") + 2 * H
    with get_client(sync_client=True) as client:
        keep = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=t.to_pydatetime()))
        move = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=(t + H).to_pydatetime()))

    def planner(policy, at, signal=None, deadline=None):
        start = at + 3 * H if abs(at - (t + H)) < pd.Timedelta(seconds=1) else at
        return Plan("eu-south-2", start, start + H, at, deadline, "eu-south-2", start == at, expected_g=1.0,
                    expected_g_per_kwh=20.0, baseline_g=2.0, baseline_g_per_kwh=40.0, source="synthetic")

    with get_client(sync_client=True) as client:
        actions = {a.flow_run_id: a.action for a in control_once(
            client, default_policy=CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], deadline_within="8h", replan_every=None),
            planner=planner) if a.flow_run_id in (str(keep.id), str(move.id))}
    assert actions == {str(keep.id): "kept", str(move.id): "moved"}
    return {"keep": keep, "move": move, "t": t}


def test_a_run_the_controller_moved_is_listed_at_its_new_start_and_one_it_kept_is_not(controlled):
    # Prefect's expected_start_time stays the first scheduled time (t + 1 h); the run now starts at t + 4 h
    rows = build_report(pd.Timestamp.now(tz="UTC") - H, pd.Timestamp.now(tz="UTC"), flows=["report-deferred-cron"])["deferred_runs"]
    assert [(r["flow_run_id"], r["start"]) for r in rows] == [(str(controlled["move"].id), (controlled["t"] + 4 * H).isoformat())]


def test_a_run_awaiting_its_retry_is_not_listed_and_a_late_one_is_named_late(prefect_harness):
    from prefect.states import AwaitingRetry, Late, Scheduled

    from care_flows.cli.report import _deferred_line

    @flow(name="report-deferred-states")
    def states_flow(n: int = 1) -> int:
        return n

    dep_id = states_flow.to_deployment(name="report-deferred-states").apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")

    def planned(when, kind="care:dispatched"):
        return client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=when.to_pydatetime()),
                                                      tags=["care", "care:planned", kind],
                                                      job_variables={"care": {"plan": {"region": "eu-south-2"}}})

    with get_client(sync_client=True) as client:
        retrying = planned(now + 5 * H)
        client.set_flow_run_state(retrying.id, AwaitingRetry(scheduled_time=(now + 10 * pd.Timedelta(minutes=1)).to_pydatetime()), force=True)
        late = planned(now - 2 * H)
        client.set_flow_run_state(late.id, Late(scheduled_time=(now - 2 * H).to_pydatetime()), force=True)
        planned(now + 6 * H, "care:continuation")  # a paused job's continuation: the report's jobs_waiting
        rows = build_report(now - H, now, flows=["report-deferred-states"], client=client)["deferred_runs"]
    assert [(r["flow_run_id"], r["state"]) for r in rows] == [(str(late.id), "Late")]
    assert _deferred_line(rows).endswith(f"report-deferred-states: 1 Late (planned for {(now - 2 * H).isoformat()}; is a worker running for its pool?)")
