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
