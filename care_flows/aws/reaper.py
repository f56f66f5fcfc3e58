"""The reaper: terminate CaRE instances that outlived their purpose.

An instance is reaped when it carries a ``care:flow-run-id`` tag and either

- its ``care:expires-at`` lies in the past (or the tag is missing or unreadable): the TTL rule,
  which applies to every CaRE instance, or
- its ``care:prefect-api`` tag says a worker of *this* reaper's Prefect API launched it
  (:func:`~care_flows.aws.launch.prefect_api_id` of ``PREFECT_API_URL``) and that API says its
  flow run is final (Completed, Failed, Crashed, Cancelled); a run that became final less than
  ``final_grace_s`` ago (default :data:`FINAL_GRACE_S`) is left alone: its instance may still be
  running the state hooks before it powers itself off (the worker's ``final_grace_s``).

An instance of another Prefect API (another workspace or server sharing the AWS account), or one
without the tag (launched before CaRE wrote it), gets the TTL rule only: this reaper's API does not
know its flow run, which says nothing about whether the run is finished. For the same reason a
flow run the API does not know (``MISSING``, e.g. deleted) keeps its instance until the TTL unless
``reap_missing`` is set (``care aws reap --reap-missing``).

It also finds **orphaned runs**: a flow run of this API still Pending or Running on an instance
(its ``infrastructure_pid``) that is shutting down or terminated and was launched more than
``orphan_grace_s`` ago, when the run has been in that state for ``orphan_grace_s`` too and no
live CaRE instance carries it (a worker relaunching a resumed or retried run proposes Pending
first, and names the new instance only once it is up). The worker watching a run crashes it when its instance dies; a worker
killed and restarted does not watch its predecessor's runs, so such a run would stay Pending or
Running for good. The reaper sets it Crashed (``dry_run``: lists it). EC2 lists a terminated
instance for about an hour, so run the reaper at least that often.

Prefect is asked through ``flow_run_state(flow_run_id)`` (injectable): the state type name, or
``(name, since)`` with the time the run entered that state; ``None`` means "unknown, e.g. the API
is unreachable": only the TTL rule applies then. ``dry_run`` lists what would be terminated and
terminates nothing. Without AWS credentials it raises one :class:`~care_flows.errors.ConfigError`
(the same for every region) instead of one error per region.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T11:00:00+00:00"}, now, None)
'expired at 2026-01-01T11:00:00+00:00'
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}, now, "COMPLETED")
'flow run is COMPLETED'
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}, now, "RUNNING") is None
True
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}, now, "MISSING") is None
True
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from care_flows.aws.clients import AwsClients
from care_flows.aws.faults import error_code, error_message, log_encoded_authorization_message
from care_flows.aws.launch import (
    LIVE_STATES,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_FLOW_RUN,
    TAG_PREFECT_API,
    _retrying,
    current_prefect_api_id,
    terminate_instance,
)
from care_flows.errors import CareError, ConfigError, OrchestrationError

__all__ = ["FINAL_STATE_NAMES", "MISSING", "ANY_API", "FINAL_GRACE_S", "ORPHAN_GRACE_S", "GONE_STATES", "ReapedInstance", "OrphanedRun",
           "ReapReport", "reap_reason", "list_care_instances", "reap", "prefect_flow_run_state", "prefect_crash_orphaned_run"]

logger = logging.getLogger(__name__)

FINAL_STATE_NAMES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
MISSING = "MISSING"
"""What :func:`prefect_flow_run_state` answers for a flow run the API does not know: not final (the
run may belong to another API); it ends an instance only with ``reap_missing``."""
ANY_API = "*"
"""``reap(prefect_api=ANY_API)``: ``flow_run_state`` answers for every instance, whichever API launched it."""
FINAL_GRACE_S = 600.0
"""How long after its flow run became final the reaper leaves an instance alone (longer than the
worker's default ``final_grace_s`` of 120 s, so the worker or the instance itself normally ends it)."""
ORPHAN_GRACE_S = 600.0
"""An instance launched less than this long ago is never taken for an orphaned run's: a worker that
lost an instance to a capacity shortage relaunches the run and reports the new instance within it."""
GONE_STATES = ("shutting-down", "terminated")
NO_CREDENTIALS = ("no AWS credentials found; configure them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "
                  "an AWS profile (AWS_PROFILE) or an instance role")


@dataclass
class ReapedInstance:
    """One CaRE instance the reaper looked at."""

    region: str
    instance_id: str
    instance_type: str
    state: str
    flow_run_id: str
    deployment: str
    expires_at: str
    reason: str | None
    terminated: bool = False
    state_rule: bool = True
    """Whether the flow-run-state rule applied (``False``: only the TTL rule, e.g. another Prefect API's instance)."""
    state_unknown: bool = False
    """The flow-run-state rule should have applied but the Prefect API could not be asked (TTL rule only)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class OrphanedRun:
    """A flow run still Pending or Running on an instance that is gone (see the module)."""

    region: str
    instance_id: str
    instance_state: str
    flow_run_id: str
    run_state: str
    reason: str
    crashed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReapReport:
    """What the reaper found; ``errors`` maps a region to why it could not be checked."""

    dry_run: bool
    instances: list[ReapedInstance] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """What went wrong without stopping the sweep (e.g. the Prefect API could not be asked: TTL rule only)."""
    orphaned: list[OrphanedRun] = field(default_factory=list)

    @property
    def to_reap(self) -> list[ReapedInstance]:
        return [i for i in self.instances if i.reason]

    @property
    def terminated(self) -> list[ReapedInstance]:
        return [i for i in self.instances if i.terminated]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "instances": [i.as_dict() for i in self.instances], "errors": dict(self.errors),
                "warnings": list(self.warnings), "orphaned_runs": [o.as_dict() for o in self.orphaned]}


def reap_reason(tags: Mapping[str, str], now: datetime, flow_run_state: str | None, *, final_since: datetime | None = None,
                final_grace_s: float = FINAL_GRACE_S, reap_missing: bool = False) -> str | None:
    """Why an instance with these tags should go, or ``None`` to keep it (``final_since``: when the
    flow run entered ``flow_run_state``, if known; pass ``None`` as ``flow_run_state`` when the state
    rule does not apply to the instance). ``MISSING`` ends the instance only with ``reap_missing``.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    >>> tags = {"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}
    >>> reap_reason(tags, t, "COMPLETED", final_since=t - timedelta(seconds=30)) is None
    True
    >>> reap_reason(tags, t, "COMPLETED", final_since=t - timedelta(minutes=11))
    'flow run is COMPLETED'
    """
    raw = tags.get(TAG_EXPIRES)
    if not raw:
        return f"no {TAG_EXPIRES} tag"
    try:
        expires = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
    except ValueError:
        return f"unreadable {TAG_EXPIRES} tag {raw!r}"
    if expires <= now:
        return f"expired at {raw}"
    if flow_run_state and flow_run_state.upper() == MISSING and reap_missing:
        return f"flow run is {MISSING} (--reap-missing)"
    if flow_run_state and flow_run_state.upper() in FINAL_STATE_NAMES:
        if final_since is not None and (now - final_since).total_seconds() < final_grace_s:
            return None  # the instance may still run the state hooks and power itself off
        return f"flow run is {flow_run_state.upper()}"
    return None


def list_care_instances(ec2: Any, states: Sequence[str] = LIVE_STATES) -> list[dict[str, Any]]:
    """Instances in ``states`` (default: the live ones, pending, running, stopping, stopped) with a ``care:flow-run-id`` tag."""
    filters = [{"Name": "tag-key", "Values": [TAG_FLOW_RUN]}, {"Name": "instance-state-name", "Values": list(states)}]
    out: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            out.extend(reservation.get("Instances", []))
    return out


def prefect_flow_run_state(flow_run_id: str) -> str | tuple[str, datetime] | None:
    """``(state type name, since)`` of a flow run from the configured Prefect API (``MISSING`` if
    deleted, ``None`` if the API cannot be reached or none is configured).

    Without ``PREFECT_API_URL`` it answers ``None`` rather than asking a temporary ephemeral
    server, which knows no flow runs and would make every instance look orphaned. An API that
    cannot be asked raises :class:`~care_flows.errors.OrchestrationError` with the reason
    (:func:`reap` applies the TTL rule only to that instance and warns).
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    from uuid import UUID

    try:
        UUID(flow_run_id)
    except ValueError:
        raise OrchestrationError("its care:flow-run-id tag is not a flow run id (a UUID); the tag was changed by hand or by another tool") from None
    try:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:
                return MISSING
            if run.state is None:
                return None
            return (run.state.type.value, run.state.timestamp) if run.state.timestamp is not None else run.state.type.value
    except Exception as exc:  # noqa: BLE001 - unreachable Prefect: the reaper falls back to the TTL rule and says so
        from care_flows.aws.userdata import mask_url_credentials

        raise OrchestrationError(mask_url_credentials(" ".join(str(exc).split())[:200] or type(exc).__name__)) from None


def prefect_crash_orphaned_run(flow_run_id: str, identifier: str, reason: str, dry_run: bool, *, now: datetime | None = None,
                               grace_s: float = ORPHAN_GRACE_S) -> str | None:
    """The state type name of flow run ``flow_run_id`` when it is Pending or Running on
    ``identifier`` (``region:instance-id``, its ``infrastructure_pid``), after setting it Crashed
    with ``reason`` unless ``dry_run``; ``None`` when it is not (final, elsewhere, unknown, or no
    ``PREFECT_API_URL``). An API that cannot be asked raises :class:`~care_flows.errors.OrchestrationError`.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    from uuid import UUID

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        return None
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.exceptions import ObjectNotFound
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(run_id)
            except ObjectNotFound:
                return None
            if run.state is None or run.state.type not in (StateType.PENDING, StateType.RUNNING) or run.infrastructure_pid != identifier:
                return None
            entered = getattr(run.state, "timestamp", None)
            if isinstance(entered, datetime) and entered.tzinfo is None:
                entered = entered.replace(tzinfo=timezone.utc)
            if isinstance(entered, datetime) and ((now or datetime.now(timezone.utc)) - entered).total_seconds() < grace_s:
                # a worker proposed Pending (a relaunch after a suspend, the UI's Retry) or Running just now: Prefect updates
                # infrastructure_pid only once the new instance is up, so the old one is still named (review 55b M3)
                return None
            if not dry_run:
                client.set_flow_run_state(run_id, Crashed(message=reason))
            return run.state.type.value
    except Exception as exc:  # noqa: BLE001 - unreachable Prefect: said in the report's warnings
        from care_flows.aws.userdata import mask_url_credentials

        raise OrchestrationError(mask_url_credentials(" ".join(str(exc).split())[:200] or type(exc).__name__)) from None


def _orphans(region: str, ec2: Any, report: ReapReport, *, now: datetime, dry_run: bool, prefect_api: str,
             crash: Callable[..., str | None], grace_s: float, sleep: Callable[[float], None], rng: random.Random,
             unknown: dict[str, str], live_runs: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Add (and unless ``dry_run`` crash) this region's orphaned runs (see the module); not a run with a
    live instance (in ``live_runs``: a worker relaunched it, review 55b M3)."""
    try:
        gone = _retrying(lambda: list_care_instances(ec2, GONE_STATES), what=f"describe_instances in {region}", sleep=sleep, rng=rng, max_retries=6)
    except Exception as exc:  # noqa: BLE001 - the live instances of the region were swept; say what was not
        report.errors[f"{region} (orphaned runs)"] = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
        return
    for inst in gone:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        run_id = tags.get(TAG_FLOW_RUN, "")
        launched = inst.get("LaunchTime")
        if (not run_id or run_id in live_runs or not (prefect_api == ANY_API or tags.get(TAG_PREFECT_API) == prefect_api)
                or not isinstance(launched, datetime)):
            continue
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=timezone.utc)
        if (now - launched).total_seconds() < grace_s:
            continue
        identifier, state = f"{region}:{inst['InstanceId']}", inst["State"]["Name"]
        why = (inst.get("StateReason") or {}).get("Message") or ""
        reason = (f"CaRE reaper: instance {identifier} is {state}{f' (EC2: {why})' if why else ''} and the flow run had not "
                  "ended; no worker watches it (its worker stopped)")
        try:
            was = crash(run_id, identifier, reason, dry_run, now=now, grace_s=grace_s)
        except CareError as exc:
            unknown.setdefault(run_id, str(exc))
            continue
        if was:
            report.orphaned.append(OrphanedRun(region, inst["InstanceId"], state, run_id, str(was).upper(), reason, crashed=not dry_run))
            if not dry_run:
                logger.info("crashed orphaned flow run %s (%s)", run_id, reason)


def reap(
    regions: Sequence[str],
    clients: AwsClients,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    flow_run_state: Callable[[str], str | tuple[str, datetime] | None] | None = prefect_flow_run_state,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    final_grace_s: float = FINAL_GRACE_S,
    prefect_api: str | None = None,
    reap_missing: bool = False,
    crash_orphaned: Callable[..., str | None] | None = None,
    orphan_grace_s: float = ORPHAN_GRACE_S,
) -> ReapReport:
    """Find and (unless ``dry_run``) terminate stale CaRE instances in ``regions``.

    ``prefect_api`` is the :func:`~care_flows.aws.launch.prefect_api_id` of the API ``flow_run_state``
    asks: the state rule applies only to instances whose ``care:prefect-api`` tag equals it (the
    others get the TTL rule only, and their flow runs are not asked about). ``None`` means this
    process's ``PREFECT_API_URL`` when ``flow_run_state`` is :func:`prefect_flow_run_state` (the
    default), else :data:`ANY_API` (an injected ``flow_run_state`` that knows every run). ``reap_missing``:
    also end instances (of this API) whose flow run the API does not know. ``crash_orphaned``
    (default: :func:`prefect_crash_orphaned_run` when ``flow_run_state`` is the default, else none)
    finds and crashes orphaned runs (see the module).
    """
    now = now or datetime.now(timezone.utc)
    if prefect_api is None:
        prefect_api = current_prefect_api_id() if flow_run_state is prefect_flow_run_state else ANY_API
    if crash_orphaned is None and flow_run_state is prefect_flow_run_state:
        crash_orphaned = prefect_crash_orphaned_run
    rng = rng or random.Random()
    report = ReapReport(dry_run=dry_run)
    states: dict[str, tuple[str | None, datetime | None]] = {}
    unknown: dict[str, str] = {}  # flow run id -> why the Prefect API could not be asked about it
    swept: list[tuple[str, Any]] = []  # regions whose gone instances are checked for orphaned runs
    live_runs: set[str] = set()  # flow runs with a live instance that was not reaped
    for region in regions:
        ec2 = clients.ec2(region)
        try:
            # botocore makes one attempt (AwsClients): back off on throttling here, as launch does
            found = _retrying(lambda: list_care_instances(ec2), what=f"describe_instances in {region}", sleep=sleep, rng=rng, max_retries=6)
        except Exception as exc:  # noqa: BLE001 - one bad region must not stop the others
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                raise ConfigError(NO_CREDENTIALS) from None  # the same in every region: say it once
            log_encoded_authorization_message(exc, logger, f"describe_instances in {region}")
            report.errors[region] = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
            continue
        for inst in found:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            run_id = tags.get(TAG_FLOW_RUN, "")
            # another Prefect API's run (or an instance from before the tag) is unknown here, not finished: TTL only
            state_rule = bool(flow_run_state and run_id and prefect_api and (prefect_api == ANY_API or tags.get(TAG_PREFECT_API) == prefect_api))
            state, since = None, None
            if state_rule:
                if run_id not in states and run_id not in unknown:
                    try:
                        answer = flow_run_state(run_id)  # type: ignore[misc]
                        states[run_id] = (answer[0], answer[1]) if isinstance(answer, tuple) else (answer, None)
                    except CareError as exc:
                        unknown[run_id] = str(exc)
                state, since = states.get(run_id, (None, None))
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=timezone.utc)
            reason = reap_reason(tags, now, state, final_since=since, final_grace_s=final_grace_s, reap_missing=reap_missing)
            row = ReapedInstance(region, inst["InstanceId"], inst.get("InstanceType", ""), inst["State"]["Name"], run_id,
                                 tags.get(TAG_DEPLOYMENT, ""), tags.get(TAG_EXPIRES, ""), reason, state_rule=state_rule and run_id not in unknown,
                                 state_unknown=run_id in unknown)
            if reason and not dry_run:
                try:
                    terminate_instance(ec2, inst["InstanceId"], sleep=sleep, rng=rng)
                    row.terminated = True
                    logger.info("reaped %s:%s (%s)", region, inst["InstanceId"], reason)
                except Exception as exc:  # noqa: BLE001
                    log_encoded_authorization_message(exc, logger, f"terminating {region}:{inst['InstanceId']}")
                    report.errors[f"{region}:{inst['InstanceId']}"] = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
            report.instances.append(row)
        if crash_orphaned is not None and prefect_api:
            swept.append((region, ec2))
        live_runs.update(r.flow_run_id for r in report.instances if r.flow_run_id and r.region == region and not r.terminated)
    for region, ec2 in swept:  # after every region's live instances are known: a run relaunched elsewhere is not orphaned
        _orphans(region, ec2, report, now=now, dry_run=dry_run, prefect_api=prefect_api, crash=crash_orphaned,  # type: ignore[arg-type]
                 grace_s=orphan_grace_s, sleep=sleep, rng=rng, unknown=unknown, live_runs=live_runs)
    if unknown:
        first, why = next(iter(unknown.items()))
        report.warnings.append(f"cannot ask the Prefect API about {len(unknown)} flow run(s) (first: {first}: {why}); only the "
                               "care:expires-at (TTL) rule applied to their instances; check PREFECT_API_URL and that the API answers, "
                               "or pass --no-prefect")
    return report
