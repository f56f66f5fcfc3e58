"""Fixtures for orchestration tests: ONE session-scoped Prefect test harness, synthetic forecasts."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API + database for the whole session (heartbeats off, private storage)."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = tempfile.mkdtemp(prefix="care-results-")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False, PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=180):  # 2 shared cores: startup took up to 57 s
            yield


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
