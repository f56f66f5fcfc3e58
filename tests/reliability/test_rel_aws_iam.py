"""IAM policies against what really runs, where tests/aws/test_aws_iam.py does not look.

tests/aws/test_aws_iam.py checks the worker policy against boto3 calls on receivers *named*
``ec2``/``ssm``/``sts``/``pricing`` in care_flows/aws and against calls recorded under moto. Added:

- a receiver-agnostic scan of *every* module of care_flows: any method call whose name is an
  operation of an AWS service (whatever the variable holding the client is called, wherever it
  is) must be listed in ``iam.OPERATIONS`` (the worker policy) or ``usage_store.OPERATIONS``
  (``iam.usage_store_policy``, checked in tests/aws/test_aws_iam.py);
- the *instance* policy against the user data: the command the instance runs to read the Prefect
  API key is exactly the one action, on exactly the one resource, that ``instance_policy`` allows.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from care_flows.aws.iam import OPERATIONS, instance_policy, policy_actions, required_actions, worker_policy
from care_flows.aws.userdata import render_user_data

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ec2", "ssm", "sts", "pricing", "secretsmanager", "iam", "kms", "s3", "ecs", "logs", "cloudwatch")
NOT_AWS = {"get_secret_value"}  # pydantic SecretStr.get_secret_value, not Secrets Manager


def _aws_operations() -> dict[str, set[tuple[str, str]]]:
    session = botocore.session.get_session()
    ops: dict[str, set[tuple[str, str]]] = {}
    for service in SERVICES:
        for op in session.get_service_model(service).operation_names:
            ops.setdefault(xform_name(op), set()).add((service, op))
    return ops


def test_every_aws_operation_called_anywhere_in_the_package_is_allowed():
    ops = _aws_operations()
    called: dict[tuple[str, str], list[str]] = {}
    for path in sorted((ROOT / "care_flows").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
            if name in ops and name not in NOT_AWS:
                for service_op in ops[name]:
                    called.setdefault(service_op, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    from care_flows.aws.usage_store import OPERATIONS as USAGE_STORE_OPERATIONS

    # worker operations, and the usage store's (allowed by iam.usage_store_policy, for flow runs and planners)
    listed = {(s, op) for registry in (OPERATIONS, USAGE_STORE_OPERATIONS) for s, ops_ in registry.items() for op in ops_}
    # an operation name shared by several services counts as covered if any of them is listed
    by_name: dict[str, list[tuple[str, str]]] = {}
    for service, op in called:
        by_name.setdefault(op, []).append((service, op))
    missing = {op: sorted(called[so] for so in pairs) for op, pairs in by_name.items() if not any(p in listed for p in pairs)}
    assert not missing, f"AWS operations called but in neither iam.OPERATIONS nor usage_store.OPERATIONS (so in no policy): {missing}"
    assert set(policy_actions(worker_policy())) == required_actions()


def _cli_action(script: str) -> tuple[str, str, str]:
    """(iam action, resource id, region) of the `aws <service> <command>` line reading the API key."""
    line = next(ln for ln in script.splitlines() if ln.startswith('PREFECT_API_KEY="$(aws '))
    inner = re.search(r"\$\((aws [^)]*)\)", line).group(1)
    argv = shlex.split(inner)
    service, command = argv[1], argv[2]
    op = "".join(part.capitalize() for part in command.split("-"))
    args = dict(zip(argv[3::2], argv[4::2]))
    resource = args.get("--secret-id") or args.get("--name")
    return f"{service}:{op}", resource, args["--region"]


@pytest.mark.parametrize(
    "secret_arn",
    [
        "arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-AbCdEf",
        "arn:aws:ssm:eu-north-1:123456789012:parameter/care/prefect-api-key",
    ],
)
@pytest.mark.parametrize("launch_region", ["eu-north-1", "eu-south-2"])
def test_instance_policy_allows_exactly_what_the_user_data_runs(secret_arn, launch_region):
    script = render_user_data(
        flow_run_id="0b7c1d2e-0000-4000-8000-000000000001", api_url="https://prefect.internal/api", env={},
        install="care-flows", api_key_secret=secret_arn, region=launch_region, ttl_minutes=60,
    )
    action, resource, region = _cli_action(script)
    policy = instance_policy(secret_arn)
    assert policy_actions(policy) == [action]
    [statement] = policy["Statement"]
    assert statement["Resource"] == [secret_arn]
    # the command names the resource the policy grants (the ARN, or the parameter path inside it)
    assert resource == secret_arn or secret_arn.endswith(":parameter" + resource)
    assert region == "eu-north-1"  # read in the secret's own region, wherever the instance runs
    if ":ssm:" in secret_arn:
        assert "--with-decryption" in script  # SecureString; a customer key also needs kms:Decrypt
        assert "kms:Decrypt" in policy_actions(instance_policy(secret_arn, kms_key_arn="arn:aws:kms:eu-north-1:123456789012:key/x"))
