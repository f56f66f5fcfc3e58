"""Review 35a L9: `care demo --api-url` with nothing listening fails at once, not after 30 s of /health polls."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from care_flows.demo.runner import DemoStack
from care_flows.errors import OrchestrationError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_api_url_fails_at_once_naming_the_url_and_the_fix(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/api"
    said: list[str] = []
    stack = DemoStack(tmp_path, api_url=url, say=said.append)
    began = time.monotonic()
    with pytest.raises(OrchestrationError) as caught:
        stack.start_server()
    assert time.monotonic() - began < 10  # was: the full 30 s, then "did not answer /health within 30 s"
    assert str(caught.value) == (f"cannot reach the Prefect API at {url} (connection refused); start it (prefect server start) "
                                 "or fix --api-url")


def test_a_server_the_demo_starts_is_still_waited_for(tmp_path, monkeypatch):
    """Refusals are expected while a server the demo started boots: only an --api-url fails fast."""
    import care_flows.demo.runner as runner

    stack = DemoStack(tmp_path, say=lambda text: None)
    stack.api_url = f"http://127.0.0.1:{_closed_port()}/api"
    proc = subprocess.Popen(["sleep", "30"])
    try:
        began = time.monotonic()
        with pytest.raises(OrchestrationError, match="did not answer /health within 2 s"):
            stack._wait_healthy(proc, timeout_s=2)
        assert time.monotonic() - began >= 1.9
    finally:
        proc.kill()
        proc.wait()
    assert runner._refused(ConnectionRefusedError())


@pytest.mark.parametrize("url, shown", [("http://user:sekritPW@127.0.0.1:9/api", "http://***@127.0.0.1:9/api"),
                                        ("https://user@prefect.internal/api", "https://***@prefect.internal/api"),
                                        # review 39d M2: no scheme, or an upper-case one, was echoed by the "not http(s)" check first
                                        ("user:sekritPW@127.0.0.1:4200/api", "***@127.0.0.1:4200/api"),
                                        ("HTTP://user:sekritPW@127.0.0.1:4200/api", "HTTP://***@127.0.0.1:4200/api"),
                                        # review 39e M1: a password holding '#' or '/', or a scheme later in the text
                                        ("http://user:sekrit#PW@127.0.0.1:9/api", "http://***@127.0.0.1:9/api"),
                                        ("http://user:sekrit/PW@127.0.0.1:9/api", "http://***@127.0.0.1:9/api"),
                                        ("user:sekritPW@host/api?next=http://x", "***@host/api?next=http://x")])
def test_an_api_url_with_credentials_is_refused_at_once_without_echoing_the_password(capsys, url, shown):
    """Review 39b H1: the password was printed on stdout and in the error, after a 30 s wait (urllib took
    'user:pw@127.0.0.1' for a host name)."""
    from care_flows.cli import main

    assert main(["demo", "--api-url", url, "--timeout", "5"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "sekrit" not in err and err.count("\n") == 1
    assert err == (f"error: --api-url {shown} has credentials in it; give the URL without them and set PREFECT_API_AUTH_STRING "
                   "(basic auth) or PREFECT_API_KEY in the environment\n")


def test_care_demo_checks_a_refused_api_url_before_measuring_or_making_the_report_folder(tmp_path, capsys):
    """Review 46c L3: it measured the right-sizing workload first, then failed, and left an empty --out folder."""
    from care_flows.cli import main

    url = f"http://127.0.0.1:{_closed_port()}/api"
    out = tmp_path / "demo-out"
    began = time.monotonic()
    assert main(["demo", "--api-url", url, "--out", str(out)]) == 2
    assert time.monotonic() - began < 10
    err = capsys.readouterr()
    assert err.err == (f"error: cannot reach the Prefect API at {url} (connection refused); start it (prefect server start) "
                       "or fix --api-url\n")
    assert "Measured" not in err.out and not out.exists()
