"""`care aws preflight` and the IAM policy command against moto over HTTP."""

from __future__ import annotations

import json

from care_flows.aws.clients import AwsClients
from care_flows.aws.preflight import preflight
from care_flows.cli import main
from test_aws_support import aws, moto_url  # noqa: F401


def test_preflight_ok_in_both_regions(aws: AwsClients) -> None:
    for region in ("eu-north-1", "eu-south-2"):
        report = preflight(region, aws, instance_type="t3.large")
        assert report.ok, [c.line() for c in report.checks]
        assert [c.name for c in report.checks] == ["credentials", "instance type", "AMI", "subnet"]


def test_preflight_reports_what_is_missing(aws: AwsClients) -> None:
    vpc = aws.ec2("eu-north-1").describe_vpcs()["Vpcs"][0]["VpcId"]
    sg = aws.ec2("eu-north-1").create_security_group(GroupName="care", Description="care", VpcId=vpc)["GroupId"]
    report = preflight("eu-north-1", aws, instance_type="x1.16xlarge", subnet_id="subnet-00000000", security_group_ids=(sg, "sg-00000000"))
    by = {c.name: c for c in report.checks}
    assert not report.ok
    assert by["credentials"].ok
    assert not by["instance type"].ok and "not offered in eu-north-1" in by["instance type"].detail
    assert not by["AMI"].ok and not by["subnet"].ok
    assert not by["security groups"].ok and "sg-00000000" in by["security groups"].detail


def test_cli_preflight_exit_codes(aws: AwsClients, moto_url: str, capsys) -> None:
    assert main(["aws", "preflight", "--region", "eu-south-2", "--instance-type", "t3.large", "--endpoint-url", moto_url]) == 0
    out = capsys.readouterr().out
    assert "ok       instance type: t3.large is offered in eu-south-2" in out
    assert main(["aws", "preflight", "--region", "eu-south-2", "--instance-type", "x1.16xlarge", "--endpoint-url", moto_url, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and any(not c["ok"] and c["name"] == "instance type" for c in doc["checks"])


def test_cli_iam_policy_prints_json(capsys) -> None:
    assert main(["aws", "iam-policy", "--secret-arn", "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["instance"]["Statement"][0]["Action"] == ["secretsmanager:GetSecretValue"]
    assert any(s["Sid"] == "TerminateOnlyCareInstances" for s in doc["worker"]["Statement"])


def test_cli_iam_policy_prints_the_usage_store_statements(capsys) -> None:
    assert main(["aws", "iam-policy", "--usage-store", "s3://care-usage/team-a"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["Action"] for s in doc["usage_store_append"]["Statement"]] == [["s3:PutObject"]]
    assert [s["Action"] for s in doc["usage_store_read"]["Statement"]] == [["s3:ListBucket"], ["s3:GetObject"]]
    assert main(["aws", "iam-policy", "--usage-store", "https://care-usage"]) == 2
    assert "is not an S3 URL" in capsys.readouterr().err
