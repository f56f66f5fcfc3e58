"""Review 35a L1: `care aws preflight`'s create-secret hint for a secret given as an ARN."""

from __future__ import annotations

from care_flows.aws.clients import AwsClients
from care_flows.aws.preflight import check_secret
from test_aws_support import aws, moto_url  # noqa: F401

ARN = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-AbCdEf"


def test_the_create_hint_for_a_secretsmanager_arn_uses_the_secret_name(aws: AwsClients) -> None:
    # was: "--name arn:aws:secretsmanager:...:secret:care/prefect-api-key-AbCdEf" (a name cannot hold ':')
    check = check_secret(aws, "eu-south-2", ARN)
    assert not check.ok
    assert (f"Secrets Manager secret {ARN} not found in eu-north-1; create it: aws secretsmanager create-secret --region eu-north-1 "
            "--name care/prefect-api-key --secret-string '...', then give the ARN it prints") in check.detail
    assert "--name arn:" not in check.detail
    # the name form keeps its hint
    named = check_secret(aws, "eu-south-2", "care/prefect-api-key")
    assert "--region eu-south-2 --name care/prefect-api-key --secret-string '...' (or give its ARN" in named.detail


def test_the_hinted_name_creates_the_secret_the_check_then_finds(aws: AwsClients) -> None:
    from care_flows.aws.preflight import secretsmanager_name

    name = secretsmanager_name("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/r35a-key-Zz09Qq")
    assert name == "care/r35a-key"
    arn = aws.client("secretsmanager", "eu-north-1").create_secret(Name=name, SecretString="pnu_x")["ARN"]
    assert check_secret(aws, "eu-south-2", arn).ok


def test_the_ssm_arn_hint_names_the_parameter(aws: AwsClients) -> None:
    check = check_secret(aws, "eu-south-2", "arn:aws:ssm:eu-north-1:123456789012:parameter/care/r35a-auth")
    assert not check.ok and "aws ssm put-parameter --region eu-north-1 --name /care/r35a-auth --type SecureString" in check.detail
