"""``care aws``: reap stale CaRE instances, pre-flight a region, print the IAM policy.

- ``care aws reap [--dry-run] [--regions eu-north-1,eu-south-2] [--no-prefect] [--json]``
- ``care aws preflight --region R [--instance-type T] [--subnet-id S] [--security-group-id G] [--json]``
- ``care aws iam-policy [--regions ...] [--instance-role ARN] [--secret-arn ARN]``

AWS credentials come from the default chain (environment, profile, instance role);
``--endpoint-url`` (or ``AWS_ENDPOINT_URL``) points every call at moto or LocalStack.
Exit codes: 0 ok; 1 the check/reap found a problem; 2 bad input.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Optional

import typer

from care_flows.cli import emit_json
from care_flows.errors import ConfigError

__all__ = ["register", "parse_regions"]

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d+$")


def parse_regions(values: list[str] | None) -> list[str]:
    """Regions from repeated/comma-separated values, else ``$CARE_AWS_REGIONS``, else the registry.

    >>> parse_regions(["eu-north-1,eu-south-2", "eu-north-1"])
    ['eu-north-1', 'eu-south-2']
    """
    raw = [p.strip() for v in (values or []) for p in v.split(",") if p.strip()]
    if not raw and os.environ.get("CARE_AWS_REGIONS"):
        raw = [p.strip() for p in os.environ["CARE_AWS_REGIONS"].split(",") if p.strip()]
    if not raw:
        from care_flows.regions import known_regions

        raw = known_regions()
    for region in raw:
        if not _REGION.match(region):
            raise ConfigError(f"{region!r} is not an AWS region name; use e.g. eu-north-1")
    return list(dict.fromkeys(raw))


def _clients(endpoint_url: str | None):
    from care_flows.aws.clients import AwsClients

    return AwsClients(endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)


def register(app: typer.Typer) -> None:
    aws = typer.Typer(help="AWS helpers for the care-ec2 worker: reap stale instances, pre-flight checks, IAM policy.", no_args_is_help=True)
    app.add_typer(aws, name="aws")

    @aws.command("reap")
    def reap_cmd(
        dry_run: bool = typer.Option(False, "--dry-run", help="List the instances that would be terminated; terminate nothing."),
        regions: Optional[list[str]] = typer.Option(None, "--regions", "-r", help="Regions to sweep (repeat or comma-separate). Default: $CARE_AWS_REGIONS, else every region in CaRE's registry."),
        no_prefect: bool = typer.Option(False, "--no-prefect", help="Do not ask the Prefect API for flow run states; reap on care:expires-at only."),
        endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="Send AWS calls to this URL (moto, LocalStack). Default: $AWS_ENDPOINT_URL, else AWS."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Terminate every care:-tagged instance past care:expires-at or whose flow run is final."""
        from care_flows.aws.reaper import prefect_flow_run_state, reap

        report = reap(parse_regions(regions), _clients(endpoint_url), dry_run=dry_run, flow_run_state=None if no_prefect else prefect_flow_run_state)
        if json_out:
            emit_json(report.as_dict())
        else:
            verb = "would terminate" if dry_run else "terminated"
            for row in report.instances:
                mark = (verb if row.reason else "keep").ljust(15)
                typer.echo(f"{mark} {row.region}:{row.instance_id} {row.instance_type} run={row.flow_run_id} expires={row.expires_at} {row.reason or ''}".rstrip())
            typer.echo(f"{len(report.to_reap)} of {len(report.instances)} CaRE instances {verb}", err=True)
            for where, why in report.errors.items():
                typer.echo(f"error: {where}: {why}", err=True)
        if report.errors:
            raise typer.Exit(1)

    @aws.command("preflight")
    def preflight_cmd(
        region: str = typer.Option(..., "--region", help="Region to check, e.g. eu-north-1."),
        instance_type: str = typer.Option("t3.micro", "--instance-type", help="Instance type that must be offered in the region."),
        subnet_id: Optional[str] = typer.Option(None, "--subnet-id", help="Subnet the worker will use (default: the default VPC's subnets must exist)."),
        security_group_ids: Optional[list[str]] = typer.Option(None, "--security-group-id", help="Security group the worker will use (repeatable)."),
        image_id: Optional[str] = typer.Option(None, "--image-id", help="AMI id to check instead of the Amazon Linux 2023 SSM parameter."),
        endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="Send AWS calls to this URL (moto, LocalStack). Default: $AWS_ENDPOINT_URL, else AWS."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Check credentials, AMI lookup, instance-type offering, subnet and security groups; exit 1 if something is missing."""
        from care_flows.aws.preflight import preflight

        parse_regions([region])
        report = preflight(region, _clients(endpoint_url), instance_type=instance_type, subnet_id=subnet_id,
                           security_group_ids=tuple(security_group_ids or ()), image_id=image_id)
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
        instance_role: str = typer.Option("arn:aws:iam::*:role/care-flow-run", "--instance-role", help="ARN of the instance profile's role the worker may pass."),
        secret_arn: Optional[str] = typer.Option(None, "--secret-arn", help="Also print the instance profile policy that reads this secret (Secrets Manager or SSM ARN)."),
        usage_store: Optional[str] = typer.Option(
            None, "--usage-store", help="s3://bucket/prefix of CARE_USAGE_STORE: also print the statements flow runs (append) and planners (read) need."
        ),
    ) -> None:
        """Print the least-privilege IAM policy for the worker (and, with --secret-arn / --usage-store, the others)."""
        from care_flows.aws.iam import instance_policy, policy_json, usage_store_policy, worker_policy

        chosen = tuple(parse_regions(regions)) if regions else ("*",)
        doc = {"worker": worker_policy(regions=chosen, instance_role=instance_role)}
        if secret_arn:
            doc["instance"] = instance_policy(secret_arn)
        if usage_store:
            doc["usage_store_append"] = usage_store_policy(usage_store, read=False)
            doc["usage_store_read"] = usage_store_policy(usage_store, write=False)
        sys.stdout.write(policy_json(doc if len(doc) > 1 else doc["worker"]) + "\n")
