"""``@care``: make a Prefect flow carbon-, cost- and resource-aware.

>>> from prefect import flow
>>> from care_flows.orchestration import care
>>> @care(policy={"home_region": "eu-south-2", "regions": ["eu-north-1"]})
... @flow
... def etl(day: str, limit: int = 10) -> int:
...     return limit
>>> type(etl).__name__, etl.name, list(etl.parameters.properties)
('Flow', 'etl', ['day', 'limit'])

What a decorated flow does when it runs:

- **dispatched/planned run** (tag ``care:planned``): runs the body directly (its plan rides in
  the ``care`` job variable, for checkpoints and the realized figures); a run a trigger deferred
  first checks its plan with a fresh forecast (:mod:`care_flows.orchestration.start_check`) and
  hands the work on to a greener later start if there is one;
- **deployment run, not planned yet** (a schedule or a manual trigger): plans. "Now, here"
  runs the body. Otherwise it dispatches the real run with ``run_deployment(...,
  scheduled_time=window start, job_variables={region, instance_type, ...}, tags=[care:planned,
  ...], idempotency_key=care-<this run id>, flow_run_name=<this run's name>-care, timeout=0)``,
  writes the decision artifacts linking
  that run, and ends *Completed* in a state named ``Deferred`` whose message names that run (its
  result is None). Nothing sleeps and no worker waits;
- **local call** (no deployment): plans, logs and records the decision, and runs the body now
  (``wait_locally=True`` sleeps until a later window in the home region first);
- **not a run of this flow** (``etl.fn(...)``, in a test or inside another flow) calls the body
  plainly, and a ``@care`` subflow of a running ``@care`` flow runs as part of that run: neither
  plans.

The policy is given inline (a :class:`CarePolicy`, a dict or JSON text), by the name of a
``CarePolicyBlock`` document, or from the environment (``CARE_POLICY`` JSON or
``CARE_POLICY_BLOCK``; see :class:`CareFlowSettings`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import inspect
import logging
import os
import re
import time
import types
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

import pandas as pd
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from care_flows.errors import CareError, ConfigError, OrchestrationError
from care_flows.orchestration.artifacts import REALIZED_KIND, _plan_forecast_for, is_realized_key, parse_realized, publish_decision, publish_note, publish_realized
from care_flows.orchestration.checkpoint import _CURRENT, Continued, RunState, checkpoint, resumable_task
from care_flows.orchestration.clock import Clock, system_clock
from care_flows.orchestration.controller import EC2_POOL_TYPE, dispatchable_policy, next_replan_at, run_location, trigger_replan_fields
from care_flows.orchestration.dispatch import PLANNED_TAG, care_marker, care_tags, dispatch_run, run_url
from care_flows.orchestration.dispatch import dispatch_key as _dispatch_key
from care_flows.orchestration.learned_duration import record_run, with_learned_duration
from care_flows.orchestration.learned_sizing import accepts_usage, call_planner, forget_store_failures, need_for_policy, plan_sized, record_usage
from care_flows.orchestration.learned_sizing import run_logger as _logger  # the run's own log where there is one
from care_flows.orchestration.overrides import NEED_GIVEN, OVERRIDES_VARIABLE, apply_overrides, describe_overrides, gives_duration, gives_need, misspelt_variables, overrides_from
from care_flows.orchestration.plan import Plan, fetch_forecasts, plan_run
from care_flows.orchestration.start_check import (EARLY_START_TOLERANCE, MAX_START_CHECKS, START_CHECKS, check_at_start, latest_later_start, same_provider,
                                                  start_check_due, threshold_of)
from care_flows.orchestration.targets import (TTL_PINNED, job_variables_for, priorities_not_applied, resolve_deployment, target_for,
                                              ttl_pinned, with_care_variables)
from care_flows.policy import CarePolicy, RegionTarget, load_policy
from care_flows.temporary_server import quiet_temporary_server_telemetry
from care_flows.timeutil import format_duration, iso, to_timestamp

if TYPE_CHECKING:
    from care_flows.planning.sizing import UsageSummary

__all__ = ["care", "CareFlowSettings", "resolve_policy", "CareConfig"]

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("care_flows.orchestration")

PolicySpec = CarePolicy | Mapping[str, Any] | str | None


class CareFlowSettings(BaseSettings):
    """Defaults from the environment (``CARE_`` prefix) for flows that give no inline policy."""

    model_config = SettingsConfigDict(env_prefix="CARE_", extra="ignore")

    policy: str | None = Field(None, description="A CaRE policy as JSON text (CARE_POLICY).")
    policy_block: str | None = Field(None, description="Name of a CarePolicyBlock document (CARE_POLICY_BLOCK).")
    targets_block: str | None = Field(None, description="Name of a RegionTargets block document (CARE_TARGETS_BLOCK).")
    planner: Literal["auto", "decide", "window"] = Field("auto", description="Planner: decide (planning package), window (built-in) or auto.")
    wait_locally: bool = Field(False, description="Local (non-deployment) runs sleep until a later green window at home.")


def _load_block_policy(name: str) -> CarePolicy:
    from care_flows.blocks import load_policy_block

    return load_policy_block(name, given_as="the policy name given to @care (or CARE_POLICY_BLOCK)")


def resolve_policy(policy: PolicySpec = None, *, settings: CareFlowSettings | None = None, targets: Any = None) -> CarePolicy:
    """A :class:`CarePolicy` from an inline value, a block name, or the environment.

    A string starting with ``{`` is JSON; any other string is a ``CarePolicyBlock`` name.
    ``targets`` (a dict region -> RegionTarget/dict, or a ``RegionTargets`` block name) is
    merged over the policy's own targets.

    >>> resolve_policy({"home_region": "eu-north-1"}).home_region
    'eu-north-1'
    >>> resolve_policy('{"regions": ["eu-north-1"]}').regions
    ['eu-south-2', 'eu-north-1']
    """
    settings = settings or CareFlowSettings()
    if isinstance(policy, CarePolicy):
        resolved = policy
    elif isinstance(policy, Mapping):
        resolved = load_policy(dict(policy))
    elif isinstance(policy, os.PathLike) or (isinstance(policy, str) and policy.strip().lower().endswith((".json", ".yaml", ".yml"))):
        resolved = load_policy(policy)  # a policy file
    elif isinstance(policy, str):
        resolved = load_policy(policy) if policy.lstrip().startswith("{") else _load_block_policy(policy)
    elif policy is None and settings.policy:
        resolved = load_policy(settings.policy)
    elif policy is None and settings.policy_block:
        resolved = _load_block_policy(settings.policy_block)
    elif policy is None:
        resolved = CarePolicy()
        _logger().warning("CaRE: no policy given (policy=, CARE_POLICY or CARE_POLICY_BLOCK); planning with the built-in "
                          "defaults: home_region %s, regions %s, deadline_within %s; give a policy to say where and when "
                          "this flow may run", resolved.home_region, ",".join(resolved.candidate_regions),
                          format_duration(resolved.deadline_within))
    else:
        raise ConfigError(f"policy {policy!r} is not a CarePolicy, dict, JSON text, .json/.yaml file or block name")
    if targets is None and settings.targets_block:
        targets = settings.targets_block
    if targets is not None:
        if isinstance(targets, str):
            from care_flows.blocks import load_targets_block

            targets = load_targets_block(targets, given_as="the targets name given to @care (or CARE_TARGETS_BLOCK)")
        merged = {**resolved.targets, **{r: RegionTarget.model_validate(t) if not isinstance(t, RegionTarget) else t for r, t in dict(targets).items()}}
        resolved = resolved.model_copy(update={"targets": merged})
        CarePolicy.model_validate(resolved.model_dump())  # regions of targets must be known
    return resolved


class CareConfig:
    """How one decorated flow plans: policy spec, signal, clock and planner (all injectable)."""

    def __init__(
        self,
        policy: PolicySpec = None,
        *,
        signal: Any = None,
        clock: Clock | None = None,
        planner: Literal["auto", "decide", "window"] | Callable[..., Plan] | None = None,
        targets: Any = None,
        wait_locally: bool | None = None,
        sample_usage: bool = True,
    ) -> None:
        self.settings = CareFlowSettings()
        self.sample_usage = sample_usage
        self.policy_spec = policy
        self.targets = targets
        self.signal = signal
        self.clock: Clock = clock or system_clock
        self.planner = planner or self.settings.planner
        self.wait_locally = self.settings.wait_locally if wait_locally is None else wait_locally
        self._policy: CarePolicy | None = None
        lazy = (isinstance(policy, str) and not policy.lstrip().startswith("{")) or isinstance(targets, str) or policy is None
        if not lazy:  # inline policies fail at decoration time, not at 3 a.m.
            self._policy = resolve_policy(policy, settings=self.settings, targets=targets)

    def policy(self) -> CarePolicy:
        """The resolved policy (block/env lookups happen on first use, at run time)."""
        if self._policy is None:
            self._policy = resolve_policy(self.policy_spec, settings=self.settings, targets=self.targets)
        return self._policy

    def takes_usage(self) -> bool:
        """Whether this config's planner sizes from a learned need (the window planner does not)."""
        return accepts_usage(self.planner) if callable(self.planner) else self.planner != "window"

    def plan(self, policy: CarePolicy, now: pd.Timestamp, usage: UsageSummary | None = None, cap_types: bool = False) -> Plan:
        """Plan a run starting at ``now`` (``usage``: the need learned from the usage history;
        ``cap_types``: the run can launch the type it is planned on, see :func:`plan_run`)."""
        if callable(self.planner):
            return call_planner(self.planner, policy, now, signal=self.signal, usage=usage)
        return plan_run(policy, now, signal=self.signal, planner=self.planner, usage=usage, cap_types=cap_types)


def _dispatch_continuation(config: CareConfig) -> Callable[..., Any]:
    def dispatcher(state: RunState, start: pd.Timestamp, _segment_index: int, work_done_s: float) -> Any:
        from prefect import get_client

        policy, plan = state.policy, state.plan
        assert plan is not None
        part = state.segment + 1
        with get_client(sync_client=True) as api:
            client = _ReadOnce(api)
            deployment = resolve_deployment(client, state.deployment_id, target_for(policy, plan.region))
            carried = _root_carried(client, state.root, deployment, policy.home_region, plan.region)  # the trigger's own settings
        _warn_dropped(carried, deployment)
        key = _dispatch_key(state.root, part)
        try:
            run = dispatch_run(
                flow_run_name=_continuation_name(part, strip=state.segment > 0),
                deployment=deployment,
                parameters=state.parameters,
                scheduled_time=start,
                job_variables={**with_care_variables(carried.job_variables, job_variables_for(policy, plan.region, plan.instance_type)),
                               "care": care_marker(plan, segment=part, root=state.root, work_done_s=work_done_s,
                                                   ttl_pinned=ttl_pinned(policy, plan.region), retried=state.retried)},
                tags=care_tags(region=plan.region, segment=part, extra=carried.tags),
                idempotency_key=key,
                work_queue_name=carried.work_queue_name,
            )
        except OrchestrationError as exc:
            # the answer may have been lost after the server created it: then the continuation exists, and
            # running on here (the checkpoint's fallback) would do its work twice
            run, read = _look_up_by_key(key)
            if run is None and not read:  # unknown whether it exists: the run goes on (see _settle_unconfirmed_continuation)
                state.unconfirmed_continuation = key
                raise OrchestrationError(f"the continuation's dispatch and its look-up both failed; if the server created it, "
                                         f"it is cancelled if still scheduled when this run completes ({' '.join(str(exc).split())})") from None
            if run is None:
                raise
        _logger().info("CaRE: slot no longer green; continuing in %s at %s", run.name, iso(start))
        return run

    return dispatcher


def _continuation_name(part: int, current: str | None = None, *, strip: bool = True) -> str | None:
    """The name of the run that continues this one at segment ``part``: this run's name + ``-part<part>``
    (a continuation's own ``-part<n>`` replaced, ``strip``), so a job's segments read as one in the runs
    list (review 42b L2). A first segment keeps its name whole: a user's ``backfill-part7`` is not a
    continuation (review 42d L7).

    >>> _continuation_name(1, "secret-potoo"), _continuation_name(3, "nightly-care-part2")
    ('secret-potoo-part1', 'nightly-care-part3')
    >>> _continuation_name(1, "backfill-part7", strip=False)
    'backfill-part7-part1'
    """
    if current is None:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        current = getattr(getattr(ctx, "flow_run", None), "name", None)
    if not current:
        return None
    return f"{re.sub(r'-part[0-9]+$', '', current) if strip else current}-part{part}"


def _is_retry(flow_run: Any) -> bool:
    """A flow run's second or later attempt (Prefect's ``run_count``; None: not a run).

    >>> from types import SimpleNamespace
    >>> _is_retry(None), _is_retry(SimpleNamespace(run_count=1)), _is_retry(SimpleNamespace(run_count=2))
    (False, False, True)
    """
    return flow_run is not None and int(getattr(flow_run, "run_count", 1) or 1) > 1


def _continued_by_earlier_attempt(flow_run: Any, root: str, segment: int, logger: Any) -> Any:
    """For a retry (the UI offers Retry on a run that ended Continued) of a run whose earlier attempt
    paused at a checkpoint: its final state, *Continued* naming the continuation
    ``care-<root>-part<segment + 1>``, which runs the rest of the work (review 42b H1). None for a
    first attempt or when there is no continuation: the work runs here."""
    if not _is_retry(flow_run):
        return None
    continuation = _dispatched_by(root, key=_dispatch_key(root, segment + 1))
    if continuation is None or str(getattr(continuation.state, "message", "") or "").startswith(UNNEEDED_CONTINUATION):
        return None  # none, or one CaRE cancelled because the earlier attempt ran on: the work runs here
    for _ in range(100):  # the run that holds the rest of the work now: follow continuations that paused too (review 42e L2)
        if getattr(getattr(continuation, "state", None), "name", None) != "Continued":
            break
        marker = (getattr(continuation, "job_variables", None) or {}).get("care") or {}
        later = _dispatched_by(root, key=_dispatch_key(root, int(marker.get("segment", 0) or 0) + 1))
        if later is None:
            break
        continuation = later
    state = getattr(getattr(continuation, "state", None), "name", None) or "?"
    stopped = getattr(getattr(continuation, "state", None), "type", None)
    stopped = getattr(stopped, "value", stopped) in ("CANCELLED", "CANCELLING", "FAILED", "CRASHED")
    hint = f"; it is {state}: retry that run to run the rest of the work" if stopped else "; the rest of the work runs there"
    logger.warning("CaRE: an earlier attempt of this run dispatched run %s (%s, %s) at a checkpoint for the rest of the work; "
                   "a retry does not run it again", continuation.name, continuation.id, state)
    return _ended("Continued", f"CaRE: continued in run {continuation.name} ({continuation.id}) by an earlier attempt{hint}, "
                               "not in this retry")


def _earlier_attempts_s(flow_run: Any) -> float:
    """The body time of this run's earlier attempts that failed, from their ``care-realized``
    artifacts: a retry goes on with the work they did (finished tasks are reused), so it counts as
    work done (what the checkpoint weighs against the deadline) and moves where this attempt's
    run-now-at-home baseline slice begins (review 42b M2). 0 for a first attempt, outside a server,
    or when they cannot be read."""
    if not _is_retry(flow_run):
        return 0.0
    try:
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

        wanted = ArtifactFilter(key=ArtifactFilterKey(like_=REALIZED_KIND), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=wanted)
        total = 0.0
        for artifact in artifacts:
            if is_realized_key(artifact.key):
                figures = parse_realized(artifact.data)
                if figures.get("outcome") == "failed":
                    total += float(figures.get("duration_s") or 0.0)
        return total
    except Exception as exc:  # noqa: BLE001 - a retry runs without it: its duration and baseline slice start as before
        _logger().info("CaRE: the earlier attempts' run time was not read (%s)", type(exc).__name__)
        return 0.0


def _dispatched_by(root: str, *, key: str | None = None) -> Any:
    """The run a trigger ``root`` already dispatched (its idempotency key ``care-<root>``, or ``key``), or None.

    A retried trigger plans again; when its first attempt's dispatch reached the server but the
    answer was lost, that run exists and a new plan ("now, here" inside the window it chose) would
    run the work a second time. A lookup that fails is logged and planning goes on."""
    # a look-up that fails is None: planning goes on, and the dispatch's own idempotency key still holds
    return _look_up_by_key(key or _dispatch_key(root))[0] if root else None


def _look_up_by_key(key: str) -> tuple[Any, bool]:
    """``(run, read)``: the run created with idempotency key ``key`` (or None), and whether the
    look-up answered (the Prefect client retries a 429/502/503 or a dropped connection itself)."""
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            return _run_by_key(client, key), True
    except Exception as exc:  # noqa: BLE001 - the caller decides what not knowing means
        _logger().debug("CaRE: run with key %s not read (%s)", key, type(exc).__name__)
        return None, False


UNNEEDED_CONTINUATION = "CaRE: not needed, the run that dispatched it ran on to do the work itself"
"""The message of a continuation CaRE cancelled because its dispatch seemed to fail (a retry of the
run that dispatched it runs the work itself, not "continued in" this one)."""


def _settle_unconfirmed_continuation(state: RunState, outcome: str) -> None:
    """When a segment that ran on because a continuation's dispatch and its look-up both failed
    (``state.unconfirmed_continuation``, review 46e L1) ends: look the continuation up again. One
    the server created after all is cancelled if this run completed and it is still Scheduled (it
    would do the rest of the work a second time). Only then: a run that failed leaves it to do the
    rest of the work from the last checkpoint, and a continuation cancelled mid-run would be handed
    back to a retry's own pause by its key (review 47d H1); one that has started cannot be stopped
    by a cancel (Prefect lets a Pending run go on to Running, review 47d M1). Anything else is a
    warning that says what happens."""
    key = state.unconfirmed_continuation
    if not key:
        return
    run, read = _look_up_by_key(key)
    if not read:
        _logger().warning("CaRE: a continuation may have been created with idempotency key %s though its dispatch failed; "
                          "if it exists and this run completed, cancel it before it starts", key)
        return
    state.unconfirmed_continuation = ""
    if run is None:
        return  # nothing was created
    kind = getattr(getattr(run.state, "type", None), "value", None)
    if outcome == "completed" and kind == "SCHEDULED":
        try:
            from prefect import get_client
            from prefect.states import Cancelled

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run.id, Cancelled(message=f"{UNNEEDED_CONTINUATION} ({state.run_id})"))
            _logger().warning("CaRE: cancelled %s (%s), a continuation created although its dispatch failed: this run did "
                              "the work", run.name, run.id)
            return
        except Exception as exc:  # noqa: BLE001 - named below instead
            _logger().debug("CaRE: could not cancel %s (%s)", run.id, type(exc).__name__)
    state_name = run.state.name if run.state else "?"
    if outcome != "completed":
        _logger().warning("CaRE: %s (%s), a continuation created although its dispatch failed, is %s: it does the rest of the "
                          "work from the last checkpoint this run passed", run.name, run.id, state_name)
    else:
        _logger().warning("CaRE: %s (%s), a continuation created although its dispatch failed, is %s: it does the rest of the "
                          "work again", run.name, run.id, state_name)


def _run_by_key(client: Any, key: str) -> Any:
    """The flow run created with idempotency key ``key``, or None (``client``: a sync PrefectClient)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])), limit=1)
    return runs[0] if runs else None


class _ReadOnce:
    """A Prefect client whose reads of a deployment, a flow or a work pool are each made once
    (a dispatch reads the same ones three times); every other call goes to the client. A read
    that fails is not remembered.

    >>> class Api:
    ...     calls = 0
    ...     def read_flow(self, flow_id):
    ...         Api.calls += 1
    ...         return f"flow {flow_id}"
    >>> client = _ReadOnce(Api())
    >>> client.read_flow("f1"), client.read_flow("f1"), client.read_flow("f2"), Api.calls
    ('flow f1', 'flow f1', 'flow f2', 2)
    """

    _ONCE = frozenset({"read_deployment", "read_flow", "read_deployment_by_name", "read_work_pool"})

    def __init__(self, client: Any) -> None:
        self._client = client
        self._read: dict[tuple[str, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in self._ONCE:
            return call

        def once(*args: Any) -> Any:
            key = (name, *map(str, args))
            if key not in self._read:
                self._read[key] = call(*args)
            return self._read[key]

        return once


def _root_carried(client: Any, root: str, dispatch_to: str, home_region: str, to_region: str) -> _Carried:
    """:func:`_carried` from the CaRE root (trigger) run, for a continuation; nothing when it cannot
    be read (the continuation still runs, with the target's settings)."""
    try:
        started = client.read_flow_run(root) if root else None
    except Exception as exc:  # noqa: BLE001 - best effort: the deployment's env still reaches the worker
        _logger().debug("CaRE: root run %s not read (%s)", root, type(exc).__name__)
        started = None
    if started is None:
        return _Carried({}, [])
    from_region = (started.job_variables or {}).get("region") or home_region  # where the root ran (care-ec2: its variable)
    return _carried(client, started, dispatch_to, from_region=str(from_region), to_region=to_region)


_SET_BY_CARE = ("care", OVERRIDES_VARIABLE, "region", "instance_type")
"""Job variables a dispatched run gets from CaRE, never from the run that started the work."""
_REGION_BOUND = ("subnet_id", "fallback_subnet_ids", "security_group_ids", "image_id", "key_name")
"""care-ec2 job variables that name things of one region (a subnet, an AMI, a key pair): not carried
to a run in another region (the pool's ``network_by_region`` / ``image_id_by_region`` serve it)."""
_NOT_CARRIED_TAGS = ("auto-scheduled",)
"""Tags Prefect gives the runs it creates itself; a run CaRE dispatches is not one."""


@dataclasses.dataclass(frozen=True)
class _Carried:
    """What a run CaRE dispatches takes over from the run the user started (``dropped``: job
    variables it does not take, for a warning)."""

    job_variables: dict[str, Any]
    tags: list[str]
    work_queue_name: str | None = None
    dropped: list[str] = dataclasses.field(default_factory=list)


def _carried(client: Any, started: Any, dispatch_to: str, *, from_region: str | None = None, to_region: str | None = None) -> _Carried:
    """What the run CaRE dispatches to ``dispatch_to`` (``"flow/deployment"``) takes over from
    ``started``, the run the user started (a trigger, or a continuation's root):

    - its own tags (not CaRE's, nor those its deployment gave it): automations, UI filters and
      tag concurrency limits key on them;
    - to the same deployment, all its job variables (``working_dir``, a Docker ``image``, ECS
      ``cpu``...) but CaRE's, and its work queue;
    - to another deployment (another pool), its ``env`` only: other keys may not fit that pool's
      job template, and are ``dropped`` (said in a warning);
    - to the same deployment but another region (``from_region`` -> ``to_region``, a care-ec2
      pool), not what names a thing of the first region (:data:`_REGION_BOUND`, ``dropped``).

    When ``started``'s deployment cannot be read, its ``env`` and non-CaRE tags are taken.

    >>> import types
    >>> run = types.SimpleNamespace(deployment_id="d", tags=["team:finance", "nightly", "care", "care:planned"], work_queue_name="high",
    ...                             job_variables={"env": {"A": "1"}, "working_dir": "/w", "care": {}, "region": "eu-south-2"})
    >>> class Api:
    ...     def read_deployment(self, _): return types.SimpleNamespace(name="prod", flow_id="f", tags=["nightly"])
    ...     def read_flow(self, _): return types.SimpleNamespace(name="etl")
    >>> _carried(Api(), run, "etl/prod")
    _Carried(job_variables={'env': {'A': '1'}, 'working_dir': '/w'}, tags=['team:finance'], work_queue_name='high', dropped=[])
    >>> _carried(Api(), run, "etl/prod-eu-north-1")
    _Carried(job_variables={'env': {'A': '1'}}, tags=['team:finance'], work_queue_name=None, dropped=['working_dir'])
    >>> ec2 = types.SimpleNamespace(**{**vars(run), "job_variables": {"subnet_id": "subnet-es", "install": "etl==2"}})
    >>> _carried(Api(), ec2, "etl/prod", from_region="eu-south-2", to_region="eu-north-1")
    _Carried(job_variables={'install': 'etl==2'}, tags=['team:finance'], work_queue_name='high', dropped=['subnet_id'])
    """
    from care_flows.orchestration.dispatch import CARE_TAG

    own = {k: v for k, v in dict(getattr(started, "job_variables", None) or {}).items() if k not in _SET_BY_CARE}
    env = {"env": dict(own["env"])} if isinstance(own.get("env"), Mapping) else {}
    tags = [t for t in getattr(started, "tags", None) or []
            if t != CARE_TAG and not t.startswith(CARE_TAG + ":") and t not in _NOT_CARRIED_TAGS]
    try:
        deployment = client.read_deployment(started.deployment_id)
        same = dispatch_to == f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"
        tags = [t for t in tags if t not in set(deployment.tags or [])]
    except Exception as exc:  # noqa: BLE001 - best effort: the work still runs, with the env and the run's tags
        _logger().debug("CaRE: deployment of run %s not read (%s)", getattr(started, "id", "?"), type(exc).__name__)
        return _Carried(env, tags, None, sorted(k for k in own if k != "env"))
    if same:
        moved = from_region is not None and to_region is not None and from_region != to_region
        bound = sorted(k for k in own if k in _REGION_BOUND) if moved else []
        return _Carried({k: v for k, v in own.items() if k not in bound}, tags, getattr(started, "work_queue_name", None), bound)
    return _Carried(env, tags, None, sorted(k for k in own if k != "env"))


def _warn_dropped(carried: _Carried, dispatch_to: str) -> None:
    if carried.dropped:
        _logger().warning("CaRE: the run in %s does not get this run's job variables %s: they may not fit that deployment's pool, "
                          "or name things of another region; set them in the region target's job_variables "
                          "(targets[region].job_variables; care-ec2: network_by_region, image_id_by_region)",
                          dispatch_to, ", ".join(carried.dropped))


@dataclasses.dataclass(frozen=True)
class _Deployment:
    """What a trigger run needs to know about its own deployment (a run's job variables hold only the run's)."""

    job_variables: dict[str, Any]
    pool_name: str | None = None
    pool_type: str | None = None
    name: str | None = None


def _read_deployment(deployment_id: Any) -> _Deployment:
    """The deployment's job variables, work pool and pool type.

    When the deployment cannot be read (after the Prefect client's own retries), the run fails
    with one line: its ``care_overrides`` may hold a team's constraints (regions the data may not
    leave), and planning without them would break them. A flow retry plans again. A pool that
    cannot be read is only logged (its type is then unknown: the run is planned in its region).
    """
    from prefect import get_client

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment(deployment_id)
        except Exception as exc:  # noqa: BLE001 - any failure: the constraints are unknown
            raise OrchestrationError(f"could not read deployment {deployment_id}'s job variables, which may hold {OVERRIDES_VARIABLE} "
                                     f"({' '.join(str(exc).split())[:200] or type(exc).__name__}); the run was not planned: retry it "
                                     "(flow retries re-plan) once the Prefect API answers") from None
        pool_name, pool_type = getattr(deployment, "work_pool_name", None), None
        if pool_name:
            try:
                pool_type = client.read_work_pool(pool_name).type
            except Exception as exc:  # noqa: BLE001
                _logger().warning("CaRE: cannot read work pool %r (%s); planning in the region it runs in only (if it is a care-ec2 "
                                  "pool, let this key read work pools)", pool_name, type(exc).__name__)
    return _Deployment(dict(deployment.job_variables or {}), pool_name, pool_type, getattr(deployment, "name", None))


def _role(wrapper: Callable[..., Any]) -> tuple[str, RunState | None]:
    """What the ``@care`` wrapper ``wrapper`` is called for, without I/O:

    - ``("plain", None)``: not the run of its own flow: ``.fn(...)`` (outside any run, in a unit
      test, or inside another flow's run, whose context is not this flow's) or the inner one of two
      stacked ``care(...)``: the body is called as a plain function, as Prefect's own ``.fn`` does;
    - ``("nested", parent)``: its own flow run, but a CaRE segment already runs in this context (a
      ``@care`` subflow of a ``@care`` flow): part of that run, not planned or counted separately;
    - ``("run", None)``: plan (or follow the plan of) this run.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or getattr(ctx.flow, "fn", None) is not wrapper:
        return "plain", None
    parent = _CURRENT.get()
    return ("nested", parent) if parent is not None else ("run", None)


def _ended(name: str, message: str) -> Any:
    """The final state of a run whose work goes on in another run: *Completed*, named ``name``
    (``Deferred``, ``Continued``), with ``message`` naming that run. Its result is None; hooks and
    automations see the name (the event is ``prefect.flow-run.<name>``, not ``...Completed``)."""
    from prefect.states import Completed

    return Completed(name=name, message=message)


def _deferred(action: str, run: Any) -> Any:
    start = getattr(run, "expected_start_time", None)
    at = iso(pd.Timestamp(start).floor("s")) if start is not None else ""
    when = f", scheduled for {at}" if at and at not in action else ""  # the start once, in whole seconds
    return _ended("Deferred", f"CaRE: {action} as run {getattr(run, 'name', '?')} ({getattr(run, 'id', '?')}){when}; "
                              "the work runs there, not in this run")


_MASK = "**********"  # pydantic's JSON form of a secret


def _validated_json(validated: Mapping[str, Any] | None, *, skip: Mapping[str, Any]) -> dict[str, Any]:
    """The validated parameters not in ``skip`` (the run's raw JSON, which wins), as JSON exactly as
    ``run_deployment`` encodes them (what a dispatched run got before it was sent the raw JSON).
    Each parameter is encoded on its own: one that holds a secret (its JSON holds the mask
    ``**********``, whether in a pydantic model, a dataclass or a mapping) or cannot be encoded is
    left out, and the dispatched run takes its default as a run of the deployment would; the others
    are kept. Never raises: the raw JSON alone is what the server merged for this run.

    >>> from dataclasses import dataclass
    >>> from pydantic import SecretStr
    >>> @dataclass
    ... class Creds:
    ...     user: str
    ...     password: SecretStr
    >>> _validated_json({"creds": Creds("u", SecretStr("p")), "n": 1, "label": "x", "bad": object()}, skip={"label": "y"})
    {'n': 1}
    """
    if not validated:
        return {}
    import json

    from prefect.client.schemas.actions import DeploymentFlowRunCreate

    out: dict[str, Any] = {}
    for name, value in validated.items():
        if name in skip:
            continue
        try:
            encoded = DeploymentFlowRunCreate(parameters={name: value}).model_dump(mode="json", exclude_unset=True).get("parameters") or {}
            if name in encoded and _MASK not in json.dumps(encoded[name]):
                out[name] = encoded[name]
        except Exception as exc:  # noqa: BLE001 - RecursionError, an unencodable value: that default is the deployment's
            log.info("CaRE: cannot encode parameter %r (%s); the dispatched run takes its default", name, type(exc).__name__)
    return out


def _prepare(config: CareConfig, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Decide what this run does: a :class:`RunState` (run the body) or the final state to return
    (the work was dispatched: a *Completed* state named ``Deferred``)."""
    from prefect.context import FlowRunContext
    from prefect.utilities.callables import get_call_parameters

    ctx = FlowRunContext.get()
    flow_run = ctx.flow_run if ctx is not None else None
    logger = _logger()
    flow_name = ctx.flow.name if ctx is not None and ctx.flow is not None else getattr(fn, "__name__", "flow")
    planned = flow_run is not None and PLANNED_TAG in (flow_run.tags or [])
    in_deployment = flow_run is not None and flow_run.deployment_id is not None
    if in_deployment and isinstance(flow_run.parameters, Mapping):
        # what dispatched and continued runs get: the JSON this run was given (the deployment's defaults merged by
        # the server) wins, since the validated values' JSON masks secrets (SecretStr -> "**********"); what it was
        # not given comes from the validated call (the function's defaults), not from the target deployment's defaults
        params = {**_validated_json(ctx.parameters if ctx is not None else None, skip=flow_run.parameters), **flow_run.parameters}
    else:
        params = dict(ctx.parameters) if ctx is not None and ctx.parameters is not None else get_call_parameters(fn, args, kwargs)
    job_vars = dict((flow_run.job_variables or {}) if flow_run is not None else {})
    marker = (job_vars.get("care") or {}) if planned else {}
    recorded = Plan.from_dict(marker["plan"]) if marker.get("plan") else None
    # a planned run keeps the overrides its plan was made with; a new one reads its deployment's and its own
    own = _read_deployment(flow_run.deployment_id) if in_deployment and recorded is None else _Deployment({})
    overrides = dict(recorded.overrides or {}) if recorded is not None else overrides_from(own.job_variables, job_vars)
    here: str | None = None  # where this run's infrastructure is (a deployment run: located below)
    notes = [f"job variable {name!r} is not read by CaRE; did you mean {OVERRIDES_VARIABLE!r}?"
             for name in (misspelt_variables(own.job_variables, job_vars) if recorded is None else [])]
    rebuilt = False  # the policy is made from the plan alone: nothing is decided again on it (review 46d M1)
    try:
        policy = apply_overrides(config.policy(), overrides)
    except ConfigError as exc:
        found = _policy_of_plan(marker, recorded, overrides) if planned else None
        if found is None:  # a trigger or a local run has nothing to plan with: it fails, loudly
            logger.error("CaRE: %s", exc)
            raise
        # a planned run carries what it was planned with: the work it waits for is not lost to a renamed or deleted
        # policy block (review 46c M1)
        policy, rebuilt = found
        how = ("on the policy its trigger recorded with its plan" if not rebuilt else
               "as its plan says (region, instance type, work), without the check at start: the policy's other settings are not recorded")
        logger.warning("CaRE: %s; this run was planned already, so it runs %s", exc, how)
    if overrides:
        logger.info("CaRE: policy overrides from %s: %s", OVERRIDES_VARIABLE, describe_overrides(overrides))
    # a planned run does not plan: its expected work is its plan's (below), not a fresh reading of the
    # history; a duration given in the overrides is used as given
    duration_note: str | None = None
    if not planned and not gives_duration(overrides):
        policy, duration_note = with_learned_duration(policy, flow_name)
    root = str(flow_run.id) if flow_run is not None else ""
    common = dict(policy=policy, clock=config.clock, parameters=params, deployment_id=flow_run.deployment_id if in_deployment else None,
                  dispatcher=_dispatch_continuation(config), flow_name=flow_name, duration_given=gives_duration(overrides),
                  run_id=str(flow_run.id) if flow_run is not None else "",
                  retried=_is_retry(flow_run) or bool(marker.get("retried")))

    if in_deployment and not planned:  # a retried trigger whose first attempt dispatched (its answer lost): not twice
        earlier = _dispatched_by(root)
        if earlier is not None:
            logger.warning("CaRE: this trigger already dispatched run %s (%s, an earlier attempt whose answer was lost); "
                           "not planning again", earlier.name, earlier.id)
            publish_note(f"# CaRE decision: already dispatched\n\n- run: {earlier.name} ({earlier.id})\n- reason: an earlier attempt "
                         "of this run dispatched it; a retry does not plan or run the work again\n", description="CaRE already dispatched")
            return _deferred("already dispatched by an earlier attempt", earlier)
        continued = _continued_by_earlier_attempt(flow_run, root, 0, logger)
        if continued is not None:
            return continued

    if planned:
        plan = recorded
        if plan is not None:  # the work the plan was made for (the learned duration at planning time)
            if plan.work > pd.Timedelta(0):
                common["policy"] = policy = policy.model_copy(update={"expected_duration": plan.work.to_pytimedelta()})
        # on a CaRE instance the worker says where it really launched (a capacity fallback may differ from the plan)
        launched_in = os.environ.get("CARE_REGION")
        region = launched_in or job_vars.get("region") or (plan.region if plan else policy.home_region)
        if launched_in and job_vars.get("region") not in (None, launched_in):
            logger.warning("CaRE: planned for %s, running in %s (the worker fell back); accounting where it runs",
                           job_vars.get("region"), region)
        logger.info("CaRE: planned run (segment %s) in %s; running the body", marker.get("segment", 0), region)
        if plan is not None:  # picked up late (no worker, a busy pool): say so, the work still runs
            started, left = config.clock(), plan.work - pd.Timedelta(seconds=float(marker.get("work_done_s", 0.0)))
            if started + left > plan.deadline + pd.Timedelta(minutes=1):
                logger.warning("CaRE: this planned run starts at %s, %s after its planned start %s; its %s of work ends after "
                               "the deadline %s (was a worker for its pool running?)", iso(started.floor("s")),
                               format_duration(max(started - plan.start, pd.Timedelta(0))), iso(plan.start.floor("s")),
                               format_duration(left), iso(plan.deadline.floor("s")))
        # checked again at start: a first attempt, where it was planned (not where a worker fell back to), planned by
        # CaRE's own planners (a custom planner callable, e.g. the demo's replay, has its own forecasts, which the
        # policy's carbon source would not match)
        retry = _is_retry(flow_run)
        if retry and in_deployment and START_CHECKS in marker:  # an earlier attempt may have handed the work on: not twice
            earlier = _dispatched_by(str(flow_run.id))
            if earlier is not None:
                logger.warning("CaRE: an earlier attempt of this run handed the work on to run %s (%s); not running it here",
                               earlier.name, earlier.id)
                return _deferred("already handed on by an earlier attempt", earlier)
        if in_deployment:
            continued = _continued_by_earlier_attempt(flow_run, str(marker.get("root") or root), int(marker.get("segment", 0) or 0), logger)
            if continued is not None:
                return continued
        if plan is not None and in_deployment and not retry and not callable(config.planner) and not rebuilt \
                and region == plan.region and start_check_due(plan, marker, policy, to_timestamp(config.clock())):
            handed_on = _check_at_start(config, policy, plan, region, flow_run, marker, job_vars, params, logger)
            if handed_on is not None:
                return handed_on
        return RunState(plan=plan, region=region, segment=int(marker.get("segment", 0)), root=str(marker.get("root") or root),
                        work_done_s=float(marker.get("work_done_s", 0.0)) + _earlier_attempts_s(flow_run), segment_started=config.clock(), **common)

    now = config.clock()
    policy, overdue = _deadline_of_first_attempt(policy, flow_run, now, logger)
    common["policy"] = policy
    scope = ""
    if in_deployment:  # plan only the regions this trigger (and its continuations) can send the work to
        # a single-region pool is where its region variable, its name or the home before this run's own
        # overrides say (a run's home_region override says where it wants to run, not where the pool is)
        located = apply_overrides(config.policy(), overrides_from(own.job_variables))
        # on a CaRE instance the worker says where this run is (a care-ec2 deployment without a region
        # variable runs in its pool's default region, which no job variable here names)
        on_instance = os.environ.get("CARE_REGION") if own.pool_type == EC2_POOL_TYPE else None  # set by the care-ec2 worker only
        here = on_instance or run_location(located, own.pool_name, own.pool_type, job_vars, own.job_variables)
        policy, scope = dispatchable_policy(policy, own.pool_name, own.pool_type, here=here, deployment=own.name)
        common["policy"] = policy
    unreadable: list[str] = []  # why the usage history could not be read, for the sizing note
    learned = None if gives_need(overrides) else need_for_policy(policy, flow_name, on_error=unreadable.append)
    # a dearer type (max_g_per_run, instance_choice: priorities) only where the work can be started on it: a care-ec2
    # pool launches the planned type
    on_ec2 = in_deployment and own.pool_type == EC2_POOL_TYPE
    ignored = None if on_ec2 else priorities_not_applied(  # said, not silently dropped (53b M2)
        policy, f"pool {own.pool_name}" if in_deployment else "a run with no deployment of its own")
    notes.extend([ignored] if ignored else [])
    try:
        plan: Plan | None = plan_sized(lambda usage: config.plan(policy, now, usage=usage, cap_types=on_ec2), policy, learned,
                                       takes_usage=config.takes_usage(),
                                       declared_because=NEED_GIVEN if gives_need(overrides) else (unreadable[0] if unreadable else None))
        if plan is not None:
            if overdue is not None:  # a retry past its first attempt's deadline: run now at home, with figures
                plan = dataclasses.replace(plan.as_run_now_at_home(), deadline=overdue)
            if overrides:
                plan = dataclasses.replace(plan, overrides=overrides)
            logger.info("CaRE: %s", sizing_line(plan))
            if duration_note:
                plan = dataclasses.replace(plan, duration_from=duration_note)
                (logger.warning if duration_note.startswith("the declared") else logger.info)("CaRE: planned duration from %s", duration_note)
    except CareError as exc:  # a failing planner never fails the run (a policy the source cannot serve, no data, ...)
        logger.warning("CaRE could not plan (%s); running now in %s", " ".join(str(exc).split()), policy.home_region)
        also = "".join(f"- warning: {w}\n" for w in [*notes, *([scope] if scope else [])])
        publish_note(f"# CaRE decision: run now (planning failed)\n\n- reason: {exc}\n{also}", description="CaRE could not plan")
        plan = None
    assert plan is None or isinstance(plan, Plan)
    if scope or notes:  # the plan's warnings (logged below), or logged here when there is no plan
        if plan is not None:
            plan.warnings = [*notes, *([scope] if scope else []), *plan.warnings]
        else:
            logger.warning("CaRE: %s", " ".join([*notes, scope]).strip())
    for warning in plan.warnings if plan is not None else ():
        logger.warning("CaRE: %s", " ".join(str(warning).split())[:500])
    # "now, here" runs the body in this run only where this run is: a deployment whose region job variable
    # names another region (e.g. after a home_region override) dispatches there instead. On a CaRE instance
    # smaller than both the plan's type and the type a dispatched run would get (the plan's, unless the
    # region's target pins one), e.g. a pool's default t3.micro for a 4 GiB job, it dispatches now to that type
    sent_type = job_variables_for(policy, plan.region, plan.instance_type).get("instance_type") if plan is not None else None
    on_type = os.environ.get("CARE_INSTANCE_TYPE")
    small = (plan is not None and on_ec2 and _too_small(on_type, plan.instance_type)
             and _too_small(on_type, str(sent_type) if sent_type else None))
    # a dearer type planned to keep max_g_per_run, or for its lower power (instance_choice: priorities):
    # this instance keeps the cap, or the planned figures, only if it is that type
    other_type = (plan is not None and on_ec2 and plan.type_not_right_sized and bool(on_type) and on_type != plan.instance_type
                  and sent_type == plan.instance_type)
    elsewhere = (plan is not None and plan.now_here and in_deployment and here is not None and (here != plan.region or small or other_type)
                 and overdue is None)
    if elsewhere and here == plan.region and (small or other_type):
        why = ("is smaller than the planned" if small else f"would break max_g_per_run {policy.max_g_per_run:g}; the plan needs"
               if plan.type_for_cap else "is not the lower-power type the priorities chose (instance_choice: priorities):")
        logger.info("CaRE: this instance (%s) %s %s; starting the work on a %s instead", on_type, why, sent_type, sent_type)
    if plan is None or (plan.now_here and not elsewhere) or not in_deployment:
        # a local call runs the body now at home, unless it waits for a window at home (a deployment follows its plan);
        # it has no deployment to continue in, so an interruptible plan it follows runs in one piece
        follows = plan is None or plan.now_here or in_deployment or (config.wait_locally and plan.region == policy.home_region)
        through = plan is not None and follows and not in_deployment and len(plan.segments) > 1
        # a subflow run (of a deployed flow or not) has no deployment of its own either: it runs now, as a local call does
        subflow = flow_run is not None and getattr(flow_run, "parent_task_run_id", None) is not None
        local, call = ("subflow run", "a subflow run (no deployment of its own)") if subflow else ("local run", "a local call")
        if plan is None:
            action = "run now here (no plan)"
        elif plan.now_here:
            action = f"run now in {plan.region}"
        elif config.wait_locally and plan.region == policy.home_region and not plan.starts_now(now):
            action = f"{local} waiting until {iso(plan.start.floor('s'))} in {plan.region} (wait_locally)"
        else:
            would = f"run in {plan.region}" if plan.starts_now(now) else f"start at {iso(plan.start.floor('s'))} in {plan.region}"
            if plan.region != policy.home_region and not policy.targets:  # a process pool stays where it is
                would += f" (from a care-ec2 pool, or with targets[{plan.region!r}] naming a pool there)"
            action = f"{local} now in {policy.home_region}; deployed, it would {would}"
        if plan is not None:
            from care_flows.accounting import format_sig  # 3 significant digits, as the artifact: a short run is not "0.0 g" (46c L1)

            logger.info("CaRE: %s; expected %s vs %s now at home", action, format_sig(plan.expected_g, "g"), format_sig(plan.baseline_g, "g"))
            note = None
            if not follows:
                note = (f"{call} runs now in {policy.home_region}: the figures below are what the deployed flow would do; this "
                        "run's realized figures are counted against running now at home (expected = baseline, no saving)")
            elif through:
                note = (f"{call} cannot pause between the segments below: it runs its {format_duration(plan.work)} in one piece "
                        f"from {iso(plan.start.floor('s'))}, and its realized figures are counted for that window")
            publish_decision(plan, action=action, note=note)
            if not in_deployment and not plan.now_here and config.wait_locally and plan.region == policy.home_region:
                wait_s = (plan.start - config.clock()).total_seconds()
                if wait_s > 0:
                    logger.info("CaRE: waiting %.0f s for the green window (wait_locally=True)", wait_s)
                    time.sleep(wait_s)
        region = here or policy.home_region
        if not follows:
            plan = plan.as_run_now_at_home()  # what this call runs: its expected figures are the baseline's
        elif through:
            plan = plan.run_through()
        return RunState(plan=plan, region=region, root=root, work_done_s=_earlier_attempts_s(flow_run), segment_started=config.clock(), **common)

    from prefect import get_client

    with get_client(sync_client=True) as api:
        client = _ReadOnce(api)  # resolve_deployment, the pool check and _carried read the same deployment, flow and pool
        try:
            deployment = resolve_deployment(client, flow_run.deployment_id, target_for(policy, plan.region))
        except OrchestrationError as exc:  # e.g. no deployment of this flow in the target region's pool
            reason = " ".join(str(exc).split())
            logger.warning("CaRE cannot dispatch to %s (%s); running now in %s", plan.region, reason, here or policy.home_region)
            publish_note(f"# CaRE decision: run now (cannot dispatch)\n\n- planned: {plan.region} at {iso(plan.start.floor('s'))}\n"
                         f"- reason: {reason}\n- accounted as run now at home: expected = baseline, no saving\n",
                         description="CaRE could not dispatch")
            # it runs now at home: its realized figures are counted against that (expected = baseline), as a local call's
            return RunState(plan=plan.as_run_now_at_home(), region=here or policy.home_region, root=root,
                            work_done_s=_earlier_attempts_s(flow_run), segment_started=config.clock(), **common)
        idle = _pool_without_worker(client, deployment)
        carried = _carried(client, flow_run, deployment, from_region=here or policy.home_region, to_region=plan.region)
    _warn_dropped(carried, deployment)
    if idle:
        logger.warning("CaRE: %s", idle)
        plan.warnings = [*plan.warnings, idle]
    try:
        run = _dispatch_trigger(deployment, params, plan, carried, policy, config, root, now, flow_run)
    except OrchestrationError:
        # the answer may have been lost after the server created the run: then it exists and will run, so this trigger
        # is Deferred, not Failed (a new trigger run an operator starts would do the work twice; review 46e M1)
        run = _dispatched_by(root)
        if run is None:
            raise
        logger.info("CaRE: the dispatch's answer was lost; the run it created is %s (%s)", run.name, run.id)
    if plan.starts_now(now) and (small or other_type) and here == plan.region:
        action = f"moved to a {sent_type} in {plan.region}, starting now"
    elif plan.starts_now(now):
        action = f"moved to {plan.region}, starting now"
    else:
        action = f"deferred to {iso(plan.start.floor('s'))} in {plan.region}"
    logger.info("CaRE: %s as run %s (%s); this trigger run ends now (state Deferred)", action, run.name, run.id)
    publish_decision(plan, action=action, dispatched=f"{run.name} ({run.id})", dispatched_url=run_url(run))
    return _deferred(action, run)


def _dispatch_trigger(deployment: Any, params: dict[str, Any], plan: Plan, carried: Any, policy: CarePolicy, config: CareConfig,
                      root: str, now: pd.Timestamp, flow_run: Any) -> Any:
    """The run a trigger dispatches for ``plan`` (:func:`dispatch_run`, idempotency key ``care-<root>``)."""
    return dispatch_run(
        deployment=deployment,
        parameters=params,
        scheduled_time=plan.start,
        # the trigger run's own settings go with it (_carried: all to its own deployment, env only to another
        # pool's; the target's win per key); the deployment's are merged by the server and the worker
        job_variables={**with_care_variables(carried.job_variables, job_variables_for(policy, plan.region, plan.instance_type)),
                       "care": {**care_marker(plan, segment=0, root=root, ttl_pinned=ttl_pinned(policy, plan.region)), START_CHECKS: 0,
                                **(trigger_replan_fields(policy, plan, now) if _controller_may_replan(config) else {})}},
        tags=care_tags(region=plan.region, extra=carried.tags),
        work_queue_name=carried.work_queue_name,
        idempotency_key=_dispatch_key(root),
        flow_run_name=f"{flow_run.name}-care" if getattr(flow_run, "name", None) else None,
    )


def sizing_line(plan: Plan) -> str:
    """What the run was sized from and to, and the type it is planned on when that is another one
    (a dearer type for ``max_g_per_run`` or ``instance_choice: priorities``; review 53b L3).

    >>> import pandas as pd
    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> sizing_line(Plan("eu-north-1", t, t + pd.Timedelta("1h"), t, t + pd.Timedelta("2h"), "eu-north-1", True,
    ...                  instance_type="t3.large", sizing="declared need 1.5 vCPU, 6 GiB"))
    'sized from declared need 1.5 vCPU, 6 GiB -> t3.large'
    """
    if plan.type_not_right_sized:
        why = "max_g_per_run" if plan.type_for_cap else "instance_choice: priorities"
        return f"sized from {plan.sizing} -> {plan.right_sized_type}; planned on {plan.instance_type} ({why})"
    return f"sized from {plan.sizing} -> {plan.instance_type or 'deployment default'}"


def _too_small(instance_type: str | None, planned: str | None) -> bool:
    """Whether ``instance_type`` (the one this run executes on) has fewer vCPUs or less memory than
    the ``planned`` type; False when either is unknown (no CaRE instance, a pinned or unpriced type).

    >>> _too_small("t3.micro", "t3.xlarge"), _too_small("m5.2xlarge", "t3.xlarge"), _too_small(None, "t3.xlarge")
    (True, False, False)
    """
    from care_flows.pricing import instance_shape

    have = instance_shape(instance_type) if instance_type else None
    want = instance_shape(planned) if planned and planned != instance_type else None
    return have is not None and want is not None and (have[0] < want[0] or have[1] < want[1])


def _last_scheduled_time(flow_run: Any) -> Any:
    """The time the run's last *Scheduled* state was for (a run rescheduled by hand has a later one
    than its plan's start; its ``expected_start_time`` keeps the first), or None when it cannot be read."""
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(flow_run.id)
    except Exception as exc:  # noqa: BLE001 - unknown: the check goes on as planned
        _logger().debug("CaRE: states of %s not read (%s)", flow_run.id, type(exc).__name__)
        return None
    # only a "Scheduled" state a person (or CaRE) set: not the server's AwaitingConcurrencySlot, AwaitingRetry or Late
    scheduled = [st for st in states if st.type is not None and str(st.type.value) == "SCHEDULED" and st.name == "Scheduled"
                 and st.state_details.scheduled_time]
    return max(scheduled, key=lambda st: st.timestamp).state_details.scheduled_time if scheduled else None


def _policy_of_plan(marker: Mapping[str, Any], plan: Plan | None, overrides: Mapping[str, Any]) -> tuple[CarePolicy, bool] | None:
    """``(policy, rebuilt)``: the policy a planned run was planned with, from its ``care`` marker
    alone, for when its own policy no longer resolves (a deleted or renamed block). The trigger's
    recorded policy when the marker has one (``rebuilt`` False), else one made from the plan
    (``rebuilt`` True: its home and region, instance type, work and deadline, the carbon source
    and signal kind it planned on, interruptible when it has several segments; its other settings are defaults,
    so nothing may be decided again on it), with the plan's overrides; None when neither loads.

    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> p = Plan("eu-north-1", t + pd.Timedelta("3h"), t + pd.Timedelta("5h"), t, t + pd.Timedelta("8h"), "eu-south-2", False,
    ...          instance_type="m5.large", source="cache:electricitymaps", signal="direct")
    >>> pol, rebuilt = _policy_of_plan({}, p, {})
    >>> rebuilt, pol.home_region, pol.regions, pol.instance_type, pol.carbon_source, pol.signal, pol.expected_duration
    (True, 'eu-south-2', ['eu-south-2', 'eu-north-1'], 'm5.large', 'electricitymaps', 'direct', datetime.timedelta(seconds=7200))
    """
    if marker.get("policy"):
        try:
            return apply_overrides(CarePolicy.model_validate(marker["policy"]), overrides), False
        except Exception:  # noqa: BLE001 - a marker from another CaRE version: made from the plan below
            pass
    if plan is None:
        return None
    try:
        from care_flows.policy import SOURCE_SIGNALS
        from care_flows.signals.registry import SOURCES

        work = plan.work if plan.work > pd.Timedelta(0) else plan.end - plan.start
        regions = [plan.home_region] + ([plan.region] if plan.region != plan.home_region else [])
        source = str(plan.source).split(":")[-1].split()[0] if plan.source else ""  # cache:electricitymaps, embedded (lifecycle)
        source = source if source in SOURCES and source != "csv" else "embedded"
        policy = CarePolicy(home_region=plan.home_region, regions=regions, instance_type=plan.instance_type,
                            expected_duration=work.to_pytimedelta(),
                            deadline_within=max(plan.deadline - plan.decided_at, work).to_pytimedelta(),
                            interruptible=len(plan.segments) > 1, carbon_source=source,
                            **({"signal": plan.signal} if plan.signal in SOURCE_SIGNALS.get(source, ()) else {}))
        return apply_overrides(policy, overrides), True
    except Exception:  # noqa: BLE001 - nothing loads: the run fails with the policy's own error
        return None


def _controller_may_replan(config: CareConfig) -> bool:
    """Whether ``care controller`` may re-plan the runs this flow's triggers dispatch: only when it
    would plan as the flow does, with the policy's carbon source and CaRE's planners (an injected
    ``signal=`` or ``planner=`` callable lives in the flow's process, not the controller's)."""
    return config.signal is None and not callable(config.planner)


def _replan_fields_after(marker: Mapping[str, Any], later: Plan, now: pd.Timestamp) -> dict[str, Any]:
    """The controller's re-plan fields of a run the check at start handed the work on to: the
    trigger's policy and earliest start, the new run's scheduled time, the next re-plan from now."""
    if not marker.get("policy") or not marker.get("replan_at"):
        return {}
    try:
        every = CarePolicy.model_validate(marker["policy"]).replan_every
    except Exception:  # noqa: BLE001 - a marker that does not load: the controller would not re-plan it anyway
        return {}
    return {"policy": marker["policy"], "earliest": marker.get("earliest"), "from": iso(later.start),
            "replans": marker.get("replans", 0), "replan_at": next_replan_at(now, every), "recorded_at": iso(pd.Timestamp.now(tz="UTC"))}


def _check_at_start(config: CareConfig, policy: CarePolicy, plan: Plan, region: str, flow_run: Any, marker: Mapping[str, Any],
                    job_vars: Mapping[str, Any], params: dict[str, Any], logger: Any) -> Any:
    """The check at start (:mod:`care_flows.orchestration.start_check`) of a run a trigger dispatched:
    ``None`` to run the body now, or the final ``Deferred`` state after handing the work on to a
    greener later start (a run of this deployment with the same parameters and job variables, the
    moved plan in its ``care`` marker). A check that cannot be made (no forecast, a provider
    error, a forecast another source served: the plan's source failed) or a hand-on that fails runs
    the body now, as planned: the check never fails the run."""
    now = max(to_timestamp(config.clock()), plan.start)  # a worker clock a little behind: from the planned start
    moved_to = marker.get("rescheduled_to") or _last_scheduled_time(flow_run)
    if moved_to is not None and to_timestamp(pd.Timestamp(moved_to)) > plan.start + EARLY_START_TOLERANCE:
        logger.info("CaRE: rescheduled by hand to %s (planned %s); not checked at start, the operator's time stands",
                    iso(to_timestamp(pd.Timestamp(moved_to)).floor("s")), iso(plan.start.floor("s")))
        return None
    try:
        here = policy.model_copy(update={"home_region": region, "regions": [region]})
        notes: list[str] = []
        forecast = fetch_forecasts(here, now, (plan.deadline - now).to_pytimedelta(), config.signal, notes=notes).get(region)
        served_by = None if forecast is None else str(forecast.attrs.get("source", "forecast"))
        if forecast is not None and (notes or not same_provider(served_by, plan.source)):  # a fallback: not the data the plan was made on
            why = "; ".join(notes) or f"the forecast came from {served_by}, not the plan's source {plan.source}"
            logger.warning("CaRE: check at start skipped (%s); starting as planned", " ".join(why.split())[:300])
            return None
        threshold = threshold_of(policy)  # the policy's tie-break within the region, as decide() weighs it
        later, now_g_per_kwh = check_at_start(plan, forecast, now, min_savings_pct=policy.min_savings_pct,
                                                threshold=threshold, start_margin=policy.start_margin) if forecast is not None else (None, None)
    except Exception as exc:  # noqa: BLE001 - the planned start stands
        logger.warning("CaRE: check at start skipped (%s); starting as planned", " ".join(str(exc).split())[:300] or type(exc).__name__)
        return None
    if now_g_per_kwh is None:
        logger.info("CaRE: check at start: no usable forecast for %s from %s; starting as planned", region, plan.source)
        return None
    if later is None:
        if threshold == float("-inf"):  # carbon weighs nothing and earliest ranks first: now always wins (review 44d L1)
            logger.info("CaRE: checked at start: %.0f g/kWh now; the policy's weights give carbon no weight and tie_break ranks earliest "
                        "first, so now wins whatever the forecast; starting now", now_g_per_kwh)
        elif threshold < 0:  # the tie-break may have kept now against a greener start (review 44c M1)
            logger.info("CaRE: checked at start: %.0f g/kWh now, no start in %s before %s forecast at least %g%% greener with now more than "
                        "tolerance_pct %g%% above it (tie_break %s ranks earliest before carbon: now wins within the tolerance); starting now",
                        now_g_per_kwh, region, iso(latest_later_start(plan, policy).floor("s")), policy.min_savings_pct, policy.tolerance_pct,
                        ",".join(str(getattr(t, "value", t)) for t in policy.tie_break))
        else:
            logger.info("CaRE: checked at start: %.0f g/kWh now, no start in %s before %s forecast at least %g%% greener; starting now",
                        now_g_per_kwh, region, iso(latest_later_start(plan, policy).floor("s")), policy.min_savings_pct)
        return None
    checks = int(marker.get(START_CHECKS, 0)) + 1
    root = str(marker.get("root") or flow_run.id)
    key = _dispatch_key(flow_run.id)
    try:
        run = dispatch_run(
            deployment=flow_run.deployment_id,
            parameters=params,
            scheduled_time=later.start,
            job_variables={**job_vars, "care": {**care_marker(later, segment=0, root=root, ttl_pinned=bool(marker.get(TTL_PINNED)) or ttl_pinned(policy, later.region)), START_CHECKS: checks, **_replan_fields_after(marker, later, now)}},
            tags=list(flow_run.tags or []),
            idempotency_key=key,
            flow_run_name=getattr(flow_run, "name", None),
        )
    except OrchestrationError as exc:
        run = _dispatched_by(str(flow_run.id), key=key)  # created, its answer lost: the work is there
        if run is None:
            logger.warning("CaRE: a greener start at %s was found but the work could not be handed on (%s); starting now",
                           iso(later.start.floor("s")), " ".join(str(exc).split())[:300])
            return None
    action = (f"checked at start: {now_g_per_kwh:.0f} g/kWh now, {later.expected_g_per_kwh:.0f} forecast later; "
              f"deferred to {iso(later.start.floor('s'))} in {later.region}")
    logger.info("CaRE: %s as run %s (%s), check %s of %s; this run ends now (state Deferred)", action, run.name, run.id, checks, MAX_START_CHECKS)
    publish_decision(later, action=action, dispatched=f"{run.name} ({run.id})", dispatched_url=run_url(run),
                     note=(f"checked at start {iso(now.floor('s'))} with the forecast issued then (check {checks} of {MAX_START_CHECKS}); "
                           f"the baseline is still running now at home from the first decision, {iso(later.baseline_start.floor('s'))}"))
    return _deferred(action, run)


def _deadline_of_first_attempt(policy: CarePolicy, flow_run: Any, now: pd.Timestamp, logger: Any) -> tuple[CarePolicy, pd.Timestamp | None]:
    """A retried attempt (``run_count`` > 1) plans to the deadline its first attempt had: the time
    the run first started (``start_time``, which Prefect sets when the run first enters Running and
    keeps across retries; the first attempt planned from that now) + ``deadline_within``, not a new
    one from its own now (a retry after an hour's ``retry_delay_seconds`` would otherwise move the
    deadline an hour later each time), nor from the scheduled start (a run picked up late would get
    a deadline earlier than its first attempt's by the lateness).

    Returns the policy to plan with and, when that deadline has passed or leaves less time than the
    work, the deadline (then the policy is unchanged: the caller plans only to run now at home, so
    the attempt's realized and baseline figures are still written).

    >>> import logging
    >>> from types import SimpleNamespace
    >>> p = CarePolicy(home_region="eu-south-2", expected_duration="2h", deadline_within="8h")
    >>> run = SimpleNamespace(run_count=2, start_time=pd.Timestamp("2026-01-01T00:00Z"))
    >>> later, overdue = _deadline_of_first_attempt(p, run, pd.Timestamp("2026-01-01T03:00Z"), logging.getLogger("t"))
    >>> later.deadline_within, overdue
    (datetime.timedelta(seconds=18000), None)
    >>> _deadline_of_first_attempt(p, run, pd.Timestamp("2026-01-01T06:30Z"), logging.getLogger("t"))[1]  # 1h30 left for 2h
    Timestamp('2026-01-01 08:00:00+0000', tz='UTC')
    """
    if flow_run is None or int(getattr(flow_run, "run_count", 0) or 0) <= 1:
        return policy, None
    first = getattr(flow_run, "start_time", None) or getattr(flow_run, "expected_start_time", None)
    if first is None:
        return policy, None
    deadline = to_timestamp(first) + pd.Timedelta(policy.deadline_within)  # Prefect's own tz type: to pandas UTC
    left = deadline - now
    if left >= pd.Timedelta(policy.deadline_within):  # an injected clock before the run's start: nothing to keep
        return policy, None
    if left < pd.Timedelta(policy.expected_duration):  # passed, or too close for the work: no window left to plan in
        why = "has passed" if left <= pd.Timedelta(0) else f"leaves {format_duration(left)}, less than the {format_duration(pd.Timedelta(policy.expected_duration))} of work"
        logger.warning("CaRE: attempt %s of this run: its first attempt's deadline %s %s; running now at home "
                       "(accounted as run now at home: expected = baseline, no saving)", flow_run.run_count, iso(deadline.floor("s")), why)
        return policy, deadline
    logger.info("CaRE: attempt %s of this run plans to its first attempt's deadline %s", flow_run.run_count, iso(deadline.floor("s")))
    return policy.model_copy(update={"deadline_within": left.to_pytimedelta()}), None


def dispatched_run(trigger: Any) -> Any:
    """The run a ``@care`` run handed its work to (a FlowRun), or None when it handed over none.

    ``trigger``: a FlowRun or its id (e.g. what ``run_deployment`` returned); its state is read
    again from the server. A trigger that ended *Deferred* (or any other run) is looked up by the
    dispatch's idempotency key ``care-<its id>``; a run that ended *Continued* at a checkpoint, by
    its continuation's key ``care-<root>-part<segment + 1>`` (``root`` and ``segment`` from its
    ``care`` job variable; a trigger that ran the work itself is the root, segment 0). Follow the
    returned run until its state is neither ``Deferred`` nor ``Continued`` to know when the work ran.
    """
    from prefect import get_client

    run_id = getattr(trigger, "id", trigger)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        key = _dispatch_key(run_id)
        if run.state is not None and run.state.name == "Continued":
            marker = (run.job_variables or {}).get("care") or {}
            key = _dispatch_key(marker.get("root") or run.id, int(marker.get("segment", 0) or 0) + 1)
        return _run_by_key(client, key)


def _pool_without_worker(client: Any, deployment: str) -> str:
    """A warning when the pool of ``deployment`` ("flow/name") has no online worker or is paused
    (the dispatched run would wait there, past its deadline, without a word), else ``""``."""
    try:
        from prefect.client.schemas.objects import WorkPoolStatus

        pool_name = client.read_deployment_by_name(deployment).work_pool_name
        if not pool_name:
            return ""
        status = client.read_work_pool(pool_name).status
        if status == WorkPoolStatus.PAUSED:
            return f"work pool {pool_name} is paused: the run waits there until it is resumed (prefect work-pool resume {pool_name})"
        if status == WorkPoolStatus.NOT_READY:
            return (f"work pool {pool_name} has no online worker: the run waits there until one starts "
                    f"(prefect worker start --pool {pool_name})")
    except Exception as exc:  # noqa: BLE001 - a status check must not stop the dispatch
        log.info("CaRE: could not read the status of %s's work pool (%s)", deployment, type(exc).__name__)
    return ""


def _realized_intensity(config: CareConfig, policy: CarePolicy, region: str, started: pd.Timestamp,
                        finished: pd.Timestamp) -> tuple[pd.Series | None, str]:
    """The intensity around the run and what it is: the source's observed ``history`` when it has
    it for all of the run (``history+forecast`` when the source filled some of it with its own
    forecast, as the GB API does until its ``actual`` is published), the ``forecast`` given to
    ``@care`` as a mapping, or (None, "") for the plan's forecast. A history that covers only part
    of the run is not used: its mean would stand for hours it has no data for (review 46a M1)."""
    try:
        signal = config.signal
        if isinstance(signal, Mapping):
            return signal.get(region), "forecast"
        if signal is None:
            from care_flows.signals import get_signal

            signal = get_signal(policy.carbon_source, kind=policy.signal)
        if not hasattr(signal, "history"):
            return None, ""
        from care_flows.accounting import mean_intensity
        from care_flows.signals.base import zone_asked

        history = signal.history(zone_asked(signal, region), started.floor("h"), finished + pd.Timedelta(hours=1))
        try:
            mean_intensity(history, started, finished, full=True)
        except ValueError as exc:
            log.info("CaRE: the %s history of %s does not cover the run yet (%s); the plan's forecast stands for it",
                     history.attrs.get("source", "source's"), region, exc)
            return None, ""
        return history, "history+forecast" if _filled_during(history, started, finished) else "history"
    except Exception as exc:  # noqa: BLE001 - an explanation must not fail the run
        log.info("CaRE: no realized intensity for %s (%s)", region, " ".join(str(exc).split()))
        return None, ""


def _filled_during(history: pd.Series, started: pd.Timestamp, finished: pd.Timestamp) -> bool:
    """Whether the source filled a slot of ``[started, finished)`` with its own forecast. A source
    that lists the filled times (``attrs["unmeasured"]``, the GB API) is asked about the run's
    slots only: the half hour after the run has no actual yet when it ends (review 46d L5); one that
    does not but says it filled some (``forecast_model``) counts as filled.

    >>> idx = pd.date_range("2024-05-01T10:00Z", periods=4, freq="30min")
    >>> h = pd.Series([1.0] * 4, index=idx)
    >>> h.attrs = {"forecast_model": "gb", "unmeasured": ["2024-05-01T11:00:00+00:00", "2024-05-01T11:30:00+00:00"]}
    >>> _filled_during(h, idx[0], idx[2]), _filled_during(h, idx[0], idx[2] + pd.Timedelta(minutes=1))
    (False, True)
    """
    if not history.attrs.get("forecast_model"):
        return False
    unmeasured = history.attrs.get("unmeasured")
    if not unmeasured:  # the source does not say which
        return True
    step = pd.Timedelta(history.index[1] - history.index[0]) if len(history.index) > 1 else pd.Timedelta(hours=1)
    return any(started - step < t < finished for t in pd.to_datetime(list(unmeasured), utc=True))


def _start_sampler(config: CareConfig, state: RunState) -> Any:
    if not config.sample_usage:
        return None
    try:
        from care_flows.aws.usage_store import current_flow_run_id
        from care_flows.orchestration.learned_sizing import FLUSH_EVERY_S
        from care_flows.usage_capture import UsageSampler

        flow_run_id = current_flow_run_id()  # read here: the sampler thread that flushes has no run context
        # one id for every flush of this segment (one S3 object), naming the flow run when there is one
        run_id = f"{flow_run_id}-{uuid.uuid4().hex[:12]}" if flow_run_id else uuid.uuid4().hex[:12]
        # raises after logging: the sampler keeps a batch that failed to store and hands it over again with the next
        record = lambda frame: record_usage(state.policy, state.flow_name, frame, run_id=run_id, raise_errors=True)  # noqa: E731
        sampler = UsageSampler(interval_s=1.0, on_flush=record, flush_every_s=FLUSH_EVERY_S)
        sampler.run_id = run_id  # type: ignore[attr-defined]  # for _finish: the store-failure count of this run
        return sampler.start()
    except Exception:  # noqa: BLE001
        return None


def _finish(config: CareConfig, state: RunState, started: pd.Timestamp, outcome: str, sampler: Any) -> None:
    from prefect.context import FlowRunContext

    usage = None
    if sampler is not None:
        try:
            sampler.stop()
            usage = sampler.to_frame()
        except Exception:  # noqa: BLE001
            usage = None
        why = ""
        for _ in range(2):  # the samples since the last periodic flush, and a batch a failed flush kept, go to the usage history
            try:
                sampler.flush()
                why = ""
                break
            except Exception as exc:  # noqa: BLE001 - tried once more, then the run goes on without them
                why = " ".join(str(exc).split()) or type(exc).__name__
        if why:  # said every time, in the run's log: the paced warnings may have been silent, or said "tried again" (review 45b M1)
            _logger().warning("CaRE: %d usage samples of this run (its last %.0f s) could not be stored (%s); the usage "
                              "history misses them", sampler.pending, sampler.pending * sampler.interval_s, why[:200])
        forget_store_failures(getattr(sampler, "run_id", None))
    try:
        finished = state.clock()
    except Exception:  # noqa: BLE001 - an injected clock must not fail a finished body
        finished = pd.Timestamp.now(tz="UTC")
    # the body's run time, all segments, waiting excluded; not a run whose duration was given (a backfill's is not the flow's)
    # nor a job with a retried segment: its time includes failed attempts, whose plain tasks it may have run again
    # (review 42d M1); a continuation after a retried segment carries the flag in its marker (review 42e M1)
    if outcome == "completed" and config.sample_usage and config.clock is system_clock and not state.duration_given and not state.retried:
        record_run(state.policy, state.flow_name, run_id=_run_id(), finished=finished,
                   duration_s=state.work_done_s + (finished - started).total_seconds())
    if FlowRunContext.get() is not None:
        try:
            publish_segment_realized(config, state, started, finished, outcome, usage=usage,
                                     instance_type=os.environ.get("CARE_INSTANCE_TYPE") or None)
        except Exception as exc:  # noqa: BLE001 - the body has finished: its explanation must not fail the run
            log.warning("CaRE: could not publish the realized figures (%s: %s)", type(exc).__name__, " ".join(str(exc).split())[:300])


def publish_segment_realized(config: CareConfig, state: RunState, started: pd.Timestamp, finished: pd.Timestamp, outcome: str, *,
                             usage: pd.DataFrame | None = None, instance_type: str | None = None, flow_run_id: Any = None,
                             flow_name: str | None = None, client: Any = None, recorded_by: str | None = None) -> dict[str, Any]:
    """Publish the ``care-realized`` artifact of one segment that ran ``[started, finished)`` in
    ``state.region`` (:func:`publish_realized`), at the source's observed intensity there when it
    has it, else the plan's forecasts (re-issued when the plan came from a marker); returns the figures.

    In the run's own process (``@care``) the artifact goes to the current flow run; ``flow_run_id``
    and ``flow_name`` put it on another run (with the sync ``client``), for ``care controller``, which accounts the runs of
    undecorated flows it planned (:mod:`care_flows.orchestration.account_planned`); an API error
    then raises."""
    intensity, label = _realized_intensity(config, state.policy, state.region, started, finished)
    from_forecast = not label
    if from_forecast:  # no observed data: the plan's forecasts stand for it (re-issued when the plan came from a marker)
        state = dataclasses.replace(state, plan=_with_forecasts(config, state))
        elsewhere = _forecast_where_it_ran(config, state)  # a capacity fallback to a region the plan has no forecast for
        if elsewhere is not None:
            intensity, label = elsewhere, "forecast"
    baseline = _realized_baseline(config, state, finished - started, intensity, from_forecast=from_forecast)
    return publish_realized(state.plan, started=started, finished=finished, region=state.region, outcome=outcome,
                            intensity=intensity, usage=usage, intensity_label=label, root=state.root,
                            baseline_realized_g_per_kwh=baseline, instance_type=instance_type, flow_run_id=flow_run_id,
                            flow_name=flow_name, client=client, recorded_by=recorded_by)


def _with_forecasts(config: CareConfig, state: RunState) -> Plan | None:
    """The run's plan with its forecasts: a plan rebuilt from the ``care`` marker (a dispatched,
    continued or controller-planned run) has none, so they are issued again at the plan's decision
    time (the same data before it: for the embedded and CSV sources, the same numbers); the plan
    as it is when it has them or they cannot be had (logged)."""
    plan = state.plan
    if plan is None or plan.forecast is not None or plan.home_forecast is not None:
        return plan
    if plan.baseline_start == plan.decided_at:
        same = _reissued_forecasts(config, state, [plan.home_region, plan.region])
        return plan if same is None else dataclasses.replace(plan, forecast=same.get(plan.region), home_forecast=same.get(plan.home_region))
    # decided again (a re-plan, a check at start) against the first plan's baseline: each forecast as it was issued
    home = _reissued_forecasts(config, state, [plan.home_region], at=plan.baseline_start)
    chosen = _reissued_forecasts(config, state, [plan.home_region, plan.region], at=plan.decided_at)
    if home is None or chosen is None:
        return plan
    return dataclasses.replace(plan, forecast=chosen.get(plan.region), home_forecast=home.get(plan.home_region))


def _forecast_where_it_ran(config: CareConfig, state: RunState) -> pd.Series | None:
    """The forecast for the region the run executes in when that is neither the plan's nor the home
    region (a capacity fallback, ``CARE_REGION``), issued again at the plan's decision time from its
    source, as :func:`_with_forecasts` does for the plan's regions; None when it is one of those, or
    the forecast cannot be had from the plan's source."""
    plan = state.plan
    if plan is None or state.region in (plan.region, plan.home_region):
        return None
    same = _reissued_forecasts(config, state, [plan.home_region, state.region])
    return None if same is None else same.get(state.region)


def _reissued_forecasts(config: CareConfig, state: RunState, regions: list[str], *, at: pd.Timestamp | None = None) -> dict[str, pd.Series] | None:
    """The plan's source's forecasts for ``regions``, issued at ``at`` (default: the plan's decision
    time); None (logged) when they cannot be had or another source served any of them."""
    plan = state.plan
    assert plan is not None
    at = plan.decided_at if at is None else at
    try:
        from care_flows.orchestration.plan import fetch_forecasts

        policy = state.policy.model_copy(update={"home_region": plan.home_region, "regions": list(dict.fromkeys(regions))})
        horizon = max(plan.deadline, plan.end) - at  # what planning asked for: the same coverage as the plan's own
        fallbacks: list[str] = []
        got = fetch_forecasts(policy, at, horizon.to_pytimedelta(), signal=config.signal, notes=fallbacks)
        # only the plan's own source: another one's figures (a fallback, a controller's --source) are
        # not what the plan was made on, and set against its baseline they would count as a saving
        same = {r: s for r, s in got.items() if same_provider(str(s.attrs.get("source", "forecast")), plan.source)}
        if fallbacks or len(same) < len(got):
            log.info("CaRE: the re-issued forecasts are not from the plan's source %s; no realized figures from them", plan.source)
            return None
        return same
    except Exception as exc:  # noqa: BLE001 - an explanation must not fail the run
        log.info("CaRE: could not re-issue the plan's forecasts (%s)", " ".join(str(exc).split())[:200])
        return None


def _realized_baseline(config: CareConfig, state: RunState, ran: pd.Timedelta, realized: pd.Series | None = None, *,
                       from_forecast: bool = False) -> float | None:
    """The home region's intensity, from the same data as the realized one, over the slice of the
    run-now window this segment's work stands for (``baseline_start`` + the work done before it, for as
    long as it ran): what the same work emitted per kWh had it run now, at home. None when the
    source has no data there (``care report`` then has no baseline for the segment).

    ``from_forecast``: the realized intensity is the plan's forecast (the source has no observed
    data for these dates), so the baseline is the plan's home forecast over the same slice, not the
    whole planned window's mean (a run shorter than planned would count the forecast's shape as a
    saving or a loss). The data must cover all of the slice, as the realized figure's must
    (:func:`_realized_intensity`, :func:`publish_realized`; review 46a M1)."""
    plan = state.plan
    if plan is None:
        return None
    from care_flows.accounting import mean_intensity

    begin = plan.baseline_start + pd.Timedelta(seconds=state.work_done_s)

    def mean_over(series: pd.Series | None) -> float | None:
        if series is None or not len(series.dropna()):
            return None
        try:  # a forecast must cover all of it, as for the realized figure (publish_realized)
            return float(mean_intensity(series, begin, begin + ran, full=True))
        except ValueError:  # the data do not reach that window
            return None

    if from_forecast:  # the home forecast as issued for the baseline (a re-decided plan's own forecast is a later one)
        return mean_over(plan.home_forecast if plan.home_forecast is not None else _plan_forecast_for(plan, plan.home_region))
    # ran at home: the series already read for the realized figure usually covers the run-now window too
    mean = mean_over(realized) if state.region == plan.home_region else None
    return mean if mean is not None else mean_over(_realized_intensity(config, state.policy, plan.home_region, begin, begin + ran)[0])


def _run_id() -> str:
    """The current flow run's id (a uuid fragment outside a flow run), naming a run record."""
    try:
        from care_flows.aws.usage_store import current_flow_run_id

        return current_flow_run_id() or uuid.uuid4().hex[:12]
    except Exception:  # noqa: BLE001
        return uuid.uuid4().hex[:12]


def _continued_note(exc: Continued) -> None:
    name = getattr(exc.flow_run, "name", "?")
    publish_note(f"# CaRE: continued in {name}\n\n- run: {getattr(exc.flow_run, 'id', '?')} ({run_url(exc.flow_run) or 'no UI URL'})\n- starts: {iso(exc.start)}\n", key="care-continued", description=f"continued in {name}")


class _Segment:
    """Run a flow body as one CaRE segment: set the run state, sample usage, end a ``Continued``
    body quietly (result ``None``), and publish the realized figures whatever happened.

    ``with _Segment(...)`` for sync bodies; ``async with`` for async ones, where the closing work
    (sampler stop, usage flush, possibly to S3, artifacts) runs in a worker thread, not on the
    event loop.
    """

    def __init__(self, config: CareConfig, state: RunState) -> None:
        self.config, self.state = config, state
        self.result: Any = None
        self.outcome = "failed"

    def _begin(self) -> "_Segment":
        self._token, self._started, self._sampler = _CURRENT.set(self.state), self.state.clock(), _start_sampler(self.config, self.state)
        return self

    def _settle(self, exc: BaseException | None) -> Continued | None:
        _CURRENT.reset(self._token)
        if exc is None:
            # a body may also fail by returning a failed State (Prefect then fails the run): not a completed run
            failed = getattr(self.result, "is_failed", None)
            self.outcome = "failed" if callable(failed) and (failed() or self.result.is_crashed() or self.result.is_cancelled()) else "completed"
        elif isinstance(exc, Continued):
            # the work goes on in the continuation: not "Completed" to hooks, automations and waiting callers
            run = exc.flow_run
            self.outcome = "continued"
            self.result = _ended("Continued", f"CaRE: continued in run {getattr(run, 'name', '?')} ({getattr(run, 'id', '?')}), "
                                              f"scheduled for {iso(exc.start)}; the rest of the work runs there")
            return exc
        return None

    def _close(self, continued: Continued | None) -> None:
        if continued is not None:
            try:
                _continued_note(continued)
            except Exception as exc:  # noqa: BLE001 - the continuation exists; a missing note must not fail the run
                log.warning("CaRE: could not write the continuation note (%s)", type(exc).__name__)
        _finish(self.config, self.state, self._started, self.outcome, self._sampler)
        _settle_unconfirmed_continuation(self.state, self.outcome)

    def __enter__(self) -> "_Segment":
        return self._begin()

    def __exit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> bool:
        continued = self._settle(exc)
        self._close(continued)
        return continued is not None

    async def __aenter__(self) -> "_Segment":
        return self._begin()

    async def __aexit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> bool:
        import anyio

        continued = self._settle(exc)
        # shielded: a timeout_seconds that cancelled the body cancels this scope too, and the closing
        # work (care-realized, usage samples) would be abandoned in its thread as the process exits
        with anyio.CancelScope(shield=True):
            await asyncio.to_thread(self._close, continued)
        return continued is not None


def _wrap(config: CareConfig, fn: Callable[P, Any]) -> Callable[P, Any]:
    """The flow function of a ``@care`` flow: plans (:func:`_prepare`), then runs ``fn`` as a segment.

    It acts only in a run of its own flow (:func:`_role`); anywhere else it is ``fn``.

    Prefect validates a run's parameters against ``fn``'s signature (``__wrapped__``) and, for
    annotations that are strings (``from __future__ import annotations``), resolves them in the
    flow function's ``__globals__``. So the wrapper is given ``fn``'s globals: its code uses only
    the closure below (no global name), and a type from the user's module (a pydantic model,
    ``datetime``) resolves there exactly as for the same flow without ``@care``.
    """
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigError(f"@care cannot wrap generator flow {getattr(fn, '__name__', '?')!r}: its body would run after the CaRE "
                          "segment ended (not planned or measured); return a list instead")
    me: list[Any] = []  # the wrapper itself, to tell a run of its own flow from anything else
    role, prepare, nested, segment, to_thread, run_state = _role, _prepare, _nested, _Segment, asyncio.to_thread, RunState

    if inspect.iscoroutinefunction(fn):

        async def awrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            kind, parent = role(me[0])
            if kind == "plain":
                return await fn(*args, **kwargs)
            if kind == "nested":
                nested(parent)
                return await fn(*args, **kwargs)
            state = await to_thread(prepare, config, fn, args, kwargs)
            if state.__class__ is not run_state:
                return state  # dispatched: the trigger's final state
            async with segment(config, state) as seg:
                seg.result = await fn(*args, **kwargs)
            return seg.result

        built: Callable[..., Any] = awrapped
    else:

        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            kind, parent = role(me[0])
            if kind == "plain":
                return fn(*args, **kwargs)
            if kind == "nested":
                nested(parent)
                return fn(*args, **kwargs)
            state = prepare(config, fn, args, kwargs)
            if state.__class__ is not run_state:
                return state  # dispatched: the trigger's final state
            with segment(config, state) as seg:
                seg.result = fn(*args, **kwargs)
            return seg.result

        built = wrapped
    globals_ = getattr(fn, "__globals__", None)
    if isinstance(globals_, dict):
        built = types.FunctionType(built.__code__, globals_, built.__name__, built.__defaults__, built.__closure__)
    functools.update_wrapper(built, fn)
    me.append(built)
    return built


def _nested(parent: RunState | None) -> None:
    """Log that a ``@care`` subflow runs as part of the CaRE run ``parent`` already running here."""
    root = (parent.root or parent.run_id) if parent is not None else "?"
    _logger().info("CaRE: inside CaRE run %s: this subflow is not planned or counted separately; it runs now as part of it", root)


def _apply(config: CareConfig, target: Any) -> Any:
    from prefect import Flow, flow

    # a local call with no PREFECT_API_URL starts Prefect's temporary server: its telemetry printed a
    # 130-line "database is locked" traceback on a first run (review 54b M1), as it did for `care report`
    quiet_temporary_server_telemetry()
    base = target if isinstance(target, Flow) else flow(target)
    shell = copy.copy(base)
    shell.fn = _wrap(config, base.fn)
    new = shell.with_options()
    for flag in ("_isclassmethod", "_isstaticmethod"):  # with_options() drops them: Flow.__get__ would not bind cls
        if getattr(base, flag, False):
            setattr(new, flag, True)
    new.__care_config__ = config  # type: ignore[attr-defined]
    return new


class _Care:
    """The ``care`` decorator (see the module docstring); ``care.checkpoint()`` inside flows.

    It returns an ordinary Prefect ``Flow`` with the same name and parameters; the policy is
    validated when the module is imported, so a typo fails at once, not in the deployed run:

    >>> from prefect import flow
    >>> @care(policy={"home_region": "eu-south-2", "regions": ["eu-north-1"], "deadline_within": "12h"})
    ... @flow
    ... def nightly(day: str) -> str:
    ...     return day
    >>> type(nightly).__name__, nightly.name, nightly.__care_config__.policy().candidate_regions
    ('Flow', 'nightly', ['eu-south-2', 'eu-north-1'])
    >>> care(policy={"home_region": "eu-moon-1"})(nightly)
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: invalid CaRE policy: home_region: unknown region 'eu-moon-1'; known regions: ...
    """

    checkpoint = staticmethod(checkpoint)
    resumable_task = staticmethod(resumable_task)
    dispatched_run = staticmethod(dispatched_run)

    @overload
    def __call__(self, target: "Flow[P, R]", /) -> "Flow[P, R]": ...  # noqa: F821

    @overload
    def __call__(
        self,
        policy_or_flow: PolicySpec = None,
        /,
        *,
        policy: PolicySpec = None,
        signal: Any = None,
        clock: Clock | None = None,
        planner: Any = None,
        targets: Any = None,
        wait_locally: bool | None = None,
        sample_usage: bool = True,
    ) -> "Callable[[Flow[P, R] | Callable[P, R]], Flow[P, R]]": ...  # noqa: F821

    def __call__(
        self,
        policy_or_flow: Any = None,
        /,
        *,
        policy: PolicySpec = None,
        signal: Any = None,
        clock: Clock | None = None,
        planner: Any = None,
        targets: Any = None,
        wait_locally: bool | None = None,
        sample_usage: bool = True,
    ) -> Any:
        """Decorate a flow (``care(flow)``) or return a decorator (``care(policy, ...)``).

        ``signal``: a carbon signal, a mapping region -> forecast Series, or None (the policy's
        ``carbon_source``); ``clock``: a zero-argument callable returning now (UTC);
        ``planner``: "auto" | "decide" | "window" or a callable ``(policy, now, signal=...) ->
        Plan``; ``targets``: region -> RegionTarget (or a ``RegionTargets`` block name);
        ``sample_usage``: sample CPU/memory of the body for the realized-figures artifact and
        the flow's usage history (later runs are sized from it, see
        :mod:`care_flows.orchestration.learned_sizing`; ``policy.size_from_usage=False`` neither
        records nor sizes from the history) and each completed run's duration (later runs are
        planned with it, :mod:`care_flows.orchestration.learned_duration`); False records neither.
        """
        from prefect import Flow

        arg = policy_or_flow
        if isinstance(arg, Flow) or (callable(arg) and not isinstance(arg, (str, Mapping, CarePolicy))):
            return _apply(CareConfig(policy, signal=signal, clock=clock, planner=planner, targets=targets, wait_locally=wait_locally, sample_usage=sample_usage), arg)
        if arg is not None and policy is not None:
            raise ConfigError("give the policy once: care(policy) or care(policy=...)")
        config = CareConfig(arg if arg is not None else policy, signal=signal, clock=clock, planner=planner, targets=targets, wait_locally=wait_locally, sample_usage=sample_usage)
        return lambda target: _apply(config, target)


care = _Care()
"""``@care(policy=...)`` over ``@flow`` (or ``care(policy)(my_flow)``); returns a Prefect Flow."""
