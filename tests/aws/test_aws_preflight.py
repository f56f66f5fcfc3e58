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


def test_preflight_checks_the_instance_profile_and_the_secrets(aws: AwsClients) -> None:
    """What docs/AWS.md section 1 step 2 asks the user to create; values are never read."""
    report = preflight("eu-north-1", aws, instance_type="t3.large", iam_instance_profile="care-pf-profile",
                       api_key_secret="care/pf-api-key", api_auth_string_secret="/care/pf-auth")
    by = {c.name: c for c in report.checks}
    assert not report.ok and [c.name for c in report.missing] == ["instance profile", "API key secret", "auth string secret"]
    assert "care-pf-profile not found; create it: aws iam create-instance-profile --instance-profile-name care-pf-profile" in by["instance profile"].detail
    assert "Secrets Manager secret care/pf-api-key not found in eu-north-1; create it: aws secretsmanager create-secret" in by["API key secret"].detail
    assert "SSM parameter /care/pf-auth not found in eu-north-1" in by["auth string secret"].detail

    iam = aws.client("iam", "eu-north-1")
    iam.create_role(RoleName="care-pf-role", AssumeRolePolicyDocument="{}")
    profile_arn = iam.create_instance_profile(InstanceProfileName="care-pf-profile")["InstanceProfile"]["Arn"]
    assert "has no role" in preflight("eu-north-1", aws, iam_instance_profile=profile_arn).checks[-1].detail
    iam.add_role_to_instance_profile(InstanceProfileName="care-pf-profile", RoleName="care-pf-role")
    key_arn = aws.client("secretsmanager", "eu-south-2").create_secret(Name="care/pf-api-key", SecretString="pnu_pf")["ARN"]
    aws.ssm("eu-north-1").put_parameter(Name="/care/pf-auth", Value="u:p", Type="SecureString")
    report = preflight("eu-north-1", aws, instance_type="t3.large", iam_instance_profile=profile_arn,
                       api_key_secret=key_arn, api_auth_string_secret="/care/pf-auth")
    assert report.ok, [c.line() for c in report.checks]
    by = {c.name: c for c in report.checks}
    assert by["instance profile"].detail == f"{profile_arn} with role care-pf-role"
    assert by["API key secret"].detail.endswith("exists in eu-south-2")  # the ARN's region, not --region
    aws.ssm("eu-north-1").put_parameter(Name="/care/pf-plain", Value="u:p", Type="String")
    assert "store it again with --type SecureString" in preflight("eu-north-1", aws, api_key_secret="/care/pf-plain").checks[-1].detail


def test_cli_preflight_reports_a_missing_instance_profile(aws: AwsClients, moto_url: str, capsys) -> None:
    argv = ["aws", "preflight", "--region", "eu-north-1", "--instance-type", "t3.large", "--endpoint-url", moto_url,
            "--iam-instance-profile", "care-flow-run-missing", "--api-key-secret", "care/missing-key"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "MISSING  instance profile: care-flow-run-missing not found; create it" in captured.out
    assert "MISSING  API key secret: Secrets Manager secret care/missing-key not found in eu-north-1" in captured.out
    assert "2 check(s) failed in eu-north-1" in captured.err


def test_unreachable_endpoint_skips_the_profile_and_secret_checks(capsys) -> None:
    from test_aws_support import _free_port

    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["aws", "preflight", "--region", "eu-north-1", "--endpoint-url", url, "--iam-instance-profile", "p", "--api-key-secret", "s", "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["instance profile"]["detail"] == checks["API key secret"]["detail"] == f"skipped: {url} is unreachable"


def test_the_ami_check_does_not_blame_an_offering_it_could_not_check(moto_url: str) -> None:
    """Review 14: without credentials the AMI line said 'the instance type is not offered', which was never checked."""
    from botocore.exceptions import NoCredentialsError

    from test_aws_support import moto_clients

    class NoCredentials:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name == "describe_instance_type_offerings":
                def denied(**kw):
                    raise NoCredentialsError()
                return denied
            return getattr(self._inner, name)

    clients = moto_clients(moto_url, wrap=lambda s, r, c: NoCredentials(c) if s == "ec2" else c)
    by = {c.name: c for c in preflight("eu-north-1", clients, instance_type="t3.large").checks}
    assert not by["instance type"].ok
    assert by["AMI"].detail == "skipped: the instance type could not be checked (see above), so its architecture is unknown"


def test_without_credentials_the_other_checks_say_skipped_not_the_same_error_again(moto_url: str) -> None:
    """Review 29 L7: with no credentials, NoCredentialsError was repeated on every line."""
    from botocore.exceptions import NoCredentialsError

    from test_aws_support import moto_clients

    class NoCredentials:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            def denied(**kw):
                raise NoCredentialsError()
            return denied

    clients = moto_clients(moto_url, wrap=lambda s, r, c: NoCredentials(c))
    checks = preflight("eu-north-1", clients, instance_type="t3.large", subnet_id="subnet-1").checks
    assert checks[0].name == "credentials" and "NoCredentialsError" in checks[0].detail
    assert [c.detail for c in checks[1:]] == ["skipped: no AWS credentials (see above)"] * 3
