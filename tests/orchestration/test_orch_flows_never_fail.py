"""A @care run whose planning or bookkeeping fails still runs its body and completes (reviews 10 #1, #5; 11 #5)."""

from __future__ import annotations

import logging
import sys

import pandas as pd
import pytest
from prefect import flow

from care_flows.errors import ConfigError
from care_flows.orchestration import care

pytestmark = pytest.mark.usefixtures("prefect_harness")

# run_log: the flow run logger's records (tests/orchestration/conftest.py)


def test_a_planner_config_error_runs_the_body_now(run_log):
    def planner(policy, now, signal=None):
        raise ConfigError("the GB Carbon Intensity API serves direct (operational) intensity, not 'lifecycle'")

    @care(policy={"home_region": "eu-south-2"}, planner=planner, sample_usage=False)
    @flow
    def misconfigured() -> str:
        return "ran"

    state = misconfigured(return_state=True)
    assert state.is_completed() and state.result() == "ran"
    assert any(r.levelno == logging.WARNING and "CaRE could not plan (the GB Carbon Intensity API" in r.getMessage() for r in run_log)


def test_plan_warnings_reach_the_run_log(run_log):
    now = pd.Timestamp("2023-06-01T08:00Z")

    @care(policy={"home_region": "eu-south-2", "regions": ["eu-north-1"], "budget_usd_per_run": 0.0001, "deadline_within": "6h"},
          clock=lambda: now, sample_usage=False)
    @flow
    def over_budget() -> str:
        return "ran"

    assert over_budget() == "ran"
    warned = [r.getMessage() for r in run_log if r.levelno == logging.WARNING]
    assert any(m.startswith("CaRE: no feasible option (") and "budget" in m for m in warned), warned


def test_a_tz_naive_forecast_mapping_does_not_fail_a_run_whose_body_succeeded():
    start = pd.Timestamp.now(tz="UTC").floor("h").tz_localize(None)
    fc = {"eu-south-2": pd.Series(200.0, index=pd.date_range(start, periods=48, freq="h"))}  # tz-naive: the planners accept it
    ran: list[int] = []

    @care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"]}, signal=fc, sample_usage=False)
    @flow
    def naive_signal() -> str:
        ran.append(1)
        return "ok"

    state = naive_signal(return_state=True)
    assert ran == [1] and state.is_completed(), state.message


def test_a_resumable_task_called_outside_any_flow_is_not_cached_across_calls():
    """Review 12 #4: every call outside a flow had the key 'flow-run-None', so the first result was reused forever."""
    calls: list[int] = []

    @care.resumable_task
    def latest(uri: str) -> int:
        calls.append(1)
        return len(calls)

    assert (latest("s3://bucket/latest"), latest("s3://bucket/latest")) == (1, 2)


def test_wait_locally_says_it_waits(monkeypatch):
    """Review 12 #7: the headline said 'local run now' while the call slept until the window."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from care_flows.orchestration import decorator

    import threading

    slept: list[float] = []
    real_sleep, caller = decorator.time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:  # the injected clock does not move: no real wait for the flow's own sleep
        # time.sleep is global: background threads (Prefect's services), and the Prefect client's own retry back-off in this
        # thread (a 2.2 s sleep once failed CI at 893f5c9), keep their real sleeps and stay out of the list
        if threading.current_thread() is caller and sys._getframe(1).f_globals.get("__name__") == decorator.__name__:
            slept.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(decorator.time, "sleep", sleep)
    t0 = pd.Timestamp("2026-03-02T00:00Z")
    fc = {"eu-south-2": pd.Series([400.0, 20.0] + [400.0] * 10, index=pd.date_range(t0, periods=12, freq="h", tz="UTC"))}
    now = t0 + pd.Timedelta(minutes=30)  # 30 dirty minutes left before the green hour

    @care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "deadline_within": "6h", "expected_duration": "30m"},
          signal=fc, clock=lambda: now, wait_locally=True, sample_usage=False)
    @flow
    def patient() -> str:
        return "ok"

    state = patient(return_state=True)
    assert state.is_completed() and slept == [1800.0]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    md = next(a for a in arts if a.key == "care-decision-patient").data  # keyed per flow
    assert md.startswith("# CaRE decision: local run waiting until 2026-03-02T01:00:00+00:00 in eu-south-2 (wait_locally)"), md[:120]
