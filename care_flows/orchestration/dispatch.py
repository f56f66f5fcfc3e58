"""Create the real run of a deferred/moved flow: ``run_deployment(..., timeout=0)``, never waiting.

Every dispatched run carries the ``care:planned`` tag (so it executes the body directly) and a
``care`` job variable with the plan, the segment number and the root run id (so checkpoints know
the green segments and the deadline). ``idempotency_key`` makes a retried dispatch return the
run created the first time instead of a second one.

>>> sorted(care_tags(region="eu-north-1", segment=1))
['care', 'care:continuation', 'care:planned', 'care:region:eu-north-1']
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pandas as pd

from care_flows.errors import OrchestrationError
from care_flows.orchestration.plan import Plan
from care_flows.orchestration.targets import TTL_PINNED

__all__ = ["PLANNED_TAG", "CARE_TAG", "MOVED_TAG", "CONTINUATION_TAG", "DISPATCHED_TAG", "care_tags", "care_marker", "dispatch_run", "run_url", "dispatch_key"]

def dispatch_key(root: object, part: int = 0) -> str:
    """The idempotency key of the run CaRE root ``root`` dispatched: ``care-<root>`` for the work a
    trigger handed over, ``care-<root>-part<n>`` for the continuation of its segment ``n - 1``
    (the ``@care`` wrapper dispatches with it; ``care report`` finds continuations by it).

    >>> dispatch_key("r1"), dispatch_key("r1", 2)
    ('care-r1', 'care-r1-part2')
    """
    return f"care-{root}-part{part}" if part else f"care-{root}"


CARE_TAG = "care"
PLANNED_TAG = "care:planned"
MOVED_TAG = "care:moved"
CONTINUATION_TAG = "care:continuation"
DISPATCHED_TAG = "care:dispatched"
"""A run a ``@care`` trigger handed its work to (``care controller`` re-plans it when its marker carries the policy)."""


def care_tags(*, region: str, segment: int = 0, extra: list[str] | None = None) -> list[str]:
    """Tags of a dispatched run: planned marker, region, continuation flag."""
    tags = [CARE_TAG, PLANNED_TAG, f"care:region:{region}"]
    if segment > 0:
        tags.append(CONTINUATION_TAG)
    else:
        tags.append(DISPATCHED_TAG)
    return list(dict.fromkeys([*tags, *(extra or [])]))


def care_marker(plan: Plan, *, segment: int, root: str, work_done_s: float = 0.0, ttl_pinned: bool = False,
                retried: bool = False) -> dict[str, Any]:
    """The ``care`` job variable: what a planned run needs to know about its plan (``ttl_pinned``:
    its region target sets ``ttl_minutes``, :data:`care_flows.orchestration.targets.TTL_PINNED`;
    ``retried``: an earlier segment of the job was retried, so its run time is not the flow's)."""
    marker = {"plan": plan.to_dict(), "segment": segment, "root": root, "work_done_s": float(work_done_s)}
    if retried:
        marker["retried"] = True
    return {**marker, TTL_PINNED: True} if ttl_pinned else marker


def run_url(flow_run: Any) -> str | None:
    """UI link to a flow run (None when no UI URL is configured)."""
    try:
        from prefect.utilities.urls import url_for

        return url_for(flow_run)
    except Exception:  # noqa: BLE001
        return None


def dispatch_run(
    *,
    deployment: str | UUID,
    parameters: dict[str, Any],
    scheduled_time: pd.Timestamp,
    job_variables: dict[str, Any],
    tags: list[str],
    idempotency_key: str,
    work_queue_name: str | None = None,
    flow_run_name: str | None = None,
) -> Any:
    """``run_deployment`` with ``timeout=0``: returns the (Scheduled) FlowRun at once."""
    from prefect.deployments import run_deployment

    try:
        return run_deployment(
            name=deployment,
            parameters=parameters,
            scheduled_time=pd.Timestamp(scheduled_time).to_pydatetime(),
            job_variables=job_variables,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue_name,
            flow_run_name=flow_run_name,
            timeout=0,
            as_subflow=False,
            _sync=True,  # also from async flows (run_deployment dispatches on the run context)
        )
    except Exception as exc:  # noqa: BLE001 - Prefect raises many kinds; report one line
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        if type(exc).__name__ == "ObjectNotFound":  # its str() is "None"
            msg = "not found"
        raise OrchestrationError(f"could not dispatch a run of deployment {deployment!r}: {msg}") from exc
