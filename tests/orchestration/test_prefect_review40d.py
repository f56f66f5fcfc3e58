"""Review 40d: CaRE with the Prefect features users combine with it.

M1: an async ``@care`` flow that ``timeout_seconds`` stopped wrote no ``care-realized`` artifact: the
timeout's cancel scope also cancelled the closing work (awaited in a thread), abandoned as the
process exited. A sync flow wrote it every time.
M2: the run that does the work lost what the user set on the run they started: its tags, its work
queue and every job variable but ``env`` (``working_dir``, a Docker ``image``...), even when it went
back to the same deployment.
L1: two controllers starting together both took the lease (the loser of the create overwrote it).
L3: ``care.checkpoint()`` inside a task ended the run from inside the task engine: the task run Crashed.
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.orchestration import care
from tests.prefect_queries import runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _artifacts(flow_run_id, key=None):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [a for a in arts if key is None or a.key == key]


def test_m1_an_async_flow_stopped_by_its_timeout_still_records_what_it_used(forecast):
    now = pd.Timestamp.now(tz="UTC")
    fc = {"eu-south-2": forecast(now.floor("h"), [100.0] * 24)}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1m", deadline_within="2h"), signal=fc, planner="window")
    # the timeout also covers CaRE's planning before the body (0.25-0.45 s idle, up to 2 s with the other xdist
    # worker busy): at 1 s it could fire before the body started, and no care-realized was written (review 47b H1)
    @flow(name="r40d-timeout-async", timeout_seconds=10)
    async def slow() -> int:
        await asyncio.sleep(120)
        return 1

    state = asyncio.run(slow(return_state=True))
    assert state.name == "TimedOut", state
    realized = _artifacts(state.state_details.flow_run_id, "care-realized-r40d-timeout-async")
    assert len(realized) == 1, [a.key for a in _artifacts(state.state_details.flow_run_id)]
    assert "failed" in str(realized[0].data)


def _pools(*names):
    from prefect.client.schemas.actions import WorkPoolCreate, WorkQueueCreate

    with get_client(sync_client=True) as client:
        for pool in names:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
            try:
                client.create_work_queue(name="high", work_pool_name=pool)
            except Exception:  # noqa: BLE001 - already there
                pass


def _run_existing(flow_obj, flow_run_id):
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


USER = dict(tags=["team:finance", "db-limited"], job_variables={"working_dir": "/tmp/r40d-wd", "env": {"FOO": "1"}}, work_queue_name="high")


def test_m2_a_deferred_run_of_the_same_deployment_keeps_the_users_tags_queue_and_job_variables(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 20, 300, 300, 300, 300, 300, 300])}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="8h"),
          signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="r40d-keep")
    def keep(n: int = 1) -> int:
        return n

    _pools("r40d-south")
    dep = keep.to_deployment(name="home", work_pool_name="r40d-south", tags=["nightly"]).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep, parameters={"n": 2}, **USER)
    state = _run_existing(keep, trigger.id)
    assert state.name == "Deferred", state
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep) if r.deployment_id == dep and r.id != trigger.id]
    assert {"team:finance", "db-limited", "nightly", "care:dispatched"} <= set(child.tags), child.tags
    assert child.work_queue_name == "high"
    assert child.job_variables["working_dir"] == "/tmp/r40d-wd" and child.job_variables["env"] == {"FOO": "1"}
    assert child.job_variables["region"] == "eu-south-2" and "care" in child.job_variables


def test_m2_a_run_sent_to_another_pool_keeps_the_tags_and_env_and_says_what_it_left(forecast, caplog):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300.0] * 10), "eu-north-1": forecast(now, [20.0] * 10)}
    pol = dict(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], expected_duration="2h", deadline_within="8h",
               targets={"eu-north-1": {"work_pool": "r40d-north"}})

    @care(policy=pol, signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="r40d-move")
    def move(n: int = 1) -> int:
        return n

    _pools("r40d-south", "r40d-north")
    home = move.to_deployment(name="home", work_pool_name="r40d-south", tags=["nightly"]).apply()
    north = move.to_deployment(name="north", work_pool_name="r40d-north").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(home, parameters={"n": 2}, **USER)
    state = _run_existing(move, trigger.id)
    assert state.name in ("Deferred", "Completed"), state
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, north) if r.deployment_id == north]
    assert {"team:finance", "db-limited"} <= set(child.tags) and "nightly" not in child.tags, child.tags  # not the home deployment's
    assert child.job_variables["env"] == {"FOO": "1"} and "working_dir" not in child.job_variables
    assert child.work_queue_name == "default"  # the north pool's own queue, not one named like the trigger's
    assert "does not get this run's job variables working_dir" in caplog.text


class _FirstReadIs:
    """A Prefect client whose first ``read_variable_by_name`` returns ``first`` (what a controller
    read before another one wrote), then reads the server."""

    def __init__(self, first) -> None:
        self.client, self.first, self.pending = get_client(sync_client=True), first, True

    def __enter__(self):
        self.real = self.client.__enter__()
        return self

    def __exit__(self, *exc):
        return self.client.__exit__(*exc)

    def read_variable_by_name(self, name):
        if self.pending:
            self.pending = False
            return self.first
        return self.real.read_variable_by_name(name)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_l1_the_controller_that_loses_the_race_to_create_the_lease_waits():
    from datetime import timedelta

    from care_flows.orchestration.controller import LEASE_VARIABLE, ControllerLease

    with get_client(sync_client=True) as client:
        if client.read_variable_by_name(LEASE_VARIABLE) is not None:
            client.delete_variable_by_name(LEASE_VARIABLE)

    winner = ControllerLease(timedelta(minutes=5), holder="ops-host:1:winner")
    # reads "no lease" as both controllers did, then finds the other's on create
    loser = ControllerLease(timedelta(minutes=5), holder="ops-host:2:loser", client_factory=lambda: _FirstReadIs(None))
    try:
        assert winner.acquire() is None
        held = loser.acquire()
        assert held is not None and held.holder == "ops-host:1:winner" and not loser.held
        with get_client(sync_client=True) as client:
            assert client.read_variable_by_name(LEASE_VARIABLE).value["holder"] == "ops-host:1:winner"
    finally:
        winner.release()


def test_l3_a_checkpoint_inside_a_task_does_not_pause_nor_crash_the_task(forecast, caplog):
    from prefect import task

    base = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(base, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    clock_now = [base]

    @task(name="r40d-inner")
    def inner() -> bool:
        clock_now[0] = base + 70 * pd.Timedelta(minutes=1)  # the first green slot is over
        return care.checkpoint()

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="8h", interruptible=True),
          signal=fc, clock=lambda: clock_now[0], planner="window", sample_usage=False)
    @flow(name="r40d-ckpt-in-task")
    def ckpt(x: int = 1) -> bool:
        return inner()

    dep = ckpt.to_deployment(name="r40d-ckpt").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep)
    state = _run_existing(ckpt, trigger.id)
    assert state.name == "Completed" and state.result() is False, state
    import time

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    for _ in range(100):  # task run states reach the API through events, a moment after the flow returns
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[trigger.id])))
        if tasks and all(t.state is not None and t.state.is_final() for t in tasks):
            break
        time.sleep(0.1)
    assert [t.state.name if t.state else None for t in tasks] == ["Completed"], [t.state for t in tasks]
    assert "called inside task r40d-inner" in caplog.text


def test_two_controllers_that_both_take_an_expired_lease_end_with_one_holder():
    """Both read the same expired lease and both write theirs (Prefect variables have no
    compare-and-swap): each reads it back after ``settle_s`` and only the last writer keeps it."""
    from datetime import timedelta

    from prefect.client.schemas.actions import VariableCreate

    from care_flows.orchestration.controller import LEASE_VARIABLE, ControllerLease

    expired = {"holder": "gone-host:9:old", "expires": "2020-01-01T00:00:00Z", "ttl_s": 120}
    with get_client(sync_client=True) as client:
        if client.read_variable_by_name(LEASE_VARIABLE) is not None:
            client.delete_variable_by_name(LEASE_VARIABLE)
        client.create_variable(VariableCreate(name=LEASE_VARIABLE, value=expired, tags=["care"]))

    results = {}
    # it read the expired lease before the first controller wrote its own
    clients = iter([_FirstReadIs(type("V", (), {"value": expired})())])
    second = ControllerLease(timedelta(minutes=5), holder="ops-host:2:second",
                             client_factory=lambda: next(clients, None) or get_client(sync_client=True), settle_s=0.01)

    def meanwhile(_s: float) -> None:  # while the first waits to read back, the second writes its lease
        results["second"] = second.acquire()

    first = ControllerLease(timedelta(minutes=5), holder="ops-host:1:first", sleep=meanwhile, settle_s=0.5)
    try:
        results["first"] = first.acquire()
        assert results["second"] is None and second.held  # the last writer keeps it
        assert results["first"] is not None and results["first"].holder == "ops-host:2:second" and not first.held
        assert first.acquire() is not None  # and the first keeps waiting at its next pass
        with get_client(sync_client=True) as client:
            assert client.read_variable_by_name(LEASE_VARIABLE).value["holder"] == "ops-host:2:second"
    finally:
        second.release()
        first.release()
