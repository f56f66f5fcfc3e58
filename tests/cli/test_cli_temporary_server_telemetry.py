"""A command that starts a temporary Prefect server (no PREFECT_API_URL) keeps that server's
telemetry off: with it on, a fresh PREFECT_HOME printed a 130-line "database is locked" traceback
on every ``care report`` and, offline, "Failed to send telemetry"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs the console entry point in a fresh interpreter (Prefect reads its settings once, at import),
# then prints the setting the temporary server would start with.
_SCRIPT = """
from care_flows.cli import main
main(["--version"])
from prefect.settings import get_current_settings
print("analytics", get_current_settings().server.analytics_enabled)
"""


def _analytics(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL")}
    if env_value is not None:
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = env_value
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return out.strip().splitlines()[-1]


@pytest.mark.parametrize(("env_value", "expected"), [(None, "analytics False"), ("true", "analytics True")])
def test_cli_turns_temporary_server_telemetry_off_unless_asked(env_value: str | None, expected: str) -> None:
    assert _analytics(env_value) == expected
