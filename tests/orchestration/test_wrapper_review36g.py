"""Review 36g: the ``@care`` wrapper (b4df93b) under Prefect patterns, against the session's Prefect
test server. Deployment runs are run in this process, as a worker would run them (helpers of
review 36d's tests)."""

from __future__ import annotations

import datetime
import re

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled
from pydantic import SecretStr

from care_flows.errors import ConfigError
from care_flows.orchestration import care
from care_flows.orchestration.checkpoint import current_run

from tests.orchestration.test_prefect_patterns_review36d import H, _deferring, _others, _run_existing, _stage, _trigger, policy

pytestmark = pytest.mark.usefixtures("prefect_harness")
M = pd.Timedelta(minutes=1)


def _flat(forecast):
    return {"eu-south-2": forecast(pd.Timestamp.now(tz="UTC").floor("h"), [100.0] * 24)}


def test_m1_a_late_run_retries_to_its_first_attempts_deadline(forecast):
    """M1: a run picked up 6 minutes after its scheduled start (deadline_within 5 min) planned its
    first attempt to now + 5 min, but its retry to scheduled start + 5 min, already past: the retry
    could not plan (no plan, no realized figures)."""
    deadlines: list = []

    @care(policy=policy(expected_duration="1m", deadline_within="5m"), signal=_flat(forecast), planner="window")
    @flow(name="r36g-late", retries=1, retry_delay_seconds=0)
    def late() -> int:
        plan = current_run().plan  # type: ignore[union-attr]
        deadlines.append(plan.deadline if plan is not None else None)
        if len(deadlines) == 1:
            raise RuntimeError("first attempt fails")
        return 42

    from prefect.flow_engine import run_flow_sync

    dep_id = late.to_deployment(name="r36g-late").apply()
    with get_client(sync_client=True) as client:
        fr = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=(pd.Timestamp.now(tz="UTC") - 6 * M).to_pydatetime()))
        fr = client.read_flow_run(fr.id)
    state = run_flow_sync(late, flow_run=fr, parameters=fr.parameters, return_type="state")
    assert state.is_completed() and state.result() == 42 and len(deadlines) == 2
    assert deadlines[1] is not None, "the retry could not plan"
    assert abs(deadlines[1] - deadlines[0]) < pd.Timedelta(seconds=5), deadlines


def test_m1_a_retry_past_its_first_attempts_deadline_runs_now_at_home_and_stays_in_saved(forecast):
    """M1: a retry after the first attempt's deadline had no plan: its realized figures were empty
    and the job dropped out of saved. Now it plans "run now at home" (expected = baseline)."""
    from care_flows.cli.report import build_report

    plans: list = []

    def clock() -> pd.Timestamp:  # the retry runs 6 minutes after the first attempt (deadline_within 5 min)
        return pd.Timestamp.now(tz="UTC") + (6 * M if plans else pd.Timedelta(0))

    @care(policy=policy(expected_duration="1m", deadline_within="5m"), signal=_flat(forecast), clock=clock, planner="window")
    @flow(name="r36g-overdue", retries=1, retry_delay_seconds=0)
    def overdue() -> int:
        plans.append(current_run().plan)  # type: ignore[union-attr]
        if len(plans) == 1:
            raise RuntimeError("first attempt fails")
        return 42

    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)
    assert overdue() == 42 and len(plans) == 2
    first, retry = plans
    assert retry is not None, "the retry had no plan"
    assert retry.now_here and retry.region == "eu-south-2" and retry.expected_g == retry.baseline_g
    assert abs(retry.deadline - first.deadline) < pd.Timedelta(seconds=5), (first.deadline, retry.deadline)
    row = build_report(start, pd.Timestamp.now(tz="UTC") + H, flows=["r36g-overdue"])["flows"][0]
    assert row["jobs"] == 1 and row["realized_g"]["jobs"] == 1 and row["saved_g"]["jobs"] == 1, row


def test_m2_dispatched_run_follows_continued_runs_to_the_run_that_finished(forecast):
    """M2: ``care.dispatched_run`` looked up ``care-<run id>`` only, so for a run that ended
    Continued it returned None and the documented waiting caller went on with no result."""
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 30, 400, 400, 400, 400])}
    clock_now = [base]

    @care(policy=policy(interruptible=True, expected_duration="3h"), signal=fc, clock=lambda: clock_now[0], planner="window")
    @flow(name="r36g-chain")
    def chain(x: int = 1) -> int:
        a = _stage("r36g-one", x)
        clock_now[0] += 70 * M  # each green slot is over by the checkpoint
        care.checkpoint()
        b = _stage("r36g-two", a)
        clock_now[0] += 70 * M
        care.checkpoint()
        return _stage("r36g-three", b)

    dep_id, trigger = _trigger(chain, "r36g-chain", parameters={"x": 5})
    state = _run_existing(chain, trigger.id)
    assert state.name == "Continued", (state.name, state.message)
    steps, run = [], trigger
    with get_client(sync_client=True) as client:
        while (run := client.read_flow_run(run.id)).state.name in ("Deferred", "Continued"):  # the docs' loop
            steps.append(run.state.name)
            nxt = care.dispatched_run(run)
            assert nxt is not None, steps
            clock_now[0] = pd.Timestamp(nxt.expected_start_time).tz_convert("UTC")
            last = _run_existing(chain, nxt.id)
            run = nxt
    assert steps == ["Continued", "Continued"] and run.state.name == "Completed", (steps, run.state.name)
    assert last.result() == 8 and "care:continuation" in run.tags
    assert len(_others(dep_id, trigger.id)) == 2


def test_m3_a_dispatched_run_keeps_the_functions_defaults_not_the_target_deployments(forecast):
    """M3: a dispatched run got only the trigger's JSON, so a parameter the trigger was not given
    took the TARGET deployment's default ('other-default') instead of the function's."""
    now, fc = _deferring(forecast)
    seen: list = []

    @care(policy=policy(targets={"eu-south-2": {"deployment": "r36g-other"}}), signal=fc, clock=lambda: now, planner="window")
    @flow(name="r36g-target")
    def target_flow(token: SecretStr, label: str = "fn-default", day: datetime.date = datetime.date(2026, 3, 2),
                    key: SecretStr = SecretStr("fn-secret"), n: int = 1) -> str:
        seen.append((token.get_secret_value(), key.get_secret_value()))
        return f"{label} {day} {n}"

    other = target_flow.to_deployment(name="r36g-other", parameters={"label": "other-default", "n": 9}).apply()
    dep_id, trigger = _trigger(target_flow, "r36g-main", parameters={"token": "s3cr3t", "n": 2})
    state = _run_existing(target_flow, trigger.id)
    [child] = _others(other, trigger.id)
    # raw JSON wins (the secret in clear); the rest as validated (the function's defaults); a secret default is not sent masked
    assert child.parameters == {"token": "s3cr3t", "n": 2, "label": "fn-default", "day": "2026-03-02"}, child.parameters
    assert state.name == "Deferred"
    done = _run_existing(target_flow, child.id)
    assert done.result() == "fn-default 2026-03-02 2" and seen == [("s3cr3t", "fn-secret")]


def test_l3_the_deferred_message_gives_the_start_once_in_whole_seconds(forecast):
    """L3: 'deferred to <start> ... scheduled for <start with microseconds>'."""
    now, fc = _deferring(forecast)

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow(name="r36g-deferred")
    def deferred(n: int = 1) -> int:
        return n

    dep_id, trigger = _trigger(deferred, "r36g-deferred")
    state = _run_existing(deferred, trigger.id)
    [child] = _others(dep_id, trigger.id)
    start = pd.Timestamp(child.expected_start_time).floor("s").isoformat()
    assert state.name == "Deferred" and state.message.count(start) == 1 and child.name in state.message, state.message
    assert "scheduled for" not in state.message and not re.search(r"\d:\d\d\.\d", state.message), state.message


def test_l1_a_classmethod_flow_binds_cls(forecast):
    """L1: ``with_options()`` in ``_apply`` dropped Prefect's class-method flag, so ``Jobs.cm(3)``
    raised ParameterBindError (missing 'n')."""
    fc = _flat(forecast)

    class PJobs:
        @care(policy=policy(), signal=fc, planner="window")
        @flow
        @classmethod
        def cm(cls, n: int) -> str:
            from care_flows.orchestration.checkpoint import current_run

            return f"{cls.__name__}:{n}:{'planned' if current_run() is not None else 'plain'}"  # CaRE ran it, not a plain call

    assert PJobs.cm(3) == "PJobs:3:planned" and PJobs.cm.isclassmethod


def test_l2_a_generator_flow_is_rejected_when_decorated():
    """L2: a generator flow under ``@care`` returned None (its body ran after the segment ended)."""
    with pytest.raises(ConfigError, match=r"@care cannot wrap generator flow 'gen'.*return a list instead"):

        @care(policy=policy())
        @flow
        def gen(n: int):
            yield from range(n)

    with pytest.raises(ConfigError, match=r"@care cannot wrap generator flow 'agen'"):

        @care(policy=policy())
        @flow
        async def agen(n: int):
            yield n
