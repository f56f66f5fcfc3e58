"""Region -> where runs go: work pool / deployment / job variables.

The spatial choice of a plan reaches infrastructure in two ways (DESIGN §3): per-run
``job_variables`` (``region``, ``instance_type`` and the region target's own variables) and,
when a region has its own work pool, a deployment of the same flow bound to that pool.

>>> from care_flows.policy import CarePolicy, RegionTarget
>>> pol = CarePolicy(targets={"eu-north-1": RegionTarget(work_pool="care-eu-north-1", job_variables={"subnet_id": "subnet-1"})})
>>> job_variables_for(pol, "eu-north-1", "m6i.large")
{'region': 'eu-north-1', 'instance_type': 'm6i.large', 'subnet_id': 'subnet-1'}
>>> target_for(pol, "eu-south-2").work_pool is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

from care_flows.errors import OrchestrationError
from care_flows.policy import CarePolicy, RegionTarget

__all__ = ["target_for", "job_variables_for", "priorities_not_applied", "with_care_variables", "resolve_deployment", "ttl_for_work_minutes", "ttl_pinned",
           "DEFAULT_TTL_MINUTES", "TTL_PINNED"]

DEFAULT_TTL_MINUTES = 180
"""The ``care-ec2`` work pool's default ``ttl_minutes`` (:class:`care_flows.aws.worker.CareEC2Variables`)."""


def priorities_not_applied(policy: CarePolicy, where: str) -> str | None:
    """The warning for a run planned where its instance type cannot be chosen (``where``: a pool that is
    not care-ec2, or a run with no deployment of its own) under ``instance_choice: priorities``; None
    when the policy does not ask for it or pins a type. Said by ``@care`` and the controller (53b M2).

    >>> priorities_not_applied(CarePolicy(instance_choice="priorities"), "pool etl")[:64]
    "instance_choice 'priorities' not applied: pool etl cannot start "
    >>> priorities_not_applied(CarePolicy(), "pool etl") is None
    True
    """
    if policy.instance_choice != "priorities" or policy.instance_type:
        return None
    return (f"instance_choice 'priorities' not applied: {where} cannot start the work on another instance type (a care-ec2 "
            "pool's runs can), so the plan is on the right-sized type")


def target_for(policy: CarePolicy, region: str) -> RegionTarget:
    """The policy's target for ``region`` (an empty target: "the deployment's own pool")."""
    return policy.targets.get(region) or RegionTarget()


def ttl_for_work_minutes(work: timedelta | float) -> int:
    """The instance lifetime (``ttl_minutes``) that covers ``work`` (a timedelta, or seconds) with a
    margin for boot, install, slower hardware and the final grace: ``ceil(1.5 x work) + 30`` minutes.
    The ``care-ec2`` worker raises a CaRE-planned run's ``ttl_minutes`` to this when it is shorter
    (:meth:`care_flows.aws.worker.CareEC2JobConfiguration.prepare_for_flow_run`).

    >>> ttl_for_work_minutes(timedelta(hours=1)), ttl_for_work_minutes(timedelta(hours=4)), ttl_for_work_minutes(5 * 3600.0)
    (120, 390, 480)
    """
    seconds = work.total_seconds() if isinstance(work, timedelta) else float(work)
    return math.ceil(1.5 * max(0.0, seconds) / 60.0) + 30


TTL_PINNED = "ttl_pinned"
"""The ``care`` marker's flag for a run whose region target sets its own ``ttl_minutes``: the worker
keeps that value even when it is shorter than the planned work (and warns)."""


def ttl_pinned(policy: CarePolicy, region: str) -> bool:
    """Whether ``policy``'s target for ``region`` pins the instance lifetime (``ttl_minutes`` in its
    ``job_variables``).

    >>> from care_flows.policy import RegionTarget
    >>> ttl_pinned(CarePolicy(targets={"eu-north-1": RegionTarget(job_variables={"ttl_minutes": 15})}), "eu-north-1")
    True
    """
    return "ttl_minutes" in target_for(policy, region).job_variables


def job_variables_for(policy: CarePolicy, region: str, instance_type: str | None) -> dict[str, Any]:
    """Per-run job variables for a run in ``region``: the region, the instance type, and the region
    target's variables, which win on conflicts.

    No ``ttl_minutes``: the ``care-ec2`` worker makes the instance outlive the work planned in the
    run's ``care`` marker (:func:`ttl_for_work_minutes`), raising the pool's, deployment's or run's
    value only when it is shorter, so a longer lifetime set there is kept. A ``ttl_minutes`` in the
    region target's job variables is pinned (:func:`ttl_pinned`): kept as it is, with a warning
    from the worker when it is shorter than the planned work.
    """
    out: dict[str, Any] = {"region": region}
    if instance_type:
        out["instance_type"] = instance_type
    out.update(target_for(policy, region).job_variables)
    return out


def with_care_variables(own: Mapping[str, Any] | None, set_by_care: Mapping[str, Any]) -> dict[str, Any]:
    """A run's job variables ``own`` with what CaRE sets (:func:`job_variables_for`) over them; an
    ``env`` of both is merged key by key, CaRE's (the region target's) winning, so the run keeps
    its own environment variables (Prefect's workers merge a deployment's ``env`` with the run's
    the same way).

    >>> with_care_variables({"env": {"API_TOKEN": "t", "STAGE": "dev"}, "image": "x"}, {"region": "eu-north-1", "env": {"STAGE": "prod"}})
    {'env': {'API_TOKEN': 't', 'STAGE': 'prod'}, 'image': 'x', 'region': 'eu-north-1'}
    """
    out = {**(own or {}), **set_by_care}
    mine, theirs = (own or {}).get("env"), set_by_care.get("env")
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        out["env"] = {**mine, **theirs}
    return out


def resolve_deployment(client: Any, current_deployment_id: UUID | str, target: RegionTarget) -> str:
    """The deployment to dispatch to, as ``"flow-name/deployment-name"``.

    ``target.deployment`` wins (a bare name is taken within the current flow; one that does not
    exist is an :class:`OrchestrationError`, as a pool without a deployment of the flow); else, when
    ``target.work_pool`` differs from the current deployment's pool, the deployment of the same
    flow in that pool; else the current deployment. ``client`` is a sync ``PrefectClient``.
    """
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId, WorkPoolFilter, WorkPoolFilterName

    current = client.read_deployment(current_deployment_id)
    flow_name = client.read_flow(current.flow_id).name
    if target.deployment:
        name = target.deployment if "/" in target.deployment else f"{flow_name}/{target.deployment}"
        try:  # a typo or a renamed deployment: the caller's "cannot dispatch" path runs the work, not a failed trigger
            client.read_deployment_by_name(name)
        except Exception as exc:  # noqa: BLE001 - ObjectNotFound, or the API: either way it cannot be dispatched to
            found = "not found" if type(exc).__name__ == "ObjectNotFound" else " ".join(str(exc).split())[:200] or type(exc).__name__
            raise OrchestrationError(f"deployment {name!r} of targets[...].deployment: {found}; deploy it or fix the name") from None
        return name
    if target.work_pool and target.work_pool != current.work_pool_name:
        found = client.read_deployments(
            flow_filter=FlowFilter(id=FlowFilterId(any_=[current.flow_id])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[target.work_pool])),
            limit=1,
        )
        if not found:
            raise OrchestrationError(
                f"no deployment of flow {flow_name!r} in work pool {target.work_pool!r}; "
                "deploy it there (flow.to_deployment(name=..., work_pool_name=...).apply()) or set targets[region].deployment"
            )
        return f"{flow_name}/{found[0].name}"
    return f"{flow_name}/{current.name}"
