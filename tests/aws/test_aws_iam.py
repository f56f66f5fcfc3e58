"""The IAM policy allows exactly what the code calls: checked statically (AST) and at run time
(botocore ``before-call`` events recorded while the code runs against moto)."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import botocore.session
from botocore import xform_name

from care_flows.aws import iam
from care_flows.aws.clients import AwsClients, add_call_observer, remove_call_observer
from care_flows.aws.iam import OPERATIONS, policy_actions, required_actions, worker_policy
from test_aws_support import aws, moto_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "care_flows" / "aws").glob("*.py")) + [ROOT / "care_flows" / "cli" / "aws.py"]
SERVICES = ("ec2", "ssm", "sts", "pricing", "s3", "iam", "secretsmanager")


def _operation_names() -> dict[str, dict[str, str]]:
    session = botocore.session.get_session()
    return {s: {xform_name(op): op for op in session.get_service_model(s).operation_names} for s in SERVICES}


def _calls_in_code() -> set[tuple[str, str]]:
    ops = _operation_names()
    found: set[tuple[str, str]] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target, method = node.func.value, node.func.attr
            service = None
            if isinstance(target, ast.Name) and target.id in SERVICES:
                service = target.id
            elif isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute) and target.func.attr in ("client", "ec2", "ssm", "_s3"):
                if target.func.attr in ("ec2", "ssm", "_s3"):
                    service = target.func.attr.lstrip("_")
                elif target.args and isinstance(target.args[0], ast.Constant):
                    service = target.args[0].value
            if service not in SERVICES:
                continue
            if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                method = node.args[0].value
            if method in ops[service]:
                found.add((service, ops[service][method]))
    return found


def test_policy_actions_equal_the_operations_the_code_uses() -> None:
    assert set(policy_actions(worker_policy())) == required_actions()
    assert set(policy_actions(worker_policy(regions=("eu-north-1", "eu-south-2")))) == required_actions()


def test_operations_registry_matches_the_code() -> None:
    from care_flows.aws.usage_store import OPERATIONS as USAGE_STORE_OPERATIONS

    in_code = _calls_in_code()
    registry = {(s, op) for ops_by_service in (OPERATIONS, USAGE_STORE_OPERATIONS) for s, ops in ops_by_service.items() for op in ops}
    assert in_code == registry, {"in code, not in the policy": in_code - registry, "in the policy, unused": registry - in_code}


def test_usage_store_policy_allows_exactly_the_store_operations_on_its_prefix() -> None:
    from care_flows.aws.iam import usage_store_policy
    from care_flows.aws.usage_store import OPERATIONS as USAGE_STORE_OPERATIONS

    iam_action = {"PutObject": "s3:PutObject", "GetObject": "s3:GetObject", "ListObjectsV2": "s3:ListBucket"}  # IAM name of each call
    doc = usage_store_policy("s3://care-usage/team-a")
    assert set(policy_actions(doc)) == {iam_action[op] for op in USAGE_STORE_OPERATIONS["s3"]}
    by_action = {st["Action"][0]: st for st in doc["Statement"]}
    assert by_action["s3:PutObject"]["Resource"] == ["arn:aws:s3:::care-usage/team-a/*"]
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": ["team-a/*"]}}
    assert set(policy_actions(usage_store_policy("s3://care-usage/team-a", read=False))) == {"s3:PutObject"}


def test_recorded_calls_are_all_allowed(aws: AwsClients) -> None:
    from care_flows.aws.launch import LaunchSpec, instance_state, launch, terminate_instance
    from care_flows.aws.preflight import preflight
    from care_flows.aws.pricing import AwsPriceList
    from care_flows.aws.reaper import reap

    seen: set[tuple[str, str]] = set()
    observer = lambda service, op: seen.add((service.replace("secrets-manager", "secretsmanager"), op))  # noqa: E731 - botocore's event name
    add_call_observer(observer)
    try:
        result = launch(LaunchSpec(flow_run_id="iam-run", region="eu-north-1", instance_type="t3.micro", user_data="#!/bin/bash\n"), aws)
        instance_state(aws.ec2("eu-north-1"), result.instance_id)
        terminate_instance(aws.ec2("eu-north-1"), result.instance_id)
        reap(["eu-north-1"], aws, now=datetime.now(timezone.utc), flow_run_state=None)
        ec2 = aws.ec2("eu-north-1")
        image = aws.ssm("eu-north-1").get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
        preflight("eu-north-1", aws, instance_type="t3.micro")
        preflight("eu-north-1", aws, instance_type="t3.micro", image_id=image, subnet_id=subnet, security_group_ids=(group,))
        preflight("eu-north-1", aws, instance_type="t3.micro", iam_instance_profile="care-iam-test-profile",
                  api_key_secret="care/iam-test-key", api_auth_string_secret="/care/iam-test-auth")
        AwsPriceList(aws, cache_dir="/nonexistent").spot_usd_per_hour("eu-north-1", "t3.micro")
    finally:
        remove_call_observer(observer)
    allowed = {tuple(a.split(":", 1)) for a in required_actions()}
    assert ("ec2", "RunInstances") in seen and ("ssm", "GetParameter") in seen
    assert {("iam", "GetInstanceProfile"), ("secretsmanager", "DescribeSecret"), ("ssm", "DescribeParameters")} <= seen
    assert seen <= allowed, seen - allowed


def test_module_exports() -> None:
    assert set(iam.__all__) <= set(dir(iam))


def test_arns_use_the_partition_of_the_regions(capsys) -> None:
    import json

    from care_flows.cli import main

    def resources(doc: dict) -> list[str]:
        out = []
        for st in doc["Statement"]:
            res = st["Resource"]
            out += [res] if isinstance(res, str) else res
        return [r for r in out if r != "*"]

    for regions, arn in (("cn-north-1,cn-northwest-1", "arn:aws-cn:"), ("us-gov-west-1", "arn:aws-us-gov:"), ("eu-north-1,eu-south-2", "arn:aws:")):
        assert main(["aws", "iam-policy", "--regions", regions]) == 0
        got = resources(json.loads(capsys.readouterr().out))
        assert got and all(r.startswith(arn) for r in got), got
    assert main(["aws", "iam-policy", "--regions", "cn-north-1,eu-north-1"]) == 2
    err = capsys.readouterr().err
    assert "span the AWS partitions aws, aws-cn" in err and err.count("\n") == 1


def test_preflight_reads_secrets_as_metadata_only() -> None:
    """The worker may check that the secrets exist but never read them: only the instance role reads values."""
    actions = set(policy_actions(worker_policy()))
    assert {"iam:GetInstanceProfile", "secretsmanager:DescribeSecret", "ssm:DescribeParameters"} <= actions
    assert "secretsmanager:GetSecretValue" not in actions
    [read_param] = [st for st in worker_policy()["Statement"] if "ssm:GetParameter" in st["Action"]]
    assert all("ami-amazon-linux-latest" in r for r in read_param["Resource"])


def test_instance_policy_reads_the_api_key_and_the_auth_string(capsys) -> None:
    import json

    from care_flows.cli import main

    key = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-AbCdEf"
    auth = "arn:aws:ssm:eu-north-1:123456789012:parameter/care/prefect-auth"
    assert main(["aws", "iam-policy", "--secret-arn", key, "--auth-secret-arn", auth]) == 0
    statements = json.loads(capsys.readouterr().out)["instance"]["Statement"]
    assert [(st["Sid"], st["Action"], st["Resource"]) for st in statements] == [
        ("ReadPrefectApiKey", ["secretsmanager:GetSecretValue"], [key]), ("ReadPrefectApiAuthString", ["ssm:GetParameter"], [auth])]
    assert main(["aws", "iam-policy", "--auth-secret-arn", auth]) == 0  # a self-hosted server behind basic auth has no API key
    assert [st["Sid"] for st in json.loads(capsys.readouterr().out)["instance"]["Statement"]] == ["ReadPrefectApiAuthString"]
    assert main(["aws", "iam-policy", "--auth-secret-arn", "care/auth"]) == 2
    assert "secret ARN 'care/auth' is not" in capsys.readouterr().err


def test_a_custom_image_parameter_is_readable_by_the_worker(capsys) -> None:
    """A pool with its own image_ssm_parameter was refused ssm:GetParameter by the generated policy (helper audit)."""
    import json

    from care_flows.cli import main

    [read] = [st for st in worker_policy(regions=("eu-north-1",), image_ssm_parameter="/my/amis/care-{arch}")["Statement"]
              if "ssm:GetParameter" in st["Action"]]
    assert read["Resource"] == ["arn:aws:ssm:eu-north-1::parameter/aws/service/ami-amazon-linux-latest/*",
                                "arn:aws:ssm:eu-north-1:*:parameter/my/amis/care-*"]
    public = worker_policy(regions=("eu-north-1",), image_ssm_parameter="/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id")
    [read] = [st for st in public["Statement"] if "ssm:GetParameter" in st["Action"]]
    assert read["Resource"][1] == "arn:aws:ssm:eu-north-1::parameter/aws/service/canonical/ubuntu/server/24.04/stable/current/*/hvm/ebs-gp3/ami-id"
    assert main(["aws", "iam-policy", "-r", "eu-north-1", "--image-ssm-parameter", "/my/amis/care-{arch}"]) == 0
    assert "parameter/my/amis/care-*" in json.dumps(json.loads(capsys.readouterr().out))
    assert main(["aws", "iam-policy", "--image-ssm-parameter", "my-amis"]) == 2
    assert "is not a parameter path" in capsys.readouterr().err
