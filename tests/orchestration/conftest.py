"""Fixtures for orchestration tests: synthetic forecasts (the session Prefect harness is in tests/conftest.py)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest


def step_forecast(start: pd.Timestamp, values: list[float], step: str = "1h", source: str = "synthetic") -> pd.Series:
    """A forecast Series of ``values`` from ``start`` every ``step`` (piecewise constant)."""
    idx = pd.date_range(start, periods=len(values), freq=step)
    s = pd.Series(values, index=idx, dtype=float, name="g_per_kwh")
    s.attrs["source"] = source
    return s


@pytest.fixture
def forecast():
    """The :func:`step_forecast` factory."""
    return step_forecast


@pytest.fixture
def t0() -> pd.Timestamp:
    return pd.Timestamp("2026-03-02T00:00:00Z")


def _decision_markdown(flow_run_id) -> str:  # type: ignore[no-untyped-def]
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from care_flows.orchestration.artifacts import artifact_key

    with get_client(sync_client=True) as client:
        flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name  # the key names the run's flow
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                   key=ArtifactFilterKey(any_=[artifact_key("care-decision", flow_name)])))
    assert arts, "no care-decision artifact"
    return str(arts[0].data)


@pytest.fixture
def decision_markdown():
    """``decision_markdown(flow_run_id)``: the markdown of that run's ``care-decision`` artifact
    (keyed ``care-decision-<flow>``)."""
    return _decision_markdown


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def run_log():
    """The records the flow run logger (``prefect.flow_runs``, which ``get_run_logger`` adapts and which
    does not propagate to caplog) emits during the test."""
    handler = _Records()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
