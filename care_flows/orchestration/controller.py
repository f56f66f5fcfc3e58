"""The CaRE controller: move upcoming *Scheduled* runs of CaRE deployments into green windows.

For cron-scheduled deployments that carry a CaRE policy, the controller looks ahead (e.g. 24 h)
at runs still *Scheduled*, plans each one from its scheduled time (window: scheduled time ->
scheduled time + ``deadline_within``), and, before any worker picks it up:

1. records the plan: sets its job variables (``region``, ``instance_type``, the region target's
   variables, and the ``care`` plan marker) and the tag ``care:planned`` (+ ``care:moved`` when the
   start changes) with ``client.update_flow_run`` (the ``@care`` body then runs directly, without re-planning);
2. moves it: ``client.set_flow_run_state(id, Scheduled(scheduled_time=window start))``;
3. explains it: the ``care-decision-<flow>`` and ``care-options-<flow>`` artifacts on the run (a
   first plan, and each re-plan that changed it).

Once a planned run of an undecorated flow has ended, a later pass publishes its ``care-realized``
artifact (:mod:`care_flows.orchestration.account_planned`).

Receding horizon: a planned run that has not started is planned again, with a fresh forecast,
once every ``policy.replan_every`` (default 1 h; ``None`` plans once), over the same window
(its original earliest start -> the same deadline) and against the same baseline; it is moved
when the new best start differs. This is the decision rule the simulator's ``care`` policy and
``benchmarks/bench_carbon_forecast.py`` measure as "re-plan" (a fresh forecast each hour beats
the plan made at arrival). Each plan records when the next one is due (``replan_at`` in the
run's ``care`` job variable), so a restarted controller does not redo a decision either; a run
whose recorded start differs from its scheduled time while it is still at the time the plan was
made from (the marker's ``from``: the pass died between 1 and 2) is moved to the recorded start,
once; a run found at any other time was rescheduled by hand and is left there, not re-planned.
Which deployments: those tagged ``care``; their policy comes
from a deployment tag ``care-policy:<CarePolicyBlock name>``, a ``care_policy`` parameter (dict,
JSON or block name) of the run or deployment, or the controller's default policy; a
``care_overrides`` job variable of the deployment or the run is merged over it
(:mod:`care_flows.orchestration.overrides`). Runs that a ``@care`` trigger dispatched (tag
``care:dispatched``, in any deployment) have their start re-planned every ``replan_every`` when
their ``care`` marker carries the policy the trigger recorded (:func:`trigger_replan_fields`):
region, instance type, energy, deadline, baseline and job variables stay as the trigger set them
(:func:`_replan_dispatched`); older markers and flows with an injected signal or planner keep
their plan.

Where a run can go: Prefect cannot move a flow run to another work pool (``FlowRunUpdate`` has
no work pool field), so the controller plans only regions the run's pool reaches. A ``care-ec2``
pool launches in the ``region`` job variable: every candidate region, on the ``instance_type`` the
plan writes, so its plan may also choose a type other than the right-sized one (``max_g_per_run``,
``instance_choice: priorities``). Any other pool (process,
docker, kubernetes, or none) runs where its workers are: the region whose policy target names the
pool, else the region its name ends with (``care-eu-south-2``), else the policy's home region; a
``region`` job variable of the run or its deployment says it first.
The run is then planned in that region alone (time shift only; the baseline is "now, there") and
the action's reason says so. Moving runs between pools is what ``@care`` does (it dispatches a
new run to the deployment in the other pool); so deployments of ``@care`` flows should not carry
the ``care`` tag: the controller would override their own policy (its plan marks the run
``care:planned``, and the flow then runs it without planning).

>>> pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"])
>>> pool_region(pol, "care-eu-south-2", "process"), pool_region(pol, "care-ec2-pool", "care-ec2")
('eu-south-2', None)
>>> reachable_policy(pol, "care-eu-south-2", "process")[1]
'time shift only: pool care-eu-south-2 runs in eu-south-2'

>>> ControllerAction(flow_run_id="1", flow_run_name="r", deployment="f/d", action="skipped", reason="already moved").action
'skipped'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

import pandas as pd

from care_flows.errors import CareError, NoBaselineDataError, OrchestrationError
from care_flows.orchestration.clock import Clock, system_clock
from care_flows.orchestration.dispatch import CARE_TAG, DISPATCHED_TAG, MOVED_TAG, PLANNED_TAG, care_marker
from care_flows.orchestration.learned_duration import with_learned_duration
from care_flows.orchestration.learned_sizing import accepts_usage, call_planner, need_for_policy, plan_sized, takes_keyword
from care_flows.orchestration.overrides import (
    NEED_GIVEN,
    apply_overrides,
    describe_overrides,
    gives_duration,
    gives_need,
    mask_secrets,
    mask_text,
    misspelt_variables,
    overrides_from,
    secret_values,
)
from care_flows.orchestration.plan import Plan, fetch_forecasts, plan_run
from care_flows.orchestration.targets import TTL_PINNED, job_variables_for, priorities_not_applied, ttl_pinned, with_care_variables
from care_flows.policy import CarePolicy
from care_flows.regions import known_regions, region_info
from care_flows.timeutil import format_duration, iso, to_timestamp

__all__ = ["ControllerAction", "control_once", "run_controller", "policy_for_deployment", "default_min_lead", "POLICY_TAG_PREFIX",
           "MAX_REPLANS_PER_PASS", "EC2_POOL_TYPE", "pool_region", "reachable_policy", "contiguous_policy", "prefect_api_error", "unwrap_prefect_api_error", "dispatchable_policy", "run_location",
           "completed_run_times", "iter_pages", "ControllerLease", "LeaseHeld", "LEASE_VARIABLE", "lease_ttl",
           "LEFT_ALONE", "trigger_replan_fields", "next_replan_at"]

log = logging.getLogger(__name__)
POLICY_TAG_PREFIX = "care-policy:"
EC2_POOL_TYPE = "care-ec2"
"""Work pool type whose worker launches each run in its ``region`` job variable (care_flows.aws.worker)."""
"""Reasons of ``skipped`` actions that only say a planned run waits (not news, :attr:`ControllerAction.news`)."""
LEFT_ALONE = "rescheduled outside CaRE; left alone"
"""The reason of a run rescheduled by hand, on the passes after the one that said so: counted as
``skipped`` (it waits for nothing CaRE will do), not written again."""
MAX_REPLANS_PER_PASS = 25
"""Re-plans one pass does at most (the most overdue first); the rest wait for the next pass.

Runs planned together fall due for re-planning together; in the load scenario one unbounded pass
re-planned 148 runs in 96 s (docs/LOAD.md), delaying the first plans of runs that arrived meanwhile."""


@dataclass
class ControllerAction:
    """What the controller did with one flow run."""

    flow_run_id: str
    flow_run_name: str
    deployment: str
    action: str  # moved | kept | replanned | skipped | failed | accounted (a planned run that ended: its realized figures)
    # the run's start before and after the action (accounted: when the run started and when it ended)
    reason: str = ""
    old_start: str | None = None
    new_start: str | None = None
    region: str | None = None
    job_variables: dict[str, Any] = field(default_factory=dict)
    expected_savings_pct: float | None = None
    replans: int | None = None  # the plan's re-plan number (0: its first plan); None when no plan was made
    replan_at: str | None = None  # when the run is planned again (its ``care`` marker), if it will be
    waiting: bool = False  # a planned run left to wait for its next re-plan (or its start) this pass

    def __post_init__(self) -> None:
        # the one place every output (text, --json, logs) takes its values from: secrets masked here
        self.job_variables = mask_secrets(dict(self.job_variables or {}))
        self.reason = mask_text(self.reason or "")

    def masking(self, known: list[str]) -> ControllerAction:
        """This action with the ``known`` secret values (:func:`~care_flows.orchestration.overrides.secret_values`
        of the run's and its deployment's job variables) masked in its reason, wherever they occur
        (an exception's text may quote a value: Prefect's 422, pydantic's "(got ...)")."""
        return replace(self, reason=mask_text(self.reason, known)) if known else self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    @property
    def news(self) -> bool:
        """Whether the action changed the run or needs the operator: a move, a re-plan that moved, a
        first plan (kept), a failure, an ended run accounted, or a skip other than "already planned, waiting" (a re-plan
        that kept the start and a run waiting for its next re-plan are not news)."""
        if self.action in ("moved", "replanned", "failed", "accounted"):
            return True
        if self.action == "kept":
            return not self.replans
        return self.action == "skipped" and not self.waiting and self.reason != LEFT_ALONE


def policy_for_deployment(deployment: Any, flow_run: Any, default: CarePolicy | None) -> CarePolicy | None:
    """The policy of a CaRE deployment's run: tag block, ``care_policy`` parameter, or the default,
    with the deployment's and the run's ``care_overrides`` job variable merged over it
    (:mod:`care_flows.orchestration.overrides`).

    A block name that the server does not hold, or an invalid override, is a
    :class:`~care_flows.errors.ConfigError` naming it and how to fix it.
    """
    policy = _base_policy(deployment, flow_run, default)
    return None if policy is None else apply_overrides(policy, _overrides(deployment, flow_run))


def _overrides(deployment: Any, flow_run: Any) -> dict[str, Any]:
    return overrides_from(getattr(deployment, "job_variables", None), getattr(flow_run, "job_variables", None))


def _base_policy(deployment: Any, flow_run: Any, default: CarePolicy | None) -> CarePolicy | None:
    from care_flows.blocks import load_policy_block
    from care_flows.orchestration.decorator import resolve_policy

    for tag in deployment.tags or []:
        if tag.startswith(POLICY_TAG_PREFIX):
            return resolve_policy(load_policy_block(tag[len(POLICY_TAG_PREFIX):], given_as=f"the deployment tag {tag!r}"))  # + CARE_TARGETS_BLOCK
    for params in (flow_run.parameters or {}, deployment.parameters or {}):
        spec = params.get("care_policy")
        if spec:
            if isinstance(spec, str) and not spec.lstrip().startswith("{"):
                return resolve_policy(load_policy_block(spec, given_as="the care_policy parameter"))
            return resolve_policy(spec)
    return default


def _pool_location(policy: CarePolicy, pool_name: str | None) -> str | None:
    """The region a single-region pool is known to run in (by the policy's targets, then its name)."""
    if not pool_name:
        return None
    named = [r for r in policy.candidate_regions if r in policy.targets and policy.targets[r].work_pool == pool_name]
    named += [r for r, t in policy.targets.items() if t.work_pool == pool_name and r not in named]
    if named:
        return named[0]
    suffix = [r for r in known_regions() if pool_name == r or pool_name.endswith(("-" + r, "_" + r, "/" + r))]
    return max(suffix, key=len) if suffix else None


def pool_region(policy: CarePolicy, pool_name: str | None, pool_type: str | None) -> str | None:
    """The one region a run in ``pool_name`` executes in, or None when the pool reaches every region.

    A ``care-ec2`` pool launches in the run's ``region`` job variable (None). Other pools run
    where their workers are: the region whose target names the pool (the home region first),
    else the known region the pool's name ends with (``care-eu-north-1``), else the home region.

    >>> from care_flows.policy import RegionTarget
    >>> pol = CarePolicy(home_region="eu-south-2", targets={"eu-north-1": RegionTarget(work_pool="se-workers")})
    >>> pool_region(pol, "se-workers", "process"), pool_region(pol, "care-load-eu-north-1", "docker"), pool_region(pol, None, None)
    ('eu-north-1', 'eu-north-1', 'eu-south-2')
    """
    if pool_type == EC2_POOL_TYPE:
        return None
    return _pool_location(policy, pool_name) or policy.home_region


def run_location(policy: CarePolicy, pool_name: str | None, pool_type: str | None,
                 *job_variables: Mapping[str, Any] | None) -> str | None:
    """Where a run of a single-region pool executes: the first ``region`` job variable (the run's,
    then its deployment's) that names a known AWS region, else :func:`pool_region` of ``policy``
    (pass the policy before a run's own overrides: a run's ``home_region`` override says where
    it wants to be, not where the pool is). A ``care-ec2`` pool runs where it is sent: its region
    variable, else None (anywhere). A ``region`` variable that names no known region (a docker or
    kubernetes template's own, ``"local"``) is ignored, with a log line.

    >>> pol = CarePolicy(home_region="eu-south-2")
    >>> run_location(pol, "workers", "process", {"region": "eu-north-1"}), run_location(pol, "workers", "docker", {"region": "local"})
    ('eu-north-1', 'eu-south-2')
    >>> run_location(pol, "ec2", "care-ec2", {}) is None
    True
    """
    names = set(known_regions())
    for variables in job_variables:
        given = (variables or {}).get("region")
        if given and str(given) in names:
            return str(given)
        if given:
            log.info("CaRE: region job variable %r is not an AWS region CaRE knows; locating pool %s by its name", given, pool_name)
    return pool_region(policy, pool_name, pool_type)  # None for a care-ec2 pool


def reachable_policy(policy: CarePolicy, pool_name: str | None, pool_type: str | None, *, here: str | None = None) -> tuple[CarePolicy, str]:
    """``policy`` limited to the regions the run's pool reaches, and a note when it was limited.

    Prefect cannot move a flow run to another work pool, so a run in a single-region pool is
    planned there alone (time shift only), against "run now there"; the note says so. ``here``:
    the run's or its deployment's ``region`` job variable, which says where a single-region pool
    runs better than its name does.
    """
    region = pool_region(policy, pool_name, pool_type)
    if region is not None and here:
        region = here
    if region is None or policy.candidate_regions == [region]:
        return policy, ""
    pool = f"pool {pool_name}" if pool_name else "a deployment without a work pool"
    how = ("runs in" if _pool_location(policy, pool_name) == region or region == here
           else "is taken to run in the home region")
    limited = policy.model_copy(update={"home_region": region, "regions": [region]})
    return limited, f"time shift only: {pool} {how} {region}"


def dispatchable_policy(policy: CarePolicy, pool_name: str | None, pool_type: str | None, *, here: str | None = None,
                        deployment: str | None = None) -> tuple[CarePolicy, str]:
    """``policy`` limited to the regions a ``@care`` trigger run can really send its work to, and a
    note naming the regions left out (``""`` when none is).

    A region is reachable when its target names another work pool or another deployment than the
    trigger's own (``deployment``: its name; the run is dispatched there), when the trigger's own
    pool is a ``care-ec2`` pool (it launches in the ``region`` job variable), or when it is the
    region the trigger runs in: ``here`` (its ``region`` job variable, when it has one), else
    :func:`pool_region`. Any other
    "move" would dispatch to the same single-region pool, whose workers ignore ``region``: the work
    would run where it was and be accounted where it was not. The baseline moves with the run when
    the home region is not reachable either (as in :func:`reachable_policy`).

    >>> from care_flows.policy import RegionTarget
    >>> pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1", "eu-west-3"],
    ...                  targets={"eu-west-3": RegionTarget(work_pool="care-eu-west-3")})
    >>> limited, note = dispatchable_policy(pol, "care-eu-south-2", "process")
    >>> limited.candidate_regions, note
    (['eu-south-2', 'eu-west-3'], 'eu-north-1 left out: no target names a work pool or deployment for it, and pool care-eu-south-2 (process) runs in eu-south-2 only; set targets[region].work_pool or use a care-ec2 pool')
    >>> dispatchable_policy(pol, "care-ec2", "care-ec2")[1]
    ''
    """
    if pool_type == EC2_POOL_TYPE:
        return policy, ""
    here = here or pool_region(policy, pool_name, pool_type) or policy.home_region

    def elsewhere(target: Any) -> bool:  # a target that sends the run to another pool or deployment than this one
        named = target.deployment and target.deployment.split("/")[-1] != (deployment or "").split("/")[-1]
        return bool(named or (target.work_pool and target.work_pool != pool_name))

    def reachable(region: str) -> bool:
        target = policy.targets.get(region)
        return region == here or (target is not None and elsewhere(target))

    left_out = [r for r in policy.candidate_regions if not reachable(r)]
    if not left_out:
        return policy, ""
    home = policy.home_region if reachable(policy.home_region) else here
    kept = [r for r in policy.candidate_regions if reachable(r)]
    limited = policy.model_copy(update={"home_region": home, "regions": [home, *[r for r in kept if r != home]]})
    pool = f"pool {pool_name} ({pool_type or 'type unknown'})" if pool_name else "a deployment without a work pool"
    return limited, (f"{', '.join(left_out)} left out: no target names a work pool or deployment for "
                     f"{'it' if len(left_out) == 1 else 'them'}, and {pool} runs in {here} only; set targets[region].work_pool "
                     "or use a care-ec2 pool")


def contiguous_policy(policy: CarePolicy) -> tuple[CarePolicy, str]:
    """``policy`` planned as one contiguous run, and a note when it asked for more.

    The controller moves runs of flows without ``@care``: they cannot pause at a checkpoint, so
    an interruptible or threshold plan (green segments) would report savings the run, going
    straight through from the first segment, does not make.

    >>> contiguous_policy(CarePolicy(interruptible=True))[1]
    'one contiguous run (the flow has no @care checkpoints to pause at)'
    """
    if not (policy.interruptible or policy.threshold_g_per_kwh is not None or policy.threshold_percentile is not None):
        return policy, ""
    plain = policy.model_copy(update={"interruptible": False, "threshold_g_per_kwh": None, "threshold_percentile": None})
    return plain, "one contiguous run (the flow has no @care checkpoints to pause at)"


def _scheduled_time(run: Any) -> Any:
    """When a Scheduled run will start: its state's scheduled time (``expected_start_time`` is
    only the first one and is not updated when the run is rescheduled)."""
    details = getattr(run.state, "state_details", None)
    return getattr(details, "scheduled_time", None) or run.next_scheduled_start_time or run.expected_start_time


def _marker(run: Any) -> dict[str, Any]:
    """The run's ``care`` job variable (plan, earliest start, re-plan time), or ``{}``."""
    return (run.job_variables or {}).get("care") or {}


def _recorded_time(marker: Mapping[str, Any], key: str) -> pd.Timestamp | None:
    """A time the ``care`` marker records under ``key``, or None."""
    try:
        return to_timestamp(pd.Timestamp(marker[key])) if marker.get(key) else None
    except (TypeError, ValueError):
        return None


def _window_from(marker: Mapping[str, Any]) -> pd.Timestamp | None:
    """The scheduled time a run's first plan was made from: its window and deadline count from it at
    every re-plan. ``from`` is where *this* record was made from (a re-plan's is the time the last
    plan moved the run to: review 41a H1, each re-plan after the first pushed the deadline by the
    last move). A marker older than ``window_from`` gives ``earliest``, the same time (a first plan
    is made before the run's scheduled time: ``max(scheduled, now)`` is the scheduled time)."""
    return _recorded_time(marker, "window_from") or _recorded_time(marker, "earliest") or _recorded_time(marker, "from")


def _planned_start(run: Any) -> pd.Timestamp | None:
    """The start a controller pass recorded in the run's ``care`` job variable, if any."""
    try:
        return to_timestamp(pd.Timestamp(_marker(run)["plan"]["start"]))
    except (KeyError, TypeError, ValueError):
        return None


def control_once(
    client: Any = None,
    *,
    lookahead: timedelta = timedelta(hours=24),
    default_policy: CarePolicy | None = None,
    signal: Any = None,
    clock: Clock = system_clock,
    planner: Callable[..., Plan] | None = None,
    min_lead: timedelta | None = None,
    max_replans: int = MAX_REPLANS_PER_PASS,
    on_action: Callable[[ControllerAction], None] | None = None,
    max_replan_s: float | None = None,
    account: bool = True,
) -> list[ControllerAction]:
    """One pass: plan and move every upcoming Scheduled run of the ``care``-tagged deployments,
    then (``account``) publish the realized figures of the planned runs of undecorated flows that
    ended (:mod:`care_flows.orchestration.account_planned`: one ``accounted`` action each).

    ``client`` is a sync ``PrefectClient`` (default: a new one); ``planner(policy, now,
    signal=..., deadline=...)`` defaults to :func:`plan_run`; a planner that takes ``usage`` gets a
    learned need, and one that takes ``cap_types`` (or ``**kwargs``) gets ``cap_types=True`` for a
    care-ec2 pool's runs (the pool launches the planned type). Runs starting within ``min_lead``
    are left alone (a worker may already hold them; default: the worker prefetch + 20 s). A
    Prefect API error on one run (e.g. a worker picked it up mid-pass and the server refuses
    its job variables) is recorded as ``failed`` for that run; the pass goes on. Runs never
    planned come first; then at most ``max_replans`` re-plans, the most overdue first, and none once
    the pass has run ``max_replan_s`` seconds (a busy server's retries can stretch each API call;
    :func:`run_controller` gives its interval). ``on_action`` is called with each action as soon as
    it is done (a pass killed midway has reported what it did). ``clock`` also places the
    accounting's window (runs that ended in the 48 h before it), which the server's end times fill:
    an injected clock far from the server's time accounts nothing.
    """
    if min_lead is None:
        min_lead = default_min_lead()
    from prefect import get_client

    if client is None:
        with get_client(sync_client=True) as own:
            return control_once(own, lookahead=lookahead, default_policy=default_policy, signal=signal, clock=clock, planner=planner,
                                min_lead=min_lead, max_replans=max_replans, on_action=on_action, max_replan_s=max_replan_s,
                                account=account)
    import time

    started = time.monotonic()

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Scheduled

    now = clock()
    deployments = _read_all(client.read_deployments, deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[CARE_TAG])))
    by_id = {d.id: d for d in deployments}
    # from now, not from the end of the minimum lead: a run due within it that CaRE never planned is said (below)
    window = FlowRunFilterNextScheduledStartTime(after_=now.to_pydatetime(), before_=(now + pd.Timedelta(lookahead)).to_pydatetime())
    scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    # runs @care triggers dispatched, in any deployment (those of @care flows carry no `care` tag)
    dispatched = [r for r in _read_all(client.read_flow_runs, sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
                                       flow_run_filter=FlowRunFilter(state=scheduled, next_scheduled_start_time=window,
                                                                     tags=FlowRunFilterTags(all_=[DISPATCHED_TAG])))
                  if r.deployment_id is not None and _marker(r).get("policy")]
    for dep_id in {r.deployment_id for r in dispatched} - set(by_id):
        try:
            by_id[dep_id] = client.read_deployment(dep_id)
        except Exception as exc:  # noqa: BLE001 - a deleted deployment: its runs are left alone
            log.warning("care controller: cannot read deployment %s (%s); its dispatched runs are left alone", dep_id, type(exc).__name__)
    dispatched = [r for r in dispatched if r.deployment_id in by_id]
    flow_names: dict[Any, str] = {}
    if not by_id:
        return _account_ended(client, now, signal, by_id, flow_names, on_action) if account else []
    pool_types: dict[str, str | None] = {}
    run_times: dict[Any, list[float]] = {}  # deployment id -> its completed planned runs' run times (read once per pass)
    tagged = [d.id for d in deployments]
    runs = _read_all(
        client.read_flow_runs,
        sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
        flow_run_filter=FlowRunFilter(state=scheduled, next_scheduled_start_time=window),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=tagged)),
    ) if tagged else []
    seen = {r.id for r in runs}
    runs += [r for r in dispatched if r.id not in seen]
    # a run due within the minimum lead is the worker's: one CaRE planned starts as planned (nothing to say); one it
    # never planned starts unplanned, and the pass says so (review 53b L5: it was not shown, even with --verbose)
    lead_end = now + pd.Timedelta(min_lead)
    runs = [r for r in runs if not (_planned_by_care(r) and to_timestamp(_scheduled_time(r)) <= lead_end)]
    plan_fn = planner or (lambda policy, at, signal=None, deadline=None, usage=None, cap_types=False:
                          plan_run(policy, at, signal=signal, deadline=deadline, usage=usage, cap_types=cap_types))
    actions: list[ControllerAction] = []
    budget = [max(0, int(max_replans))]
    for run in sorted(runs, key=_pass_order):
        if max_replan_s is not None and time.monotonic() - started > max_replan_s:
            budget[0] = 0  # the pass ran its time: re-plans wait for the next one (runs never planned are still planned)
        dep = by_id.get(run.deployment_id)
        known = secret_values(run.job_variables, getattr(dep, "job_variables", None))  # masked in every reason of this run
        try:
            action = _control_run(client, run, by_id, flow_names, default_policy=default_policy, signal=signal,
                                  clock=clock, plan_fn=plan_fn, min_lead=min_lead, Scheduled=Scheduled, replan_budget=budget,
                                  pool_types=pool_types, run_times=run_times)
        except Exception as exc:  # noqa: BLE001 - one run's API error must not stop the pass
            action = ControllerAction(flow_run_id=str(run.id), flow_run_name=run.name, deployment=_deployment_name(run, by_id, flow_names),
                                      action="failed", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                                      old_start=_iso_or_none(_scheduled_time(run)))
        action = action.masking(known)
        actions.append(action)
        log.info("care controller: %s %s (%s) %s -> %s %s", action.action, action.flow_run_name, action.deployment, action.old_start,
                 action.new_start, action.reason)
        if on_action is not None:
            on_action(action)
    if account:
        actions += _account_ended(client, now, signal, by_id, flow_names, on_action)
    return actions


def _account_ended(client: Any, now: pd.Timestamp, signal: Any, by_id: dict, flow_names: dict,
                   on_action: Callable[[ControllerAction], None] | None) -> list[ControllerAction]:
    """The pass's ``accounted`` actions: the realized figures of the planned runs of undecorated
    flows that ended (:mod:`care_flows.orchestration.account_planned`); an API error there is one
    ``failed`` action, not a failed pass (the runs were planned; their figures wait for the next pass)."""
    from care_flows.orchestration.account_planned import account_planned_runs

    def name(run: Any) -> str:  # flow/deployment, read once per pass (a run's deployment need not be a care-tagged one)
        try:
            if run.deployment_id is not None and run.deployment_id not in by_id:
                by_id[run.deployment_id] = client.read_deployment(run.deployment_id)
            dep = by_id.get(run.deployment_id)
            if dep is not None and dep.flow_id not in flow_names:
                flow_names[dep.flow_id] = client.read_flow(dep.flow_id).name
        except Exception:  # noqa: BLE001 - a deleted deployment or flow: named by its id
            pass
        return _deployment_name(run, by_id, flow_names)

    try:
        actions = account_planned_runs(client, now, signal=signal, deployment_name=name, flow_names=flow_names)
    except Exception as exc:  # noqa: BLE001 - reading the ended runs failed: tried again next pass
        actions = [ControllerAction(flow_run_id="-", flow_run_name="-", deployment="-", action="failed",
                                    reason=f"could not read the planned runs that ended ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")]
    for action in actions:
        log.info("care controller: %s %s (%s) %s", action.action, action.flow_run_name, action.deployment, action.reason)
        if on_action is not None:
            on_action(action)
    return actions


def _deployment_name(run: Any, by_id: dict, flow_names: dict) -> str:
    """``flow/deployment`` of a run as far as it is known (the deployment's name alone before its flow is read)."""
    dep = by_id.get(run.deployment_id)
    if dep is None:
        return str(run.deployment_id)
    flow = flow_names.get(dep.flow_id)
    return f"{flow}/{dep.name}" if flow else str(dep.name)


def _iso_or_none(value: Any) -> str | None:
    try:
        return iso(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _page_size() -> int:
    """Rows per API read: the server's largest page, ``PREFECT_SERVER_API_DEFAULT_LIMIT`` (200)."""
    from prefect.settings import get_current_settings

    return int(get_current_settings().server.api.default_limit)


def iter_pages(read: Callable[..., list], *, limit: int | None = None, **filters: Any) -> Iterator[Any]:
    """Every row a paged ``read_*`` client call matches, page by page (one call returns at most a
    page), lazily: a caller reading newest first may stop early. ``limit``: rows per page (a
    shorter page is the last); None: the server's own default limit, which the client cannot
    know, so reading stops at an empty page. A server whose largest page is below ``limit`` (its
    own ``PREFECT_SERVER_API_DEFAULT_LIMIT``, which the client's setting need not match) answers
    422: the page is halved and read again.
    """
    offset = 0
    while True:
        try:
            page = read(**filters, limit=limit, offset=offset)
        except Exception as exc:
            if limit is not None and limit > 1 and getattr(getattr(exc, "response", None), "status_code", None) == 422:
                limit //= 2
                continue
            raise
        yield from page
        offset += len(page)
        if not page or (limit is not None and len(page) < limit):
            return


def _read_all(read: Callable[..., list], **filters: Any) -> list:
    """Every row a ``read_*`` client call matches in pages of :func:`_page_size` (with 230
    upcoming runs a single call would show the same 200 on every pass)."""
    return list(iter_pages(read, limit=_page_size(), **filters))


def _pass_order(run: Any) -> tuple[int, str]:
    """Runs never planned first (by start), then planned runs by their re-plan time (most overdue first)."""
    if MOVED_TAG in run.tags or PLANNED_TAG in run.tags:
        return 1, str(_marker(run).get("replan_at") or "~")  # ISO UTC strings sort in time order; none last
    return 0, str(_scheduled_time(run))


def _pool_type(client: Any, pool_types: dict[str, str | None], pool_name: str | None) -> str | None:
    """The type of work pool ``pool_name`` (cached per pass); None when there is none or it cannot be read."""
    if not pool_name or not hasattr(client, "read_work_pool"):
        return None
    if pool_name not in pool_types:
        try:
            pool_types[pool_name] = client.read_work_pool(pool_name).type
        except Exception as exc:  # noqa: BLE001 - e.g. a pool not created yet: plan as a single-region pool
            log.warning("care controller: cannot read work pool %r (%s); planning its runs in one region", pool_name, type(exc).__name__)
            pool_types[pool_name] = None
    return pool_types[pool_name]


def _planned_by_care(run: Any) -> bool:
    """Whether CaRE planned ``run``: the controller moved or kept it, or a ``@care`` trigger dispatched it."""
    tags = set(run.tags or ())
    return bool(tags & {MOVED_TAG, PLANNED_TAG}) or (DISPATCHED_TAG in tags and bool(_marker(run).get("policy")))


def _control_run(client: Any, run: Any, by_id: dict, flow_names: dict, *, default_policy: CarePolicy | None, signal: Any,
                 clock: Clock, plan_fn: Callable[..., Plan], min_lead: timedelta, Scheduled: Any,
                 replan_budget: list[int] | None = None, pool_types: dict[str, str | None] | None = None,
                 run_times: dict[Any, list[float]] | None = None) -> ControllerAction:
    """Plan and move one Scheduled run (see :func:`control_once`)."""
    now = clock()
    dep = by_id[run.deployment_id]
    if dep.flow_id not in flow_names:
        flow_names[dep.flow_id] = client.read_flow(dep.flow_id).name
    dep_name = f"{flow_names[dep.flow_id]}/{dep.name}"
    scheduled = to_timestamp(_scheduled_time(run))
    base = dict(flow_run_id=str(run.id), flow_run_name=run.name, deployment=dep_name, old_start=iso(scheduled))
    if scheduled <= now + pd.Timedelta(min_lead):  # a worker may hold it already
        unplanned = "" if _planned_by_care(run) else "; it starts as scheduled, not planned by CaRE"
        return ControllerAction(**base, action="skipped", reason=f"starts within the minimum lead "
                                f"({pd.Timedelta(min_lead).total_seconds():g} s); left to the worker{unplanned}")
    previous: Plan | None = None
    scope = ""
    try:
        if MOVED_TAG in run.tags or PLANNED_TAG in run.tags:
            marker = _marker(run)
            waiting = dict(replan_at=marker.get("replan_at"), replans=marker.get("replans"))
            target = _planned_start(run)
            if target is not None and abs(target - scheduled) > pd.Timedelta(seconds=1):
                origin = _recorded_time(marker, "from")  # the time the plan was made from (None: a marker older than "from")
                if origin is not None and abs(origin - scheduled) > pd.Timedelta(seconds=1):
                    return _left_alone(client, run, base, marker, scheduled, target)
                if _state_set_after_record(run, marker):  # back at the time it was planned from, by someone after CaRE's record
                    return _left_alone(client, run, base, marker, scheduled, target)
                if target > now + pd.Timedelta(min_lead):
                    # a pass recorded this plan and died before moving the run: finish that move (once)
                    client.set_flow_run_state(run.id, Scheduled(scheduled_time=target.to_pydatetime()))
                    # the pass died before it wrote the decision too (it writes it after the move)
                    shown = _publish_decision_on(client, run, marker.get("plan"), "moved", flow_names[dep.flow_id])
                    return ControllerAction(**base, action="moved", reason="finished a move an interrupted pass had recorded"
                                            + (f"; {shown}" if shown else ""), new_start=iso(target), **waiting)
            due = _replan_due(marker, run, dep, now, default_policy, min_lead)
            if isinstance(due, str):  # the next re-plan is shown only when one will happen
                upcoming = waiting if due.startswith("already planned (next re-plan at") else {**waiting, "replan_at": None}
                return ControllerAction(**base, action="skipped", reason=due, waiting=True, **upcoming)
            if replan_budget is not None:
                if replan_budget[0] <= 0:
                    return ControllerAction(**base, action="skipped", reason="re-plan due; left for the next pass (re-plan budget of this pass used)",
                                            waiting=True, **waiting)
                replan_budget[0] -= 1
            previous, earliest, policy = due
            if marker.get("policy"):  # a run a @care trigger deferred: only its start is planned again
                return _replan_dispatched(client, run, base, previous, earliest, policy, now=now, scheduled=scheduled,
                                          signal=signal, waiting=waiting, Scheduled=Scheduled)
        located = policy if previous is not None else None  # a re-plan is located by the region its last plan wrote
        if previous is None:
            app = _base_policy(dep, run, default_policy)  # what policy_for_deployment does, keeping the policy before overrides
            if app is None:
                return ControllerAction(**base, action="skipped", reason="no policy (a deployment tag care-policy:<block>, a care_policy parameter, or --policy-block)")
            policy = apply_overrides(app, _overrides(dep, run))
            located = apply_overrides(app, overrides_from(getattr(dep, "job_variables", None)))
            earliest = max(scheduled, now)
        pool_name = getattr(dep, "work_pool_name", None)
        # where a single-region pool runs: the run's or its deployment's region variable (a re-plan: what
        # the last plan wrote there), else by its name, else the home before the run's own overrides
        pool_type = _pool_type(client, {} if pool_types is None else pool_types, pool_name)
        here = run_location(located, pool_name, pool_type, run.job_variables, getattr(dep, "job_variables", None))
        policy, scope = reachable_policy(policy, pool_name, pool_type, here=here)
        policy, one_piece = contiguous_policy(policy)
        cache = {} if run_times is None else run_times
        times = lambda: cache[dep.id] if dep.id in cache else cache.setdefault(dep.id, completed_run_times(client, dep.id))  # noqa: E731
        overrides = _overrides(dep, run)  # a duration or a need given there is used as given
        duration_note: str | None = None
        if not gives_duration(overrides):
            policy, duration_note = with_learned_duration(policy, flow_names[dep.flow_id], run_times=times)
        unreadable: list[str] = []  # why the usage history could not be read, for the sizing note
        learned = None if gives_need(overrides) else need_for_policy(policy, flow_names[dep.flow_id], on_error=unreadable.append)
        if previous is None:
            at, deadline = earliest, scheduled + pd.Timedelta(policy.deadline_within)
        else:  # the policy's deadline now, from the time the run was first planned from (an edited block applies)
            origin = _window_from(_marker(run))
            at, deadline = max(earliest, now), origin + pd.Timedelta(policy.deadline_within) if origin is not None else previous.deadline
        # a care-ec2 pool launches the instance_type this plan writes: the plan may choose a type other than the
        # right-sized one (max_g_per_run, instance_choice: priorities); another pool runs where its workers are
        chooses_type = {"cap_types": True} if pool_type == EC2_POOL_TYPE and takes_keyword(plan_fn, "cap_types") else {}
        plan = plan_sized(lambda usage: call_planner(plan_fn, policy, at, signal=signal, deadline=deadline, usage=usage, **chooses_type),
                          policy, learned, takes_usage=accepts_usage(plan_fn), declared_because=NEED_GIVEN if gives_need(overrides) else (unreadable[0] if unreadable else None))
        if duration_note:
            plan = replace(plan, duration_from=duration_note)
        if overrides:
            plan = replace(plan, overrides=overrides)
        ignored = None if pool_type == EC2_POOL_TYPE else priorities_not_applied(policy, f"pool {pool_name}")
        if ignored:  # said in the reason and the decision, as a @care run says it, not silently dropped
            plan = replace(plan, warnings=[ignored, *plan.warnings])
        if previous is not None:  # receding horizon: same window and baseline, a fresh forecast
            # a plan stored by an older CaRE has no baseline USD or home-sized type: the fresh plan's
            # stand (running now at the same home costs the same at any time), not None copied over them
            same_home = plan.home_region == previous.home_region
            kept_or_fresh = lambda old, new: old if old is not None else new if same_home else None  # noqa: E731
            kept_kwh = previous.baseline_energy_kwh  # the first baseline's energy goes with its gCO2eq
            plan = replace(plan, baseline_g=previous.baseline_g, baseline_g_per_kwh=previous.baseline_g_per_kwh, baseline_at=previous.baseline_start,
                           baseline_kwh=kept_kwh if kept_kwh is not None else plan.baseline_kwh,
                           baseline_usd=kept_or_fresh(previous.baseline_usd, plan.baseline_usd),
                           baseline_instance_type=kept_or_fresh(previous.baseline_instance_type, plan.baseline_instance_type),
                           home_region=previous.home_region)
    except NoBaselineDataError as exc:
        if not scope:
            return ControllerAction(**base, action="failed", reason=" ".join(str(exc).split()))
        # a single-region pool whose region the carbon source does not cover: nothing to plan
        region = policy.home_region
        return ControllerAction(**base, action="skipped", reason=(
            f"{scope.removeprefix('time shift only: ')}, and {policy.carbon_source} has no carbon data for it (zone "
            f"{region_info(region).zone}); left at its scheduled time (use a carbon source that covers {region}, or "
            f"a pool for one of the policy's regions)"))
    except CareError as exc:
        if previous is not None:  # a re-plan that failed is tried again after replan_every, not first in every pass's budget
            return _replan_later(client, run, base, now, policy, waiting, " ".join(str(exc).split()), action="failed")
        return ControllerAction(**base, action="failed", reason=" ".join(str(exc).split()))
    replans = 0 if previous is None else int(_marker(run).get("replans", 0)) + 1
    replan_at = next_replan_at(now, policy.replan_every) if policy.replan_every is not None else None
    # "from": the scheduled time this plan was made from; a run found elsewhere than there and than
    # plan.start was rescheduled outside CaRE (not a pass that died between record and move)
    # "window_from": the scheduled time the *first* plan was made from, where the deadline counts from at every re-plan
    # "recorded_at": the wall-clock time of this record, to tell a move an interrupted pass left from a user's reschedule
    set_by_care = job_variables_for(policy, plan.region, plan.instance_type)
    window_from = _window_from(_marker(run)) if previous is not None else None
    marker = {**care_marker(plan, segment=0, root=str(run.id), ttl_pinned=ttl_pinned(policy, plan.region)), "earliest": iso(earliest), "from": iso(scheduled),
              "window_from": iso(window_from if window_from is not None else scheduled), "replans": replans,
              "replan_at": replan_at, "recorded_at": iso(pd.Timestamp.now(tz="UTC")), "set_by_care": set_by_care}
    # a re-plan drops what CaRE set for the last plan (recorded; else that region's target today): a subnet, an AMI are regional
    before = _marker(run).get("set_by_care")
    if previous is not None and not isinstance(before, Mapping):
        before = job_variables_for(policy, previous.region, previous.instance_type)
    own = _without(run.job_variables, before) if previous is not None else run.job_variables
    job_vars = {**with_care_variables(own, set_by_care), "care": marker}  # the run's own env kept, the target's wins
    moved = abs(plan.start - scheduled) > pd.Timedelta(seconds=1)  # a first plan never starts before `scheduled`
    # sent to another region: than its last plan's, or (a first plan) than where it would run (its pool's region, else the home)
    moved_region = plan.region != (previous.region if previous is not None else here or (located.home_region if located is not None else plan.region))
    # a re-plan on another instance type (an edited need, a learned one, a type the priorities chose): a changed plan
    retyped = previous is not None and (plan.instance_type or None) != (previous.instance_type or None)
    # record the plan first, then move: a controller killed in between finishes the move on
    # restart (see above) instead of re-planning from the moved time; care:moved only on runs really moved
    tags = [t for t in run.tags if not t.startswith("care:region:")] + (
        [f"care:region:{plan.region}"] if any(t.startswith("care:region:") for t in run.tags) else [])
    tags = [*tags, CARE_TAG, PLANNED_TAG, *([MOVED_TAG] if moved or moved_region else [])]
    refused = _record_and_move(client, run, base, tags, job_vars, plan.start if moved else None, Scheduled)
    if refused is not None:
        return refused
    if previous is None:
        action, reason = ("moved" if moved or moved_region else "kept"), (f"{plan.source}: {plan.expected_g_per_kwh or float('nan'):.0f} g/kWh"
                                                          f" vs {plan.baseline_g_per_kwh or float('nan'):.0f} at its scheduled time")
    else:
        action = "replanned" if moved or moved_region or retyped else "kept"
        reason = (f"re-plan {replans} ({plan.source}): {plan.expected_g_per_kwh or float('nan'):.0f} g/kWh"
                  f" vs {plan.baseline_g_per_kwh or float('nan'):.0f} at the original time")
        if retyped:
            reason += f"; instance type now {plan.instance_type or 'the pool default'} (was {previous.instance_type or 'the pool default'})"
        if abs(plan.deadline - previous.deadline) > pd.Timedelta(seconds=1):
            reason += f"; deadline now {iso(plan.deadline.floor('s'))} (was {iso(previous.deadline.floor('s'))}: the policy changed)"
    duration = f"duration from run history: {duration_note}" if duration_note else ""
    given = f"care_overrides: {describe_overrides(plan.overrides)}" if plan.overrides else ""
    typos = [f"job variable {name!r} is not read by CaRE; did you mean 'care_overrides'?"
             for name in misspelt_variables(getattr(dep, "job_variables", None), run.job_variables)]
    reason = "; ".join(x for x in (scope, one_piece, reason, duration, given, *typos, *plan.warnings) if x)
    if action != "kept" or previous is None:  # a first plan, or a re-plan that changed it: the decision, in the run's artifacts
        shown = _publish_decision_on(client, run, plan, action, flow_names[dep.flow_id], scope=scope, one_piece=one_piece)
        reason = f"{reason}; {shown}" if shown else reason
    return ControllerAction(
        **base,
        action=action,
        reason=reason,
        new_start=iso(plan.start),
        region=plan.region,
        job_variables=set_by_care,  # what CaRE set (masked by ControllerAction), never the run's own variables
        expected_savings_pct=plan.savings_pct,
        replans=replans,
        replan_at=replan_at,
    )


def _publish_decision_on(client: Any, run: Any, plan: Plan | Mapping[str, Any] | None, action: str, flow_name: str, *, scope: str = "",
                         one_piece: str = "") -> str:
    """The ``care-decision`` and ``care-options`` artifacts of a plan (or of the plan a ``care``
    marker recorded), on the run it was made for (keyed for its flow, as a ``@care`` flow's: the UI
    shows the decision on the run's Artifacts tab); "" when written, else the one-line reason they
    were not (the run is planned all the same)."""
    from care_flows.orchestration.artifacts import publish_decision

    what = {"moved": "moved", "kept": "kept at its scheduled time", "replanned": "re-planned"}.get(action, action)
    # the plan is made from the run's scheduled time (its window and baseline count from there), not from the
    # moment of the pass: said, or "decided" reads as a time in the future (review 53b L2)
    when = "planned from its scheduled time: 'decided' and the baseline's 'now' below are that time, not the time of the pass"
    note = "; ".join(x for x in (scope, one_piece, when) if x)
    try:
        plan = plan if isinstance(plan, Plan) else Plan.from_dict(plan or {})
        publish_decision(plan, action=f"{what} by care controller: starts {iso(plan.start.floor('s'))} in {plan.region}", note=note,
                         flow_run_id=run.id, flow_name=flow_name, client=client)
    except Exception as exc:  # noqa: BLE001 - an explanation must not undo the plan
        return f"decision artifact not written ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    return ""


def _without(job_variables: Mapping[str, Any] | None, set_before: Mapping[str, Any]) -> dict[str, Any]:
    """A run's job variables without what CaRE set for its last plan (``set_before``: the keys of that
    region's target, its ``env`` keys one by one; ``region`` and ``instance_type`` are set again).

    A key is dropped only while it holds the value CaRE set (one the user changed since stays).

    >>> _without({"region": "eu-south-2", "subnet_id": "s-es", "env": {"A": "1", "ES_TOKEN": "t"}, "image": "x", "key_name": "mine"},
    ...          {"region": "eu-south-2", "subnet_id": "s-es", "env": {"ES_TOKEN": "t"}, "key_name": "ops"})
    {'env': {'A': '1'}, 'image': 'x', 'key_name': 'mine'}
    """
    out = {k: v for k, v in (job_variables or {}).items() if k == "env" or k not in set_before or set_before[k] != v}
    env, old_env = out.get("env"), set_before.get("env")
    if isinstance(env, Mapping) and isinstance(old_env, Mapping):
        out["env"] = {k: v for k, v in env.items() if k not in old_env or old_env[k] != v}
    return out


def _replan_dispatched(client: Any, run: Any, base: dict[str, Any], previous: Plan, earliest: pd.Timestamp, policy: CarePolicy, *,
                       now: pd.Timestamp, scheduled: pd.Timestamp, signal: Any, waiting: dict[str, Any], Scheduled: Any) -> ControllerAction:
    """Re-plan the start of a run a ``@care`` trigger deferred (its marker carries the policy the trigger
    recorded, :func:`trigger_replan_fields`): a fresh forecast of its region from the trigger's source,
    the greenest start in ``[max(earliest, now), latest start]``, now on a tie or within the recorded
    policy's tie-break (:func:`care_flows.orchestration.start_check.replanned_start`,
    :func:`~care_flows.orchestration.start_check.threshold_of`). Region, instance type, work,
    energy, cost, deadline, baseline and the run's job variables stay as the trigger set them (only
    the ``care`` marker is rewritten, its check at start kept). A forecast from another source (a
    failing provider's fallback, ``--source``) or none is no re-plan: tried again after ``replan_every``."""
    from care_flows.orchestration.start_check import START_CHECKS, replanned_start, same_provider, threshold_of

    at = max(earliest, now)
    notes: list[str] = []
    try:
        forecast = fetch_forecasts(policy, at, (previous.deadline - at).to_pytimedelta(), signal, notes=notes).get(previous.region)
    except CareError as exc:
        return _replan_later(client, run, base, now, policy, waiting, " ".join(str(exc).split()), action="failed")
    served = None if forecast is None else str(forecast.attrs.get("source", "forecast"))
    if forecast is None or notes or not same_provider(served, previous.source):
        why = ("; ".join(notes) if notes else f"the forecast came from {served}" if forecast is not None else "no forecast")
        return _replan_later(client, run, base, now, policy, waiting,
                             f"not re-planned: {' '.join(why.split())[:300]}, not from {previous.source}, the source its trigger planned "
                             "with (a failing provider, or --source); left at its planned start")
    try:
        plan = replanned_start(previous, forecast, at, threshold=threshold_of(policy), start_margin=policy.start_margin)
    except Exception as exc:  # noqa: BLE001 - e.g. a source's malformed series: tried again later, not first in every budget
        return _replan_later(client, run, base, now, policy, waiting, f"not re-planned: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                             action="failed")
    if plan is None:
        return _replan_later(client, run, base, now, policy, waiting,
                             f"not re-planned: the {served} forecast does not cover now through the latest start and its work")
    old = _marker(run)
    replans = int(old.get("replans", 0)) + 1
    replan_at = next_replan_at(now, policy.replan_every)
    marker = {**care_marker(plan, segment=0, root=str(old.get("root") or run.id)), "earliest": iso(earliest), "from": iso(scheduled),
              "replans": replans, "replan_at": replan_at, "recorded_at": iso(pd.Timestamp.now(tz="UTC")),
              **{k: old[k] for k in ("policy", START_CHECKS, TTL_PINNED) if k in old}}
    moved = abs(plan.start - scheduled) > pd.Timedelta(seconds=1)
    refused = _record_and_move(client, run, base, [*run.tags, *([MOVED_TAG] if moved else [])],
                               {**(run.job_variables or {}), "care": marker}, plan.start if moved else None, Scheduled)
    if refused is not None:
        return refused
    reason = (f"re-plan {replans} of a @care run's start ({plan.source}): {plan.expected_g_per_kwh or float('nan'):.0f} g/kWh"
              f" vs {plan.baseline_g_per_kwh or float('nan'):.0f} at the original time")
    return ControllerAction(**base, action="replanned" if moved else "kept", reason=reason, new_start=iso(plan.start), region=plan.region,
                            job_variables={}, expected_savings_pct=plan.savings_pct, replans=replans, replan_at=replan_at)


def next_replan_at(now: pd.Timestamp, every: timedelta | None) -> str:
    """When a run planned at ``now`` is planned again (ISO, whole seconds): after ``every``
    (``replan_every``; None, as for a re-plan to retry, counts as 1 h).

    >>> next_replan_at(pd.Timestamp("2026-01-01T00:00:00.5Z"), timedelta(minutes=30))
    '2026-01-01T00:30:00+00:00'
    """
    return iso((now + pd.Timedelta(every or timedelta(hours=1))).floor("s"))


def _record_and_move(client: Any, run: Any, base: dict[str, Any], tags: list[str], job_variables: dict[str, Any],
                     start: pd.Timestamp | None, Scheduled: Any) -> ControllerAction | None:
    """Record a plan on the run (tags, job variables with its ``care`` marker), then move it to
    ``start`` (None: it stays): a controller killed in between finishes the move on restart instead
    of re-planning from the moved time. A skipped action when the server refuses the move, or when the
    run changed since this pass read it (:func:`_changed_since_read`, checked before the record, as the
    pass may have read it minutes ago, and again before the move), else None."""
    changed = _changed_since_read(client, run)
    if changed is not None:  # nothing written: a run a worker started or a user moved keeps its state and variables
        return ControllerAction(**base, action="skipped", reason=f"not planned: {changed} since this pass read it; left as it is")
    client.update_flow_run(run.id, tags=list(dict.fromkeys(tags)), job_variables=job_variables)
    if start is not None:
        changed = _changed_since_read(client, run)
        if changed is not None:  # a worker or a user got there first: their state stands, the next pass looks again
            return ControllerAction(**base, action="skipped", reason=f"not moved: {changed} since this pass read it; left as it is")
        result = client.set_flow_run_state(run.id, Scheduled(scheduled_time=start.to_pydatetime()))
        if getattr(result, "status", None) is not None and str(result.status).upper().endswith("REJECT"):
            return ControllerAction(**base, action="skipped", reason=f"state change rejected ({result.details})")
    return None


def _changed_since_read(client: Any, run: Any) -> str | None:
    """How the run changed since this pass read it, or None: read again before the record and before
    the move, so a run a worker started (Pending, Running) or a user rescheduled meanwhile gets neither
    CaRE's variables nor its time (the server accepts a Scheduled over a Running state). The window
    left is the round trips between a read and the write after it."""
    fresh = client.read_flow_run(run.id)
    kind = str(getattr(getattr(fresh, "state", None), "type", "")).upper().rsplit(".", 1)[-1]
    if kind != "SCHEDULED":
        return f"it became {kind.title() or 'stateless'}"
    was, now = _scheduled_time(run), _scheduled_time(fresh)
    try:
        same = was is not None and now is not None and abs(to_timestamp(pd.Timestamp(now)) - to_timestamp(pd.Timestamp(was))) <= pd.Timedelta(seconds=1)
    except (TypeError, ValueError):
        same = False
    return None if same else f"it was rescheduled to {iso(to_timestamp(pd.Timestamp(now))) if now is not None else 'an unknown time'}"


def _replan_later(client: Any, run: Any, base: dict[str, Any], now: pd.Timestamp, policy: CarePolicy, waiting: dict[str, Any],
                  reason: str, *, action: str = "skipped") -> ControllerAction:
    """A re-plan that was not made (it failed, or its forecast came from another source): the run
    keeps its plan and is tried again after ``replan_every`` (the marker's ``replan_at`` moves on), so
    it does not take the head of every pass's re-plan budget."""
    marker = _marker(run)
    later = next_replan_at(now, policy.replan_every)
    try:
        client.update_flow_run(run.id, job_variables={**(run.job_variables or {}), "care": {**marker, "replan_at": later}})
    except Exception as exc:  # noqa: BLE001 - the next pass tries again
        log.warning("care controller: could not record the next re-plan of %s (%s)", run.id, type(exc).__name__)
    return ControllerAction(**base, action=action, reason=f"{reason}; next try at {later}", waiting=True,
                            replan_at=later, replans=waiting.get("replans"))


RECORD_TOLERANCE = pd.Timedelta(seconds=5)
"""How much later than CaRE's record a run's Scheduled state must be set to count as someone else's
(the Prefect server's clock and the controller's may differ by this much; a server clock further ahead makes
an interrupted move look like a user's, and the run is left at the time it was planned from: the safe side)."""


def _state_set_after_record(run: Any, marker: Mapping[str, Any]) -> bool:
    """Whether the run's current state was set after CaRE recorded its plan (``recorded_at``, wall
    clock): someone moved it (back) by hand. A pass that died between recording and moving left a
    state older than the record. False when either time is unknown (a marker older than ``recorded_at``)."""
    recorded = _recorded_time(marker, "recorded_at")
    stamp = getattr(getattr(run, "state", None), "timestamp", None)
    if recorded is None or stamp is None:
        return False
    try:
        return to_timestamp(pd.Timestamp(stamp)) > recorded + RECORD_TOLERANCE
    except (TypeError, ValueError):
        return False


def _left_alone(client: Any, run: Any, base: dict[str, Any], marker: dict[str, Any], scheduled: pd.Timestamp,
                target: pd.Timestamp) -> ControllerAction:
    """A planned run someone rescheduled by hand (the UI, the API): it is neither where its plan
    was made from nor where the plan put it. The operator wins: no move back, no more re-plans
    (``replan_at`` dropped), and the time it was found at is recorded, so this is said once."""
    seen = _recorded_time(marker, "rescheduled_to")
    if seen is not None and abs(seen - scheduled) <= pd.Timedelta(seconds=1):
        return ControllerAction(**base, action="skipped", reason=LEFT_ALONE, replans=marker.get("replans"))
    client.update_flow_run(run.id, job_variables={**(run.job_variables or {}),
                                                  "care": {**marker, "replan_at": None, "rescheduled_to": iso(scheduled)}})
    return ControllerAction(**base, action="skipped", replans=marker.get("replans"), reason=(
        f"rescheduled outside CaRE to {iso(scheduled)} (CaRE had planned {iso(target)}); left alone, no more re-plans"))


def completed_run_times(client: Any, deployment_id: Any) -> list[float]:
    """Run times (s, oldest first) of the deployment's newest completed jobs that ran their body as
    planned (tag ``care:planned``): Prefect's ``total_run_time``, summed over a job's segments (runs
    sharing the CaRE root in their ``care`` marker: a checkpointed job and its continuations).

    What ``care controller`` learns an undecorated flow's duration from (a ``@care`` body records
    its own, :mod:`care_flows.orchestration.learned_duration`, and those records come first).
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from care_flows.orchestration.learned_duration import MAX_RUNS

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
                                      tags=FlowRunFilterTags(all_=[PLANNED_TAG])),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        sort=FlowRunSort.START_TIME_DESC, limit=4 * MAX_RUNS,
    )
    jobs: dict[str, float] = {}  # root -> seconds; insertion order = newest job first
    for r in runs:
        seconds = r.total_run_time.total_seconds() if r.total_run_time is not None else 0.0
        if seconds > 0:
            root = str(((r.job_variables or {}).get("care") or {}).get("root") or r.id)
            jobs[root] = jobs.get(root, 0.0) + seconds
    return list(jobs.values())[:MAX_RUNS][::-1]


def trigger_replan_fields(policy: CarePolicy, plan: Plan, now: pd.Timestamp) -> dict[str, Any]:
    """What a ``@care`` trigger adds to the ``care`` marker of the run it dispatches so that ``care
    controller`` re-plans that run's start (receding horizon every ``policy.replan_every``): the
    policy it planned with (JSON) narrowed to what stays fixed, the earliest start (the
    trigger's now), the time the run was scheduled at (``from``: the plan's start), and the first
    re-plan time. The recorded policy keeps the run in the region the trigger chose (the run is
    already dispatched to that region's deployment, with its target's variables: no targets are
    recorded, so none of their secrets either), on the instance type chosen, for the work planned
    (overrides and a learned duration included). ``{}`` for a plan in several segments, an
    interruptible or threshold policy (the flow follows green segments through its own
    continuations) or a policy that plans once.

    >>> t = pd.Timestamp("2026-01-01T00:00Z")
    >>> p = Plan("eu-south-2", t + pd.Timedelta("3h"), t + pd.Timedelta("4h"), t, t + pd.Timedelta("8h"), "eu-south-2", False)
    >>> f = trigger_replan_fields(CarePolicy(), p, t)
    >>> f["earliest"], f["from"], f["replan_at"], f["replans"], f["policy"]["regions"], f["policy"]["expected_duration"]
    ('2026-01-01T00:00:00+00:00', '2026-01-01T03:00:00+00:00', '2026-01-01T01:00:00+00:00', 0, ['eu-south-2'], 'PT1H')
    >>> trigger_replan_fields(CarePolicy(replan_every=None), p, t), trigger_replan_fields(CarePolicy(interruptible=True), p, t)
    ({}, {})
    """
    if policy.replan_every is None or len(plan.segments) > 1 or policy.interruptible \
            or policy.threshold_g_per_kwh is not None or policy.threshold_percentile is not None:
        return {}
    fixed = policy.model_copy(update={
        "home_region": plan.region, "regions": [plan.region], "targets": {}, "expected_duration": plan.work.to_pytimedelta(),
        "duration_from_history": False, "instance_type": plan.instance_type,
        "architecture": None if plan.instance_type else policy.architecture})
    return {"policy": fixed.model_dump(mode="json"), "earliest": iso(now), "from": iso(plan.start), "replans": 0,
            "replan_at": next_replan_at(now, policy.replan_every), "recorded_at": iso(pd.Timestamp.now(tz="UTC"))}


def _replan_due(marker: dict[str, Any], run: Any, dep: Any, now: pd.Timestamp, default_policy: CarePolicy | None,
                min_lead: timedelta) -> tuple[Plan, pd.Timestamp, CarePolicy] | str:
    """``(recorded plan, earliest start, policy)`` when a planned run is due for a re-plan, else why not.

    The due time is read from the run's ``care`` marker (``replan_at``), so runs that are not due
    cost no policy look-up.
    """
    if marker.get("replan_at") is None:
        return "already planned"  # planned once (replan_every None) or dispatched by a @care trigger run
    try:
        replan_at = to_timestamp(pd.Timestamp(marker["replan_at"]))
        earliest = to_timestamp(pd.Timestamp(marker["earliest"]))
        previous = Plan.from_dict(marker["plan"])
    except (KeyError, TypeError, ValueError, CareError):
        return "already planned"
    if now < replan_at:
        return f"already planned (next re-plan at {iso(replan_at.floor('s'))})"
    if marker.get("policy"):  # a @care flow's own policy (what its trigger planned with), never the controller's
        try:
            policy = CarePolicy.model_validate(marker["policy"])
        except Exception as exc:  # noqa: BLE001 - a marker from another CaRE version: keep the plan
            return f"already planned (its recorded policy does not load: {' '.join(str(exc).split())[:200]})"
    else:
        policy = policy_for_deployment(dep, run, default_policy)
    if policy is None or policy.replan_every is None:
        return "already planned"
    # the work the plan was made for (a learned duration, when there was one), not the declared one
    work = previous.work if previous.work > pd.Timedelta(0) else pd.Timedelta(policy.expected_duration)
    if previous.deadline - work <= now + pd.Timedelta(min_lead):
        return "already planned (its latest start is too close to re-plan)"
    return previous, earliest, policy


def unwrap_prefect_api_error(exc: BaseException) -> BaseException:
    """The error under Prefect's ``RuntimeError("... Failed to reach API at ...")`` wrappers (its
    version check turns any failure to talk to the server, a refused connection or an HTTP 404,
    into one, raised from the real error); ``exc`` itself otherwise. Nothing else is unwrapped, so a
    carbon provider's or S3's connection error is never taken for the Prefect API's."""
    seen = exc
    for _ in range(5):
        if not (isinstance(seen, RuntimeError) and "Failed to reach API at" in str(seen) and seen.__cause__ is not None):
            break
        seen = seen.__cause__
    return seen


def prefect_api_error(exc: BaseException) -> OrchestrationError | None:
    """A one-line :class:`OrchestrationError` naming the API URL when ``exc`` means the Prefect API is unreachable.

    None for any other error. The fix named: start the server or correct ``PREFECT_API_URL``.

    >>> import httpx
    >>> str(prefect_api_error(httpx.ConnectError("[Errno 111] Connection refused"))).startswith("cannot reach the Prefect API at ")
    True
    >>> prefect_api_error(KeyError("x")) is None
    True

    Prefect's own wrappers count too (the flow engine's ``RuntimeError("Failed to reach API at
    ...")`` raised from the connection error):

    >>> try:
    ...     try:
    ...         raise httpx.ConnectError("[Errno 111] Connection refused")
    ...     except httpx.ConnectError as cause:
    ...         raise RuntimeError("Failed to reach API at http://127.0.0.1:1/api/") from cause
    ... except RuntimeError as wrapped:
    ...     str(prefect_api_error(wrapped)).startswith("cannot reach the Prefect API at ")
    True
    """
    import httpx

    cause = unwrap_prefect_api_error(exc)
    if not isinstance(cause, (httpx.TransportError, ConnectionError, httpx.InvalidURL)):
        return None
    try:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value() or "(none: ephemeral)"
    except Exception:  # noqa: BLE001 - the message still helps without the URL
        url = "(unknown)"
    from care_flows.aws.userdata import mask_url, mask_url_credentials

    url = mask_url(url)  # a user:password in the URL is a secret
    if isinstance(cause, httpx.InvalidURL):  # httpx's words quote the URL's parts, a password's first characters among them
        return OrchestrationError(f"PREFECT_API_URL {url} is not a valid URL; percent-encode '#', '?', '/', '@' and blanks in a "
                                  "user name or password (e.g. %23 for '#'), or fix the URL (e.g. http://127.0.0.1:4200/api)")
    reason = mask_url_credentials(" ".join(str(exc).split())[:200] or type(exc).__name__)
    return OrchestrationError(
        f"cannot reach the Prefect API at {url} ({reason}); start it (prefect server start) "
        "or fix PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
    )


def default_min_lead() -> timedelta:
    """Runs due sooner than this are left alone: the worker prefetch (Prefect's setting) + 20 s."""
    try:
        from prefect.settings import PREFECT_WORKER_PREFETCH_SECONDS

        prefetch_s = float(PREFECT_WORKER_PREFETCH_SECONDS.value())
    except Exception:  # noqa: BLE001 - an unreadable setting falls back to Prefect's default
        prefetch_s = 10.0
    return timedelta(seconds=prefetch_s + 20.0)


LEASE_VARIABLE = "care-controller-lease"
"""The Prefect variable a running controller holds (holder, expiry), so a second one waits."""
LEASE_SETTLE_S = 0.5
"""How long a controller that takes the lease waits before reading it back (two that took it at once: the last writer keeps it)."""


@dataclass(frozen=True)
class LeaseHeld:
    """Another controller holds the lease: who (``host:pid:nonce``) and until when (its clock)."""

    holder: str
    until: pd.Timestamp

    def waiting_line(self) -> str:
        """What a looping controller says once per holder while it waits."""
        return (f"another care controller ({self.holder}) holds the lease {LEASE_VARIABLE!r}; run one controller per Prefect server "
                "(this one waits and takes over when that one stops or its lease expires)")

    def once_line(self) -> str:
        """The error of ``care controller --once`` while another holds the lease (exit 2)."""
        until = iso(self.until.floor("s"))
        return (f"another care controller ({self.holder}) holds the lease {LEASE_VARIABLE!r} until {until}; run one controller per "
                f"Prefect server: try again after {until}, or, if that controller is gone, run "
                f"`prefect variable unset {LEASE_VARIABLE}`")


def _process_space() -> str:
    """This host's name and, on Linux, its PID namespace (``host@pidns4026531836``): two containers
    sharing a host name (host networking, ``hostNetwork`` pods) do not see each other's PIDs, so a
    PID is only checked where this names the same space."""
    import os
    import socket

    try:
        return f"{socket.gethostname()}@pidns{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the host name alone
        return socket.gethostname()


def _holder_gone(holder: str) -> bool:
    """Whether ``holder`` (``host@pidns:pid:nonce``) names a process of this host and PID namespace
    that no longer exists. A holder in another PID namespace (another container with the same host
    name) is never "gone" by its PID: its lease stands until it expires (review 35e H2, where two
    such controllers took the lease from each other at every pass and both ran)."""
    import os

    parts = str(holder).split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    host, pid = ":".join(parts[:-2]), int(parts[-2])
    if host != _process_space() or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return False


def _settle(seconds: float) -> None:
    """Wait ``seconds`` before reading a lease back (not ``time.sleep``: the loop's own pause between passes)."""
    import threading

    threading.Event().wait(seconds)


def _lease_until(value: Mapping[str, Any]) -> pd.Timestamp | None:
    """When a lease ``value`` expires (None when it does not say, or not as a time)."""
    try:
        return to_timestamp(pd.Timestamp(value["expires"])) if value.get("expires") else None
    except (TypeError, ValueError):
        return None


class ControllerLease:
    """Who runs the controller against this Prefect server: a Prefect variable
    :data:`LEASE_VARIABLE` holding ``{"holder": "host@pidns:pid:nonce", "expires": ISO, "ttl_s": N}``,
    written at each pass and every ``ttl / 3`` during one, and deleted when the controller stops.

    Prefect variables have no compare-and-swap, so two controllers that both find no live lease can
    both write. A controller that takes the lease (it did not hold it before) therefore waits
    ``settle_s`` and reads the variable again: the one that finds the other's name waits (the last
    writer keeps it). A lease another controller holds is taken over
    when its ``expires`` has passed, when its holder is a process of this host and PID namespace
    that no longer exists (a controller killed with SIGKILL and restarted), or when this controller has seen it
    unchanged for the holder's ``ttl_s`` by its own monotonic clock (so a holder whose clock runs
    ahead blocks no longer than that).
    """

    def __init__(self, ttl: timedelta, *, client_factory: Callable[[], Any] | None = None, holder: str | None = None,
                 monotonic: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 settle_s: float | None = None) -> None:
        import os
        import time
        import uuid

        self.ttl = pd.Timedelta(ttl)
        self.holder = holder or f"{_process_space()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._client_factory = client_factory
        self._monotonic = monotonic or time.monotonic
        self._sleep = sleep or _settle
        self.settle_s = LEASE_SETTLE_S if settle_s is None else settle_s
        self._seen: tuple[Any, float] | None = None  # (another holder's lease value, when this controller first saw it)
        self.held = False
        self.written: pd.Timestamp | None = None

    def _client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory()
        from prefect import get_client

        return get_client(sync_client=True)

    def _live(self, holder: str, value: Mapping[str, Any], until: pd.Timestamp | None, now: pd.Timestamp) -> bool:
        """Whether another controller's lease still stands (see the class)."""
        if until is None or until <= now or _holder_gone(holder):
            return False
        key = (holder, value.get("expires"))
        if self._seen is None or self._seen[0] != key:
            self._seen = (key, self._monotonic())
            return True
        try:
            ttl_s = float(value.get("ttl_s") or self.ttl.total_seconds())
        except (TypeError, ValueError):
            ttl_s = self.ttl.total_seconds()
        return self._monotonic() - self._seen[1] < ttl_s

    def acquire(self, now: pd.Timestamp | None = None) -> LeaseHeld | None:
        """Take or renew the lease; None when this controller holds it, else who holds it (:class:`LeaseHeld`)."""
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate
        from prefect.exceptions import ObjectAlreadyExists

        from care_flows.timeutil import utcnow

        now = now or utcnow()
        with self._client() as client:
            current = client.read_variable_by_name(LEASE_VARIABLE)
            value = current.value if current is not None and isinstance(current.value, dict) else {}
            holder, until = value.get("holder"), _lease_until(value)
            if holder and holder != self.holder and self._live(str(holder), value, until, now):
                self.held = False
                return LeaseHeld(str(holder), until)
            self._seen = None
            taking = holder != self.holder
            lease = {"holder": self.holder, "expires": iso((now + self.ttl).floor("s")), "ttl_s": int(self.ttl.total_seconds())}
            if current is None:
                try:
                    client.create_variable(VariableCreate(name=LEASE_VARIABLE, value=lease, tags=["care"]))
                except ObjectAlreadyExists:  # another controller created it since the read: its lease stands
                    other = client.read_variable_by_name(LEASE_VARIABLE)
                    theirs = other.value if other is not None and isinstance(other.value, dict) else {}
                    if theirs.get("holder") and theirs.get("holder") != self.holder:
                        self.held = False
                        return LeaseHeld(str(theirs["holder"]), _lease_until(theirs))
                    client.update_variable(VariableUpdate(name=LEASE_VARIABLE, value=lease))
            else:
                client.update_variable(VariableUpdate(name=LEASE_VARIABLE, value=lease))
            if taking and self.settle_s > 0:  # another controller may have read the same free lease and written too
                self._sleep(self.settle_s)
                after = client.read_variable_by_name(LEASE_VARIABLE)
                theirs = after.value if after is not None and isinstance(after.value, dict) else {}
                if theirs.get("holder") and theirs.get("holder") != self.holder:
                    self.held = False
                    return LeaseHeld(str(theirs["holder"]), _lease_until(theirs))
        self.held, self.written = True, now
        return None

    def renew_if_due(self) -> None:
        """Renew during a long pass (every ``ttl / 3``); a failure is logged, the pass goes on."""
        from care_flows.timeutil import utcnow

        now = utcnow()
        if self.held and self.written is not None and now - self.written >= self.ttl / 3:
            try:
                other = self.acquire(now)
            except Exception as exc:  # noqa: BLE001 - the pass itself reports an unreachable API
                log.warning("care controller: could not renew the lease %r (%s)", LEASE_VARIABLE, type(exc).__name__)
                return
            if other is not None:
                log.warning("care controller: %s", other.waiting_line())

    def release(self) -> None:
        """Delete the lease if this controller holds it (best effort: it expires anyway)."""
        if not self.held:
            return
        self.held = False
        try:
            with self._client() as client:
                current = client.read_variable_by_name(LEASE_VARIABLE)
                if current is not None and isinstance(current.value, dict) and current.value.get("holder") == self.holder:
                    client.delete_variable_by_name(LEASE_VARIABLE)
        except Exception as exc:  # noqa: BLE001 - stopping must not fail on it
            log.debug("care controller: lease not released (%s)", exc)


def lease_ttl(interval: timedelta) -> timedelta:
    """How long a lease lasts without renewal: three intervals, at least 2 minutes.

    >>> lease_ttl(timedelta(seconds=30)), lease_ttl(timedelta(minutes=5))
    (datetime.timedelta(seconds=120), datetime.timedelta(seconds=900))
    """
    return max(3 * interval, timedelta(minutes=2))


def run_controller(
    *,
    interval: timedelta = timedelta(seconds=30),
    lookahead: timedelta = timedelta(hours=24),
    once: bool = False,
    default_policy: CarePolicy | None = None,
    signal: Any = None,
    on_pass: Callable[[list[ControllerAction]], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    max_replans: int = MAX_REPLANS_PER_PASS,
    on_action: Callable[[ControllerAction], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    lease: ControllerLease | None | bool = True,
    on_wait: Callable[[str], None] | None = None,
    on_recover: Callable[[str], None] | None = None,
) -> list[ControllerAction]:
    """Run :func:`control_once` every ``interval`` (or once); returns the last pass's actions.

    ``on_action`` gets each action as it is done, ``on_pass`` each pass's actions when it ends (not
    a pass that failed: ``on_error`` gets its one-line reason, else it is logged). ``lease``: the
    :class:`ControllerLease` (True: a new one, False/None: none); while another controller holds it
    this one waits, and ``on_wait`` (else ``on_error``, else the log) gets one line per holder, not
    one per pass (``--once``: an :class:`OrchestrationError` naming the fix for a dead lease).
    ``on_recover`` (else the log) gets one line when a pass works again after failed ones. The
    lease is released on the way out.
    """
    import time

    sleep = sleep or time.sleep
    if lease is True:
        lease = ControllerLease(lease_ttl(interval))
    held_by: str | None = None  # the holder this controller last said it waits for
    failed: list[float] = []  # monotonic times of the failed passes since the last one that worked

    def each(action: ControllerAction) -> None:
        if lease:
            lease.renew_if_due()
        if on_action is not None:
            on_action(action)

    try:
        while True:
            other: LeaseHeld | None = None
            try:
                other = lease.acquire() if lease else None
                if other is None:
                    held_by = None
                    actions = control_once(lookahead=lookahead, default_policy=default_policy, signal=signal, max_replans=max_replans,
                                           on_action=each, max_replan_s=interval.total_seconds())
            except Exception as exc:  # noqa: BLE001 - the server was unreachable: try again next pass
                unreachable = prefect_api_error(exc)
                if once:
                    if unreachable is not None:
                        raise unreachable from None
                    raise
                if unreachable is not None:
                    line = f"{unreachable}; retrying in {format_duration(interval)}"
                else:
                    line = (f"pass failed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                            f"retrying in {format_duration(interval)}")
                line = mask_text(line)
                if on_error is not None:
                    on_error(line)
                else:
                    log.error("care controller: %s", line)
                failed.append(time.monotonic())
                sleep(interval.total_seconds())
                continue
            if failed:
                back = (f"passes work again after {len(failed)} failed pass{'es' if len(failed) > 1 else ''} "
                        f"({format_duration(timedelta(seconds=round(time.monotonic() - failed[0])))})")
                (on_recover or (lambda m: log.warning("care controller: %s", m)))(back)
                failed.clear()
            if other is not None:  # another controller runs: wait for its lease to end
                if once:
                    raise OrchestrationError(other.once_line())
                if other.holder != held_by:  # said once per holder, not every pass (it renews its expiry each pass)
                    (on_wait or on_error or (lambda m: log.warning("care controller: %s", m)))(other.waiting_line())
                held_by = other.holder
                sleep(interval.total_seconds())
                continue
            if on_pass is not None:
                on_pass(actions)
            if once:
                return actions
            sleep(interval.total_seconds())
    finally:
        if lease:
            lease.release()
