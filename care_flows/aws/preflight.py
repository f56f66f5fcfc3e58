"""Pre-flight checks: can CaRE launch ``instance_type`` in ``region`` with this account?

Checks, each independent (one failing does not hide the others):

1. credentials: ``sts:GetCallerIdentity`` answers (none found at all: ``no_credentials``, the others skipped);
2. instance type: ``ec2:DescribeInstanceTypeOfferings`` lists it in the region (a type EC2 does not
   know at all gets the worker's "is not an EC2 instance type (did you mean ...?)");
3. AMI: the image id exists (``ec2:DescribeImages``) or the SSM parameter
   (default Amazon Linux 2023 for the type's architecture) resolves;
4. subnet and security groups exist (``ec2:DescribeSubnets``, ``ec2:DescribeSecurityGroups``);
   without a subnet, the region needs a default VPC with default subnets;
5. when given, the instance profile exists and holds a role (``iam:GetInstanceProfile``);
6. when given, the secrets of ``api_key_secret`` / ``api_auth_string_secret`` exist, in their
   ARN's region else ``region``, read as metadata only (``secretsmanager:DescribeSecret`` or
   ``ssm:DescribeParameters``: no value is fetched, so the worker needs no right to read them).

When the first call cannot reach the endpoint at all (connection refused, DNS, connect timeout),
the credentials check says so, naming the URL. With a custom ``endpoint_url`` (one URL for every
service) the other checks are then reported as skipped instead of each waiting for the same failure.

>>> Check("credentials", True, "account 123456789012").line()
'ok       credentials: account 123456789012'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from care_flows.aws.ami import resolve_image_id
from care_flows.aws.clients import AwsClients
from care_flows.aws.faults import OPT_IN_REGIONS, classify, error_code, error_message, is_unreachable
from care_flows.aws.iam import check_secret_arn
from care_flows.aws.launch import default_subnets, instance_type_typo
from care_flows.aws.reaper import NO_CREDENTIALS
from care_flows.aws.userdata import secret_region, secret_source
from care_flows.errors import ConfigError

__all__ = ["Check", "PreflightReport", "preflight", "check_instance_profile", "check_secret", "profile_name", "secretsmanager_name"]


@dataclass
class Check:
    """One check: ``ok`` and a one-line detail (what was found, or what is missing and how to fix it)."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'MISSING':<8} {self.name}: {self.detail}"


@dataclass
class PreflightReport:
    region: str
    instance_type: str
    checks: list[Check] = field(default_factory=list)
    no_credentials: bool = False
    """No AWS credentials were found at all: a set-up error (``care aws preflight`` says it in one line
    and exits 2, as ``care aws reap`` does), not a failed check of the region."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"region": self.region, "instance_type": self.instance_type, "ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def _why(exc: BaseException) -> str:
    return f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"


def profile_name(profile: str) -> str:
    """The name ``iam:GetInstanceProfile`` takes, from a name or an instance profile ARN (path dropped).

    >>> profile_name("arn:aws:iam::123456789012:instance-profile/teams/care-flow-run"), profile_name("care-flow-run")
    ('care-flow-run', 'care-flow-run')
    """
    text = profile.strip()
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text


def check_instance_profile(clients: AwsClients, region: str, profile: str) -> Check:
    """The instance profile exists and holds a role (what the instances read their secrets with)."""
    name = profile_name(profile)
    create = (f"create it: aws iam create-instance-profile --instance-profile-name {name} && aws iam add-role-to-instance-profile "
              f"--instance-profile-name {name} --role-name care-flow-run (docs/AWS.md section 1)")
    try:
        found = clients.client("iam", region).get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "NoSuchEntity":
            return Check("instance profile", False, f"{profile} not found; {create}")
        return Check("instance profile", False, f"{profile}: {_why(exc)}")
    roles = [r.get("RoleName", "?") for r in found.get("Roles", [])]
    if not roles:
        return Check("instance profile", False, f"{profile} has no role, so the instances cannot read their secrets; "
                                                f"aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name care-flow-run")
    return Check("instance profile", True, f"{found.get('Arn', name)} with role {', '.join(roles)}")


def _find_parameter(ssm: Any, name: str, *, max_pages: int = 100) -> list[dict[str, Any]]:
    """The SSM parameter ``name`` as ``[metadata]`` (``[]`` if absent), following ``NextToken``: DescribeParameters
    may answer a page with fewer items than exist, even none, and a ``NextToken`` (SSM API reference)."""
    token: str | None = None
    for _ in range(max_pages):
        kwargs: dict[str, Any] = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [name]}]}
        if token:
            kwargs["NextToken"] = token
        page = ssm.describe_parameters(**kwargs)
        found = page.get("Parameters", [])
        if found:
            return found[:1]
        token = page.get("NextToken")
        if not token:
            break
    return []


def secretsmanager_name(ref: str) -> str:
    """The name to create a Secrets Manager secret under: ``ref`` itself, or for an ARN its name part
    without the ``-XXXXXX`` suffix Secrets Manager appends (a name cannot contain ``:``).

    >>> secretsmanager_name("arn:aws:secretsmanager:eu-north-1:123456789012:secret:care/prefect-api-key-AbCdEf")
    'care/prefect-api-key'
    >>> secretsmanager_name("care/prefect-api-key")
    'care/prefect-api-key'
    """
    if not ref.startswith("arn:"):
        return ref
    name = ref.split(":secret:", 1)[1] if ":secret:" in ref else ref.rsplit(":", 1)[-1]
    return re.sub(r"-[A-Za-z0-9]{6}$", "", name) or name


def check_secret(clients: AwsClients, region: str, secret: str, *, name: str = "API key secret") -> Check:
    """The secret exists where the user data will read it, checked without reading its value."""
    service, ref = secret_source(secret)
    where = secret_region(secret) or region
    try:
        if service == "ssm":
            params = _find_parameter(clients.ssm(where), ref)
            if not params:
                return Check(name, False, f"SSM parameter {ref} not found in {where}; create it: aws ssm put-parameter --region {where} "
                                          f"--name {ref} --type SecureString --value '...'")
            kind = params[0].get("Type")
            if kind != "SecureString":
                return Check(name, False, f"SSM parameter {ref} in {where} is a {kind}, stored in plain text; store it again with --type SecureString")
            return Check(name, True, f"SSM SecureString {ref} exists in {where}")
        clients.client("secretsmanager", where).describe_secret(SecretId=ref)
        return Check(name, True, f"Secrets Manager secret {ref} exists in {where}")
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "ResourceNotFoundException":
            create = f"create it: aws secretsmanager create-secret --region {where} --name {secretsmanager_name(ref)} --secret-string '...'"
            if ref.startswith("arn:"):  # a new secret gets a new random suffix: the ARN given will not name it
                return Check(name, False, f"Secrets Manager secret {ref} not found in {where}; {create}, then give the ARN it prints "
                                          "(Secrets Manager adds a new 6-character suffix)")
            return Check(name, False, f"Secrets Manager secret {ref} not found in {where}; {create} (or give its ARN, whose region is used)")
        return Check(name, False, f"{secret}: {_why(exc)}")


def _offline_checks(names: Sequence[str], skipped: str, instance_type: str, secrets: dict[str, str | None]) -> list[Check]:
    """The checks ``names`` when AWS cannot be asked: what needs no call (a misspelt instance type, a
    malformed secret ARN) fails as it would online; the rest are ``skipped``.

    >>> checks = _offline_checks(["instance type", "AMI", "API key secret"], "skipped: offline", "t3.micr", {"API key secret": "arn:bogus"})
    >>> for c in checks: print(c.line()[:90].rstrip())
    MISSING  instance type: 't3.micr' is not an EC2 instance type (did you mean 't3.micro'?);
    MISSING  AMI: skipped: offline
    MISSING  API key secret: secret ARN 'arn:bogus' is not a Secrets Manager or SSM parameter
    """
    out = []
    for name in names:
        why = None
        if name == "instance type" and (typo := instance_type_typo(instance_type)):
            why = f"{typo}; check the spelling of --instance-type"
        ref = (secrets.get(name) or "").strip()
        if ref.startswith("arn:"):
            try:
                check_secret_arn(ref)
            except ConfigError as exc:
                why = str(exc)
        out.append(Check(name, False, why or skipped))
    return out


def preflight(
    region: str,
    clients: AwsClients,
    *,
    instance_type: str = "t3.micro",
    subnet_id: str | None = None,
    security_group_ids: Sequence[str] = (),
    image_id: str | None = None,
    image_parameter: str | None = None,
    iam_instance_profile: str | None = None,
    api_key_secret: str | None = None,
    api_auth_string_secret: str | None = None,
) -> PreflightReport:
    """Run every check for ``region``; never raises for AWS errors (they become failed checks).

    ``iam_instance_profile``, ``api_key_secret`` and ``api_auth_string_secret`` are the job
    variables of the same names; each is checked only when given."""
    report = PreflightReport(region, instance_type)
    add = report.checks.append
    try:
        ident = clients.client("sts", region).get_caller_identity()
        add(Check("credentials", True, f"account {ident.get('Account')} as {ident.get('Arn')}"))
    except Exception as exc:  # noqa: BLE001
        later = ["instance type", "AMI", "subnet"] + (["security groups"] if security_group_ids else [])
        later += [n for n, given in (("instance profile", iam_instance_profile), ("API key secret", api_key_secret),
                                     ("auth string secret", api_auth_string_secret)) if given]
        if is_unreachable(exc) and clients.endpoint_url:  # one URL serves every service: the rest would fail the same way
            add(Check("credentials", False, f"{error_message(exc)}; start it or fix the endpoint URL (--endpoint-url, AWS_ENDPOINT_URL)"))
            report.checks.extend(_offline_checks(later, f"skipped: {clients.endpoint_url} is unreachable", instance_type,
                                                 {"API key secret": api_key_secret, "auth string secret": api_auth_string_secret}))
            return report
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):  # every other call fails the same way
            report.no_credentials = True
            add(Check("credentials", False, f"{type(exc).__name__}: {NO_CREDENTIALS}"))
            report.checks.extend(_offline_checks(later, "skipped: no AWS credentials (see above)", instance_type,
                                                 {"API key secret": api_key_secret, "auth string secret": api_auth_string_secret}))
            return report
        if is_unreachable(exc):
            add(Check("credentials", False, f"{error_message(exc)}; check the network, proxy and region"))
        elif classify(exc) == "region" and region in OPT_IN_REGIONS:  # STS: InvalidClientTokenId in a region not enabled (43b H1, 43c M2)
            add(Check("credentials", False, f"{_why(exc)}; is {region} enabled for this account? Opt-in regions are off until "
                                            f"enabled: aws account enable-region --region-name {region}; else configure AWS "
                                            "credentials (env, profile or an AwsCredentials block)"))
        else:
            add(Check("credentials", False, f"{_why(exc)}; configure AWS credentials (env, profile or an AwsCredentials block)"))
    ec2 = clients.ec2(region)
    offered, type_checked, typo = False, False, None
    try:
        resp = ec2.describe_instance_type_offerings(LocationType="region", Filters=[{"Name": "instance-type", "Values": [instance_type]}])
        offered, type_checked = bool(resp.get("InstanceTypeOfferings")), True
        typo = None if offered else instance_type_typo(instance_type)  # the worker's check: no region offers a misspelt type
        add(Check("instance type", offered, f"{instance_type} is offered in {region}" if offered else
                  f"{typo}; check the spelling of --instance-type" if typo else f"{instance_type} is not offered in {region}; pick another type or region"))
    except Exception as exc:  # noqa: BLE001
        add(Check("instance type", False, _why(exc)))
    try:
        if image_id:
            images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
            add(Check("AMI", bool(images), f"{image_id} exists" if images else f"{image_id} not found in {region}; AMI ids are regional"))
        elif offered:
            ami = resolve_image_id(clients.ssm(region), ec2, instance_type, parameter=image_parameter)
            add(Check("AMI", True, f"{ami} from {image_parameter or 'Amazon Linux 2023 SSM parameter'}"))
        elif type_checked:
            add(Check("AMI", False, f"skipped: the instance type is {'not an EC2 instance type' if typo else 'not offered'}, so its architecture is unknown"))
        else:
            add(Check("AMI", False, "skipped: the instance type could not be checked (see above), so its architecture is unknown"))
    except Exception as exc:  # noqa: BLE001
        add(Check("AMI", False, f"{_why(exc)}; set image_id or image_ssm_parameter"))
    if subnet_id:
        try:
            subnets = ec2.describe_subnets(SubnetIds=[subnet_id]).get("Subnets", [])
            add(Check("subnet", bool(subnets), f"{subnet_id} in {subnets[0]['AvailabilityZone']}" if subnets else f"{subnet_id} not found"))
        except Exception as exc:  # noqa: BLE001
            add(Check("subnet", False, f"{subnet_id}: {_why(exc)}"))
    else:
        try:
            defaults = default_subnets(ec2)
            add(Check("subnet", bool(defaults), f"default VPC subnets {', '.join(defaults)}" if defaults else f"no subnet given and {region} has no default VPC; set subnet_id"))
        except Exception as exc:  # noqa: BLE001
            add(Check("subnet", False, _why(exc)))
    if security_group_ids:
        try:
            groups = ec2.describe_security_groups(GroupIds=list(security_group_ids)).get("SecurityGroups", [])
            found = {g["GroupId"] for g in groups}
            lost = [g for g in security_group_ids if g not in found]
            add(Check("security groups", not lost, f"{', '.join(sorted(found))} exist" if not lost else f"not found: {', '.join(lost)}"))
        except Exception as exc:  # noqa: BLE001
            add(Check("security groups", False, f"{', '.join(security_group_ids)}: {_why(exc)}"))
    if iam_instance_profile:
        add(check_instance_profile(clients, region, iam_instance_profile))
    if api_key_secret:
        add(check_secret(clients, region, api_key_secret))
    if api_auth_string_secret:
        add(check_secret(clients, region, api_auth_string_secret, name="auth string secret"))
    return report
