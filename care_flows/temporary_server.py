"""Prefect's temporary server: what CaRE sets for the one a process starts without ``PREFECT_API_URL``.

Without an API URL, Prefect starts a temporary server (a subprocess, ``prefect.server.api.server.
SubprocessASGIServer``) for the first flow run or client call. Its telemetry task wrote into the
server's database while it was still being created and printed a 130-line "database is locked"
traceback on most first runs with a fresh ``PREFECT_HOME`` (offline: "Failed to send telemetry"),
so a new user's first ``@care`` call, or ``care report``, looked like a crash. The server process
inherits this process's environment, so an environment variable set any time before it starts
reaches it, even after ``import prefect``; a value the user set stands. A server that runs
elsewhere (``PREFECT_API_URL`` set) keeps its own settings.

>>> import os
>>> saved = {k: os.environ.pop(k, None) for k in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL")}
>>> quiet_temporary_server_telemetry(); os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"]
'false'
>>> for k, v in saved.items():
...     _ = os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
"""

from __future__ import annotations

import os

__all__ = ["quiet_temporary_server_telemetry", "TEMPORARY_SERVER_STARTUP_S"]

TEMPORARY_SERVER_STARTUP_S = 120
"""How long a ``care`` command waits for the temporary Prefect server it starts (``PREFECT_API_URL`` unset)."""


def quiet_temporary_server_telemetry() -> None:
    """Turn off the telemetry of a temporary server this process may start, unless
    ``PREFECT_SERVER_ANALYTICS_ENABLED`` is set or an API URL is (no temporary server then)."""
    if os.environ.get("PREFECT_API_URL"):
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
