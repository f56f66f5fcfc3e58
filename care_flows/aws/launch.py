"""Launch one EC2 instance for one flow run, with fallbacks, back-off and no leftovers.

:func:`launch` walks the options of a :class:`LaunchSpec` in order: for each region
(``region`` then ``fallback_regions``), for each instance type (``instance_type`` then
``fallback_instance_types``), for each subnet (the given ones, else the default VPC's default
subnets, one per zone). Per option it calls ``ec2:RunInstances`` with

- tags ``care:flow-run-id``, ``care:deployment``, ``care:expires-at`` (ISO 8601, UTC) and
  ``care:prefect-api`` (a hash of the worker's ``PREFECT_API_URL``, :func:`prefect_api_id`) on the
  instance and its volume;
- ``InstanceInitiatedShutdownBehavior=terminate``, IMDSv2 required (``HttpTokens=required``);
- a ``ClientToken`` derived from the flow run id and the option, so AWS returns the same
  instance to a retried call; before launching anything it also looks up live instances tagged
  with the flow run id in every region of the plan (a retried submission reuses that instance);
- no public IP unless ``associate_public_ip``.

Errors are handled by class (:mod:`care_flows.aws.faults`): capacity/unsupported -> next
option (recorded in ``attempts``; a regional quota such as ``VcpuLimitExceeded`` skips the
type's other zones in that region), throttling -> back off with jitter and retry (``sleep``
and ``rng`` injectable), an instance profile IAM has not propagated to EC2 yet -> back off and
retry (up to ``max_iam_retries``), ``IdempotentParameterMismatch`` (the option's ClientToken
was spent on a different request, e.g. an earlier submission with other tags) -> one retry with
a fresh token, anything else -> :class:`~care_flows.errors.AwsError` (an ``UnauthorizedOperation``'s
encoded reason is logged once, not put in the error). Whenever launch gives up it terminates
every instance tagged with the flow run id first.

>>> spec = LaunchSpec(flow_run_id="3f1c", deployment="etl/nightly", region="eu-north-1",
...     instance_type="t3.large", fallback_instance_types=("m5.large",), fallback_regions=("eu-south-2",),
...     subnet_ids=("subnet-a", "subnet-b"))
>>> [(o.region, o.instance_type, o.subnet_id) for o in plan_options(spec, lambda region: ())][:3]
[('eu-north-1', 't3.large', 'subnet-a'), ('eu-north-1', 't3.large', 'subnet-b'), ('eu-north-1', 'm5.large', 'subnet-a')]
>>> client_token("3f1c", LaunchOption("eu-north-1", "t3.large", "subnet-a")) == client_token("3f1c", LaunchOption("eu-north-1", "t3.large", "subnet-a"))
True
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from care_flows.aws.ami import AmiParameterNotFound, resolve_image_id
from care_flows.aws.clients import AwsClients
from care_flows.aws.faults import (
    CONNECT_ERRORS,
    CONNECT_RETRIES,
    OPT_IN_REGIONS,
    QUOTA_CODES,
    backoff_s,
    classify,
    encoded_authorization_message,
    error_code,
    error_message,
    is_connect_error,
)
from care_flows.errors import AwsError, CareError
from care_flows.pricing import CREDIT_USD_PER_VCPU_HOUR, instance_family

__all__ = [
    "TAG_FLOW_RUN",
    "TAG_DEPLOYMENT",
    "TAG_EXPIRES",
    "TAG_PREFECT_API",
    "LIVE_STATES",
    "LaunchSpec",
    "LaunchOption",
    "Attempt",
    "LaunchResult",
    "plan_options",
    "client_token",
    "prefect_api_id",
    "current_prefect_api_id",
    "launch",
    "find_flow_run_instances",
    "instance_state",
    "instance_status",
    "terminate_instance",
    "terminate_flow_run_instances",
    "default_subnets",
    "instance_type_typo",
]

logger = logging.getLogger(__name__)

TAG_FLOW_RUN = "care:flow-run-id"
TAG_DEPLOYMENT = "care:deployment"
TAG_EXPIRES = "care:expires-at"
LIVE_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class LaunchOption:
    """One place to try: region, instance type, subnet (``None``: let EC2 choose)."""

    region: str
    instance_type: str
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchSpec:
    """Everything :func:`launch` needs for one flow run.

    ``user_data`` is the script, or a function of the option's region and instance type (the
    script names the region it reads the API key from, and tells the run where it executes). ``network_by_region`` gives subnets/security groups for fallback
    regions: ``{"eu-south-2": {"subnet_ids": [...], "security_group_ids": [...]}}``; a region
    without an entry uses its default VPC.
    """

    flow_run_id: str
    region: str
    instance_type: str
    deployment: str = ""
    user_data: str | Callable[[str, str], str] = ""
    ttl_minutes: int = 180
    fallback_instance_types: tuple[str, ...] = ()
    fallback_regions: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    network_by_region: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    image_id: str | None = None
    image_parameter: str | None = None
    iam_instance_profile: str | None = None
    key_name: str | None = None
    associate_public_ip: bool = False
    name: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    submission_key: str = ""
    """Changes when the same flow run is deliberately submitted again (e.g. its run count)."""
    image_id_by_region: Mapping[str, str] = field(default_factory=dict)
    """AMI ids per region (AMI ids are regional); wins over ``image_id`` for its region."""

    @property
    def regions(self) -> list[str]:
        """Regions in plan order, without repeats."""
        return list(dict.fromkeys([self.region, *self.fallback_regions]))

    @property
    def instance_types(self) -> list[str]:
        """Instance types in plan order, without repeats."""
        return list(dict.fromkeys([self.instance_type, *self.fallback_instance_types]))

    def image_for(self, region: str) -> str | None:
        """The AMI id to boot in ``region``, or ``None`` to resolve ``image_parameter`` (default AL2023).

        >>> spec = LaunchSpec(flow_run_id="r", region="eu-north-1", instance_type="t3.micro", image_id="ami-1",
        ...     image_id_by_region={"eu-south-2": "ami-2"})
        >>> spec.image_for("eu-north-1"), spec.image_for("eu-south-2"), spec.image_for("eu-west-1")
        ('ami-1', 'ami-2', None)
        """
        if self.image_id_by_region.get(region):
            return self.image_id_by_region[region]
        return self.image_id if (self.image_id and region == self.region) else None

    def missing_image(self, region: str) -> bool:
        """``image_id`` names an AMI of ``region`` only, and nothing says what to boot in this fallback
        ``region`` (no ``image_id_by_region`` entry, no ``image_parameter``): CaRE does not launch
        another OS image silently there."""
        return bool(self.image_id) and self.image_for(region) is None and not self.image_parameter

    def network(self, region: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(subnet_ids, security_group_ids)`` configured for ``region``: its ``network_by_region``
        entry when there is one (CaRE sets ``region`` per run, so the region a run is planned in may be
        any of a pool's: its entry wins, as ``image_id_by_region`` does; review 55b M4), else the
        top-level ``subnet_ids``/``security_group_ids`` in ``region`` itself, else none (default VPC).

        >>> spec = LaunchSpec(flow_run_id="r", region="eu-south-2", instance_type="t3.micro", subnet_ids=("subnet-a",),
        ...     network_by_region={"eu-south-2": {"subnet_ids": ["subnet-es"], "security_group_ids": ["sg-es"]}})
        >>> spec.network("eu-south-2"), spec.network("eu-west-1")
        ((('subnet-es',), ('sg-es',)), ((), ()))
        """
        conf = self.network_by_region.get(region)
        if conf:
            return tuple(conf.get("subnet_ids", ())), tuple(conf.get("security_group_ids", ()))
        if region == self.region:
            return tuple(self.subnet_ids), tuple(self.security_group_ids)
        return (), ()


@dataclass
class Attempt:
    """What happened to one option: ``outcome`` is launched, reused, capacity, unsupported, throttled,
    propagating (the instance profile is not visible to EC2 yet), token (a fresh ClientToken), retried
    (a connection never made, sent again; not listed in the final error), region
    (the region refused the account: not enabled, or the credentials are not valid there; its other
    options are skipped) or fatal (in a fallback region, its other options are skipped and the next
    region is tried)."""

    region: str
    instance_type: str
    subnet_id: str | None
    outcome: str
    code: str = ""
    message: str = ""
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LaunchResult:
    """The instance a flow run got and how it got it."""

    instance_id: str
    region: str
    instance_type: str
    subnet_id: str | None
    expires_at: datetime
    reused: bool = False
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def identifier(self) -> str:
        """The Prefect infrastructure id: ``region:instance-id``."""
        return f"{self.region}:{self.instance_id}"

    @property
    def fallback_reasons(self) -> list[str]:
        """One line per option that was skipped, e.g. ``eu-north-1/t3.large/subnet-a: InsufficientInstanceCapacity``,
        a region that refused the account or a fallback region's own error included (review 43c L4)."""
        return [
            f"{a.region}/{a.instance_type}/{a.subnet_id or '-'}: {a.code or a.outcome}"
            for a in self.attempts
            if a.outcome in ("capacity", "unsupported", "region", "fatal")
        ]


def default_subnets(ec2: Any) -> tuple[str, ...]:
    """The default VPC's default subnets (one per zone), sorted by zone."""
    resp = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnets = sorted(resp.get("Subnets", []), key=lambda s: s.get("AvailabilityZone", ""))
    return tuple(s["SubnetId"] for s in subnets)


def plan_options(spec: LaunchSpec, subnets_for: Callable[[str], Sequence[str]]) -> Iterator[LaunchOption]:
    """All options in order: region, then instance type, then subnet (zone); lazily, so a
    fallback region's subnets are only looked up when it is reached.

    ``subnets_for(region)`` supplies subnets when the spec has none for that region.
    """
    for region in spec.regions:
        subnets, groups = spec.network(region)
        if not subnets:
            subnets = tuple(subnets_for(region)) or (None,)  # type: ignore[assignment]
        for itype in spec.instance_types:
            for subnet in subnets:
                yield LaunchOption(region, itype, subnet, groups)


def client_token(flow_run_id: str, option: LaunchOption, submission_key: str = "", salt: str = "") -> str:
    """The ``ClientToken`` for one option of one flow run (<= 64 ASCII characters)."""
    raw = "|".join([flow_run_id, submission_key, option.region, option.instance_type, option.subnet_id or "", salt])
    return "care-" + hashlib.sha256(raw.encode()).hexdigest()[:48]


def find_flow_run_instances(ec2: Any, flow_run_id: str, states: Sequence[str] = LIVE_STATES) -> list[dict[str, Any]]:
    """Instances tagged with ``care:flow-run-id = flow_run_id`` in one of ``states``."""
    filters = [{"Name": f"tag:{TAG_FLOW_RUN}", "Values": [flow_run_id]}, {"Name": "instance-state-name", "Values": list(states)}]
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


def instance_status(ec2: Any, instance_id: str) -> tuple[str, str, str]:
    """``(state name, StateReason code, StateReason message)`` of an instance (``("missing", "", "")``
    if EC2 does not know it). EC2 says in ``StateReason`` why an instance stopped or terminated, e.g.
    ``Server.InsufficientInstanceCapacity`` for one it accepted and then could not place."""
    try:
        resp = ec2.describe_instances(InstanceIds=[instance_id])
    except Exception as exc:  # noqa: BLE001
        if error_code(exc).startswith("InvalidInstanceID"):
            return "missing", "", ""
        raise
    for reservation in resp.get("Reservations", []):
        for inst in reservation.get("Instances", []):
            reason = inst.get("StateReason") or {}
            return str(inst["State"]["Name"]), str(reason.get("Code", "")), " ".join(str(reason.get("Message", "")).split())
    return "missing", "", ""


def instance_state(ec2: Any, instance_id: str) -> str:
    """The state name of an instance (``"missing"`` if EC2 does not know it)."""
    return instance_status(ec2, instance_id)[0]


def _retrying(call: Callable[[], Any], *, what: str, sleep: Callable[[float], None], rng: random.Random, max_retries: int, waits: list[float] | None = None,
              connect_retries: int = CONNECT_RETRIES) -> Any:
    """Run ``call``, backing off on throttling errors, and on a connection never made (at most
    :data:`~care_flows.aws.faults.CONNECT_RETRIES` times)."""
    attempt = connects = 0
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001
            if is_connect_error(exc) and connects < connect_retries:
                connects += 1
                wait = backoff_s(connects, rng=rng)
                logger.warning("%s: no connection (%s); retry %d in %.2f s", what, type(exc).__name__, connects, wait)
                sleep(wait)
                continue
            if classify(exc) != "throttle" or attempt >= max_retries:
                raise
            attempt += 1
            wait = backoff_s(attempt, rng=rng)
            if waits is not None:
                waits.append(wait)
            logger.warning("%s throttled (%s); retry %d in %.2f s", what, error_code(exc), attempt, wait)
            sleep(wait)


def terminate_instance(ec2: Any, instance_id: str, *, sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None, max_retries: int = 8) -> bool:
    """Terminate one instance; ``False`` if it was already gone. Throttling is retried."""
    try:
        _retrying(lambda: ec2.terminate_instances(InstanceIds=[instance_id]), what=f"terminate {instance_id}", sleep=sleep, rng=rng or random.Random(), max_retries=max_retries)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc).startswith("InvalidInstanceID"):
            return False
        raise
    return True


def terminate_flow_run_instances(clients: AwsClients, regions: Sequence[str], flow_run_id: str, *, sleep: Callable[[float], None] = time.sleep,
                                 rng: random.Random | None = None, connect_retries: int = CONNECT_RETRIES) -> list[str]:
    """Terminate every live instance of a flow run in ``regions``; returns ``region:id`` of each.
    ``connect_retries``: tries again of a call whose connection was never made (0 after a launch that
    failed on one: the endpoint is unreachable, and the reaper covers what the clean-up cannot see)."""
    rng = rng or random.Random()
    done: list[str] = []
    for region in regions:
        ec2 = clients.ec2(region)
        try:
            instances = _retrying(lambda: find_flow_run_instances(ec2, flow_run_id), what="describe_instances", sleep=sleep, rng=rng, max_retries=8,
                                  connect_retries=connect_retries)
        except Exception as exc:  # noqa: BLE001
            if classify(exc) != "region":
                raise
            continue  # a region the account cannot use holds no instance of it
        for inst in instances:
            terminate_instance(ec2, inst["InstanceId"], sleep=sleep, rng=rng)
            done.append(f"{region}:{inst['InstanceId']}")
    return done


TAG_PREFECT_API = "care:prefect-api"
"""Which Prefect API the instance's flow run belongs to: :func:`prefect_api_id` of the launching
worker's ``PREFECT_API_URL``. The reaper applies its flow-run-state rule only to instances whose tag
matches its own API (another workspace's runs are unknown to it, not finished)."""


def prefect_api_id(api_url: str | None) -> str | None:
    """A short stable id of a Prefect API URL (16 hex digits of a SHA-256), ``None`` without a URL.

    Only the scheme, host, port and path count (case of scheme and host, a trailing ``/``, user
    info, query and fragment do not), so credentials in the URL never reach the tag and the same
    API gets the same id from the worker and the reaper. A Prefect Cloud URL names the account and
    workspace, so each workspace gets its own id.

    >>> prefect_api_id("https://api.prefect.cloud/api/accounts/a1/workspaces/w1/") == prefect_api_id("HTTPS://API.prefect.cloud/api/accounts/a1/workspaces/w1")
    True
    >>> prefect_api_id("https://api.prefect.cloud/api/accounts/a1/workspaces/w1") == prefect_api_id("https://api.prefect.cloud/api/accounts/a1/workspaces/w2")
    False
    >>> prefect_api_id("https://user:pw@prefect.internal:4200/api") == prefect_api_id("https://prefect.internal:4200/api")
    True
    >>> len(prefect_api_id("http://prefect.internal:4200/api")), prefect_api_id(""), prefect_api_id(None)
    (16, None, None)
    """
    from urllib.parse import urlsplit

    raw = str(api_url or "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").lower()
        port = f":{parts.port}" if parts.port else ""
        canonical = f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"
    except ValueError:  # not a URL a client could use: hash what was given, minus a trailing /
        canonical = raw.rstrip("/")
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def current_prefect_api_id() -> str | None:
    """:func:`prefect_api_id` of this process's ``PREFECT_API_URL`` setting (the API a worker or reaper talks to)."""
    try:
        from prefect.settings import PREFECT_API_URL

        return prefect_api_id(PREFECT_API_URL.value())
    except Exception:  # noqa: BLE001 - no usable Prefect settings: no tag, so the reaper applies the TTL only
        return None


def _tags(spec: LaunchSpec, expires_at: datetime) -> list[dict[str, str]]:
    tags = {
        **{str(k): str(v) for k, v in spec.extra_tags.items()},
        "Name": spec.name or f"care-{spec.flow_run_id[:8]}",
        TAG_FLOW_RUN: spec.flow_run_id,
        TAG_DEPLOYMENT: spec.deployment or "-",
        TAG_EXPIRES: expires_at.isoformat(),
    }
    # the worker's API (the one its flow runs live in), never the URL itself; an explicit extra tag wins
    api = str(spec.extra_tags.get(TAG_PREFECT_API) or "") or current_prefect_api_id()
    if api:
        tags[TAG_PREFECT_API] = api
    else:
        tags.pop(TAG_PREFECT_API, None)
    return [{"Key": k, "Value": v[:256]} for k, v in tags.items()]


def run_instances_params(spec: LaunchSpec, option: LaunchOption, image_id: str, user_data: str, expires_at: datetime, token: str) -> dict[str, Any]:
    """The ``RunInstances`` request for one option."""
    tags = _tags(spec, expires_at)
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": option.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": user_data,
        "ClientToken": token,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
    }
    if option.subnet_id:
        nic: dict[str, Any] = {
            "DeviceIndex": 0,
            "SubnetId": option.subnet_id,
            "AssociatePublicIpAddress": bool(spec.associate_public_ip),
            "DeleteOnTermination": True,
        }
        if option.security_group_ids:
            nic["Groups"] = list(option.security_group_ids)
        params["NetworkInterfaces"] = [nic]
    elif option.security_group_ids:
        params["SecurityGroupIds"] = list(option.security_group_ids)
    if spec.iam_instance_profile:
        key = "Arn" if spec.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: spec.iam_instance_profile}
    if spec.key_name:
        params["KeyName"] = spec.key_name
    if instance_family(option.instance_type) in CREDIT_USD_PER_VCPU_HOUR:
        # CaRE prices a burstable type as "unlimited" (list price + surplus CPU credits,
        # care_flows.pricing.cpu_credit_usd_per_hour): ask for that mode, so neither t2's launch
        # default nor an account-wide "standard" default throttles the run to its baseline instead
        params["CreditSpecification"] = {"CpuCredits": "unlimited"}
    return params



def launch(
    spec: LaunchSpec,
    clients: AwsClients,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    max_throttle_retries: int = 6,
    max_iam_retries: int = 8,
    now: datetime | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    exclude: Sequence[tuple[str, str, str | None]] = (),
) -> LaunchResult:
    """Launch (or find) the one instance of ``spec.flow_run_id``; see the module docstring.

    ``exclude`` lists ``(region, instance_type, subnet_id)`` options not to try again (e.g. one whose
    instance EC2 accepted and then terminated for lack of capacity).

    Raises :class:`~care_flows.errors.AwsError` when no option works (also for botocore errors
    such as missing credentials or an unreachable endpoint, in one line); by then no instance of
    this flow run is left running.
    """
    log = log or logger
    rng = rng or random.Random()
    started = now or datetime.now(timezone.utc)
    expires_at = (started + timedelta(minutes=int(spec.ttl_minutes))).replace(microsecond=0)
    attempts: list[Attempt] = []

    def retry(call: Callable[[], Any], what: str) -> Any:
        return _retrying(call, what=what, sleep=sleep, rng=rng, max_retries=max_throttle_retries)

    unusable: dict[str, str] = {}  # region -> why it is skipped: refused the account (43b H1), its own set-up error or unreachable (fallbacks)

    def skip_region(region: str, outcome: str, exc: BaseException, why: str, instance_type: str = "-", subnet_id: str | None = None) -> None:
        """Record once that ``region``'s other options are skipped, and why (``why``: the log line's tail)."""
        code, message = error_code(exc) or type(exc).__name__, error_message(exc)
        if region not in unusable:
            unusable[region] = f"{code}: {message}"
            attempts.append(Attempt(region, instance_type, subnet_id, outcome, code, message))
            log.warning("skipping %sregion %s: %s (%s)%s", "fallback " if region != spec.region else "", region, code, message, why)

    def refused(region: str, exc: BaseException, instance_type: str = "-", subnet_id: str | None = None) -> None:
        skip_region(region, "region", exc, f"; {_region_hint(region)}", instance_type, subnet_id)

    def skippable(region: str, exc: BaseException) -> bool:
        """Record and skip a region that refused the account, or a fallback region whose look-up failed for any
        reason: unreachable (review 43f M2) or denied, e.g. by an SCP region deny (review 55b M5); either failed
        the whole launch, the planned region untried. False for the planned region's own errors."""
        if classify(exc) == "region":
            refused(region, exc)
            return True
        if region != spec.region:
            skip_region(region, "fatal", exc, ": EC2 there cannot be reached" if is_connect_error(exc) else ": its look-up failed")
            return True
        return False

    try:
        # A retried submission: reuse the instance an earlier submission launched.
        for region in spec.regions:
            ec2 = clients.ec2(region)
            try:
                live = retry(lambda: find_flow_run_instances(ec2, spec.flow_run_id, ("pending", "running")), "describe_instances")
            except Exception as exc:  # noqa: BLE001 - a region the account cannot use (or reach) holds no instance of it
                if not skippable(region, exc):
                    raise
                continue
            if live:
                inst = live[0]
                log.info("flow run %s already has instance %s in %s; reusing it", spec.flow_run_id, inst["InstanceId"], region)
                attempts.append(Attempt(region, inst["InstanceType"], inst.get("SubnetId"), "reused"))
                return LaunchResult(inst["InstanceId"], region, inst["InstanceType"], inst.get("SubnetId"), _expires_of(inst, expires_at), True, attempts)

        subnet_cache: dict[str, tuple[str, ...]] = {}
        excluded = {tuple(e) for e in exclude}
        no_image: set[str] = set()
        image_noted: set[str] = set()

        def subnets_for(region: str) -> tuple[str, ...]:
            if spec.missing_image(region) or region in unusable:
                return ()  # the region is skipped below: no need to look up its network
            if region not in subnet_cache:
                try:
                    subnet_cache[region] = retry(lambda: default_subnets(clients.ec2(region)), "describe_subnets")
                except Exception as exc:  # noqa: BLE001
                    if not skippable(region, exc):
                        raise
                    return ()
                if subnet_cache[region] and not spec.associate_public_ip:
                    # A default VPC routes to the internet only through its internet gateway (no NAT):
                    # without a public IP the instance cannot reach PyPI or the Prefect API.
                    log.warning("%s: no subnet configured, so the default VPC's subnets are used, and associate_public_ip is false: "
                                "unless you added a NAT gateway or VPC endpoints there, the instance cannot reach PyPI or the Prefect API; "
                                "set subnet_id (network_by_region) to a subnet with a NAT, or associate_public_ip=true", region)
            return subnet_cache[region]

        options = plan_options(spec, subnets_for)
        skip_types: set[tuple[str, str]] = set()
        missing_parameters: dict[str, set[str]] = {}  # region -> AMI parameters that do not exist there
        for option in options:
            if (option.region, option.instance_type) in skip_types or (option.region, option.instance_type, option.subnet_id) in excluded:
                continue
            if option.region in unusable:
                continue
            if spec.missing_image(option.region):
                if option.region not in no_image:
                    no_image.add(option.region)
                    why = (f"image_id {spec.image_id} is an AMI of {spec.region} (AMI ids are regional) and no image is set for {option.region}; "
                           f"set image_id_by_region {{{option.region!r}: 'ami-...'}} (or image_ssm_parameter) to use it as a fallback")
                    attempts.append(Attempt(option.region, option.instance_type, None, "unsupported", "NoImageForRegion", why))
                    log.warning("skipping fallback region %s: %s", option.region, why)
                continue
            ec2 = clients.ec2(option.region)
            # the script names the region and type this option really launches (after a fallback, not the planned ones)
            user_data = spec.user_data(option.region, option.instance_type) if callable(spec.user_data) else spec.user_data
            throttles = 0
            connects = 0
            iam_waits = 0
            salt = ""
            fresh_token = False
            while True:
                try:
                    try:
                        image_id = spec.image_for(option.region) or resolve_image_id(
                            clients.ssm(option.region), ec2, option.instance_type, parameter=spec.image_parameter, region=option.region
                        )
                    except AmiParameterNotFound as missing:
                        # like an unsupported option: this type (its architecture's parameter) cannot boot in this
                        # region, a fallback region (or a type of the other architecture) may
                        skip_types.add((option.region, option.instance_type))
                        if missing.parameter not in missing_parameters.setdefault(option.region, set()):
                            missing_parameters[option.region].add(missing.parameter)
                            attempts.append(Attempt(option.region, option.instance_type, None, "unsupported", "ParameterNotFound", str(missing)))
                            log.warning("skipping %s for %s: %s", option.region, option.instance_type, missing)
                        break
                    if spec.image_id and spec.image_for(option.region) is None and option.region not in image_noted:
                        image_noted.add(option.region)
                        log.warning("image_id %s is an AMI of %s; fallback region %s boots %s from %s instead", spec.image_id, spec.region,
                                    option.region, image_id, spec.image_parameter)
                    token = client_token(spec.flow_run_id, option, spec.submission_key, salt)
                    params = run_instances_params(spec, option, image_id, user_data, expires_at, token)
                    inst = ec2.run_instances(**params)["Instances"][0]
                    if inst.get("State", {}).get("Name") in ("shutting-down", "terminated") and "again" not in salt:
                        # The token matched an instance an earlier, finished submission launched.
                        salt = f"{salt}again"
                        continue
                    attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "launched"))
                    log.info("launched %s (%s) in %s for flow run %s", inst["InstanceId"], option.instance_type, option.region, spec.flow_run_id)
                    return LaunchResult(inst["InstanceId"], option.region, option.instance_type, option.subnet_id, expires_at, False, attempts)
                except CareError:
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    kind = classify(exc)
                    code, message = error_code(exc), error_message(exc)
                    if is_connect_error(exc) and connects < CONNECT_RETRIES:
                        # the request never reached AWS: safe to send again (it carries its ClientToken anyway)
                        connects += 1
                        wait = backoff_s(connects, rng=rng)
                        attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "retried", type(exc).__name__, message, wait))
                        log.warning("no connection to EC2 in %s (%s); retrying in %.2f s (%d/%d)", option.region, type(exc).__name__, wait,
                                    connects, CONNECT_RETRIES)
                        sleep(wait)
                        continue
                    if kind == "throttle" and throttles < max_throttle_retries:
                        throttles += 1
                        wait = backoff_s(throttles, rng=rng)
                        attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "throttled", code, message, wait))
                        log.warning("%s throttled in %s; backing off %.2f s (retry %d)", code, option.region, wait, throttles)
                        sleep(wait)
                        continue
                    if kind == "propagating" and iam_waits < max_iam_retries:
                        # IAM is eventually consistent: a just-created instance profile is refused for a while
                        iam_waits += 1
                        wait = backoff_s(iam_waits, base_s=2.0, cap_s=20.0, rng=rng)
                        attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "propagating", code, message, wait))
                        log.warning("instance profile %s not visible to EC2 in %s yet (%s); retrying in %.1f s (%d/%d)",
                                    spec.iam_instance_profile, option.region, code, wait, iam_waits, max_iam_retries)
                        sleep(wait)
                        continue
                    if kind == "token" and not fresh_token:
                        # The option's ClientToken was spent on a request with other parameters (e.g. an earlier
                        # submission of this run whose expires-at tag differs). If that request's instance is live,
                        # reuse it (the lookup at the start may have missed it: DescribeInstances is eventually
                        # consistent); otherwise launch with a fresh token.
                        fresh_token = True
                        live = retry(lambda: find_flow_run_instances(ec2, spec.flow_run_id, ("pending", "running")), "describe_instances")
                        if live:
                            inst = live[0]
                            attempts.append(Attempt(option.region, inst["InstanceType"], inst.get("SubnetId"), "reused", code, message))
                            log.info("flow run %s already has instance %s in %s (%s); reusing it", spec.flow_run_id, inst["InstanceId"], option.region, code)
                            return LaunchResult(inst["InstanceId"], option.region, inst["InstanceType"], inst.get("SubnetId"), _expires_of(inst, expires_at), True, attempts)
                        salt = f"{salt}+fresh-{uuid.uuid4().hex[:12]}"  # unique per launch call: an earlier call's fresh token may be spent too
                        attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "token", code, message))
                        log.warning("%s in %s: the ClientToken was used by a different request; retrying with a fresh one", code, option.region)
                        continue
                    if kind in ("capacity", "unsupported"):
                        attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, kind, code, message))
                        log.warning("%s/%s/%s: %s (%s); trying the next option", option.region, option.instance_type, option.subnet_id or "-", code, message)
                        if code.startswith("InvalidInstanceType") or code in QUOTA_CODES or _type_not_in_region(code, message, kind):
                            # not offered in the region at all, a regional account quota, or not of the AMI's
                            # architecture: no other zone helps
                            skip_types.add((option.region, option.instance_type))
                        break
                    if kind == "region":
                        refused(option.region, exc, option.instance_type, option.subnet_id)
                        break
                    encoded = encoded_authorization_message(exc)
                    if encoded:  # logged once, here, also for a fallback region's (review 43c L3)
                        log.warning("%s in %s; decode the reason with: aws sts decode-authorization-message --encoded-message %s",
                                    code, option.region, encoded)
                    if option.region != spec.region:
                        # a fallback region's own set-up (a key pair, subnet, AMI or VPC that exists only in other
                        # regions): the next region may launch (review 43b M1); its other options would fail alike
                        skip_region(option.region, "fatal", exc, f": launching {option.instance_type} there failed", option.instance_type,
                                    option.subnet_id)
                        break
                    attempts.append(Attempt(option.region, option.instance_type, option.subnet_id, "fatal", code or type(exc).__name__, message))
                    raise AwsError(
                        f"launching {option.instance_type} in {option.region} for flow run {spec.flow_run_id} failed: "
                        f"{code or type(exc).__name__}: {message}"
                    ) from exc
        tried = "; ".join(f"{a.region}/{a.instance_type}/{a.subnet_id or '-'}: {a.code}"
                          + (f" ({a.message})" if a.code == "ParameterNotFound" or a.outcome in ("region", "fatal") else "")
                          for a in attempts if a.outcome in ("capacity", "unsupported", "throttled", "region", "fatal"))
        raise AwsError(f"no instance could be launched for flow run {spec.flow_run_id}; tried {tried or 'nothing'}; {_advice(spec, attempts)}")
    except BaseException as exc:
        if isinstance(exc, AwsError):
            exc.attempts = attempts  # type: ignore[attr-defined]
        if not _no_credentials(exc):  # without credentials nothing was launched, and the clean-up's calls would fail the same way
            try:
                left = terminate_flow_run_instances(clients, spec.regions, spec.flow_run_id, sleep=sleep, rng=rng,
                                                    connect_retries=0 if is_connect_error(exc) or is_connect_error(exc.__cause__) else CONNECT_RETRIES)
                if left:
                    log.warning("terminated %s left by the failed launch of flow run %s", ", ".join(left), spec.flow_run_id)
            except Exception as cleanup:  # noqa: BLE001 - one line: the error itself is raised (and reported) below
                log.warning("could not check for instances left by flow run %s (%s: %s); the reaper will catch them",
                            spec.flow_run_id, error_code(cleanup) or type(cleanup).__name__, error_message(cleanup))
        if isinstance(exc, Exception) and not isinstance(exc, CareError) and _is_botocore(exc):
            wrapped = AwsError(f"launching for flow run {spec.flow_run_id} in {spec.region} failed: {_describe_botocore(exc)}")
            wrapped.attempts = attempts  # type: ignore[attr-defined]
            if _is_setup_error(exc):  # the one line says it all; botocore's stack would only bury it
                raise wrapped from None
            raise wrapped from exc
        raise


SETUP_ERRORS = frozenset({
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "ProfileNotFound", "SSOError", "TokenRetrievalError",
    "BaseEndpointResolverError", "InvalidEndpointConfigurationError", "InvalidConfigError", "ConnectionError", "HTTPClientError",
})
"""botocore errors (by class name, any base counts) that mean the worker's set-up is wrong or AWS
cannot be reached: credentials, profile, region or endpoint configuration, the network. Their
one-line :class:`~care_flows.errors.AwsError` is raised without botocore's stack (``from None``);
any other botocore error keeps it as the cause (it may be a bug in the request CaRE built)."""


def _is_setup_error(exc: BaseException) -> bool:
    return _is_botocore(exc) and any(cls.__name__ in SETUP_ERRORS for cls in type(exc).__mro__)


def _no_credentials(exc: BaseException) -> bool:
    """``exc`` (or what it wraps) is botocore's "no credentials found": no request could be signed."""
    for err in (exc, exc.__cause__):
        if err is not None and _is_botocore(err) and type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return True
    return False


def _is_botocore(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("botocore")


def _describe_botocore(exc: BaseException) -> str:
    """One line for a botocore error, with the fix when it is a set-up problem."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return (f"{name}: no AWS credentials found for the worker; configure them in its environment (AWS_ACCESS_KEY_ID ...), "
                "an AWS profile, an instance role, or the aws_credentials job variable (an AwsCredentials block)")
    return f"{error_code(exc) or name}: {error_message(exc)}"


def _instance_type_names() -> frozenset[str]:
    """Every instance type botocore's EC2 model knows (no network; may lag behind the newest types)."""
    try:
        import botocore.session

        return frozenset(botocore.session.get_session().get_service_model("ec2").shape_for("InstanceType").enum)
    except Exception:  # noqa: BLE001 - advice only
        return frozenset()


def instance_type_typo(instance_type: str, known: frozenset[str] | None = None) -> str | None:
    """Why ``instance_type`` is not an EC2 instance type at all, with the closest one, or ``None`` when
    botocore's EC2 model knows it (or the model cannot be read). Only meaningful for a type EC2 refused
    or does not offer: the model may lag behind the newest types. Used by the worker's launch error and
    ``care aws preflight``.

    >>> instance_type_typo("t3.lage")
    "'t3.lage' is not an EC2 instance type (did you mean 't3.large'?)"
    >>> instance_type_typo("t3.large") is None
    True
    """
    known = _instance_type_names() if known is None else known
    if not known or instance_type in known:
        return None
    import difflib

    close = difflib.get_close_matches(instance_type, sorted(known), n=1)
    return f"{instance_type!r} is not an EC2 instance type" + (f" (did you mean {close[0]!r}?)" if close else "")


def _region_hint(region: str) -> str:
    """What to do about a region that refused the account: enable it (an opt-in region), else the
    credentials (every other region is always enabled; review 43c M2).

    >>> _region_hint("eu-south-2")
    'is it enabled for this account? Opt-in regions are off until enabled: aws account enable-region --region-name eu-south-2 (or check that the credentials are valid there)'
    >>> _region_hint("eu-north-1")
    'eu-north-1 is always enabled, so the credentials are not valid there: check the access key, profile or AwsCredentials block'
    """
    if region in OPT_IN_REGIONS:
        return (f"is it enabled for this account? Opt-in regions are off until enabled: aws account enable-region --region-name {region} "
                "(or check that the credentials are valid there)")
    return f"{region} is always enabled, so the credentials are not valid there: check the access key, profile or AwsCredentials block"


def _type_not_in_region(code: str, message: str, kind: str) -> bool:
    """An ``unsupported`` answer that holds in every zone of the region: EC2's ``Unsupported`` for
    a type the region does not offer (unlike the zone-level "not supported in your requested
    Availability Zone"; review 43b L3), a type not of the AMI's architecture (43b M2), or a type the
    account's plan or the AMI rules out (Free Tier, ENA: 55b L1).

    >>> _type_not_in_region("Unsupported", "The requested configuration is currently not supported.", "unsupported")
    True
    >>> _type_not_in_region("Unsupported", "Your requested instance type (t3a.large) is not supported in your requested "
    ...                     "Availability Zone (us-east-1e).", "unsupported")
    False
    """
    if kind != "unsupported":
        return False
    if code in ("InvalidParameterValue", "InvalidParameterCombination"):
        return True  # classify: only the architecture mismatch, Free Tier and ENA are unsupported
    return code == "Unsupported" and "availability zone" not in message.lower()


def _advice(spec: LaunchSpec, attempts: Sequence[Attempt]) -> str:
    """What to do when no option worked, from every cause (review 43c M3, L4): the spelling of a type
    EC2 does not know at all, an image for a fallback region, a fallback region's own set-up, a
    region that refused the account; else add fallbacks."""
    parts = []
    invalid = sorted({a.instance_type for a in attempts if a.outcome == "unsupported" and a.code.startswith("InvalidInstanceType")})
    known = _instance_type_names()
    hints = [hint for t in invalid if (hint := instance_type_typo(t, known))]
    if hints:
        parts.append("; ".join(hints) + ": check the spelling of instance_type / fallback_instance_types")
    skipped = sorted({a.region for a in attempts if a.code == "NoImageForRegion"})
    if skipped:
        parts.append(f"set image_id_by_region for {', '.join(skipped)} to use the fallback regions, or add fallback_instance_types")
    unreachable = sorted({a.region for a in attempts if a.outcome == "fatal" and a.code in CONNECT_ERRORS})
    if unreachable:
        parts.append(f"{', '.join(unreachable)} could not be reached: check the network, proxy or endpoint")
    broken = sorted({a.region for a in attempts if a.outcome == "fatal" and a.code not in CONNECT_ERRORS})
    if broken:
        parts.append(f"fix the set-up of {', '.join(broken)} (its error is in the list tried)")
    refused = sorted({a.region for a in attempts if a.outcome == "region"})
    if refused and not any(r in OPT_IN_REGIONS for r in refused):
        parts.append(f"the credentials are not valid in {', '.join(refused)} (always-enabled regions): check the access key, profile or "
                     "AwsCredentials block")
    elif refused:
        parts += [f"{r}: {_region_hint(r)}" for r in refused]
    return "; ".join(parts) or "add fallback_instance_types or fallback_regions"


def _expires_of(instance: Mapping[str, Any], default: datetime) -> datetime:
    for tag in instance.get("Tags", []):
        if tag.get("Key") == TAG_EXPIRES:
            try:
                return datetime.fromisoformat(tag["Value"])
            except ValueError:
                break
    return default
