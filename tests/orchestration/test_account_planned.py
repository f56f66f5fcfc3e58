"""``care controller`` accounts the runs of undecorated flows it planned, once they end (review 51b
M1: they carried a plan but published no ``care-realized`` artifact, so ``care report`` never
counted them)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.flow_engine import run_flow_sync
from prefect.states import Cancelled, Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.orchestration.artifacts import parse_realized
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.report import build_report
from care_flows.timeutil import iso

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)


@flow(name="acct-plain-etl")
def plain_etl() -> str:
    time.sleep(1.0)
    return "ok"


@flow(name="acct-plain-broken", retries=0)
def plain_broken() -> None:
    time.sleep(0.5)
    raise RuntimeError("the warehouse is down")


def _pool(client, name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name=name, type="care-ec2"))
    except ObjectAlreadyExists:
        pass


def _realized(client, run_id) -> list[dict]:
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return [{**parse_realized(a.data), "key": a.key} for a in arts if a.key and a.key.startswith("care-realized")]


def _mine(actions, run_id) -> list:
    return [a for a in actions if a.flow_run_id == str(run_id)]


def test_a_planned_run_of_a_plain_flow_is_accounted_once_after_it_ends_and_counted_by_the_report(forecast, decision_markdown):
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "1h",
                            "deadline_within": "8h"}).save("acct-policy", overwrite=True)
    now = pd.Timestamp.now(tz="UTC")
    fc = {"eu-south-2": forecast(now.floor("h") - 3 * H, [300.0] * 40), "eu-north-1": forecast(now.floor("h") - 3 * H, [20.0] * 40)}
    with get_client(sync_client=True) as client:
        _pool(client, "acct-ec2")
        tags = ["care", "care-policy:acct-policy"]
        dep = plain_etl.to_deployment(name="cron", tags=tags, work_pool_name="acct-ec2").apply()
        broken = plain_broken.to_deployment(name="cron", tags=tags, work_pool_name="acct-ec2").apply()
        t_run = (now.ceil("h") + H).to_pydatetime()
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run))
        bad = client.create_flow_run_from_deployment(broken, state=Scheduled(scheduled_time=t_run))
        never = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run))
        first = control_once(client, signal=fc)
        assert [a.action for a in _mine(first, run.id)] in (["moved"], ["kept"]) and _mine(first, run.id)[0].region == "eu-north-1"
        marker = client.read_flow_run(run.id).job_variables["care"]
        # the decision is on the run, as a @care flow's is (the UI's Artifacts tab), with the options weighed
        md = decision_markdown(run.id)
        assert "by care controller: starts" in md and "in eu-north-1" in md and "**Baseline (now, home)**" in md
        options = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
                   if a.key == "care-options-acct-plain-etl"]
        assert len(options) == 1 and {row["region"] for row in json.loads(options[0].data)} == {"eu-south-2", "eu-north-1"}
        # their time comes and a worker runs them (the plain bodies know nothing of CaRE); the third is cancelled before it starts
        for r in (run, bad):
            client.set_flow_run_state(r.id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        assert run_flow_sync(plain_etl, flow_run=client.read_flow_run(run.id), return_type="state").is_completed()
        assert run_flow_sync(plain_broken, flow_run=client.read_flow_run(bad.id), return_type="state").is_failed()
        client.set_flow_run_state(never.id, Cancelled(), force=True)
        assert _realized(client, run.id) == []  # nothing in the body published figures

        second = control_once(client, signal=fc)
        [done] = _mine(second, run.id)
        [failed] = _mine(second, bad.id)
        assert _mine(second, never.id) == []  # it used nothing
        assert done.action == "accounted" and done.region == "eu-north-1" and done.news and done.deployment == "acct-plain-etl/cron"
        assert done.reason.startswith("completed, ran ") and "gCO2eq" in done.reason and "run now at home" in done.reason
        assert failed.action == "accounted" and failed.reason.startswith("failed, ran ")

        [fig] = _realized(client, run.id)
        ran = client.read_flow_run(run.id)
        assert fig["key"] == "care-realized-acct-plain-etl"
        assert fig["outcome"] == "completed" and fig["region"] == "eu-north-1"
        assert fig["duration_s"] == pytest.approx(ran.total_run_time.total_seconds(), abs=0.01) and fig["duration_s"] >= 1.0
        assert fig["realized_g_per_kwh"] == pytest.approx(20.0) and fig["baseline_realized_g_per_kwh"] == pytest.approx(300.0)
        assert fig["realized_kwh"] > 0 and fig["realized_g"] == pytest.approx(20.0 * fig["realized_kwh"])
        assert (done.old_start, done.new_start) == (iso(fig["started"]), iso(fig["finished"]))  # when it ran
        assert fig["root"] == str(marker["root"]) and fig["expected_g"] == marker["plan"]["expected_g"]
        assert [f["outcome"] for f in _realized(client, bad.id)] == ["failed"]

        # the artifact is the record: the next pass (a restarted controller too) does not count the runs again
        third = control_once(client, signal=fc)
        assert _mine(third, run.id) == [] and _mine(third, bad.id) == []
        assert len(_realized(client, run.id)) == 1

    doc = build_report(now - H, pd.Timestamp.now(tz="UTC") + H, flows=["acct-plain-etl"])
    [row] = [r for r in doc["flows"] if r["flow"] == "acct-plain-etl"]
    assert row["jobs"] == 1 and row["segments_completed"] == 1
    # against running now at home, in Spain at 300 g/kWh
    assert row["saved_g"]["value"] > 0 and row["realized_g"]["value"] == pytest.approx(fig["realized_g"], rel=1e-6)


class _EndedRuns:
    """A client holding ended planned runs: records the end-time window each read asks for."""

    api_url = "http://127.0.0.1:1/api-watermark-test"

    def __init__(self, runs):
        self.runs, self.asked = runs, []

    def read_flow_runs(self, flow_run_filter=None, sort=None, limit=None, offset=0, **_):
        after, before = pd.Timestamp(flow_run_filter.end_time.after_), pd.Timestamp(flow_run_filter.end_time.before_)
        if offset == 0:
            self.asked.append(after)
        return [r for r in self.runs if after <= r.end_time <= before][offset:offset + (limit or 200)]

    def read_artifacts(self, **_):
        return []

    def read_flow_run_states(self, run_id):
        import types

        [run] = [r for r in self.runs if r.id == run_id]
        state = lambda kind, at: types.SimpleNamespace(type=types.SimpleNamespace(value=kind), name=kind.title(), timestamp=at)  # noqa: E731
        return [state("RUNNING", run.start_time), state("COMPLETED", run.end_time)]


def _ended(name, end):
    import datetime as dt
    import types

    import uuid

    return types.SimpleNamespace(id=uuid.uuid4(), name=name, deployment_id=None, end_time=end, start_time=end - pd.Timedelta(minutes=5),
                                 total_run_time=dt.timedelta(minutes=5), job_variables={"care": {"plan": {"x": 1}}},
                                 state=types.SimpleNamespace(name="Completed"))


def test_each_pass_reads_only_what_ended_since_the_last_one_less_a_margin_and_keeps_runs_it_could_not_account(monkeypatch):
    """A controller at scale: reading 48 h of ended runs on every 30-s pass would grow with the
    history; after the first pass it reads back to its last pass less RESCAN, or to the earliest run
    it could not account (over the per-pass limit, or failed)."""
    import care_flows.orchestration.account_planned as acct

    now = pd.Timestamp("2031-01-01T12:00:00Z")  # a clock of its own: no other test's watermark
    client = _EndedRuns([_ended("old", now - pd.Timedelta(hours=30)), _ended("bad", now - pd.Timedelta(hours=20)),
                         _ended("new", now - pd.Timedelta(minutes=1))])
    accounted = []

    def account(_client, run, _attempt, _signal, _names):
        if run.name == "bad":
            raise RuntimeError("the API answered 503")
        accounted.append(run.name)
        return {"started": run.start_time, "finished": run.end_time, "region": "eu-north-1", "outcome": "completed", "duration_s": 300.0}

    monkeypatch.setattr(acct, "_account", account)
    monkeypatch.setattr(acct, "_readable_plan", lambda run: True)
    monkeypatch.setattr(acct, "_SCANNED", {})
    first = acct.account_planned_runs(client, now)
    assert [(a.flow_run_name, a.action) for a in first] == [("old", "accounted"), ("bad", "failed"), ("new", "accounted")]
    assert client.asked == [now - acct.ACCOUNT_WITHIN]
    client.runs = [r for r in client.runs if r.name == "bad"] + [_ended("next", now + pd.Timedelta(minutes=1))]
    later = now + pd.Timedelta(minutes=2)
    second = acct.account_planned_runs(client, later)
    assert client.asked[-1] == now - pd.Timedelta(hours=20)  # back to the run that failed: it is tried again
    assert [(a.flow_run_name, a.action) for a in second] == [("bad", "failed"), ("next", "accounted")]
    client.runs = [r for r in client.runs if r.name != "bad"]
    acct.account_planned_runs(client, later)  # "bad" is still the earliest left: the same window
    assert client.asked[-1] == now - pd.Timedelta(hours=20)
    acct.account_planned_runs(client, later + pd.Timedelta(seconds=30))
    # nothing left behind: back to RESCAN before the latest end read, the server's time (a controller
    # whose clock runs ahead of it would otherwise skip the runs that end just after its pass: review 52b M2)
    assert client.asked[-1] == now + pd.Timedelta(minutes=1) - acct.RESCAN
    acct.account_planned_runs(client, now - pd.Timedelta(days=3))  # an earlier clock (an injected one): the full window
    assert client.asked[-1] == now - pd.Timedelta(days=3) - acct.ACCOUNT_WITHIN
