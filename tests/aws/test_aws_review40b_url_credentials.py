"""Review 40b: credentials in URLs that CaRE let through.

H1: a database URL whose password holds '/', '#' or '?' (SQLAlchemy takes them unencoded), or any URL
password with a blank, was not seen as a credential: it went into EC2 user data, the controller's
JSON and reasons, and the decision artifact.
M2: a PREFECT_API_URL password with a blank or an '@' was printed (whole or its tail) by `care report`,
the controller's "cannot reach" error and the worker's loopback warning.
L1: a token in the query (?token=...) was never masked. L2: a '#' in the password gave `care report`
"internal error (InvalidURL: Invalid port: 'hu')", the password's first characters.
"""

from __future__ import annotations

import json

import pytest

from care_flows.aws.userdata import has_url_credentials, mask_url, mask_url_credentials, render_user_data, safe_env, secret_reason
from care_flows.aws.worker import api_url_problem
from care_flows.cli import main
from care_flows.orchestration.overrides import describe_overrides

LEAKED = {
    "DATABASE_URL": "postgresql+asyncpg://care:Pa/ss-w0rd@db.internal/prefect",
    "ANALYTICS_DB": "postgresql://etl:Pa#ss-w0rd@warehouse.internal:5432/dw",
    "CACHE_URL": "mysql+pymysql://app:Pa?ss-w0rd@mysql.internal/app",
    "SERVICE_URL": "https://admin:my secret pw@service.internal/api",
    "AT_URL": "https://admin:Pa@ss-w0rd@service.internal/api",
    "REDIS_URL": "redis://:p#w-Secret9@cache:6379/0",
}
NOT_CREDENTIALS = {
    "PKG": "git+https://github.com/o/r@v1.0",
    "PATH_AT": "https://host:8080/path@x",
    "NOTIFY": "http://hooks.internal:8080?notify=ops@example.org",
    "SCOPE": "https://registry.npmjs.org/@scope/pkg",
    "SSH": "git+ssh://git@github.com/o/r",
    "IPV6": "http://[::1]:4200/api",
}


@pytest.mark.parametrize("name", sorted(LEAKED))
def test_a_password_with_slash_hash_question_mark_at_or_blank_is_a_credential(name: str) -> None:
    value = LEAKED[name]
    assert has_url_credentials(value) and secret_reason(name, value) == "its value is a URL with credentials"
    masked = mask_url_credentials(f"got {value!r} for env.{name}") if " " not in value else mask_url(value)
    assert "ss-w0rd" not in masked and "secret pw" not in masked and "Secret9" not in masked, masked


@pytest.mark.parametrize("name", sorted(NOT_CREDENTIALS))
def test_urls_with_an_at_or_a_port_but_no_password_stay_as_they_are(name: str) -> None:
    value = NOT_CREDENTIALS[name]
    assert not has_url_credentials(value) and secret_reason(name, value) is None
    assert mask_url_credentials(value) == value


def test_none_of_them_reaches_user_data_and_the_rest_does() -> None:
    kept, dropped = safe_env({**LEAKED, **NOT_CREDENTIALS, "STAGE": "prod"})
    assert sorted(dropped) == sorted(LEAKED) and set(kept) == {*NOT_CREDENTIALS, "STAGE"}
    script = render_user_data(flow_run_id="x", api_url="https://api.prefect.cloud/api/accounts/a/workspaces/w", env={**LEAKED, "STAGE": "prod"},
                              install="", api_key_secret=None, region="eu-north-1", ttl_minutes=60)
    assert all(secret not in script for secret in ("ss-w0rd", "secret pw", "Secret9")), script
    assert "STAGE=prod" in script


def test_the_decision_artifacts_overrides_line_masks_them() -> None:
    text = describe_overrides({"targets": {"eu-south-2": {"job_variables": {"env": {"DATABASE_URL": LEAKED["DATABASE_URL"], "OK": "1"}}}}})
    assert "ss-w0rd" not in text and "DATABASE_URL" in text, text


@pytest.mark.parametrize("url, shown", [
    ("http://admin:my secret pw@127.0.0.1:4200/api", "http://***@127.0.0.1:4200/api"),
    ("http://admin:hunter@2x@127.0.0.1:4200/api", "http://***@127.0.0.1:4200/api"),
    ("http://127.0.0.1:4200/api?token=SEKRET123", "http://127.0.0.1:4200/api?token=***"),
    ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
])
def test_a_whole_api_url_is_shown_with_its_user_information_and_query_tokens_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    warning = api_url_problem(url.replace("127.0.0.1", "localhost"))
    assert warning is not None and shown.replace("127.0.0.1", "localhost") in warning


@pytest.mark.parametrize("url, said", [
    ("http://admin:my secret pw@127.0.0.1:1/api", "error: cannot reach the Prefect API at http://***@127.0.0.1:1/api ("),
    ("http://admin:hunter@2x@127.0.0.1:1/api", "error: cannot reach the Prefect API at http://***@127.0.0.1:1/api ("),
    ("http://127.0.0.1:1/api?token=SEKRET123", "error: cannot reach the Prefect API at http://127.0.0.1:1/api?token=*** ("),
    ("http://admin:hu#nter2@127.0.0.1:1/api", "error: PREFECT_API_URL http://***@127.0.0.1:1/api is not a valid URL; percent-encode '#'"),
])
def test_care_report_never_prints_the_api_urls_password(url: str, said: str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", url)
    with temporary_settings({PREFECT_API_URL: url}):
        code = main(["report", "--since", "1d", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith(said) and err.count("\n") == 1, err
    for secret in ("secret pw", "hunter", "2x@", "SEKRET123", "hu#", "nter2"):
        assert secret not in err
    assert "internal error" not in err


def test_the_controllers_json_reason_masks_a_database_password_with_a_slash() -> None:
    from care_flows.orchestration.controller import ControllerAction

    action = ControllerAction(flow_run_id="r", flow_run_name="n", deployment="d", action="replanned",
                              reason=f"care_overrides: env DATABASE_URL={LEAKED['DATABASE_URL']}",
                              job_variables={"env": {"DATABASE_URL": LEAKED["DATABASE_URL"], "STAGE": "prod"}})
    doc = json.dumps(action.to_dict(), default=str)
    assert "ss-w0rd" not in doc and "prod" in doc, doc
