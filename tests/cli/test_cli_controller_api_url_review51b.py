"""Review 51b M2: without PREFECT_API_URL, Prefect starts a temporary server on this machine's database, so
``care controller`` planned an empty server's runs and said "no upcoming Scheduled runs", exit 0. A loop is
refused with the fix, one pass says so on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CARE = str(Path(sys.executable).with_name("care"))


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env


def test_a_controller_loop_without_an_api_url_is_refused_with_the_fix(tmp_path):
    done = subprocess.run([CARE, "controller", "--interval", "30s"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: PREFECT_API_URL is not set, so the controller would plan the runs of a temporary server")
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in line
    assert "Starting temporary server" not in done.stdout + done.stderr  # refused before any server starts


def test_one_pass_without_an_api_url_says_which_server_it_checks(capsys):
    # the pass itself then starts Prefect's temporary server (tens of seconds on 2 cores): the warning comes first
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from care_flows.cli.controller import _no_api_url

    with temporary_settings(set_defaults={PREFECT_API_URL: None}, restore_defaults={PREFECT_API_URL}):
        assert not PREFECT_API_URL.value()
        _no_api_url(once=True)
    err = capsys.readouterr().err
    assert err.startswith("warning: PREFECT_API_URL is not set, so this pass checks a temporary server on this machine's "
                          "Prefect database (PREFECT_HOME): runs on other servers are not seen; set it"), err
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        _no_api_url(once=False)  # set: nothing said, nothing refused
    assert capsys.readouterr().err == ""
