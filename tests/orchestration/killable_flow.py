"""A checkpointed @care flow run as its own process by test_orch_kill_resume.py (killed mid-task, then retried).

Each stage appends its name to ``$CARE_KILL_MARKS`` when it *starts* and when it *finishes*;
stage two waits for ``$CARE_KILL_GO`` to exist, so the test can kill the process inside it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
from prefect import flow

from care_flows.orchestration import care

T0 = pd.Timestamp("2026-03-02T00:00Z")


def _mark(text: str) -> None:
    with open(os.environ["CARE_KILL_MARKS"], "a") as fh:
        fh.write(text + "\n")


@care.resumable_task
def stage(name: str, x: int) -> int:
    _mark(f"start {name}")
    if name == "two":
        while not Path(os.environ["CARE_KILL_GO"]).exists():
            time.sleep(0.1)
    _mark(f"done {name}")
    return x + 1


_SIGNAL = {"eu-south-2": pd.Series([50.0] * 48, index=pd.date_range(T0, periods=48, freq="h"), name="g_per_kwh")}


@care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "24h",
              "interruptible": True}, signal=_SIGNAL, clock=lambda: T0, planner="window")
@flow(name="killable-etl")
def killable_etl(x: int = 1) -> int:
    _mark_run()
    a = stage("one", x)
    care.checkpoint()
    b = stage("two", a)
    care.checkpoint()
    return stage("three", b)


def _mark_run() -> None:
    """Record this process's flow run id, so the test can retry that run."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        _mark(f"run {ctx.flow_run.id}")


def retry(flow_run_id: str) -> object:
    """Execute an existing (crashed) flow run again, as a Prefect retry does: same id, same parameters."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        run = client.read_flow_run(flow_run_id)
    return run_flow_sync(killable_etl, flow_run=run, parameters=run.parameters, return_type="result")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--retry"]:
        print(retry(sys.argv[2]))
    else:
        print(killable_etl(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
