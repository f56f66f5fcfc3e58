"""A planned run carries what it was planned with (review 46c M1): when its ``@care`` policy block is
deleted (or renamed, or no longer validates) while the run waits for its green window, the run still
runs as planned, with a warning; before, it failed with ``ConfigError`` and the deferred work was lost
(the trigger had already ended ``Deferred``). A trigger with no policy still fails, loudly."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.errors import ConfigError
from care_flows.orchestration import care

pytestmark = pytest.mark.usefixtures("prefect_harness")

H = pd.Timedelta(hours=1)


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


@pytest.mark.parametrize("replan_every", ["1h", None])  # with and without the trigger's policy in the marker
def test_a_deferred_run_whose_policy_block_was_deleted_still_runs_as_planned(run_log, replan_every):
    name = f"planned-policy-{'replan' if replan_every else 'once'}"
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "instance_type": "t3.large", "replan_every": replan_every}).save(name, overwrite=True)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    trace = pd.Series([300.0, 300.0, 20.0] + [300.0] * 21, index=pd.date_range(now, periods=24, freq="1h"), name="g_per_kwh")
    trace.attrs["source"] = "synthetic"
    ran = []

    def make():  # a new process's flow object: its policy is looked up again (the first caches the block's)
        @care(policy=name, signal=lambda region, start, horizon: trace.copy(), sample_usage=False)
        @flow(name=name)
        def job(n: int = 1) -> int:
            ran.append(n)
            return n

        return job

    job = make()
    dep = job.to_deployment(name=name).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep)
    assert _run_existing(job, trigger.id).is_completed() and ran == []  # deferred to the green hour
    with get_client(sync_client=True) as client:
        [child] = [r for r in client.read_flow_runs() if r.deployment_id == dep and r.id != trigger.id]
        client.delete_block_document(CarePolicyBlock.load(name)._block_document_id)
    state = _run_existing(make(), child.id)
    assert state.is_completed(), state.message
    assert ran == [1]
    warned = [r.getMessage() for r in run_log if "runs as planned" in r.getMessage()]
    assert len(warned) == 1 and f"no CarePolicyBlock named '{name}'" in warned[0]


def test_a_trigger_whose_policy_block_does_not_exist_fails_with_the_policys_error(run_log):
    @care(policy="no-such-policy-block", sample_usage=False)
    @flow(name="planned-policy-missing")
    def job() -> int:
        return 1

    state = job(return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="no CarePolicyBlock named 'no-such-policy-block'"):
        state.result()
