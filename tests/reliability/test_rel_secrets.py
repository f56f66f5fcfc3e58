"""Planted secrets in every credential never come out: logs, stderr, errors, repr, CLI output, caches.

All credentials are planted at once (Electricity Maps token, WattTime user name and password,
AWS access key / secret key / session token via the environment and an ``AwsCredentials``
block, a Prefect API key in ``PREFECT_API_KEY``). A loopback provider *echoes* whatever
credentials it receives back in its response bodies and headers (the worst case of a chatty
error page), so a message that quoted a body would leak. Then every output CaRE produces is
scanned for every planted value. The EC2 user-data builder has its own planted-secret tests in
tests/aws (not repeated here); this file adds the AWS CLI path and the credential objects.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import care_flows.cli as cli
from care_flows.errors import CareError

SECRETS = {
    "em_token": "PLANTED-emtoken-5c1f0a7e93",
    "wt_user": "PLANTED-wtuser-0d8b44e2",
    "wt_password": "PLANTED-wtpass-91aa3cf6",
    "wt_token": "PLANTED-wtbearer-77e0b1d4",
    "aws_key_id": "AKIAPLANTED7Q3ZK2M4",
    "aws_secret": "PLANTED-awssecret-3e9f6d1c2b",
    "aws_session": "PLANTED-awssession-8a7b6c5d",
    "prefect_key": "pnu_PLANTEDprefectkey4d2a91",
}


def leaks(text: str | bytes) -> list[str]:
    """Names of planted secrets found in ``text`` (also base64-encoded, as in a basic-auth header)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = []
    for name, value in SECRETS.items():
        encoded = base64.b64encode(value.encode()).decode()[:16]
        if value in text or encoded in text:
            found.append(name)
    return found


class EchoProvider:
    """A loopback server for Electricity Maps, WattTime and GB paths that echoes the credentials it got."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | 401 | 500 | malformed
        self.seen: list[str] = []  # credentials received (proves they were really sent)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                creds = {k: v for k, v in self.headers.items() if k.lower() in ("auth-token", "authorization")}
                path = self.path.split("?")[0]
                outer.seen.append(json.dumps(creds))
                status, doc = outer.reply(path, creds)
                body = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo", json.dumps(creds))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def reply(self, path: str, creds: dict):
        echo = {"you_sent": creds}
        if self.mode == "401":
            return 401, {"message": "invalid token", **echo}
        if self.mode == "500":
            return 500, {"error": "boom", **echo}
        if self.mode == "malformed":
            return 200, ("<html>" + json.dumps(echo) + "</html>").encode()
        if path.endswith("/login"):
            return 200, {"token": SECRETS["wt_token"], **echo}
        if "region-from-loc" in path:
            return 200, {"region": "CAISO_NORTH", "region_full_name": "x", "signal_type": "co2_moer"}
        if "carbon-intensity" in path:  # Electricity Maps: valid points, plus the echo as an extra field
            pts = [{"datetime": f"2023-06-01T{h:02d}:00:00.000Z", "carbonIntensity": 100 + h} for h in range(24)]
            key = "history" if path.endswith("/history") else ("forecast" if path.endswith("/forecast") else "data")
            return 200, {"zone": "ES", key: pts, "updatedAt": "2023-06-01T00:00:00.000Z", **echo}
        if "/v3/" in path:  # WattTime data
            pts = [{"point_time": f"2023-06-01T00:{m:02d}:00+00:00", "value": 900.0} for m in range(0, 60, 5)]
            return 200, {"data": pts, "meta": {"units": "lbs_co2_per_mwh", "generated_at": "2023-06-01T00:00:00+00:00"}, **echo}
        return 404, echo

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    srv = EchoProvider()
    yield srv
    srv.close()


@pytest.fixture
def planted(monkeypatch, tmp_path, echo):
    """Every credential planted in the environment; live sources pointed at the echoing server."""
    from care_flows.signals import registry
    from care_flows.signals.electricitymaps import ElectricityMapsSignal
    from care_flows.signals.watttime import WattTimeSignal

    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", SECRETS["em_token"])
    monkeypatch.setenv("WATTTIME_USERNAME", SECRETS["wt_user"])
    monkeypatch.setenv("WATTTIME_PASSWORD", SECRETS["wt_password"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRETS["aws_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["aws_secret"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRETS["aws_session"])
    monkeypatch.setenv("PREFECT_API_KEY", SECRETS["prefect_key"])
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path / "cache"))
    fast = dict(sleep=lambda s: None, timeout_s=2.0, max_retries=1)
    monkeypatch.setitem(registry.SOURCES, "electricitymaps", lambda kind, **s: ElectricityMapsSignal(kind=kind or "lifecycle", **{"base_url": echo.url + "/v3", **fast, **s}))
    monkeypatch.setitem(registry.SOURCES, "watttime", lambda kind, **s: WattTimeSignal(kind=kind or "marginal", **{"base_url": echo.url, **fast, **s}))
    return tmp_path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def cache_bytes(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["ok", "401", "500", "malformed"])
@pytest.mark.parametrize(
    "args",
    [
        ["intensity", "--zone", "ES", "--source", "electricitymaps", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T06:00:00Z", "--json"],
        ["intensity", "--zone", "CAISO_NORTH", "--source", "watttime", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T00:30:00Z"],
        ["plan", "--zone", "ES", "--source", "electricitymaps", "--now", "2023-06-01T02:00:00Z", "--duration", "1h", "--within", "6h", "--json"],
    ],
    ids=["intensity-em", "intensity-wt", "plan-em"],
)
def test_cli_output_logs_and_cache_hold_no_secret(planted, echo, caplog, args, mode):
    caplog.set_level(logging.DEBUG)
    echo.mode = mode
    code, out, err = run_cli(args)
    assert code in (0, 2), err
    assert leaks(" ".join(echo.seen)), "the planted credentials were not sent to the provider"
    if mode == "ok":
        assert "electricitymaps" in out + err or "watttime" in out + err  # served live
    for where, text in {"stdout": out, "stderr": err, "logs": caplog.text, "cache": cache_bytes(planted / "cache")}.items():
        assert leaks(text) == [], f"{where} leaks {leaks(text)}"


@pytest.mark.parametrize("mode", ["401", "500", "malformed"])
def test_provider_errors_and_their_tracebacks_hold_no_secret(planted, echo, caplog, mode):
    from care_flows.signals.electricitymaps import ElectricityMapsSignal
    from care_flows.signals.watttime import WattTimeSignal

    caplog.set_level(logging.DEBUG)
    echo.mode = mode
    signals = [
        ElectricityMapsSignal(base_url=echo.url + "/v3", sleep=lambda s: None, max_retries=1),
        WattTimeSignal(base_url=echo.url, sleep=lambda s: None, max_retries=1),
    ]
    for sig in signals:
        with pytest.raises(CareError) as info:
            sig.history("ES" if "Electricity" in type(sig).__name__ else "CAISO_NORTH", "2023-06-01T00:00Z", "2023-06-01T01:00Z")
        exc = info.value
        texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc)), repr(sig), str(sig), repr(vars(sig)), repr(vars(sig.http))]
        for text in texts:
            assert leaks(text) == [], leaks(text)
    assert leaks(caplog.text) == []


def test_credential_objects_and_blocks_hide_their_secrets(planted):
    from prefect_aws import AwsCredentials

    from care_flows.aws.clients import AwsClients
    from care_flows.blocks import ElectricityMapsCredentials, WattTimeCredentials
    from care_flows.signals import get_signal

    em = ElectricityMapsCredentials(api_token=SECRETS["em_token"])
    wt = WattTimeCredentials(username="alice", password=SECRETS["wt_password"])
    aws = AwsCredentials(aws_access_key_id=SECRETS["aws_key_id"], aws_secret_access_key=SECRETS["aws_secret"], aws_session_token=SECRETS["aws_session"], region_name="eu-north-1")
    clients = AwsClients.from_credentials(aws, endpoint_url="http://127.0.0.1:9")
    chain = get_signal("electricitymaps")  # token from the environment
    # The access key id is an identifier, not a secret. prefect-aws 0.7.12 declares
    # aws_session_token as a plain str (upstream), so the AwsCredentials block itself shows it:
    # CaRE's own objects must not (see docs/RELIABILITY.md, "Secrets").
    upstream = {"aws_key_id", "aws_session"}
    objects = [em, wt, aws, clients, chain, em.get_signal(), wt.get_signal()]
    for obj in objects:
        allowed = upstream if obj is aws else {"aws_key_id"}
        for text in (repr(obj), str(obj)):
            assert [n for n in leaks(text) if n not in allowed] == [], (type(obj).__name__, leaks(text))
    for block in (em, wt, aws):
        dumped = block.model_dump_json()
        allowed = upstream if block is aws else {"aws_key_id"}
        assert [n for n in leaks(dumped) if n not in allowed] == [], (type(block).__name__, leaks(dumped))
    # the token is really there, wrapped: it is handed over, not lost
    assert em.signal_settings()["api_token"].get_secret_value() == SECRETS["em_token"]


def test_aws_cli_errors_hold_no_aws_or_prefect_secret(planted, caplog):
    import socket

    with socket.socket() as sock:  # a free loopback port (importing `conftest` is ambiguous: several exist)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="care_flows")
    dead = f"http://127.0.0.1:{port}"  # nothing listens: every AWS call fails
    for args in (
        ["aws", "reap", "--regions", "eu-north-1", "--no-prefect", "--endpoint-url", dead, "--json"],
        ["aws", "preflight", "--endpoint-url", dead] if "--endpoint-url" in run_cli(["aws", "preflight", "--help"])[1] else ["aws", "iam-policy"],
        ["aws", "iam-policy"],
    ):
        code, out, err = run_cli(args)
        assert code in (0, 1, 2), (args, err)
        assert "Traceback" not in err, (args, err)
        for where, text in {"stdout": out, "stderr": err, "care logs": caplog.text}.items():
            assert leaks(text) == [], (args, where, leaks(text))


@pytest.mark.parametrize("mode", ["ok", "401"])
def test_decision_artifacts_hold_no_secret(planted, echo, caplog, mode):
    import pandas as pd

    from care_flows.orchestration.artifacts import decision_markdown, decision_table
    from care_flows.orchestration.plan import plan_run
    from care_flows.policy import CarePolicy
    from care_flows.signals import get_signal

    caplog.set_level(logging.DEBUG)
    echo.mode = mode
    now = pd.Timestamp("2023-06-01T02:00Z")
    signal = get_signal("electricitymaps", clock=lambda: now)
    policy = CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="6h")
    plan = plan_run(policy, now, signal=signal)
    texts = [decision_markdown(plan, action="run now"), json.dumps(decision_table(plan), default=str), json.dumps(plan.to_dict(), default=str), caplog.text]
    assert plan.source == ("electricitymaps" if mode == "ok" else "embedded")
    for text in texts:
        assert leaks(text) == [], leaks(text)
