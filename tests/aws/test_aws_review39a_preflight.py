"""Review 39a L2 and L4: ``care aws preflight`` says what the worker says.

L2: ``--instance-type t3.lage`` gave "t3.lage is not offered in eu-north-1; pick another type or
region", sending the user to other regions; the worker says "'t3.lage' is not an EC2 instance type
(did you mean 't3.large'?)".

L4: with no AWS credentials, preflight exited 1 with "configure AWS credentials (env, profile or an
AwsCredentials block)" while ``care aws reap`` exits 2 with "error: no AWS credentials found;
configure them in the environment ...". Both are the same set-up error now; exit 1 stays for
failed checks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from care_flows.aws.clients import AwsClients
from care_flows.aws.preflight import preflight
from care_flows.cli import main
from test_aws_support import aws, moto_url, no_aws_credentials  # noqa: F401


# L2 ---------------------------------------------------------------------------------------------

def test_a_misspelt_instance_type_gets_the_workers_did_you_mean(aws: AwsClients, moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["aws", "preflight", "--region", "eu-north-1", "--instance-type", "t3.lage", "--endpoint-url", moto_url]) == 1
    out = capsys.readouterr().out
    assert ("MISSING  instance type: 't3.lage' is not an EC2 instance type (did you mean 't3.large'?); check the spelling of --instance-type"
            in out), out
    assert "not offered" not in out and "pick another type or region" not in out
    assert "MISSING  AMI: skipped: the instance type is not an EC2 instance type, so its architecture is unknown" in out


def test_a_real_type_the_region_does_not_offer_still_says_not_offered(aws: AwsClients) -> None:  # noqa: F811
    by = {c.name: c for c in preflight("eu-north-1", aws, instance_type="x1.16xlarge").checks}
    assert by["instance type"].detail == "x1.16xlarge is not offered in eu-north-1; pick another type or region"
    assert by["AMI"].detail == "skipped: the instance type is not offered, so its architecture is unknown"


# L4 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("json_out", [False, True])
def test_no_credentials_is_the_same_one_line_and_exit_2_as_reap(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,  # noqa: F811
                                                                capsys: pytest.CaptureFixture[str], json_out: bool) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    assert main(["aws", "reap", "--no-prefect", "--regions", "eu-north-1", "--endpoint-url", moto_url]) == 2
    reap_err = capsys.readouterr().err.strip()
    code = main(["aws", "preflight", "--region", "eu-north-1", "--instance-type", "t3.large", "--endpoint-url", moto_url,
                 "--iam-instance-profile", "care-flow-run", *(["--json"] if json_out else [])])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == reap_err and reap_err.count("\n") == 0
    assert reap_err.startswith("error: no AWS credentials found; configure them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")


def test_the_preflight_function_still_reports_the_checks_and_flags_no_credentials(moto_url: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                                                  tmp_path: Any) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    report = preflight("eu-north-1", AwsClients(endpoint_url=moto_url), instance_type="t3.large")
    assert report.no_credentials and not report.ok
    assert report.checks[0].detail.startswith("NoCredentialsError: no AWS credentials found; configure them in the environment")
    assert [c.detail for c in report.checks[1:]] == ["skipped: no AWS credentials (see above)"] * 3


def test_other_failed_checks_still_exit_1_with_credentials(aws: AwsClients, moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["aws", "preflight", "--region", "eu-north-1", "--subnet-id", "subnet-00000000", "--endpoint-url", moto_url, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["checks"] if not c["ok"]] == ["subnet"]
