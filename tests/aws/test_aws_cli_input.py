"""`care aws ...` rejects bad input up front (exit 2, one line naming the value and the fix) and
says what went wrong when the endpoint is unreachable or does not answer like AWS (review 4)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from care_flows.aws.clients import AwsClients
from care_flows.aws.usage_store import parse_s3_url
from care_flows.cli import main
from care_flows.errors import ConfigError
from test_aws_support import _free_port, aws, moto_url  # noqa: F401

SECRET = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key"


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def html_500_url() -> Iterator[str]:
    """A loopback server that answers every request with an HTTP 500 HTML page (a broken proxy or mock)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>broken</p>\n"
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:5000", "http://", "http://127.0.0.1:port"])
def test_a_bad_endpoint_url_is_exit_2_naming_it(url: str, capsys) -> None:
    assert main(["aws", "preflight", "--region", "eu-north-1", "--endpoint-url", url]) == 2
    _one_line_error(capsys, "--endpoint-url", repr(url), "http(s)://")


def test_a_bad_aws_endpoint_url_variable_is_named(capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "notaurl")
    assert main(["aws", "reap", "--dry-run", "--no-prefect", "--regions", "eu-north-1"]) == 2
    _one_line_error(capsys, "AWS_ENDPOINT_URL", "'notaurl'")


def test_the_library_rejects_a_bad_endpoint_too() -> None:
    with pytest.raises(ConfigError, match="notaurl"):
        AwsClients(endpoint_url="notaurl")


@pytest.mark.parametrize(
    "argv",
    [
        ["aws", "preflight", "--region", "eu-moon-1", "--endpoint-url", "http://127.0.0.1:1"],
        ["aws", "reap", "--dry-run", "--no-prefect", "--regions", "eu-north-1,eu-moon-1", "--endpoint-url", "http://127.0.0.1:1"],
        ["aws", "iam-policy", "--regions", "eu-moon-1"],
    ],
)
def test_an_unknown_region_is_exit_2_before_any_call(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    _one_line_error(capsys, "unknown region 'eu-moon-1'", "known regions: ", "eu-north-1")


def test_an_unknown_region_in_care_aws_regions_names_the_variable(capsys, monkeypatch) -> None:
    monkeypatch.setenv("CARE_AWS_REGIONS", "eu-moon-1")
    assert main(["aws", "reap", "--dry-run", "--no-prefect", "--endpoint-url", "http://127.0.0.1:1"]) == 2
    _one_line_error(capsys, "CARE_AWS_REGIONS", "'eu-moon-1'")


def test_a_real_aws_region_outside_the_registry_is_accepted(capsys) -> None:
    assert main(["aws", "iam-policy", "--regions", "eu-north-1,ap-southeast-1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    launch = next(s for s in doc["Statement"] if s["Sid"] == "LaunchOnlyTaggedCareInstances")
    assert "arn:aws:ec2:ap-southeast-1:*:instance/*" in launch["Resource"]


@pytest.mark.parametrize("arn", ["notanarn", "arn:aws:secretsmanager:eu-north-1:1234:secret:x", "arn:aws:s3:::bucket/key"])
def test_a_bad_secret_arn_is_exit_2(arn: str, capsys) -> None:
    assert main(["aws", "iam-policy", "--secret-arn", arn]) == 2
    _one_line_error(capsys, repr(arn), "arn:aws:secretsmanager:<region>:")


@pytest.mark.parametrize("arn", [SECRET, "arn:aws:ssm:eu-north-1:123456789012:parameter/care/prefect-api-key",
                                 "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:care-key-AbCdEf"])
def test_good_secret_arns_pass(arn: str, capsys) -> None:
    assert main(["aws", "iam-policy", "--secret-arn", arn]) == 0
    assert json.loads(capsys.readouterr().out)["instance"]["Statement"][0]["Resource"] == [arn]


@pytest.mark.parametrize("role", ["bad role!", "arn:aws:iam::1:role/x", "x" * 65, "arn:aws:iam::123456789012:instance-profile/care"])
def test_a_bad_instance_role_is_exit_2(role: str, capsys) -> None:
    assert main(["aws", "iam-policy", "--instance-role", role]) == 2
    _one_line_error(capsys, repr(role), "arn:aws:iam::123456789012:role/care-flow-run")


@pytest.mark.parametrize(
    ("role", "resource"),
    [("foo", "arn:aws:iam::*:role/foo"), ("arn:aws:iam::123456789012:role/care/run", "arn:aws:iam::123456789012:role/care/run")],
)
def test_an_instance_role_name_becomes_a_role_arn(role: str, resource: str, capsys) -> None:
    assert main(["aws", "iam-policy", "--instance-role", role]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert next(s for s in doc["Statement"] if s["Sid"] == "PassOnlyTheFlowRunRole")["Resource"] == [resource]


def test_a_short_bucket_name_says_what_bucket_names_need(capsys) -> None:
    with pytest.raises(ConfigError, match=r"bucket name 'b' .*3-63 characters \(lowercase letters, digits, dots, hyphens\)"):
        parse_s3_url("s3://b/p")
    assert main(["aws", "iam-policy", "--usage-store", "s3://Care_Usage/p"]) == 2
    _one_line_error(capsys, "'Care_Usage'", "3-63 characters")


def test_preflight_names_an_unreachable_endpoint(capsys) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["aws", "preflight", "--region", "eu-north-1", "--endpoint-url", url]) == 1
    out = capsys.readouterr().out
    assert f"credentials: endpoint {url}/ is unreachable (Connection refused)" in out and "--endpoint-url" in out
    assert "configure AWS credentials" not in out
    assert out.count("skipped:") == 3


def test_an_html_500_answer_is_one_short_line(html_500_url: str, capsys) -> None:
    assert main(["aws", "preflight", "--region", "eu-north-1", "--endpoint-url", html_500_url, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    for check in doc["checks"]:
        assert not check["ok"] and "<" not in check["detail"] and "\n" not in check["detail"], check
    assert "not an AWS response ('500 Internal Server Error')" in doc["checks"][0]["detail"]
    assert main(["aws", "reap", "--dry-run", "--no-prefect", "--regions", "eu-north-1", "--endpoint-url", html_500_url]) == 1
    err = capsys.readouterr().err
    assert "error: eu-north-1: ResponseParserError: the endpoint's answer is not an AWS response ('500 Internal Server Error')" in err
    assert "<" not in err


def test_reap_warns_when_only_the_ttl_rule_can_apply(aws: AwsClients, moto_url: str, capsys, monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["aws", "reap", "--dry-run", "-r", "eu-north-1", "--endpoint-url", moto_url]) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "PREFECT_API_URL is not set" in warnings[0] and "care:expires-at" in warnings[0]
        assert main(["aws", "reap", "--dry-run", "--no-prefect", "-r", "eu-north-1", "--endpoint-url", moto_url]) == 0
        assert "warning:" not in capsys.readouterr().err
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        assert main(["aws", "reap", "--dry-run", "-r", "eu-north-1", "--endpoint-url", moto_url]) == 0
        assert "warning:" not in capsys.readouterr().err
