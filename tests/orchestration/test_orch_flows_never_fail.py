"""A @care run whose planning or bookkeeping fails still runs its body and completes (reviews 10 #1, #5; 11 #5)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from prefect import flow

from care_flows.errors import ConfigError
from care_flows.orchestration import care

pytestmark = pytest.mark.usefixtures("prefect_harness")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def run_log():
    handler = _Lines()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


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
