"""The reaper: terminate CaRE instances that outlived their purpose.

An instance is reaped when it carries a ``care:flow-run-id`` tag and either

- its ``care:expires-at`` lies in the past (or the tag is missing or unreadable), or
- Prefect says its flow run is final (Completed, Failed, Crashed, Cancelled) or gone.

Prefect is asked through ``flow_run_state(flow_run_id) -> str | None`` (injectable; ``None``
means "unknown, e.g. the API is unreachable": only the TTL rule applies then).
``dry_run`` lists what would be terminated and terminates nothing.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T11:00:00+00:00"}, now, None)
'expired at 2026-01-01T11:00:00+00:00'
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}, now, "COMPLETED")
'flow run is COMPLETED'
>>> reap_reason({"care:flow-run-id": "r1", "care:expires-at": "2026-01-01T13:00:00+00:00"}, now, "RUNNING") is None
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
from care_flows.aws.launch import LIVE_STATES, TAG_DEPLOYMENT, TAG_EXPIRES, TAG_FLOW_RUN, _retrying, terminate_instance

__all__ = ["FINAL_STATE_NAMES", "ReapedInstance", "ReapReport", "reap_reason", "list_care_instances", "reap", "prefect_flow_run_state"]

logger = logging.getLogger(__name__)

FINAL_STATE_NAMES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED", "MISSING"})


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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReapReport:
    """What the reaper found; ``errors`` maps a region to why it could not be checked."""

    dry_run: bool
    instances: list[ReapedInstance] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def to_reap(self) -> list[ReapedInstance]:
        return [i for i in self.instances if i.reason]

    @property
    def terminated(self) -> list[ReapedInstance]:
        return [i for i in self.instances if i.terminated]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "instances": [i.as_dict() for i in self.instances], "errors": dict(self.errors)}


def reap_reason(tags: Mapping[str, str], now: datetime, flow_run_state: str | None) -> str | None:
    """Why an instance with these tags should go, or ``None`` to keep it."""
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
    if flow_run_state and flow_run_state.upper() in FINAL_STATE_NAMES:
        return f"flow run is {flow_run_state.upper()}"
    return None


def list_care_instances(ec2: Any) -> list[dict[str, Any]]:
    """Live instances (pending, running, stopping, stopped) with a ``care:flow-run-id`` tag."""
    filters = [{"Name": "tag-key", "Values": [TAG_FLOW_RUN]}, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    out: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            out.extend(reservation.get("Instances", []))
    return out


def prefect_flow_run_state(flow_run_id: str) -> str | None:
    """The state type name of a flow run from the configured Prefect API (``MISSING`` if deleted,
    ``None`` if the API cannot be reached or none is configured).

    Without ``PREFECT_API_URL`` it answers ``None`` rather than asking a temporary ephemeral
    server, which knows no flow runs and would make every instance look orphaned.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    try:
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:
                return "MISSING"
            return run.state.type.value if run.state is not None else None
    except Exception as exc:  # noqa: BLE001 - unreachable Prefect: fall back to the TTL rule
        logger.warning("cannot ask Prefect about flow run %s (%s); using the TTL only", flow_run_id, exc)
        return None


def reap(
    regions: Sequence[str],
    clients: AwsClients,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    flow_run_state: Callable[[str], str | None] | None = prefect_flow_run_state,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> ReapReport:
    """Find and (unless ``dry_run``) terminate stale CaRE instances in ``regions``."""
    now = now or datetime.now(timezone.utc)
    rng = rng or random.Random()
    report = ReapReport(dry_run=dry_run)
    states: dict[str, str | None] = {}
    for region in regions:
        ec2 = clients.ec2(region)
        try:
            # botocore makes one attempt (AwsClients): back off on throttling here, as launch does
            found = _retrying(lambda: list_care_instances(ec2), what=f"describe_instances in {region}", sleep=sleep, rng=rng, max_retries=6)
        except Exception as exc:  # noqa: BLE001 - one bad region must not stop the others
            log_encoded_authorization_message(exc, logger, f"describe_instances in {region}")
            report.errors[region] = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
            continue
        for inst in found:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            run_id = tags.get(TAG_FLOW_RUN, "")
            if run_id not in states:
                states[run_id] = flow_run_state(run_id) if (flow_run_state and run_id) else None
            reason = reap_reason(tags, now, states[run_id])
            row = ReapedInstance(region, inst["InstanceId"], inst.get("InstanceType", ""), inst["State"]["Name"], run_id,
                                 tags.get(TAG_DEPLOYMENT, ""), tags.get(TAG_EXPIRES, ""), reason)
            if reason and not dry_run:
                try:
                    terminate_instance(ec2, inst["InstanceId"], sleep=sleep, rng=rng)
                    row.terminated = True
                    logger.info("reaped %s:%s (%s)", region, inst["InstanceId"], reason)
                except Exception as exc:  # noqa: BLE001
                    log_encoded_authorization_message(exc, logger, f"terminating {region}:{inst['InstanceId']}")
                    report.errors[f"{region}:{inst['InstanceId']}"] = f"{error_code(exc) or type(exc).__name__}: {error_message(exc)}"
            report.instances.append(row)
    return report
