"""@care flows under ONE session-scoped prefect_test_harness: local mode, deferral, dispatch, checkpoints."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from prefect import flow
from prefect.states import Scheduled

from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key
from care_flows.orchestration.dispatch import PLANNED_TAG, dispatch_run
from tests.prefect_queries import runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

H = pd.Timedelta(hours=1)
BODY_CALLS: list[str] = []
TASK_CALLS: dict[str, int] = {}


def policy(**kw):
    base = dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="8h")
    base.update(kw)
    return base


def _artifacts(client, flow_run_id):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def _kinds(client, flow_run_id) -> dict:
    """The run's CaRE artifacts by kind (``care-decision``, ...): their keys name the run's flow."""
    flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name
    by_key: dict = {}
    for a in _artifacts(client, flow_run_id):
        by_key.setdefault(a.key, a)
    kinds = ("care-decision", "care-options", "care-realized", "care-continued")
    return {kind: by_key[artifact_key(kind, flow_name)] for kind in kinds if artifact_key(kind, flow_name) in by_key}


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def test_local_run_plans_records_and_runs_now(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=policy(), signal=fc, clock=lambda: t0, planner="window")
    @flow
    def local_etl(n: int = 3) -> int:
        BODY_CALLS.append("local")
        return n * 2

    state = local_etl(4, return_state=True)
    assert state.is_completed() and state.result() == 8
    from prefect import get_client

    with get_client(sync_client=True) as client:
        keys = {a.key for a in _artifacts(client, state.state_details.flow_run_id)}
    # per flow: the Prefect UI's Artifacts page keeps this flow's history under its own keys
    assert {"care-decision-local-etl", "care-options-local-etl", "care-realized-local-etl"} <= keys, keys


def test_signature_survives_and_bare_use(forecast, t0):
    @flow
    def raw(a: int, b: str = "x") -> str:
        return f"{a}{b}"

    wrapped = care(policy(), signal={"eu-south-2": forecast(t0, [1.0] * 10)}, clock=lambda: t0, planner="window")(raw)
    assert list(wrapped.parameters.properties) == ["a", "b"] and wrapped.name == "raw"
    assert wrapped(1, b="y") == "1y"
    assert hasattr(wrapped, "to_deployment") and callable(care.checkpoint)


def test_planning_failure_runs_now_with_a_warning(t0):
    @care(policy=policy(), signal={}, clock=lambda: t0, planner="window")
    @flow
    def no_data() -> str:
        return "ran"

    assert no_data() == "ran"


def _deploy(flow_obj, name: str):
    return flow_obj.to_deployment(name=name).apply()


def test_deployment_trigger_defers_by_dispatch_and_planned_run_executes_body(forecast, t0):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300])}
    BODY_CALLS.clear()

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def deferred_etl(day: str = "2026-03-02") -> str:
        BODY_CALLS.append(day)
        return f"done {day}"

    from prefect import get_client

    dep_id = _deploy(deferred_etl, "harness")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"day": "d1"})
    state = _run_existing(deferred_etl, trigger.id)
    assert state.is_completed() and BODY_CALLS == []  # ended at once, the body did not run
    with get_client(sync_client=True) as client:
        runs = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
        assert len(runs) == 1
        child = runs[0]
        assert child.state.is_scheduled() and pd.Timestamp(child.expected_start_time) == now + 2 * H
        assert PLANNED_TAG in child.tags and child.parameters == {"day": "d1"}
        assert child.job_variables["region"] == "eu-south-2" and child.job_variables["care"]["segment"] == 0
        md = _kinds(client, trigger.id)["care-decision"]
        assert str(child.id) in md.data and "deferred to" in md.data
        # a retried dispatch (same idempotency key) returns the same run, never a second one
        again = dispatch_run(deployment=dep_id, parameters={"day": "d1"}, scheduled_time=now + 2 * H, job_variables={}, tags=[], idempotency_key=f"care-{trigger.id}")
        assert again.id == child.id
    state = _run_existing(deferred_etl, child.id)
    assert state.is_completed() and state.result() == "done d1" and BODY_CALLS == ["d1"]
    with get_client(sync_client=True) as client:
        arts = _kinds(client, child.id)
    assert "care-realized" in arts and "care-decision" not in arts  # no re-planning
    # the injected clock says it ran at `now` (300 g/kWh there), not in the window it was planned for
    assert "**realized_g_per_kwh**: 300.0" in arts["care-realized"].data and "cpu_vcpu_peak" in arts["care-realized"].data


@care.resumable_task
def stage(name: str, x: int) -> int:
    TASK_CALLS[name] = TASK_CALLS.get(name, 0) + 1
    return x + 1


def test_checkpoint_continues_at_next_green_segment_without_recomputing(forecast):
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    TASK_CALLS.clear()
    planned_work: list[object] = []

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window")
    @flow
    def resumable(x: int = 1) -> int:
        from care_flows.orchestration.checkpoint import current_run

        planned_work.append(current_run().policy.expected_duration)  # type: ignore[union-attr]
        a = stage("one", x)
        if clock_now[0] < base + H:
            clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        b = stage("two", a)
        care.checkpoint()
        return stage("three", b)

    from prefect import get_client

    dep_id = _deploy(resumable, "harness-ckpt")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    state = _run_existing(resumable, trigger.id)
    assert state.is_completed() and TASK_CALLS == {"one": 1}
    with get_client(sync_client=True) as client:
        runs = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
        assert len(runs) == 1 and "care:continuation" in runs[0].tags
        assert pd.Timestamp(runs[0].expected_start_time) == base + 3 * H
        assert "care-continued" in _kinds(client, trigger.id)
    # runs recorded meanwhile must not change the work the continuation was planned for (review 16 #3)
    from care_flows.usage_capture import RunRecord, UsageStore

    for i in range(3):
        UsageStore().append_run("resumable", RunRecord(f"short-{i}", base + i * H, 60.0))
    clock_now[0] = base + 3 * H
    state = _run_existing(resumable, runs[0].id)
    assert state.is_completed() and state.result() == 8
    assert TASK_CALLS == {"one": 1, "two": 1, "three": 1}
    assert [pd.Timedelta(w) for w in planned_work] == [2 * H, 2 * H]  # the plan's work, not the 1 minute the history now says


def test_a_continuation_keeps_the_trigger_runs_env_under_the_targets(forecast):
    """A continuation carries the env the trigger run was created with (a secret, a stage) and the
    target's env on top, as a deferral does; before, only a unit test of the merge covered it."""
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    target = {"eu-south-2": {"job_variables": {"env": {"STAGE": "prod", "REGION_NOTE": "es"}}}}

    @care(policy=policy(interruptible=True, targets=target), signal=fc, clock=lambda: clock_now[0], planner="window")
    @flow
    def resumable_env(x: int = 1) -> int:
        a = stage("env-one", x)
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        return stage("env-two", a)

    from prefect import get_client

    dep_id = _deploy(resumable_env, "harness-ckpt-env")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(
            dep_id, parameters={"x": 5}, job_variables={"env": {"API_TOKEN": "tok-1", "STAGE": "dev"}})
    state = _run_existing(resumable_env, trigger.id)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        [cont] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    assert "care:continuation" in cont.tags and cont.job_variables["care"]["segment"] == 1
    # the run's own env kept, the target's wins where both set a variable
    assert cont.job_variables["env"] == {"API_TOKEN": "tok-1", "STAGE": "prod", "REGION_NOTE": "es"}, cont.job_variables


def test_a_later_separate_run_recomputes_its_resumable_tasks():
    """Review 11 #2: results are shared by the segments of one run (same root), not by tomorrow's run
    of the same flow with the same parameters, which must read tomorrow's data."""
    calls: list[str] = []

    @care.resumable_task
    def load_latest(uri: str) -> int:
        calls.append(uri)
        return len(calls)

    @care(policy=policy(interruptible=True), planner=lambda policy, now, signal=None: None, sample_usage=False)
    @flow
    def nightly_latest(uri: str = "s3://bucket/latest.parquet") -> int:
        value = load_latest(uri)
        care.checkpoint()
        return value

    assert (nightly_latest(), nightly_latest(), len(calls)) == (1, 2, 2)


def test_region_move_dispatches_to_that_regions_pool(forecast):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}
    pol = policy(regions=["eu-south-2", "eu-north-1"], targets={"eu-north-1": {"work_pool": "care-eu-north-1", "job_variables": {"subnet_id": "subnet-n"}}})

    @care(policy=pol, signal=fc, clock=lambda: now, planner="window")
    @flow(name="moving-etl")
    def moving_etl(n: int = 1) -> int:
        BODY_CALLS.append("moving")
        return n

    with get_client(sync_client=True) as client:
        for pool in ("care-eu-south-2", "care-eu-north-1"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    home = moving_etl.to_deployment(name="home", work_pool_name="care-eu-south-2").apply()
    north = moving_etl.to_deployment(name="north", work_pool_name="care-eu-north-1").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(home, parameters={"n": 3})
    BODY_CALLS.clear()
    state = _run_existing(moving_etl, trigger.id)
    assert state.is_completed() and BODY_CALLS == []
    with get_client(sync_client=True) as client:
        moved = [r for r in runs_of(client, north) if r.deployment_id == north]
    assert len(moved) == 1 and moved[0].parameters == {"n": 3}
    assert moved[0].job_variables["region"] == "eu-north-1" and moved[0].job_variables["subnet_id"] == "subnet-n"
    assert "care:region:eu-north-1" in moved[0].tags
    with get_client(sync_client=True) as client:  # a move that starts now is not called a deferral
        md = _kinds(client, trigger.id)["care-decision"]
    assert md.data.startswith("# CaRE decision: moved to eu-north-1, starting now"), md.data[:120]
    # no worker polls the Swedish pool here: the decision says so instead of leaving the run to go Late quietly
    assert "warning: work pool care-eu-north-1 has no online worker: the run waits there until one starts" in md.data


def test_a_move_to_a_region_without_a_deployment_runs_now_at_home(forecast):
    """Review 14: the trigger failed ('no deployment of flow ... in work pool care-eu-north-1'), so the
    nightly work never ran; it now runs at home with that reason as a warning and a note."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}
    pol = policy(regions=["eu-south-2", "eu-north-1"], targets={"eu-north-1": {"work_pool": "care-solo-north"}})

    @care(policy=pol, signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="solo-etl")
    def solo_etl(n: int = 1) -> int:
        BODY_CALLS.append("solo")
        return n

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="care-solo-south", type="process"), overwrite=True)
    home = solo_etl.to_deployment(name="home", work_pool_name="care-solo-south").apply()  # none in care-solo-north
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(home, parameters={"n": 4})
    BODY_CALLS.clear()
    state = _run_existing(solo_etl, trigger.id)
    assert state.is_completed() and state.result() == 4 and BODY_CALLS == ["solo"]
    with get_client(sync_client=True) as client:
        note = _kinds(client, trigger.id)["care-decision"]
    assert note.data.startswith("# CaRE decision: run now (cannot dispatch)") and "care-solo-north" in note.data


def test_async_flow_is_supported(forecast, t0):
    @care(policy=policy(), signal={"eu-south-2": forecast(t0, [5.0] * 10)}, clock=lambda: t0, planner="window")
    @flow
    async def async_etl(x: int = 2) -> int:
        care.checkpoint()
        return x + 1

    import asyncio

    state = asyncio.run(async_etl(4, return_state=True))
    result = state.result()
    assert (asyncio.run(result) if asyncio.iscoroutine(result) else result) == 5
    from prefect import get_client

    with get_client(sync_client=True) as client:
        keys = set(_kinds(client, state.state_details.flow_run_id))
    assert {"care-decision", "care-options", "care-realized"} <= keys


def test_a_policy_block_name_that_does_not_exist_is_a_config_error_naming_it():
    from care_flows.errors import ConfigError
    from care_flows.orchestration.decorator import resolve_policy

    with pytest.raises(ConfigError, match=r"no CarePolicyBlock named 'no-such-policy'; create it .* or fix the policy name given to @care"):
        resolve_policy("no-such-policy")


def test_a_targets_block_name_that_does_not_exist_is_a_config_error_naming_it():
    """Review 14: a mistyped targets block ('EU' for 'eu') was a raw Prefect ValueError after a 404 traceback."""
    from care_flows.errors import ConfigError
    from care_flows.orchestration.decorator import resolve_policy

    with pytest.raises(ConfigError, match=r"no RegionTargets named 'EU'; create it .* or fix the targets name given to @care"):
        resolve_policy({"home_region": "eu-south-2"}, targets="EU")


@pytest.mark.parametrize("home, other", [("eu-south-2", "us-east-1"), ("us-east-1", "eu-north-1")])
def test_a_region_the_carbon_source_does_not_cover_never_fails_the_run(home, other, caplog):
    from care_flows.orchestration.plan import fetch_forecasts
    from care_flows.policy import CarePolicy

    pol = CarePolicy(home_region=home, regions=[other], deadline_within="6h", expected_duration="1h")
    now = pd.Timestamp("2023-06-01T08:00Z")
    with caplog.at_level("WARNING", logger="care_flows.orchestration"):
        got = fetch_forecasts(pol, now, pd.Timedelta("6h"))  # the embedded traces: no US zone
    assert set(got) == {r for r in (home, other) if not r.startswith("us-")}
    assert "no carbon forecast for us-east-1" in caplog.text

    @care(policy=pol, clock=lambda: now)
    @flow
    def covered_or_not() -> str:
        return "ran"

    assert covered_or_not() == "ran"  # us-east-1 is infeasible ("no carbon data"), or the home lacks a baseline: run now


def test_a_planned_run_accounts_where_the_worker_launched_it(forecast, monkeypatch):
    """Review 35d M5: after a capacity fallback the worker launched in another region than planned; the
    instance's user data says so (CARE_REGION), and the run's realized figures are for that region."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300]),
          "eu-north-1": forecast(now, [25.0] * 10)}

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def fell_back() -> str:
        return "ran"

    from prefect import get_client

    dep_id = _deploy(fell_back, "harness-fallback")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(fell_back, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    assert child.job_variables["region"] == "eu-south-2"
    monkeypatch.setenv("CARE_REGION", "eu-north-1")  # what the user data of the fallback instance exports
    assert _run_existing(fell_back, child.id).is_completed()
    with get_client(sync_client=True) as client:
        realized = _kinds(client, child.id)["care-realized"].data
    assert "**region**: eu-north-1" in realized and "**realized_g_per_kwh**: 25.0" in realized, realized


def test_a_retried_trigger_whose_dispatch_answer_was_lost_does_not_run_the_work_again(forecast):
    """Review 35e H1: the first attempt's dispatch reached the server but its answer was lost; the retry
    planned again, landed inside the chosen window, ran the body itself, and the planned run ran too."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [20, 20, 300, 300, 300, 300, 300, 300, 300, 300])}  # green now: a fresh plan runs here
    BODY_CALLS.clear()

    @care(policy=policy(), signal=fc, clock=lambda: now, planner="window")
    @flow
    def lost_answer(day: str = "d") -> str:
        BODY_CALLS.append(day)
        return day

    from prefect import get_client

    dep_id = _deploy(lost_answer, "harness-lost-answer")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"day": "d9"})
    # what the first attempt left on the server: its planned run, keyed by the trigger
    earlier = dispatch_run(deployment=dep_id, parameters={"day": "d9"}, scheduled_time=now + H, job_variables={}, tags=[PLANNED_TAG],
                           idempotency_key=f"care-{trigger.id}")
    state = _run_existing(lost_answer, trigger.id)
    assert state.is_completed() and BODY_CALLS == []  # before: ['d9'], and the planned run would run it again
    with get_client(sync_client=True) as client:
        others = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
        assert [r.id for r in others] == [earlier.id]
        notes = [a for a in _artifacts(client, trigger.id) if "already dispatched" in (a.data or "")]
    assert notes and str(earlier.id) in notes[0].data


def test_a_checkpoint_whose_continuation_cannot_be_dispatched_runs_on_to_the_end(forecast):
    """Review 35e M1: the deployment was deleted during the run; the checkpoint's dispatch raised
    ObjectNotFound into the flow and failed it after one task, where "the deadline wins: run on" was promised."""
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    done: list[str] = []
    from prefect import get_client

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow
    def deleted_under_it(x: int = 1) -> int:
        done.append("one")
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        with get_client(sync_client=True) as c:
            c.delete_deployment(dep_id)  # the operator removes the deployment while the run runs
        care.checkpoint()
        done.append("two")
        care.checkpoint()  # not tried again
        return x + 1

    dep_id = _deploy(deleted_under_it, "harness-deleted")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    state = _run_existing(deleted_under_it, trigger.id)
    assert state.is_completed() and state.result() == 6 and done == ["one", "two"], state


def test_a_target_naming_a_missing_deployment_runs_now_instead_of_failing_every_trigger(forecast):
    """Review 35e M2: targets[r].deployment naming no deployment failed each trigger with '...: None'; the
    documented 'run now (cannot dispatch)' held only for work_pool targets."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300] * 10), "eu-north-1": forecast(now, [20] * 10)}
    BODY_CALLS.clear()

    @care(policy=policy(regions=["eu-south-2", "eu-north-1"], targets={"eu-north-1": {"deployment": "no-such-deployment"}}),
          signal=fc, clock=lambda: now, planner="window")
    @flow
    def typo_target(day: str = "d") -> str:
        BODY_CALLS.append(day)
        return day

    from prefect import get_client

    dep_id = _deploy(typo_target, "harness-typo-target")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"day": "d3"})
    state = _run_existing(typo_target, trigger.id)
    assert state.is_completed() and BODY_CALLS == ["d3"], state
    with get_client(sync_client=True) as client:
        note = [a for a in _artifacts(client, trigger.id) if "cannot dispatch" in (a.data or "")][0].data
    assert "'typo-target/no-such-deployment'" in note and "not found" in note, note


def test_a_planned_run_picked_up_after_its_deadline_says_so(forecast, caplog):
    """Review 35e L1: a deferred run a worker started after its deadline ran with no word in the log or
    the realized figures."""
    import logging

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300, 300, 300])}
    clock_now = [now]

    @care(policy=policy(), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow
    def picked_up_late() -> str:
        return "ran"

    from prefect import get_client

    dep_id = _deploy(picked_up_late, "harness-late")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id)
    assert _run_existing(picked_up_late, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    clock_now[0] = now + 9 * H  # the deadline was now + 8 h
    with caplog.at_level(logging.WARNING):
        assert _run_existing(picked_up_late, child.id).is_completed()
    assert "its 2h of work ends after the deadline" in caplog.text, caplog.text
    with get_client(sync_client=True) as client:
        realized = _kinds(client, child.id)["care-realized"].data
    assert "**deadline_met**: False" in realized and f"**deadline**: {(now + 8 * H).isoformat()}" in realized


def test_a_continuation_whose_dispatch_answer_was_lost_is_found_not_run_twice(forecast, monkeypatch):
    """Review 35g: with the checkpoint running on when a dispatch fails, a continuation the server had
    created (its answer lost) would have done the rest of the work a second time."""
    from care_flows.errors import OrchestrationError
    from care_flows.orchestration import decorator

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    done: list[str] = []
    real = decorator.dispatch_run

    def lost(**kw):  # type: ignore[no-untyped-def]
        real(**kw)
        raise OrchestrationError("could not dispatch a run of deployment 'x': Server error '500 Internal Server Error'")

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow
    def lost_continuation(x: int = 1) -> int:
        done.append("one")
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        done.append("two")
        return x + 1

    from prefect import get_client

    dep_id = _deploy(lost_continuation, "harness-lost-continuation")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    monkeypatch.setattr(decorator, "dispatch_run", lost)
    assert _run_existing(lost_continuation, trigger.id).is_completed()
    assert done == ["one"]  # continued, not run on
    with get_client(sync_client=True) as client:
        runs = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    assert len(runs) == 1 and "care:continuation" in runs[0].tags


def test_dispatch_returns_the_scheduled_run_at_once_without_waiting_for_it(monkeypatch):
    """Review 38a H2: dispatch_run calls run_deployment with timeout=0 (no worker is held while the planned run waits)."""
    import prefect.deployments

    seen: dict = {}
    scheduled = object()

    def fake_run_deployment(**kw):
        seen.update(kw)
        return scheduled

    monkeypatch.setattr(prefect.deployments, "run_deployment", fake_run_deployment)
    at = pd.Timestamp("2026-01-01T12:00Z")
    got = dispatch_run(deployment="etl/nightly", parameters={"day": "d1"}, scheduled_time=at, job_variables={}, tags=[PLANNED_TAG],
                       idempotency_key="care-x")
    assert got is scheduled
    assert seen["timeout"] == 0
    assert seen["idempotency_key"] == "care-x" and pd.Timestamp(seen["scheduled_time"]) == at


def test_a_retry_of_a_run_that_continued_does_not_run_the_rest_again(forecast):
    """Review 42b H1: the UI offers Retry on a run that ended Continued; the retry planned again and ran the
    rest of the work alongside its continuation, and both were counted."""
    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    TASK_CALLS.clear()

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow
    def retried_after_pause(x: int = 1) -> int:
        a = stage("r-one", x)
        if clock_now[0] < base + H:
            clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        return stage("r-two", a)

    from prefect import get_client

    dep_id = _deploy(retried_after_pause, "harness-retry-continued")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    clock_now[0] = base
    first = _run_existing(retried_after_pause, trigger.id)
    assert first.name == "Continued" and TASK_CALLS == {"r-one": 1}
    with get_client(sync_client=True) as client:
        [continuation] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    assert continuation.name == f"{trigger.name}-part1"  # review 42b L2: was a random name, with no link back
    clock_now[0] = base + 3 * H  # the retry, in the green slot its continuation is planned for: nothing would pause it
    again = _run_existing(retried_after_pause, trigger.id)
    assert again.name == "Continued" and str(continuation.id) in again.message
    assert TASK_CALLS == {"r-one": 1}  # before: r-one's result reused, r-two run here too
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(trigger.id).run_count == 2
        assert [r.id for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id] == [continuation.id]


def _pausing_flow(name: str, base: pd.Timestamp, fc, clock_now: list):
    """An interruptible @care flow ``name`` (window planner, ``fc``, the clock ``clock_now[0]``) that pauses
    at its one checkpoint: its first green slot is over by then, so the rest of the work is handed on."""

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow(name=name)
    def paused(x: int = 1) -> int:
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        return x

    return paused

def test_care_report_tells_a_cancelled_paused_job_from_a_waiting_one(forecast):
    """Review 42b L3: a job paused at a checkpoint whose continuation was cancelled counted as one job with
    one continued segment, like a job still waiting: nothing said its work was abandoned."""
    from prefect import get_client
    from prefect.states import Cancelled

    from care_flows.cli.report import build_report, render_report

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]

    abandoned = _pausing_flow("r42b-abandoned", base, fc, clock_now)

    dep_id = _deploy(abandoned, "harness-abandoned")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=1)
    assert _run_existing(abandoned, trigger.id).name == "Continued"
    with get_client(sync_client=True) as client:
        [continuation] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    end = pd.Timestamp.now(tz="UTC") + H
    row = build_report(start, end, flows=["r42b-abandoned"])["flows"][0]
    assert (row["jobs"], row["segments_continued"], row["jobs_waiting"], row["jobs_unfinished"]) == (1, 1, 1, 0)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(continuation.id, Cancelled(), force=True)
    doc = build_report(start, end, flows=["r42b-abandoned"])
    row = doc["flows"][0]
    assert (row["jobs_waiting"], row["jobs_unfinished"]) == (0, 1)
    assert row["unfinished"] == [{"flow": "r42b-abandoned", "job": str(trigger.id), "continuation": continuation.name, "state": "Cancelled"}]
    assert doc["total"]["jobs_unfinished"] == 1
    assert any(line.startswith("unfinished: 1 job paused at a checkpoint") and continuation.name in line for line in render_report(doc))


class _CountingClient:
    """A sync Prefect client that records the idempotency keys the report looks continuations up by (once per page)."""

    def __init__(self, client):
        self._client, self.keys_asked = client, []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def read_flow_runs(self, *args, flow_run_filter=None, **kw):
        if flow_run_filter is not None and flow_run_filter.idempotency_key is not None:
            self.keys_asked += list(flow_run_filter.idempotency_key.any_)
        return self._client.read_flow_runs(*args, flow_run_filter=flow_run_filter, **kw)


def test_care_report_does_not_guess_the_continuation_of_a_segment_whose_run_was_deleted(forecast):
    """Review 43c L1: a paused segment whose flow run was deleted (artifacts outlive their runs) was taken as
    segment 0 and its continuation looked up as -part1: the job was reported unfinished ('retry that run')
    although its real continuation (-part2) was scheduled."""
    from prefect import get_client

    from care_flows.cli.report import build_report
    from care_flows.orchestration.decorator import _dispatch_key
    from care_flows.orchestration.report import UNKNOWN_FLOW

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 30, 400, 400, 400, 400])}
    clock_now = [base]

    @care(policy=policy(interruptible=True, expected_duration="3h", deadline_within="9h"), signal=fc, clock=lambda: clock_now[0],
          planner="window", sample_usage=False)
    @flow(name="r43c-deleted-segment")
    def twice_paused(x: int = 1) -> int:
        clock_now[0] += 70 * pd.Timedelta(minutes=1)  # this green slot is over
        care.checkpoint()
        return x

    dep_id = _deploy(twice_paused, "harness-deleted-segment")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    assert _run_existing(twice_paused, trigger.id).name == "Continued"
    start = pd.Timestamp.now(tz="UTC")  # the period holds the second segment's artifact only
    with get_client(sync_client=True) as client:
        [part1] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    clock_now[0] = base + 3 * H
    assert _run_existing(twice_paused, part1.id).name == "Continued"
    with get_client(sync_client=True) as client:
        [part2] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id not in (trigger.id, part1.id)]
    assert part2.idempotency_key == _dispatch_key(str(trigger.id), 2) and part2.state.type.value == "SCHEDULED"
    end = pd.Timestamp.now(tz="UTC") + H
    row = build_report(start, end, flows=["r43c-deleted-segment"])["flows"][0]
    assert (row["jobs"], row["segments_continued"], row["jobs_waiting"], row["jobs_unfinished"]) == (1, 1, 1, 0)
    with get_client(sync_client=True) as client:
        client.delete_flow_run(part1.id)
        counting = _CountingClient(client)
        doc = build_report(start, end, flows=[UNKNOWN_FLOW], client=counting)
    [row] = doc["flows"]
    assert (row["flow"], row["jobs"], row["segments_continued"]) == (UNKNOWN_FLOW, 1, 1)  # the artifact outlived its run
    # its segment index is unknown: neither waiting nor unfinished, and no -part1 guessed
    assert (row["jobs_waiting"], row["jobs_unfinished"], row["unfinished"]) == (0, 0, [])
    assert doc["total"]["jobs_unfinished"] == 0 and counting.keys_asked == []


def test_care_report_of_one_flow_looks_up_only_that_flows_continuations(forecast):
    """Review 43c L2: ``care report --flow X`` looked up the continuation of every flow's paused jobs
    (1,001 keys in 21 calls for a report of one job), then dropped the other flows."""
    from prefect import get_client

    from care_flows.cli.report import build_report
    from care_flows.orchestration.decorator import _dispatch_key

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]

    paused_other = _pausing_flow("r43c-paused-other", base, fc, clock_now)

    @care(policy=policy(), signal=fc, clock=lambda: base, planner="window", sample_usage=False)
    @flow(name="r43c-reported")
    def reported(x: int = 1) -> int:
        return x

    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=1)
    dep_id = _deploy(paused_other, "harness-paused-other")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    assert _run_existing(paused_other, trigger.id).name == "Continued"
    assert reported(2) == 2
    end = pd.Timestamp.now(tz="UTC") + H
    with get_client(sync_client=True) as client:
        counting = _CountingClient(client)
        doc = build_report(start, end, flows=["r43c-reported"], client=counting)
        assert [(r["flow"], r["jobs"], r["segments_completed"]) for r in doc["flows"]] == [("r43c-reported", 1, 1)]
        assert counting.keys_asked == []  # the other flow's paused job is not looked up
        counting = _CountingClient(client)
        doc = build_report(start, end, flows=["r43c-paused-other"], client=counting)
    assert set(counting.keys_asked) == {_dispatch_key(str(trigger.id), 1)} and doc["flows"][0]["jobs_waiting"] == 1


def test_a_retry_counts_the_work_of_its_failed_attempt(forecast):
    """Review 42b M2: a retry started from the work done before its segment, not its failed attempt's:
    the recorded duration was too short (it feeds the learned p90) and both attempts' baseline slices
    began at the same time instead of one after the other."""
    from care_flows.orchestration.checkpoint import current_run

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 20, 20, 400, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    seen: list[float] = []

    @care(policy=policy(), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow(retries=1, retry_delay_seconds=0)
    def flaky(x: int = 1) -> int:
        seen.append(current_run().work_done_s)  # type: ignore[union-attr]
        clock_now[0] += 10 * pd.Timedelta(minutes=1)  # ten minutes of work per attempt
        if len(seen) == 1:
            raise RuntimeError("the first attempt fails after ten minutes")
        return x

    state = flaky(3, return_state=True)
    assert state.is_completed() and seen == [0.0, 600.0]


def test_a_retried_trigger_whose_dispatched_run_continued_stays_deferred(forecast):
    """Review 42d L1: the continuation lookup ran before the trigger's own 'already dispatched' check, so a
    retried trigger whose dispatched run had paused ended Continued, claiming an earlier attempt of its own
    had continued."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 20, 20, 300, 300, 300, 300, 300, 300, 300])}  # 2 h of work, green from +1 h
    BODY_CALLS.clear()

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: now, planner="window")
    @flow
    def deferred_then_paused(day: str = "d") -> str:
        BODY_CALLS.append(day)
        return day

    from prefect import get_client

    dep_id = _deploy(deferred_then_paused, "harness-deferred-paused")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"day": "d1"})
    first = _run_existing(deferred_then_paused, trigger.id)
    assert first.name == "Deferred"
    # its dispatched run paused at a checkpoint: the continuation of the job's segment 0 exists
    dispatch_run(deployment=dep_id, parameters={"day": "d1"}, scheduled_time=now + 3 * H, job_variables={}, tags=[PLANNED_TAG],
                 idempotency_key=f"care-{trigger.id}-part1")
    again = _run_existing(deferred_then_paused, trigger.id)
    assert again.name == "Deferred" and BODY_CALLS == []


def test_a_continuation_after_a_retried_segment_is_not_recorded_either(forecast, monkeypatch):
    """Review 42e M1: a retry is not recorded for the learned duration (42d M1), but its continuation (a first
    attempt of its own) recorded the job's total, the failed attempt's time included (4500 s for 3900 s of work)."""
    import care_flows.orchestration.decorator as deco
    from care_flows.orchestration.checkpoint import current_run
    from care_flows.usage_capture import UsageStore

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 20, 400, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]

    def clock() -> pd.Timestamp:
        return clock_now[0]

    monkeypatch.setattr(deco, "system_clock", clock)  # _finish records only on the system clock
    attempts: list[tuple[int, float]] = []

    @care(policy=policy(interruptible=True), signal=fc, clock=clock, planner="window")
    @flow(name="seg-retry", retries=1, retry_delay_seconds=0)
    def seg_retry(x: int = 1) -> int:
        state = current_run()
        attempts.append((state.segment, state.work_done_s))  # type: ignore[union-attr]
        clock_now[0] += 10 * pd.Timedelta(minutes=1)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails after ten minutes")
        if state.segment == 0:  # type: ignore[union-attr]
            clock_now[0] = base + 65 * pd.Timedelta(minutes=1)  # the first green slot is over
            care.checkpoint()
        return x

    from prefect import get_client

    dep_id = _deploy(seg_retry, "harness-seg-retry")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    assert _run_existing(seg_retry, trigger.id).name == "Continued"
    with get_client(sync_client=True) as client:
        [continuation] = [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id]
    assert continuation.job_variables["care"]["retried"] is True
    clock_now[0] = base + 2 * H
    assert _run_existing(seg_retry, continuation.id).is_completed()
    assert [s for s, _ in attempts] == [0, 0, 1]
    assert UsageStore().load_runs("seg-retry") == []


def test_a_continuation_created_while_its_answer_and_lookup_failed_is_cancelled_when_the_run_completes(forecast, monkeypatch, caplog):
    """Review 46e L1: with the continuation's create answer lost *and* its look-up failing, the run ran on to
    the end while the continuation the server had created stayed scheduled to do the rest a second time. The
    run still runs on, and cancels the continuation when it completes, not at a later checkpoint (review 47d
    H1: a run that then failed was retried, and the retry's own pause got the cancelled run back by its key,
    so nobody did the rest of the work); it names the key when it cannot look."""
    from prefect import get_client

    from care_flows.errors import OrchestrationError
    from care_flows.orchestration import decorator

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]
    done: list[str] = []
    real_dispatch, real_lookup = decorator.dispatch_run, decorator._run_by_key
    lookups = {"down": True, "tried": 0}  # tried: look-ups of the continuation's key while the server is down
    seen: list[str] = []

    def lost(**kw):  # type: ignore[no-untyped-def]
        real_dispatch(**kw)
        raise OrchestrationError("could not dispatch a run: Server error '504 Gateway Timeout' " + "x" * 400)

    def flaky_lookup(client, key):  # type: ignore[no-untyped-def]
        if lookups["down"]:
            lookups["tried"] += key.endswith("-part1")
            raise RuntimeError("500 Internal Server Error")
        return real_lookup(client, key)

    @care(policy=policy(interruptible=True), signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow
    def unconfirmed_continuation(x: int = 1) -> int:
        done.append("one")
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        care.checkpoint()
        done.append("two")
        lookups["down"] = False  # the server answers again
        care.checkpoint()  # no continuation is dispatched again, and the one the server made is left until the end
        with get_client(sync_client=True) as client:
            seen.extend(r.state.name for r in runs_of(client, dep_id) if r.id != trigger.id)
        done.append("three")
        return x + 1

    dep_id = _deploy(unconfirmed_continuation, "harness-unconfirmed-continuation")
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, parameters={"x": 5})
    monkeypatch.setattr(decorator, "dispatch_run", lost)
    monkeypatch.setattr(decorator, "_run_by_key", flaky_lookup)
    with caplog.at_level(logging.INFO):
        assert _run_existing(unconfirmed_continuation, trigger.id).is_completed()
    assert done == ["one", "two", "three"] and lookups["tried"] >= 1  # ran on
    # the second checkpoint says why it runs on (review 47d L3: "this run has no deployment to continue in")
    assert "but a continuation could not be dispatched at an earlier checkpoint of this run; running on" in caplog.text
    assert seen == ["Scheduled"]  # not cancelled while this run may still fail
    with get_client(sync_client=True) as client:
        [cont] = [r for r in runs_of(client, dep_id) if r.id != trigger.id]
    assert cont.state.is_cancelled() and cont.state.message.startswith(decorator.UNNEEDED_CONTINUATION)
    assert f"cancelled {cont.name} ({cont.id}), a continuation created although its dispatch failed: this run did the work" in caplog.text
    # the checkpoint's line keeps what matters within its 300 characters (review 47a L1)
    assert ("cannot continue later (the continuation's dispatch and its look-up both failed; if the server created it, it is "
            "cancelled if still scheduled when this run completes") in caplog.text

    # the server stays down to the end: the key is named, nothing else fails
    done.clear()
    clock_now[0], lookups["down"] = base, True
    with get_client(sync_client=True) as client:
        second = client.create_flow_run_from_deployment(dep_id, parameters={"x": 6})
    monkeypatch.setattr(decorator, "_run_by_key", lambda client, key: (_ for _ in ()).throw(RuntimeError("down")))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _run_existing(unconfirmed_continuation, second.id).is_completed()
    assert done == ["one", "two", "three"]
    assert f"may have been created with idempotency key care-{second.id}-part1" in caplog.text


def test_a_retry_runs_the_work_itself_when_the_continuation_was_cancelled_as_not_needed(monkeypatch):
    """Review 47a L3: a continuation CaRE cancelled because the earlier attempt ran on is not the run "that
    holds the rest of the work"; the retry of that attempt runs it."""
    from types import SimpleNamespace as NS

    from prefect.client.schemas.objects import StateType

    from care_flows.orchestration import decorator

    cancelled = NS(name="job-part1", id="c1", state=NS(name="Cancelled", type=StateType.CANCELLED,
                                                       message=f"{decorator.UNNEEDED_CONTINUATION} (r1)"), job_variables={})
    monkeypatch.setattr(decorator, "_dispatched_by", lambda root, key=None: cancelled)
    assert decorator._continued_by_earlier_attempt(NS(run_count=2), "T", 0, logging.getLogger("care")) is None
    cancelled.state.message = "cancelled by a user"
    assert decorator._continued_by_earlier_attempt(NS(run_count=2), "T", 0, logging.getLogger("care")).name == "Continued"
