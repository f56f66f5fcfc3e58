"""A ``@care`` flow called with no PREFECT_API_URL starts Prefect's temporary server; its telemetry
printed a 130-line "database is locked" traceback on most first runs (review 54b M1: 4 of 4 runs of
the tutorial's first local call). Decorating a flow turns that server's telemetry off, as the
``care`` CLI does, unless the user set it or an API URL is set (no temporary server then)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# a flow file as users write it: Prefect imported first (it reads its settings then), CaRE after
_SCRIPT = """
import os
from prefect import flow
from care_flows import care

@care(policy={"home_region": "eu-south-2"})
@flow
def nightly() -> int:
    return 1

print("analytics", os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED"))
"""


def _analytics(**given: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL")}
    env.update(given)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return out.strip().splitlines()[-1]


@pytest.mark.parametrize(("given", "expected"), [
    ({}, "analytics false"),
    ({"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}, "analytics true"),  # the user's own setting stands
    ({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, "analytics None"),  # no temporary server: nothing set
])
def test_decorating_a_flow_turns_the_temporary_servers_telemetry_off(given, expected):
    assert _analytics(**given) == expected


_SERVER_SCRIPT = """
import subprocess
from prefect.server.api.server import SubprocessASGIServer
from care_flows import care

care(policy={"home_region": "eu-south-2"})(lambda: 1)

class Started(Exception):
    pass

def popen(*args, env=None, **kwargs):  # what Prefect would start the server with, not started
    print("server env", (env or {}).get("PREFECT_SERVER_ANALYTICS_ENABLED"))
    raise Started

subprocess.Popen = popen
try:
    SubprocessASGIServer(port=9)._run_uvicorn_command()
except Started:
    pass
"""


def test_the_temporary_server_inherits_it_though_prefect_was_imported_first(tmp_path):
    """Prefect reads its settings at import, but starts the server as a subprocess with this process's
    environment (``SubprocessASGIServer._run_uvicorn_command``): the setting reaches the server."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL")}
    out = subprocess.run([sys.executable, "-c", _SERVER_SCRIPT], env={**env, "PREFECT_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "server env false"
