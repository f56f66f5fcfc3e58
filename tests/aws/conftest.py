"""Fixtures shared by the AWS end-to-end tests: one real ``prefect server`` per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
import requests

from test_aws_e2e import PY, _stop, _wait
from test_aws_support import _free_port


@pytest.fixture(scope="session")
def prefect_server() -> Any:
    home = tempfile.mkdtemp(prefix="care-aws-e2e-")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    proc = subprocess.Popen([str(PY.with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=home)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return requests.get(url + "/health", timeout=2).ok
        except requests.RequestException:
            return False

    try:
        _wait(healthy, 120, "the Prefect server")
        yield {"url": url, "env": env}
    finally:
        _stop(proc)
        shutil.rmtree(home, ignore_errors=True)
