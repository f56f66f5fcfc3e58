"""Fixtures shared by the AWS end-to-end tests: one real ``prefect server`` per test session."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from care_flows.demo.runner import LocalPrefect


@pytest.fixture(scope="session")
def prefect_server() -> Any:
    """``prefect server start`` on 127.0.0.1 (the demo's :class:`LocalPrefect`), stopped by PID at the end.

    Yields the API ``url`` and the ``env`` a worker process needs (``PREFECT_HOME``, API URL, ...).
    """
    local = LocalPrefect(state_dir=Path(tempfile.mkdtemp(prefix="care-aws-e2e-")), ui=False, say=lambda _msg: None)
    try:
        local.start_server(timeout_s=120)
        yield {"url": local.api_url, "env": local.env()}
    finally:
        local.stop()
        shutil.rmtree(local.state_dir, ignore_errors=True)
