"""``care aws``: reap stale CaRE instances, pre-flight a region, print the IAM policy.

- ``care aws reap [--dry-run] [--regions eu-north-1,eu-south-2] [--no-prefect] [--reap-missing] [--json]``
- ``care aws preflight --region R [--instance-type T] [--subnet-id S] [--security-group-id G]
  [--iam-instance-profile NAME|ARN] [--api-key-secret NAME|ARN] [--api-auth-string-secret NAME|ARN] [--json]``
- ``care aws iam-policy [--regions ...] [--instance-role ARN|NAME] [--secret-arn ARN] [--auth-secret-arn ARN] [--usage-store s3://...]
  [--ebs-kms-key-arn ARN]``

AWS credentials come from the default chain (environment, profile, instance role);
``--endpoint-url`` (or ``AWS_ENDPOINT_URL``) points every call at moto or LocalStack.
Exit codes: 0 ok; 1 the check/reap found a problem; 2 bad input or no AWS credentials at all.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from care_flows.cli import emit_json, warn
from care_flows.errors import ConfigError

__all__ = ["register", "parse_regions", "regions_source", "check_region"]


def check_region(region: str, *, name: str = "--region") -> str:
    """``region`` if it is a known or real AWS region, else a one-line error naming ``name``
    (:func:`care_flows.aws.clients.check_region`, which the worker uses for its job variables).

    >>> check_region("eu-north-1"), check_region("ap-southeast-1")
    ('eu-north-1', 'ap-southeast-1')
    >>> check_region("eu-moon-1")
    Traceback (most recent call last):
    ...
    care_flows.errors.UnknownRegionError: --region: unknown region 'eu-moon-1'; known regions: ...
    """
    from care_flows.aws.clients import check_region as _check

    return _check(region, name=name)


def parse_regions(values: list[str] | None) -> list[str]:
    """Regions from repeated/comma-separated values, else ``$CARE_AWS_REGIONS``, else the registry.

    Each must be known (see :func:`check_region`), so a typo fails before any AWS call.

    >>> parse_regions(["eu-north-1,eu-south-2", "eu-north-1"])
    ['eu-north-1', 'eu-south-2']
    """
    raw = [p.strip() for v in (values or []) for p in v.split(",") if p.strip()]
    name = "--regions"
    if values and not raw:  # `--regions "$REGIONS"` with REGIONS unset: not "every region"
        raise ConfigError("--regions is empty; give e.g. eu-north-1,eu-south-2, or leave it out for the default")
    if not raw and os.environ.get("CARE_AWS_REGIONS"):
        raw = [p.strip() for p in os.environ["CARE_AWS_REGIONS"].split(",") if p.strip()]
        name = "CARE_AWS_REGIONS"
    if not raw:
        from care_flows.regions import known_regions

        raw = known_regions()
    for region in raw:
        check_region(region, name=name)
    return list(dict.fromkeys(raw))


def regions_source(values: list[str] | None) -> str:
    """Where :func:`parse_regions` takes the regions from: ``--regions``, ``CARE_AWS_REGIONS`` or ``registry``.

    >>> regions_source(["eu-north-1"])
    '--regions'
    """
    if any(p.strip() for v in (values or []) for p in v.split(",")):
        return "--regions"
    return "CARE_AWS_REGIONS" if os.environ.get("CARE_AWS_REGIONS", "").strip(", ") else "registry"


def _clients(endpoint_url: str | None):
    from care_flows.aws.clients import AwsClients, check_endpoint_url

    if endpoint_url is not None and not endpoint_url.strip():  # not "the default": an unset shell variable, most likely
        raise ConfigError("--endpoint-url is empty; give http(s)://host[:port] (moto, LocalStack), or leave it out for AWS")
    if endpoint_url is not None:
        url = check_endpoint_url(endpoint_url, name="--endpoint-url")
    else:
        url = check_endpoint_url(os.environ.get("AWS_ENDPOINT_URL"), name="AWS_ENDPOINT_URL")
    return AwsClients(endpoint_url=url)


def _warn_if_no_prefect_api() -> list[str]:
    """Say on stderr when the flow-run-state rule cannot apply (no Prefect API configured); the warnings said."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return []
    return warn(["PREFECT_API_URL is not set, so only the care:expires-at (TTL) rule applies; set it to the API URL "
                 "your care-ec2 worker uses (the flow-run-state rule applies only to instances launched by a worker of that API) "
                 "to also reap instances whose flow run is final, or pass --no-prefect to silence this"])


def register(app: typer.Typer) -> None:
    aws = typer.Typer(help="AWS helpers for the care-ec2 worker: reap stale instances, pre-flight checks, IAM policy.", no_args_is_help=True)
    app.add_typer(aws, name="aws")

    @aws.command("reap")
    def reap_cmd(
        dry_run: bool = typer.Option(False, "--dry-run", help="List the instances that would be terminated; terminate nothing."),
        regions: Optional[list[str]] = typer.Option(
            None, "--regions", "-r", help="Regions to sweep (repeat or comma-separate); list every region your pools launch in (region and "
            "fallback_regions). Default: $CARE_AWS_REGIONS, else every region in CaRE's registry (other regions are not swept)."),
        no_prefect: bool = typer.Option(False, "--no-prefect", help="Do not ask the Prefect API for flow run states; reap on care:expires-at only."),
        reap_missing: bool = typer.Option(
            False, "--reap-missing", help="Also terminate, before their TTL, instances launched by a worker of this Prefect API whose flow run "
            "the API no longer knows (deleted). Without it they are kept until care:expires-at."),
        endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="Send AWS calls to this URL (moto, LocalStack). Default: $AWS_ENDPOINT_URL, else AWS."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Terminate every care:-tagged instance past care:expires-at, or launched by a worker of this Prefect API and whose flow run is final."""
        from care_flows.aws.reaper import prefect_flow_run_state, reap

        if no_prefect and reap_missing:
            raise ConfigError("give --no-prefect or --reap-missing, not both: --reap-missing asks the Prefect API which flow runs it no "
                              "longer knows; drop --no-prefect to use it")
        chosen, clients = parse_regions(regions), _clients(endpoint_url)
        warnings = [] if no_prefect else _warn_if_no_prefect_api()  # stderr, also with --json; the JSON lists them too
        report = reap(chosen, clients, dry_run=dry_run, flow_run_state=None if no_prefect else prefect_flow_run_state,
                      reap_missing=reap_missing)
        report.warnings = [*warnings, *warn(report.warnings)]  # warning: lines on stderr, also with --json
        if json_out:
            emit_json(report.as_dict())
        else:
            verb = "would terminate" if dry_run else "terminated"
            for row in report.instances:
                mark = (verb if row.reason else "keep").ljust(15)
                note = ("" if (row.reason or row.state_rule or no_prefect) else "(TTL only: the Prefect API could not be asked)" if row.state_unknown
                        else "(TTL only: not launched by a worker of this Prefect API)")
                typer.echo(f"{mark} {row.region}:{row.instance_id} {row.instance_type} run={row.flow_run_id} expires={row.expires_at} {row.reason or note}".rstrip())
            typer.echo(f"{len(report.to_reap)} of {len(report.instances)} CaRE instances {verb}", err=True)
            for orphan in report.orphaned:
                mark = ("would crash" if dry_run else "crashed").ljust(15)
                typer.echo(f"{mark} run={orphan.flow_run_id} ({orphan.run_state}): {orphan.reason.removeprefix('CaRE reaper: ')}")
            for where, why in report.errors.items():
                typer.echo(f"error: {where}: {why}", err=True)
        if regions_source(regions) == "registry":
            # stderr, also with --json (stdout stays one JSON document)
            typer.echo(f"note: swept the {len(chosen)} regions of CaRE's registry ({', '.join(chosen)}); instances in any other region "
                       "were not checked: pass --regions or set CARE_AWS_REGIONS to every region your pools launch in "
                       "(region and fallback_regions)", err=True)
        if report.errors:
            raise typer.Exit(1)

    @aws.command("preflight")
    def preflight_cmd(
        region: str = typer.Option(..., "--region", help="Region to check, e.g. eu-north-1."),
        instance_type: str = typer.Option("t3.micro", "--instance-type", help="Instance type that must be offered in the region."),
        subnet_id: Optional[str] = typer.Option(None, "--subnet-id", help="Subnet the worker will use (default: the default VPC's subnets must exist)."),
        security_group_ids: Optional[list[str]] = typer.Option(None, "--security-group-id", help="Security group the worker will use (repeatable)."),
        image_id: Optional[str] = typer.Option(None, "--image-id", help="AMI id to check instead of the Amazon Linux 2023 SSM parameter."),
        iam_instance_profile: Optional[str] = typer.Option(
            None, "--iam-instance-profile", help="Instance profile (name or ARN) of the job variable iam_instance_profile: check it exists and has a role (iam:GetInstanceProfile)."),
        api_key_secret: Optional[str] = typer.Option(
            None, "--api-key-secret", help="Secret of the job variable api_key_secret (Secrets Manager name/ARN, SSM /path or ARN): check it exists, "
            "in its ARN's region else --region, without reading its value (secretsmanager:DescribeSecret, ssm:DescribeParameters)."),
        api_auth_string_secret: Optional[str] = typer.Option(
            None, "--api-auth-string-secret", help="Secret of the job variable api_auth_string_secret (basic auth), checked like --api-key-secret."),
        endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="Send AWS calls to this URL (moto, LocalStack). Default: $AWS_ENDPOINT_URL, else AWS."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Check credentials, AMI lookup, instance-type offering, subnet, security groups and, when given, the instance profile and secrets; exit 1 if something is missing (2 if no AWS credentials are found at all)."""
        from care_flows.aws.preflight import preflight

        region = check_region(region.strip(), name="--region")
        report = preflight(region, _clients(endpoint_url), instance_type=instance_type, subnet_id=subnet_id,
                           security_group_ids=tuple(security_group_ids or ()), image_id=image_id, iam_instance_profile=iam_instance_profile,
                           api_key_secret=api_key_secret, api_auth_string_secret=api_auth_string_secret)
        if report.no_credentials:  # a set-up error, said and exited on as by `care aws reap` (one line, exit 2)
            from care_flows.aws.reaper import NO_CREDENTIALS

            raise ConfigError(NO_CREDENTIALS)
        if json_out:
            emit_json(report.as_dict())
        else:
            for check in report.checks:
                typer.echo(check.line())
            typer.echo("ready" if report.ok else f"{len(report.missing)} check(s) failed in {region}", err=True)
        if not report.ok:
            raise typer.Exit(1)

    @aws.command("iam-policy")
    def iam_policy_cmd(
        regions: Optional[list[str]] = typer.Option(None, "--regions", "-r", help="Restrict launches/terminations to these regions (repeat or comma-separate). Default: all regions."),
        instance_role: str = typer.Option(
            "care-flow-run", "--instance-role",
            help="Role of the instances' instance profile that the worker may pass: its ARN (arn:aws:iam::<account>:role/<name>) "
            "or its name (any account, in the partition of --regions: aws, aws-cn or aws-us-gov).",
        ),
        secret_arn: Optional[str] = typer.Option(
            None, "--secret-arn",
            help="Also print the instance profile policy that reads this secret: arn:aws:secretsmanager:<region>:<account>:secret:<name> or arn:aws:ssm:<region>:<account>:parameter/<name>.",
        ),
        auth_secret_arn: Optional[str] = typer.Option(
            None, "--auth-secret-arn",
            help="For a server behind basic auth: the ARN of the secret holding PREFECT_API_AUTH_STRING (the job variable api_auth_string_secret); "
            "the instance policy then reads it too (same ARN forms as --secret-arn).",
        ),
        usage_store: Optional[str] = typer.Option(
            None, "--usage-store", help="s3://bucket/prefix of CARE_USAGE_STORE: also print the statements flow runs (append) and planners (read) need."
        ),
        image_ssm_parameter: Optional[str] = typer.Option(
            None, "--image-ssm-parameter",
            help="The pools' image_ssm_parameter when it is not Amazon Linux 2023's, e.g. /my/amis/care-{arch}: the worker may read it too.",
        ),
        ebs_kms_key_arns: Optional[list[str]] = typer.Option(
            None, "--ebs-kms-key-arn",
            help="When the account encrypts EBS volumes by default with a customer-managed KMS key (aws ec2 get-ebs-default-kms-key-id): "
            "its ARN (repeatable, one per region); the worker may then use it for the instances' volumes (kms:Decrypt, DescribeKey, "
            "GenerateDataKeyWithoutPlaintext, ReEncrypt*, and CreateGrant for AWS resources only).",
        ),
    ) -> None:
        """Print the least-privilege IAM policy for the worker (and, with --secret-arn / --auth-secret-arn / --usage-store, the others)."""
        from care_flows.aws.iam import instance_policy, policy_json, usage_store_policy, worker_policy

        chosen = tuple(parse_regions(regions)) if regions else ("*",)
        keys = tuple(p.strip() for v in (ebs_kms_key_arns or []) for p in v.split(",") if p.strip())
        doc = {"worker": worker_policy(regions=chosen, instance_role=instance_role, image_ssm_parameter=image_ssm_parameter, ebs_kms_key_arns=keys)}
        if secret_arn or auth_secret_arn:
            doc["instance"] = instance_policy(secret_arn, auth_string_secret_arn=auth_secret_arn)
        if usage_store:
            doc["usage_store_append"] = usage_store_policy(usage_store, read=False)
            doc["usage_store_read"] = usage_store_policy(usage_store, write=False)
        sys.stdout.write(policy_json(doc if len(doc) > 1 else doc["worker"]) + "\n")
