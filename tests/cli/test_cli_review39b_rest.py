"""Review 39b L1, L11 and L12, left open in session 15 and done in session 16.

L1: ``--headroom-pct nan`` said "Input should be less than or equal to 400 (got 'nan')", as if NaN
were a number too large; the other commands say "nan is not a number".
L11: with the AWS endpoint unreachable ``care aws preflight`` skipped every check, even those that
need no call: a misspelt instance type and a malformed secret ARN.
L12: ``--duration 0.0001s`` planned a 100 us job; under a second is a unit mistake.
"""

from __future__ import annotations

import pytest

from care_flows.cli import main

PLAN = ["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--within", "4h"]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("argv, option", [
    (["usage", "x", "--headroom-pct", "nan"], "--headroom-pct"),
    (["simulate", "poisson", "--n", "3", "--slack-h", "NaN", "--out", "jobs.csv"], "--slack-h"),
    (["simulate", "poisson", "--n", "3", "--slack-h", "-nan", "--out", "jobs.csv"], "--slack-h"),
])
def test_nan_is_not_a_number_not_a_value_out_of_bounds(capsys: pytest.CaptureFixture[str], argv: list[str], option: str) -> None:
    err = _error(capsys, argv)
    assert f"Invalid value for '{option}': '{argv[argv.index(option) + 1]}' is not a number" in err
    assert "Input should be" not in err


@pytest.mark.parametrize("duration, said", [
    ("0.0001s", "--duration '0.0001s' is under one second; CaRE plans in seconds or more: check the unit (e.g. 0.0001h or 0.0001m)"),
    ("0.5s", "--duration '0.5s' is under one second"),
    ("0.0001h", "--duration '0.0001h' is under one second; CaRE plans in seconds or more: give 1s or more"),
])
def test_a_duration_under_a_second_is_a_unit_mistake(capsys: pytest.CaptureFixture[str], duration: str, said: str) -> None:
    assert said in _error(capsys, [*PLAN, "--duration", duration])
    assert main([*PLAN, "--duration", "1s", "--json"]) == 0  # a second is a real (short) job


def test_preflight_offline_still_checks_what_needs_no_call(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    code = main(["aws", "preflight", "--region", "eu-north-1", "--endpoint-url", "http://127.0.0.1:1", "--instance-type", "t3.micr",
                 "--api-key-secret", "arn:bogus", "--api-auth-string-secret", "/care/auth"])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISSING  instance type: 't3.micr' is not an EC2 instance type (did you mean 't3.micro'?)" in out, out
    assert "MISSING  API key secret: secret ARN 'arn:bogus' is not a Secrets Manager or SSM parameter ARN" in out
    assert "MISSING  AMI: skipped: http://127.0.0.1:1 is unreachable" in out  # needs a call: still skipped
    assert "MISSING  auth string secret: skipped: http://127.0.0.1:1 is unreachable" in out  # a name, not an ARN: only AWS can say
