"""Review 52a of the controller's accounting of planned runs (care_flows/orchestration/account_planned.py):
H1 a @care run that handed its work on (ended Deferred) was accounted as a completed segment with
the replaced plan's expected figures; M1 a capacity fallback was accounted in the planned region;
M2 a run retried by hand was never accounted again; L1 Prefect's retries were one window from the
first start; M3 a page shift repeated a run; M4 runs that always fail took the pass's budget."""

from __future__ import annotations

import time
import types
import uuid

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.flow_engine import run_flow_sync
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import parse_realized
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.report import build_report
from tests.orchestration.test_start_check import _dispatched, _others, _policy, _run_existing

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)
TRIES: list[int] = []
BROKEN = {"fail": True}


@flow(name="r52a-flaky", retries=1, retry_delay_seconds=3)
def flaky() -> str:
    TRIES.append(1)
    time.sleep(1.0)
    if len(TRIES) == 1:
        raise RuntimeError("the first try fails")
    return "ok"


@flow(name="r52a-once-broken")
def once_broken() -> str:
    time.sleep(1.0)
    if BROKEN["fail"]:
        raise RuntimeError("the warehouse is down")
    return "ok"


@flow(name="r52a-plain")
def plain() -> str:
    time.sleep(0.5)
    return "ok"


def _realized(client, run_id) -> list[dict]:
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return sorted((parse_realized(a.data) for a in arts if a.key and a.key.startswith("care-realized")), key=lambda f: f["started"])


def _mine(actions, run_id) -> list:
    return [a for a in actions if a.flow_run_id == str(run_id)]


def _planned(client, flow_obj, fc):
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name="r52a-ec2", type="care-ec2"))
    except ObjectAlreadyExists:
        pass
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1", "eu-west-3"], "expected_duration": "1h",
                            "deadline_within": "8h"}).save("r52a-policy", overwrite=True)
    dep = flow_obj.to_deployment(name="cron", tags=["care", "care-policy:r52a-policy"], work_pool_name="r52a-ec2").apply()
    run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=(pd.Timestamp.now(tz="UTC").ceil("h") + H).to_pydatetime()))
    assert [a.action for a in _mine(control_once(client, signal=fc, account=False), run.id)] in (["moved"], ["kept"])
    client.set_flow_run_state(run.id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)  # its time came
    return run


def test_retries_fallbacks_and_retries_by_hand_are_accounted_as_their_attempts(forecast):
    now = pd.Timestamp.now(tz="UTC")
    fc = {r: forecast(now.floor("h") - 3 * H, [v] * 40) for r, v in (("eu-south-2", 300.0), ("eu-north-1", 20.0), ("eu-west-3", 60.0))}
    with get_client(sync_client=True) as client:
        retried = _planned(client, flaky, fc)
        assert run_flow_sync(flaky, flow_run=client.read_flow_run(retried.id), return_type="state").is_completed()
        by_hand = _planned(client, once_broken, fc)
        assert run_flow_sync(once_broken, flow_run=client.read_flow_run(by_hand.id), return_type="state").is_failed()
        fell_back = _planned(client, plain, fc)
        assert client.read_flow_run(fell_back.id).job_variables["region"] == "eu-north-1"
        # the care-ec2 worker reports the instance it launched: after a capacity fallback, in another region
        client.update_flow_run(fell_back.id, infrastructure_pid="eu-west-3:i-0123456789abcdef0")
        assert run_flow_sync(plain, flow_run=client.read_flow_run(fell_back.id), return_type="state").is_completed()

        first = control_once(client, signal=fc)
        # L1: Prefect's retry is two attempts, each over its own Running interval, the wait between them not counted
        tries = _realized(client, retried.id)
        assert [f["outcome"] for f in tries] == ["failed", "completed"] and [a.action for a in _mine(first, retried.id)] == ["accounted"] * 2
        assert tries[1]["started"] - tries[0]["finished"] >= pd.Timedelta(seconds=2.5)
        assert all(0.9 < f["duration_s"] < 5 for f in tries) and all(f["recorded_by"] == "care controller" for f in tries)
        # M1: accounted where it ran, at that region's intensity, on the plan's type priced there
        [moved] = _realized(client, fell_back.id)
        assert moved["region"] == "eu-west-3" and moved["realized_g_per_kwh"] == pytest.approx(60.0) and moved["realized_kwh"] > 0
        assert _mine(first, fell_back.id)[0].region == "eu-west-3"

        # M2: the UI's Retry runs the same flow run again; its new attempt is accounted on the next pass, once
        assert [f["outcome"] for f in _realized(client, by_hand.id)] == ["failed"]
        BROKEN["fail"] = False
        client.set_flow_run_state(by_hand.id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        assert run_flow_sync(once_broken, flow_run=client.read_flow_run(by_hand.id), return_type="state").is_completed()
        second = control_once(client, signal=fc)
        assert [a.action for a in _mine(second, by_hand.id)] == ["accounted"] and _mine(second, retried.id) == []
        assert [f["outcome"] for f in _realized(client, by_hand.id)] == ["failed", "completed"]
        assert _mine(control_once(client, signal=fc), by_hand.id) == []
    [row] = build_report(now - H, pd.Timestamp.now(tz="UTC") + H, flows=["r52a-once-broken"])["flows"]
    assert (row["jobs"], row["segments_completed"], row["segments_failed"]) == (1, 1, 1) and row["saved_g"]["value"] > 0


def test_a_care_run_that_handed_its_work_on_at_start_is_not_accounted_again(forecast):
    """H1: the run that did the work publishes its own figures; the Deferred one ran no body."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now - 3 * H, [300] * 3 + [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow(name="r52a-checked-etl")
    def checked_etl(day: str = "x") -> str:
        return f"done {day}"

    dep_id, trigger, state, child = _dispatched(checked_etl, "r52a-start-check")
    clock[0] = now + 2 * H
    signal["eu-south-2"] = forecast(now - 3 * H, [300] * 3 + [300, 300, 120, 110, 30, 300, 300, 300, 300])
    assert _run_existing(checked_etl, child.id).name == "Deferred"  # a greener start at its check: handed on
    (later,) = _others(dep_id, trigger.id, child.id)
    clock[0] = now + 4 * H
    assert _run_existing(checked_etl, later.id).is_completed()
    with get_client(sync_client=True) as client:
        actions = control_once(client, signal=signal)
        assert _mine(actions, child.id) == [] and _mine(actions, later.id) == [] and not [x for x in actions if x.action == "failed" and x.flow_run_id == "-"]
        assert client.read_flow_run(child.id).total_run_time.total_seconds() > 0  # it did run (its check at start)
        assert _realized(client, child.id) == [] and len(_realized(client, later.id)) == 1
    [row] = build_report(now - 6 * H, pd.Timestamp.now(tz="UTC") + H, flows=["r52a-checked-etl"])["flows"]
    assert (row["jobs"], row["segments"]) == (1, 1)


class _Pages:
    """Ended planned runs read two per page; a run that ended meanwhile shifts the second page."""

    api_url = "http://127.0.0.1:1/r52a-pages"

    def __init__(self, pages, runs):
        self.pages, self.runs, self.made = pages, runs, []

    def read_flow_runs(self, offset=0, **_):
        return self.pages[offset // 2] if offset // 2 < len(self.pages) else []

    def read_artifacts(self, **_):
        return []

    def read_flow_run_states(self, run_id):
        run = self.runs[run_id]
        state = lambda kind, at: types.SimpleNamespace(type=types.SimpleNamespace(value=kind), name=kind.title(), timestamp=at)  # noqa: E731
        return [state("RUNNING", run.start_time), state("COMPLETED", run.end_time)]


def _run(name, end, plan=None):
    import datetime as dt

    return types.SimpleNamespace(id=uuid.uuid4(), name=name, deployment_id=None, flow_id=None, end_time=end, start_time=end - pd.Timedelta(minutes=5),
                                 total_run_time=dt.timedelta(minutes=5), state=types.SimpleNamespace(name="Completed"),
                                 job_variables={"care": {"plan": plan or {}}}, infrastructure_pid=None)


def test_a_repeated_row_is_accounted_once_and_unreadable_plans_take_no_budget(monkeypatch, t0):
    """M3: a page shifted by a run that ended meanwhile repeats a row; M4: 50 runs whose marker
    cannot be read (every pass would fail them) no longer keep a good run from being accounted."""
    import care_flows.orchestration.account_planned as acct
    from care_flows.orchestration.plan import Plan

    good = Plan("eu-north-1", t0, t0 + H, t0, t0 + 8 * H, "eu-south-2", False).to_dict()
    end = pd.Timestamp("2031-02-01T12:00:00Z")
    a, b, c = (_run(n, end - pd.Timedelta(minutes=m), good) for n, m in (("a", 3), ("b", 2), ("c", 1)))
    bad = [_run(f"bad-{i}", end - pd.Timedelta(hours=2), {"region": "eu-north-1"}) for i in range(50)]
    pages = [bad[i:i + 2] for i in range(0, 50, 2)] + [[c, b], [b, a]]
    client = _Pages(pages, {r.id: r for r in [a, b, c, *bad]})
    seen = []
    monkeypatch.setattr(acct, "_account", lambda _c, run, attempt, _s, _n: seen.append(run.name) or {"region": "eu-north-1"})
    monkeypatch.setattr(acct, "_SCANNED", {})
    monkeypatch.setattr("care_flows.orchestration.controller._page_size", lambda: 2)
    actions = acct.account_planned_runs(client, end)
    assert sorted(seen) == ["a", "b", "c"] and [x.action for x in actions] == ["accounted"] * 3


def test_a_care_job_variable_that_is_not_a_mapping_is_skipped_not_a_failed_read():
    """Review 52b M3: one run with ``care: "yes"`` raised in the check and stopped all accounting."""
    import care_flows.orchestration.account_planned as acct

    odd = _run("odd", pd.Timestamp("2031-02-01T12:00:00Z"))
    odd.job_variables = {"care": "yes"}
    assert acct._readable_plan(odd) is False
