"""The least-privilege IAM policies CaRE needs, as data, and the AWS operations its code calls.

Two policies:

- :func:`worker_policy`: for the identity that runs the ``care-ec2`` worker, ``care aws reap``
  and ``care aws preflight``. Instances can only be launched *with* a ``care:flow-run-id`` tag,
  tags can only be written at launch, and only instances carrying that tag can be terminated.
- :func:`instance_policy`: for the instance profile of the launched instances: read the secret
  holding ``PREFECT_API_KEY`` and/or the one holding ``PREFECT_API_AUTH_STRING`` (Secrets Manager
  or SSM SecureStrings), nothing else.

:data:`OPERATIONS` lists every boto3 operation CaRE's code calls (``tests/aws/test_aws_iam.py``
checks it against the code and against the calls recorded while the tests run);
:func:`required_actions` maps it to IAM actions, which must equal the policy's actions.

>>> sorted(required_actions())[:3]
['ec2:CreateTags', 'ec2:DescribeImages', 'ec2:DescribeInstanceTypeOfferings']
>>> set(policy_actions(worker_policy())) == required_actions()
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from care_flows.errors import ConfigError

__all__ = ["OPERATIONS", "IMPLIED_ACTIONS", "required_actions", "worker_policy", "instance_policy", "usage_store_policy", "policy_actions",
           "policy_json", "role_arn", "check_secret_arn", "partition", "ebs_kms_statements"]

_NAME = r"[\w+=,.@-]{1,64}"  # IAM role name rules
_ROLE_ARN = re.compile(rf"arn:aws[-a-z]*:iam::(\d{{12}}|\*):role/(?:[\w+=,.@-]+/)*{_NAME}")
_PROFILE_ARN = re.compile(r"arn:aws[-a-z]*:iam::(\d{12}|\*):instance-profile/.+")
_SECRET_ARN = re.compile(r"arn:aws[-a-z]*:secretsmanager:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:secret:[\w/+=.@*?-]+")
_KMS_KEY_ARN = re.compile(r"arn:aws[-a-z]*:kms:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:key/[\w-]+")
_PARAMETER_ARN = re.compile(r"arn:aws[-a-z]*:ssm:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:parameter/[\w./*-]+")


def partition(region: str) -> str:
    """The ARN partition of a region: ``aws-cn`` (China), ``aws-us-gov`` (GovCloud) or ``aws``.

    >>> partition("eu-north-1"), partition("cn-north-1"), partition("us-gov-west-1"), partition("*")
    ('aws', 'aws-cn', 'aws-us-gov', 'aws')
    """
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def role_arn(value: str, *, arn_partition: str = "aws") -> str:
    """The role ARN ``iam:PassRole`` needs: a role ARN as given, or a role name (any account).

    >>> role_arn("care-flow-run")
    'arn:aws:iam::*:role/care-flow-run'
    >>> role_arn("arn:aws:iam::123456789012:role/care/flow-run")
    'arn:aws:iam::123456789012:role/care/flow-run'
    >>> role_arn("arn:aws:iam::123456789012:instance-profile/care")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: instance role 'arn:aws:iam::123456789012:instance-profile/care' is an instance profile; ...
    """
    text = (value or "").strip()
    if re.fullmatch(_NAME, text):
        return f"arn:{arn_partition}:iam::*:role/{text}"
    if _ROLE_ARN.fullmatch(text):
        return text
    if _PROFILE_ARN.fullmatch(text):
        raise ConfigError(f"instance role {value!r} is an instance profile; iam:PassRole needs the profile's role, "
                          "e.g. arn:aws:iam::123456789012:role/care-flow-run (or just the role name)")
    raise ConfigError(f"instance role {value!r} is neither a role name (1-64 of letters, digits, +=,.@_-) nor a role ARN; "
                      "give e.g. care-flow-run or arn:aws:iam::123456789012:role/care-flow-run")


def check_secret_arn(value: str) -> str:
    """``value`` if it is a Secrets Manager secret ARN or an SSM parameter ARN, else a :class:`ConfigError`.

    >>> check_secret_arn("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key")
    'arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key'
    >>> check_secret_arn("notanarn")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: secret ARN 'notanarn' is not a Secrets Manager or SSM parameter ARN; ...
    """
    text = (value or "").strip()
    if _SECRET_ARN.fullmatch(text) or _PARAMETER_ARN.fullmatch(text):
        return text
    raise ConfigError(f"secret ARN {value!r} is not a Secrets Manager or SSM parameter ARN; give "
                      "arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name> or arn:aws:ssm:<region>:<account>:parameter/<name>")

OPERATIONS: dict[str, tuple[str, ...]] = {
    "ec2": (
        "RunInstances",  # launch.py
        "DescribeInstances",  # launch.py (idempotency, watch), reaper.py, worker.py (kill)
        "TerminateInstances",  # launch.py, reaper.py, worker.py
        "DescribeInstanceTypes",  # ami.py (architecture of a type)
        "DescribeSubnets",  # launch.py (default subnets), preflight.py
        "DescribeInstanceTypeOfferings",  # preflight.py
        "DescribeImages",  # preflight.py (explicit image_id)
        "DescribeSecurityGroups",  # preflight.py
        "DescribeSpotPriceHistory",  # pricing.py (spot option)
    ),
    "ssm": (
        "GetParameter",  # ami.py: AL2023 public parameter
        "DescribeParameters",  # preflight.py: the API key's SecureString exists (metadata only, no value)
    ),
    "sts": ("GetCallerIdentity",),  # preflight.py
    "iam": ("GetInstanceProfile",),  # preflight.py: the instances' instance profile exists and has a role
    "secretsmanager": ("DescribeSecret",),  # preflight.py: the API key's secret exists (metadata only, no value)
    "pricing": ("GetProducts",),  # pricing.py
}
"""Every AWS API operation CaRE's code calls, per service (boto3 operation names)."""

IMPLIED_ACTIONS = frozenset({
    "ec2:CreateTags",  # RunInstances with TagSpecifications needs it (allowed only at launch)
    "iam:PassRole",  # RunInstances with an instance profile passes its role
})
"""IAM actions that no code calls directly but that a call needs."""


def required_actions() -> set[str]:
    """The IAM actions :data:`OPERATIONS` needs, plus :data:`IMPLIED_ACTIONS`."""
    return {f"{service}:{op}" for service, ops in OPERATIONS.items() for op in ops} | set(IMPLIED_ACTIONS)


def ebs_kms_statements(key_arns: str | tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """The statement a launcher needs when the account encrypts EBS volumes by default with a
    customer-managed KMS key (EBS user guide, "Permissions for users"); without it EC2 terminates
    the new instance with ``Client.InternalError``. ``CreateGrant`` only for AWS resources (EBS),
    in a statement of its own (the condition key exists only in CreateGrant requests).

    >>> use, grant = ebs_kms_statements("arn:aws:kms:eu-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    >>> use["Action"][:2], grant["Action"], grant["Condition"]
    (['kms:Decrypt', 'kms:DescribeKey'], ['kms:CreateGrant'], {'Bool': {'kms:GrantIsForAWSResource': 'true'}})
    """
    arns = [key_arns] if isinstance(key_arns, str) else list(key_arns)
    for value in arns:
        if not _KMS_KEY_ARN.fullmatch(value.strip()):
            raise ConfigError(f"--ebs-kms-key-arn {value!r} is not a KMS key ARN; give arn:aws:kms:<region>:<account>:key/<key id> "
                              "(aws ec2 get-ebs-default-kms-key-id --region <region> prints it)")
    resources = [a.strip() for a in arns]
    return [
        {
            "Sid": "UseTheDefaultEbsKmsKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"],
            "Resource": resources,
        },
        {
            "Sid": "GrantTheDefaultEbsKmsKeyToEbs",
            "Effect": "Allow",
            "Action": ["kms:CreateGrant"],
            "Resource": resources,
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]


def worker_policy(*, account: str = "*", regions: tuple[str, ...] = ("*",), instance_role: str = "care-flow-run",
                  image_ssm_parameter: str | None = None, ebs_kms_key_arns: tuple[str, ...] = ()) -> dict[str, Any]:
    """The worker's least-privilege policy document (JSON-ready dict).

    ``image_ssm_parameter``: the pools' ``image_ssm_parameter`` when it is not Amazon Linux's
    (``{arch}`` becomes ``*``); the worker may then read that parameter too. A public AWS parameter
    (``/aws/service/...``) has no account in its ARN; your own parameter is in ``account``.

    ``regions`` restricts launches and terminations (e.g. ``("eu-north-1", "eu-south-2")``);
    ``instance_role`` is the role of the instance profile the worker may pass: a role ARN, or a
    role name (then any account); see :func:`role_arn`. ARNs use the regions' partition
    (``arn:aws-cn:`` for China, ``arn:aws-us-gov:`` for GovCloud); one policy serves one partition.

    >>> worker_policy(regions=("cn-north-1",))["Statement"][-1]["Resource"]
    ['arn:aws-cn:iam::*:role/care-flow-run']

    ``ebs_kms_key_arns``: customer-managed KMS keys of the accounts' default EBS encryption; adds
    :func:`ebs_kms_statements`.
    """
    parts = sorted({partition(r) for r in regions})
    if len(parts) > 1:
        raise ConfigError(f"regions {', '.join(regions)} span the AWS partitions {', '.join(parts)}; "
                          "an account lives in one partition: write one policy per partition (separate --regions)")
    arn = parts[0] if parts else "aws"
    instance_role = role_arn(instance_role, arn_partition=arn)

    def arns(resource: str, owner: str = account) -> list[str]:
        return [f"arn:{arn}:ec2:{r}:{owner}:{resource}" for r in regions]

    extra = ebs_kms_statements(tuple(ebs_kms_key_arns)) if ebs_kms_key_arns else []
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LaunchOnlyTaggedCareInstances",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances"],
                "Resource": arns("instance/*") + arns("volume/*"),
                "Condition": {"Null": {"aws:RequestTag/care:flow-run-id": "false"}},
            },
            {
                "Sid": "LaunchUsingNetworkAndImages",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances"],
                "Resource": arns("subnet/*") + arns("security-group/*") + arns("network-interface/*") + arns("key-pair/*")
                + [f"arn:{arn}:ec2:{r}::image/*" for r in regions],
            },
            {
                "Sid": "TagOnlyAtLaunch",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": arns("instance/*") + arns("volume/*"),
                "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            },
            {
                "Sid": "TerminateOnlyCareInstances",
                "Effect": "Allow",
                "Action": ["ec2:TerminateInstances"],
                "Resource": arns("instance/*"),
                "Condition": {"Null": {"aws:ResourceTag/care:flow-run-id": "false"}},
            },
            {
                "Sid": "DescribeAndPrices",
                "Effect": "Allow",
                "Action": sorted([
                    "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeSubnets", "ec2:DescribeImages", "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory", "pricing:GetProducts", "sts:GetCallerIdentity",
                ]),
                "Resource": "*",
            },
            {
                "Sid": "PreflightInstanceProfile",
                "Effect": "Allow",
                "Action": ["iam:GetInstanceProfile"],
                "Resource": [f"arn:{arn}:iam::{account}:instance-profile/*"],
            },
            {
                "Sid": "PreflightSecretsMetadataOnly",
                "Effect": "Allow",
                "Action": ["secretsmanager:DescribeSecret", "ssm:DescribeParameters"],
                "Resource": "*",
            },
            {
                "Sid": "ReadAmazonLinuxAmiParameter",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter"],
                "Resource": [f"arn:{arn}:ssm:{r}::parameter/aws/service/ami-amazon-linux-latest/*" for r in regions]
                + _parameter_arns(image_ssm_parameter, arn, regions, account),
            },
            {
                "Sid": "PassOnlyTheFlowRunRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [instance_role],
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            *extra,
        ],
    }


def _parameter_arns(name: str | None, partition_name: str, regions: tuple[str, ...], account: str) -> list[str]:
    """ARNs of an SSM parameter name (``/path/{arch}`` -> ``parameter/path/*``) in ``regions``."""
    if not name:
        return []
    if not name.startswith("/") or any(c.isspace() for c in name):
        raise ConfigError(f"image SSM parameter {name!r} is not a parameter path; give e.g. /my/amis/care-{{arch}}")
    path = name.replace("{arch}", "*").lstrip("/")
    owner = "" if path.startswith("aws/service/") else account
    if path.startswith("aws/service/ami-amazon-linux-latest/"):
        return []  # already allowed
    return [f"arn:{partition_name}:ssm:{r}:{owner}:parameter/{path}" for r in regions]


def usage_store_policy(url: str, *, write: bool = True, read: bool = True) -> dict[str, Any]:
    """The statements an identity needs for usage histories under ``s3://bucket/prefix``.

    Attach ``write`` to the instance role (flow runs append their usage) and ``read`` to whatever
    plans (``@care`` trigger runs, ``care controller``): exactly the operations of
    :data:`care_flows.aws.usage_store.OPERATIONS`, on that prefix only.

    >>> doc = usage_store_policy("s3://care-usage/team-a", write=False)
    >>> [(st["Action"], st["Resource"]) for st in doc["Statement"]]
    [(['s3:ListBucket'], ['arn:aws:s3:::care-usage']), (['s3:GetObject'], ['arn:aws:s3:::care-usage/team-a/*'])]
    """
    from care_flows.aws.usage_store import parse_s3_url

    bucket, prefix = parse_s3_url(url)
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
    statements: list[dict[str, Any]] = []
    if read:
        listing: dict[str, Any] = {"Sid": "ListUsageHistories", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]}
        if prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}
        statements += [listing, {"Sid": "ReadUsageHistories", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [objects]}]
    if write:
        statements.append({"Sid": "AppendUsageHistories", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [objects]})
    return {"Version": "2012-10-17", "Statement": statements}


def instance_policy(secret_arn: str | None = None, *, auth_string_secret_arn: str | None = None,
                    kms_key_arn: str | None = None) -> dict[str, Any]:
    """The instance profile's policy: read exactly the secrets the user data reads.

    ``secret_arn`` holds the Prefect API key (``api_key_secret``), ``auth_string_secret_arn`` the
    basic-auth string of a self-hosted server (``api_auth_string_secret``); give one or both. Each
    is a Secrets Manager secret ARN (``arn:aws:secretsmanager:...``) or an SSM parameter ARN
    (``arn:aws:ssm:...:parameter/...``). Give ``kms_key_arn`` when a secret is encrypted with a
    customer-managed key.

    >>> instance_policy("arn:aws:ssm:eu-north-1:123456789012:parameter/care/prefect-api-key")["Statement"][0]["Action"]
    ['ssm:GetParameter']
    >>> doc = instance_policy(auth_string_secret_arn="arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/auth-AbCdEf")
    >>> [(st["Sid"], st["Action"]) for st in doc["Statement"]]
    [('ReadPrefectApiAuthString', ['secretsmanager:GetSecretValue'])]
    """
    if not secret_arn and not auth_string_secret_arn:
        raise ConfigError("the instance policy needs the ARN of the API key secret (--secret-arn) or of the auth string secret (--auth-secret-arn)")
    statements: list[dict[str, Any]] = []
    for sid, arn in (("ReadPrefectApiKey", secret_arn), ("ReadPrefectApiAuthString", auth_string_secret_arn)):
        if arn:
            arn = check_secret_arn(arn)
            action = ["ssm:GetParameter"] if ":ssm:" in arn else ["secretsmanager:GetSecretValue"]
            statements.append({"Sid": sid, "Effect": "Allow", "Action": action, "Resource": [arn]})
    if kms_key_arn:
        statements.append({"Sid": "DecryptPrefectApiKey", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [kms_key_arn]})
    return {"Version": "2012-10-17", "Statement": statements}


def policy_actions(policy: Mapping[str, Any]) -> list[str]:
    """All actions a policy document allows (sorted, unique)."""
    actions: set[str] = set()
    for st in policy.get("Statement", []):
        acts = st.get("Action", [])
        actions.update([acts] if isinstance(acts, str) else acts)
    return sorted(actions)


def policy_json(policy: Mapping[str, Any]) -> str:
    """The policy as indented JSON (what ``care aws iam-policy`` prints)."""
    return json.dumps(policy, indent=2)
