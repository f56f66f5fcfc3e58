"""Review 36d: ``@care`` under common Prefect patterns, against the session's Prefect test server.

Deployment runs are run in this process, as a worker would run them (``run_flow_sync`` on the
flow run the server holds); a synthetic forecast (dirty now, green two hours later) makes the
trigger defer, and the dispatched run is then run at once. This module uses ``from __future__
import annotations`` on purpose (H1): the flows' parameter types are strings resolved in it.
"""

from __future__ import annotations

import asyncio
import datetime
from decimal import Decimal

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled
from pydantic import BaseModel, SecretStr

from care_flows.orchestration import care
from care_flows.orchestration.checkpoint import current_run
from tests.prefect_queries import artifacts_like, runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

H = pd.Timedelta(hours=1)


class Cfg(BaseModel):
    name: str


def policy(**kw):
    base = dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="8h")
    base.update(kw)
    return base


def _deferring(forecast):
    """(now, signal): 300 g/kWh for two hours from now, then 20: a trigger planned at ``now`` defers by 2 h."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    return now, {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300])}


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _trigger(flow_obj, name, **create):
    dep_id = flow_obj.to_deployment(name=name).apply()
    with get_client(sync_client=True) as client:
        return dep_id, client.create_flow_run_from_deployment(dep_id, **create)


def _others(dep_id, trigger_id):
    with get_client(sync_client=True) as client:
        return [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger_id]


def _artifacts(flow_run_id, key=None):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [a for a in arts if key is None or a.key == key]


def test_h1_future_annotations_types_from_the_users_module_validate_sync_and_async(forecast):
    """H1: with ``from __future__ import annotations`` every run failed ('`BodyModel` is not fully
    defined; you should define `Cfg`'): Prefect resolved the string annotations in the wrapper's
    module. Parameter validation (what every run does first), the schema (deployments) and runs."""
    now, _ = _deferring(forecast)
    run_now = {"eu-south-2": forecast(now, [20.0] * 10)}

    @care(policy=policy(), signal=run_now, clock=lambda: now, planner="window")
    @flow
    def typed(cfg: Cfg, day: datetime.datetime, amount: Decimal, items: list[int] = [1]) -> str:  # noqa: B006
        return f"{type(cfg).__name__} {type(day).__name__} {type(amount).__name__} {items}"

    @care(policy=policy(), signal=run_now, clock=lambda: now, planner="window")
    @flow
    async def typed_async(cfg: Cfg, day: datetime.datetime) -> str:
        return f"{type(cfg).__name__} {type(day).__name__}"

    raw = {"cfg": {"name": "x"}, "day": "2026-11-29T12:00:00+00:00"}
    for f in (typed, typed_async):
        got = f.validate_parameters({**raw, **({"amount": "1.10"} if f is typed else {})})
        assert got["cfg"] == Cfg(name="x") and isinstance(got["day"], datetime.datetime), got
        assert f.parameters.properties["cfg"]["$ref"].endswith("Cfg")  # the deployment's schema
    assert typed(**raw, amount="1.10") == "Cfg datetime Decimal [1]"  # a local run validates too
    assert asyncio.run(typed_async(**raw)) == "Cfg datetime"
    dep_id, trigger = _trigger(typed, "r36d-typed", parameters={**raw, "amount": "1.10"})  # a deployment run
    state = _run_existing(typed, trigger.id)
    assert state.is_completed() and state.result() == "Cfg datetime Decimal [1]", state.message


def test_h2_fn_inside_another_deployed_flow_is_a_plain_call_and_fn_in_a_unit_test_plans_nothing(forecast):
    """H2: ``care_sub.fn(n)`` inside another deployed flow took the parent's run as its own: it
    dispatched a second run of the PARENT's deployment and returned None to the parent. ``.fn``
    outside any run planned and wrote artifacts that belong to no run; ``care`` applied twice
    planned twice."""
    now, fc = _deferring(forecast)

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def care_sub(n: int) -> int:
        return n * 7

    @flow
    def parent(n: int = 3) -> dict:
        return {"fn_returned": care_sub.fn(n)}

    dep_id, trigger = _trigger(parent, "r36d-parent-fn", parameters={"n": 3})
    state = _run_existing(parent, trigger.id)
    assert state.is_completed() and state.result() == {"fn_returned": 21}
    assert _others(dep_id, trigger.id) == []  # nothing dispatched from the parent's deployment
    assert _artifacts(trigger.id) == []  # and nothing planned in the parent's run

    def decisions() -> int:
        with get_client(sync_client=True) as client:
            # every key with care-decision in it (per flow, and the bare kind outside a run)
            return len(artifacts_like(client, "care-decision"))

    before = decisions()
    assert care_sub.fn(2) == 14  # a unit test of the body: no plan, no artifact
    assert decisions() == before

    twice = care(policy(), signal=fc, clock=lambda: now, planner="window")(care_sub)
    state = twice(4, return_state=True)
    assert state.result() == 28
    assert len(_artifacts(state.state_details.flow_run_id, "care-decision-care-sub")) == 1  # planned once, not twice


def test_h3_m1_secret_parameters_reach_the_deferred_run_and_the_trigger_ends_deferred(forecast):
    """H3: a SecretStr parameter reached the deferred run as '**********' (the validated value's
    JSON); M1: the trigger ended plain Completed (result None), so on_completion hooks, waiting
    callers and Completed automations fired before the work ran."""
    now, fc = _deferring(forecast)
    seen: list[str] = []
    hooks: list[tuple[str, str]] = []

    def hook(_flow, flow_run, state):  # type: ignore[no-untyped-def]
        hooks.append((str(flow_run.id), state.name))

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow(on_completion=[hook])
    def secret_etl(password: SecretStr, day: datetime.date = datetime.date(2026, 3, 2)) -> str:
        seen.append(password.get_secret_value())
        return f"ran {day}"

    dep_id, trigger = _trigger(secret_etl, "r36d-secret", parameters={"password": "hunter2", "day": "2026-11-29"})
    state = _run_existing(secret_etl, trigger.id)
    [child] = _others(dep_id, trigger.id)
    assert child.parameters == {"password": "hunter2", "day": "2026-11-29"}, child.parameters
    # the trigger's state says the work was handed over, and to which run
    assert state.is_completed() and state.name == "Deferred" and state.result() is None and seen == []
    start = pd.Timestamp(child.expected_start_time).floor("s").isoformat()  # the start, once (review 36g L3)
    assert str(child.id) in state.message and child.name in state.message and state.message.count(start) == 1, state.message
    assert hooks == [(str(trigger.id), "Deferred")]
    with get_client(sync_client=True) as client:
        as_waiters_see_it = client.read_flow_run(trigger.id)  # what run_deployment(...) returns to a waiting caller
    assert as_waiters_see_it.state.name == "Deferred" and as_waiters_see_it.state.message == state.message
    assert care.dispatched_run(as_waiters_see_it).id == child.id and care.dispatched_run(child.id) is None
    done = _run_existing(secret_etl, child.id)
    assert done.is_completed() and done.name == "Completed" and done.result() == "ran 2026-11-29" and seen == ["hunter2"]
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[trigger.id, child.id])))
    assert not any("hunter2" in log.message for log in logs)


def test_m1_an_async_trigger_ends_deferred_too(forecast):
    now, fc = _deferring(forecast)

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    async def async_etl(n: int = 1) -> int:
        return n

    from prefect.flow_engine import run_flow_async

    dep_id, trigger = _trigger(async_etl, "r36d-async", parameters={"n": 2})
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(trigger.id)
    state = asyncio.run(run_flow_async(async_etl, flow_run=fr, parameters=fr.parameters, return_type="state"))
    [child] = _others(dep_id, trigger.id)
    assert state.is_completed() and state.name == "Deferred" and str(child.id) in state.message, (state.name, state.message)


@care.resumable_task
def _stage(name: str, x: int) -> int:
    return x + 1


def test_h3_m1_a_continuation_gets_the_secret_and_the_paused_run_ends_continued(forecast):
    """H3 on the checkpoint path: the continuation was dispatched with the validated (masked)
    parameters too; M1 there: the paused segment ended plain Completed."""
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    seen: list[str] = []

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window")
    @flow
    def secret_resumable(token: SecretStr, x: int = 1) -> int:
        seen.append(token.get_secret_value())
        assert "s3cr3t" not in repr(current_run())  # the state holds the given JSON, in clear: never in its repr
        a = _stage("r36d-one", x)
        if clock_now[0] < base + H:
            clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        return _stage("r36d-two", a)

    dep_id, trigger = _trigger(secret_resumable, "r36d-secret-ckpt", parameters={"token": "s3cr3t", "x": 5})
    state = _run_existing(secret_resumable, trigger.id)
    [cont] = _others(dep_id, trigger.id)
    assert "care:continuation" in cont.tags and cont.parameters == {"token": "s3cr3t", "x": 5}, cont.parameters
    assert state.is_completed() and state.name == "Continued" and str(cont.id) in state.message, (state.name, state.message)
    clock_now[0] = base + 3 * H
    done = _run_existing(secret_resumable, cont.id)
    assert done.is_completed() and done.result() == 7 and seen == ["s3cr3t", "s3cr3t"]


def test_m2_a_care_subflow_of_a_care_flow_runs_as_part_of_it(forecast):
    """M2: a @care subflow called inside a running @care flow planned again and wrote its own
    decision and care-realized (a second job in care report, its time inside the parent's)."""
    now, fc = _deferring(forecast)

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def inner(n: int) -> int:
        assert current_run() is not None  # the parent's CaRE state: resumable tasks share its root
        return n + 1

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    async def inner_async(n: int) -> int:
        return n + 2

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def outer(n: int = 1) -> list:
        sub = inner(n, return_state=True)
        return [sub.result(), str(sub.state_details.flow_run_id), asyncio.run(inner_async(n))]

    state = outer(5, return_state=True)
    value, sub_id, async_value = state.result()
    assert (value, async_value) == (6, 7)
    assert {a.key for a in _artifacts(state.state_details.flow_run_id)} >= {"care-decision-outer", "care-realized-outer"}
    assert _artifacts(sub_id) == []  # no decision, no realized figures: not a second job


def test_l5_a_care_subflow_of_a_plain_flow_says_it_is_a_subflow_run(forecast, decision_markdown):
    """L5: a @care subflow of a plain flow runs now (it has no deployment of its own), but its log
    and decision called it 'local run' and 'a local call'."""
    now, fc = _deferring(forecast)

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def shifted_sub(n: int) -> int:
        return n

    @flow
    def plain_parent() -> str:
        return str(shifted_sub(1, return_state=True).state_details.flow_run_id)

    md = decision_markdown(plain_parent())
    assert md.startswith("# CaRE decision: subflow run now in eu-south-2; deployed, it would start at "), md[:120]
    assert "a subflow run (no deployment of its own) runs now in eu-south-2" in md


def test_l1_a_retry_plans_to_its_first_attempts_deadline(forecast):
    """L1: each retry planned from its own now, so a retry an hour later had a deadline an hour
    later (and so on for every retry)."""
    real = pd.Timestamp.now(tz="UTC")
    fc = {"eu-south-2": forecast(real.floor("h"), [20.0] * 24)}
    attempts: list[pd.Timestamp] = []

    def clock() -> pd.Timestamp:  # the retry runs an hour after the first attempt (retry_delay_seconds=3600)
        return pd.Timestamp.now(tz="UTC") + (H if attempts else pd.Timedelta(0))

    @care(policy=policy(), signal=fc, clock=clock, planner="window")
    @flow(retries=1, retry_delay_seconds=0)
    def flaky() -> int:
        attempts.append(current_run().plan.deadline)  # type: ignore[union-attr]
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return 42

    assert flaky() == 42 and len(attempts) == 2
    assert abs(attempts[1] - attempts[0]) < pd.Timedelta(minutes=1), attempts  # not an hour later


def test_m3_a_job_that_needed_a_retry_stays_in_saved(forecast):
    """M3: a failed first attempt had no baseline, so a job its retry completed dropped out of
    saved (baseline_g and saved_g null). The attempt's energy was used: it counts in realized
    and, at the run-now-at-home intensity, in the baseline."""
    from care_flows.cli.report import build_report

    real = pd.Timestamp.now(tz="UTC")
    fc = {"eu-south-2": forecast(real.floor("h"), [100.0] * 24)}
    calls: list[int] = []

    @care(policy=policy(expected_duration="1m"), signal=fc, planner="window")
    @flow(name="r36d-retried", retries=1, retry_delay_seconds=0)
    def retried() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return 42

    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)
    assert retried() == 42
    row = build_report(start, pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1), flows=["r36d-retried"])["flows"][0]
    assert (row["jobs"], row["segments"], row["segments_failed"], row["segments_completed"]) == (1, 2, 1, 1), row
    assert row["realized_g"]["jobs"] == 1 and row["baseline_g"]["jobs"] == 1 and row["saved_g"]["jobs"] == 1, row
    assert row["baseline_g"]["value"] is not None and row["baseline_g"]["value"] > 0
