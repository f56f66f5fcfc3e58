"""User data: secrets stay out, the API key is read by name in the secret's region, limits hold."""

from __future__ import annotations

import pytest

from care_flows.aws.faults import backoff_s, classify
from care_flows.aws.userdata import assert_no_secrets, render_user_data, safe_env
from care_flows.errors import ConfigError
from test_aws_support import PLANTED_SECRET, client_error

RUN = "0b7c1d2e-0000-4000-8000-000000000001"


def _render(**kw) -> str:
    args = dict(flow_run_id=RUN, api_url="https://prefect.example/api", env={}, install="care-flows", api_key_secret=None, region="eu-south-2", ttl_minutes=60)
    return render_user_data(**{**args, **kw})


def test_secret_looking_env_names_are_dropped() -> None:
    env = {"PREFECT_API_KEY": PLANTED_SECRET, "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET, "DB_PASSWORD": PLANTED_SECRET,
           "GITHUB_TOKEN": PLANTED_SECRET, "PREFECT_API_AUTH_STRING": PLANTED_SECRET, "STAGE": "prod", "bad name": "x"}
    kept, dropped = safe_env(env)
    assert kept == {"STAGE": "prod"} and "bad name" in dropped and "PREFECT_API_KEY" in dropped
    script = _render(env=env)
    assert PLANTED_SECRET not in script and "export STAGE=prod" in script


@pytest.mark.parametrize("secret, expected", [
    ("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/key-AbCdEf",
     "aws secretsmanager get-secret-value --region eu-north-1 --secret-id arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/key-AbCdEf"),
    ("care/key", "aws secretsmanager get-secret-value --region eu-south-2 --secret-id care/key"),
    ("/care/prefect-key", "aws ssm get-parameter --region eu-south-2 --name /care/prefect-key --with-decryption"),
    ("arn:aws:ssm:eu-north-1:123456789012:parameter/care/prefect-key", "aws ssm get-parameter --region eu-north-1 --name /care/prefect-key"),
])
def test_api_key_is_read_on_the_instance_by_name(secret: str, expected: str) -> None:
    script = _render(api_key_secret=secret)
    assert expected in script and "export PREFECT_API_KEY" in script


def test_script_runs_the_flow_run_and_bounds_its_life() -> None:
    script = _render(ttl_minutes=45)
    assert script.startswith("#!/bin/bash\n")
    assert "shutdown -h +45" in script and "trap 'shutdown -h now' EXIT" in script
    assert script.rstrip().endswith(f"prefect flow-run execute {RUN}")
    custom = _render(command="python -m my_runner")
    assert custom.rstrip().endswith("python -m my_runner")


def test_limits_and_the_secret_guard() -> None:
    with pytest.raises(ConfigError, match="16 KiB"):
        _render(env={"BIG": "x" * 20000})
    with pytest.raises(ConfigError) as info:
        assert_no_secrets(_render(env={"NOTE": PLANTED_SECRET}), [PLANTED_SECRET])
    assert PLANTED_SECRET not in str(info.value)


def test_fault_classes_and_backoff_bounds() -> None:
    assert classify(client_error("InsufficientInstanceCapacity")) == "capacity"
    assert classify(client_error("Unsupported")) == "unsupported"
    assert classify(client_error("InvalidInstanceType.NotFound")) == "unsupported"
    assert classify(client_error("RequestLimitExceeded")) == "throttle"
    assert classify(client_error("AuthFailure", message="AWS was not able to validate the provided access credentials")) == "region"
    assert classify(client_error("AuthFailure", message="Not authorized for images: [ami-0123456789abcdef0]")) == "fatal"
    import random

    rng = random.Random(1)
    for attempt in range(1, 10):
        wait = backoff_s(attempt, base_s=1.0, cap_s=20.0, rng=rng)
        assert 0.1 * min(20.0, 2 ** (attempt - 1)) <= wait <= min(20.0, 2 ** (attempt - 1))


@pytest.mark.parametrize("secret, expected", [
    ("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/auth-AbCdEf",
     "aws secretsmanager get-secret-value --region eu-north-1 --secret-id arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/auth-AbCdEf"),
    ("/care/prefect-auth", "aws ssm get-parameter --region eu-south-2 --name /care/prefect-auth --with-decryption"),
])
def test_basic_auth_string_is_read_on_the_instance_by_name(secret: str, expected: str) -> None:
    script = _render(api_auth_string_secret=secret, env={"PREFECT_API_AUTH_STRING": PLANTED_SECRET})
    line = next(ln for ln in script.splitlines() if ln.startswith('PREFECT_API_AUTH_STRING="$('))
    assert expected in line and "export PREFECT_API_AUTH_STRING" in script
    assert PLANTED_SECRET not in script and "PREFECT_API_KEY" not in script  # a self-hosted server may have no API key
    both = _render(api_key_secret="care/key", api_auth_string_secret=secret)
    assert both.index("export PREFECT_API_KEY") < both.index("export PREFECT_API_AUTH_STRING") < both.index("prefect flow-run execute")


@pytest.mark.parametrize("field, value", [
    ("api_url", "https://care:hunter2@prefect.example/api"),
    ("install", "care-flows git+https://ghp_0123456789abcdefghij@github.com/acme/flows.git"),
])
def test_credentials_in_the_api_url_or_the_install_spec_refuse_the_launch(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match="holds credentials in a URL") as info:
        _render(**{field: value})
    assert "hunter2" not in str(info.value) and "ghp_" not in str(info.value)
    assert "git+ssh://git@github.com/acme/flows.git" in _render(install="git+ssh://git@github.com/acme/flows.git")  # a username is fine


@pytest.mark.parametrize("value, dropped", [
    ("postgresql+asyncpg://care:hunter2pw@db/prefect", True), ("redis://:pw@cache:6379/0", True),
    ("https://ghp_0123456789abcdefghij@github.com/o/r", True), ("http://hooks.internal:8080?notify=ops@example.org", False),
    ("http://host:8080/path", False), ("git+ssh://git@github.com/o/r", False),
])
def test_env_values_with_url_credentials_are_dropped(value: str, dropped: bool) -> None:
    kept, names = safe_env({"TARGET": value})
    assert ("TARGET" in names) is dropped and ("TARGET" in kept) is not dropped
