"""The realized figures of the runs ``care controller`` planned for flows that are not decorated.

A ``@care`` body publishes its own ``care-realized`` artifact when it ends. A plain ``@flow`` of a
``care``-tagged deployment runs at the start (and, on a ``care-ec2`` pool, in the region and on
the instance type) the controller recorded, but says nothing when it ends. So each controller pass
also looks at the runs tagged ``care:planned`` that ended in the last :data:`ACCOUNT_WITHIN` (after
its first pass, since the latest end time its last pass read, less :data:`RESCAN`), and publishes on each run one artifact
per attempt not yet accounted (:func:`account_planned_runs`), as the body would have:

- an attempt is one Running interval of the run (:func:`attempts_of`): a run Prefect retried has
  one per try (the waits between them are not counted), and a run retried by hand (the UI's Retry,
  the same run id) gets its new attempts on a later pass;
- realized kWh and USD are its time on the instance type the plan sized in the region it ran in, at
  the planned utilisation (no usage samples: nothing ran inside the flow to take them); the region
  is the plan's, or the one a ``care-ec2`` worker reported after a capacity fallback
  (:func:`ran_in`: the plan's type is assumed there);
- the realized and baseline intensities come from the controller's carbon source (``--source``,
  else the plan's), observed when it has data for the run, else the plan's forecasts re-issued;
- the outcome is ``completed``, ``continued`` for an attempt that ended paused (resumed later: the
  paused time is not counted), or ``failed`` for one that ended Failed, Crashed, Cancelled or
  awaiting a retry.

``care report`` then counts the run like a ``@care`` one (its job is the ``root`` of its marker).
The artifacts are the record (:data:`RECORDED_BY` marks the controller's): a run whose ``@care``
body published its own is left alone, and one the controller accounted gets only the attempts that
began after the last it recorded, so a controller restarted mid-pass does not count an attempt
twice (two controllers at once could; the lease keeps to one). Also left alone: a run whose body
never ran (cancelled while it waited: it used nothing), a ``@care`` run that handed its work on to
another run (ended ``Deferred`` or ``Continued``: that run is accounted), and a marker whose plan
this CaRE cannot read (logged). A ``@care`` run killed before its body could publish (a crash) is
accounted here, as a failed attempt at the planned utilisation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from care_flows.orchestration.controller import ControllerAction, _iso_or_none, _marker, _read_all
from care_flows.orchestration.dispatch import PLANNED_TAG
from care_flows.timeutil import to_timestamp

__all__ = ["ACCOUNT_WITHIN", "MAX_ACCOUNTED_PER_PASS", "RECORDED_BY", "RESCAN", "Attempt", "account_planned_runs", "accountable_runs",
           "attempts_of", "ran_in"]

log = logging.getLogger("care_flows.controller")

ACCOUNT_WITHIN = timedelta(hours=48)
"""How long after a planned run ended the controller still accounts it (a controller that was
down for longer leaves the runs that ended meanwhile unaccounted)."""
MAX_ACCOUNTED_PER_PASS = 50
"""Runs one pass accounts at most (the earliest ended first); the rest wait for the next pass."""
RESCAN = timedelta(minutes=10)
"""How far back a pass looks again behind the latest end time the last one read (a run's states
are not written in the order of their times: a state proposed late keeps the time it was proposed at)."""
_SCANNED: dict[str, pd.Timestamp] = {}
"""Per Prefect API: the runs that ended before this time are accounted (in this process: a restarted
controller looks back :data:`ACCOUNT_WITHIN` once), so each pass reads only what ended since its last pass."""
_ENDED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
_HANDED_ON = ("Deferred", "Continued")  # a @care run that handed its work on to another run: no body ran here
RECORDED_BY = "care controller"
"""The ``recorded_by`` figure of the artifacts the controller publishes (a ``@care`` body's have none)."""


@dataclass(frozen=True)
class Attempt:
    """One time a run's body ran: from its Running state to the state that ended it."""

    started: pd.Timestamp
    finished: pd.Timestamp
    outcome: str  # completed | continued (paused) | failed
    earlier_s: float = 0.0
    """The run time of the run's attempts before this one: running now at home, they would have come
    first too, so this attempt's baseline slice begins that much later (as a ``@care`` retry's; review 55c M1)."""


def attempts_of(states: Iterable[Any]) -> list[Attempt]:
    """The Running intervals of a run's states (any order), each with the outcome of the state that
    ended it: ``completed`` for a Completed state, ``continued`` for a pause (Paused, Suspended: the
    run went on later, as a ``@care`` job does after a checkpoint; the paused time is not counted),
    ``failed`` for any other (Failed, Crashed, Cancelled, a retry's AwaitingRetry); Pending and
    Cancelling end nothing, and an interval still open is not one.

    >>> from types import SimpleNamespace as S
    >>> t = lambda m: pd.Timestamp("2026-12-01T02:00Z") + pd.Timedelta(minutes=m)
    >>> states = [S(type=S(value="SCHEDULED"), name="Scheduled", timestamp=t(0)), S(type=S(value="RUNNING"), name="Running", timestamp=t(1)),
    ...           S(type=S(value="SCHEDULED"), name="AwaitingRetry", timestamp=t(9)), S(type=S(value="RUNNING"), name="Running", timestamp=t(12)),
    ...           S(type=S(value="COMPLETED"), name="Completed", timestamp=t(20))]
    >>> [(a.started.minute, a.finished.minute, a.outcome, a.earlier_s) for a in attempts_of(states)]
    [(1, 9, 'failed', 0.0), (12, 20, 'completed', 480.0)]
    >>> paused = [S(type=S(value="RUNNING"), name="Running", timestamp=t(1)), S(type=S(value="PAUSED"), name="Suspended", timestamp=t(5)),
    ...           S(type=S(value="RUNNING"), name="Running", timestamp=t(30)), S(type=S(value="COMPLETED"), name="Completed", timestamp=t(31))]
    >>> [(a.started.minute, a.finished.minute, a.outcome) for a in attempts_of(paused)]
    [(1, 5, 'continued'), (30, 31, 'completed')]
    """
    out: list[Attempt] = []
    began: pd.Timestamp | None = None
    for state in sorted(states, key=lambda s: pd.Timestamp(s.timestamp)):
        kind = str(getattr(state.type, "value", state.type))
        at = to_timestamp(pd.Timestamp(state.timestamp))
        if kind == "RUNNING":
            began = at if began is None else began
        elif began is not None and kind not in ("PENDING", "CANCELLING"):
            done = kind == "COMPLETED" and state.name not in _HANDED_ON
            earlier = sum(((a.finished - a.started).total_seconds() for a in out), 0.0)
            out.append(Attempt(began, at, "completed" if done else "continued" if kind == "PAUSED" else "failed", earlier))
            began = None
    return out


def accountable_runs(client: Any, now: pd.Timestamp, *, since: pd.Timestamp | None = None) -> list[tuple[Any, list[Attempt]]]:
    """The runs tagged ``care:planned`` that ended in ``[since, now]`` (default since: ``now -``
    :data:`ACCOUNT_WITHIN`), ran (:func:`_ran`), carry a plan this CaRE reads in their ``care`` marker and did not
    hand their work on (a ``@care`` run ending ``Deferred`` or ``Continued``), each with its
    attempts not accounted yet, the earliest ended first: all its attempts when it has no
    ``care-realized`` artifact, those that began after the last one the controller recorded (a run
    retried by hand), none when a ``@care`` body published its own."""
    return _read_ended(client, now, since=since)[0]


def _read_ended(client: Any, now: pd.Timestamp, *, since: pd.Timestamp | None = None) -> tuple[list[tuple[Any, list[Attempt]]], pd.Timestamp | None]:
    """What :func:`accountable_runs` returns, and the latest end time read (None: none was)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    ended = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[PLANNED_TAG]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[name] for name in _ENDED])),
        end_time=FlowRunFilterEndTime(after_=(now - ACCOUNT_WITHIN if since is None else since).to_pydatetime(), before_=now.to_pydatetime()),
    )
    runs: dict[Any, Any] = {}  # by id: a page shifted by a run that ended meanwhile repeats a row
    latest: pd.Timestamp | None = None  # the latest end time read (the server's clock: it stamps the states)
    for r in _read_all(client.read_flow_runs, flow_run_filter=ended, sort=FlowRunSort.END_TIME_DESC):
        end = to_timestamp(pd.Timestamp(r.end_time))
        latest = end if latest is None or end > latest else latest
        if _ran(r) and getattr(r.state, "name", None) not in _HANDED_ON and _readable_plan(r):
            runs.setdefault(r.id, r)
    recorded = _realized_records(client, list(runs))
    out = []
    for r in sorted(runs.values(), key=lambda r: r.end_time):
        last = recorded.get(r.id)
        if last is not None and (last is _BY_CARE or last >= to_timestamp(pd.Timestamp(r.end_time)) - pd.Timedelta(seconds=1)):
            continue  # a @care body's own figures, or every attempt accounted
        attempts = attempts_of(client.read_flow_run_states(r.id))
        new = [a for a in attempts if last is None or a.started >= last]
        if new:
            out.append((r, new))
    return out, latest


def _ran(run: Any) -> bool:
    """Whether the run's body ran: time in Running (Prefect also gives a run cancelled while it
    waited a start time)."""
    return run.start_time is not None and run.total_run_time is not None and run.total_run_time.total_seconds() > 0


def _readable_plan(run: Any) -> bool:
    """Whether the run's ``care`` marker holds a plan this CaRE reads (a foreign or hand-edited one
    is logged and left alone: it would fail on every pass and take the pass's budget)."""
    from care_flows.orchestration.plan import Plan

    try:
        plan = _marker(run).get("plan")
        if not plan:
            return False
        Plan.from_dict(plan)
    except Exception as exc:  # noqa: BLE001 - not accountable; said at info level, once per pass
        log.info("care controller: run %s (%s) is not accounted: its care marker's plan cannot be read (%s: %s)", run.name, run.id,
                 type(exc).__name__, " ".join(str(exc).split())[:200])
        return False
    return True


_BY_CARE: Any = object()  # a run with a care-realized artifact a @care body published


def _realized_records(client: Any, run_ids: list[Any]) -> dict[Any, Any]:
    """Per run among ``run_ids`` with a ``care-realized`` artifact: ``_BY_CARE`` when a ``@care`` body
    published one, else the latest ``finished`` of those the controller recorded."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from care_flows.orchestration.artifacts import is_realized_key, parse_realized

    found: dict[Any, Any] = {}
    for i in range(0, len(run_ids), 100):
        wanted = ArtifactFilter(key=ArtifactFilterKey(like_="care-realized"), flow_run_id=ArtifactFilterFlowRunId(any_=run_ids[i:i + 100]))
        for a in _read_all(client.read_artifacts, artifact_filter=wanted):
            if not is_realized_key(a.key) or found.get(a.flow_run_id) is _BY_CARE:
                continue
            try:
                figures = parse_realized(a.data)
            except ValueError:
                figures = {}
            if figures.get("recorded_by") != RECORDED_BY:
                found[a.flow_run_id] = _BY_CARE
            else:
                found[a.flow_run_id] = max(found.get(a.flow_run_id, figures["finished"]), figures["finished"])
    return found


def account_planned_runs(client: Any, now: pd.Timestamp, *, signal: Any = None, deployment_name: Any = None,
                         limit: int = MAX_ACCOUNTED_PER_PASS, flow_names: dict[Any, str] | None = None) -> list[ControllerAction]:
    """Publish a ``care-realized`` artifact for each attempt :func:`accountable_runs` finds, on its
    run, until ``limit`` runs are accounted; one ``accounted`` action per attempt (``failed`` when its
    figures could not be published: it is tried again on the next pass, and does not count against
    the limit). An ``accounted`` action's ``old_start`` and ``new_start`` are when the attempt began
    and ended. ``signal``: the controller's carbon source (None: the plan's);
    ``deployment_name(run)``: how actions name a run's deployment; ``flow_names``: flow id -> name,
    read once."""
    api = str(getattr(client, "api_url", ""))
    since, mark = now - ACCOUNT_WITHIN, _SCANNED.get(api)
    if mark is not None and since < mark <= now:  # (not a mark from another clock: a test's, an injected one)
        since = mark
    names = {} if flow_names is None else flow_names
    found, latest = _read_ended(client, now, since=since)
    actions, left, done = [], [], 0
    for i, (run, attempts) in enumerate(found):
        if done >= max(0, int(limit)) or i >= 4 * max(1, int(limit)):  # the rest (and runs that keep failing) wait
            left.extend(r for r, _ in found[i:])
            break
        name = deployment_name(run) if deployment_name is not None else str(run.deployment_id)
        failed = False
        for attempt in attempts:
            try:
                figures = _account(client, run, attempt, signal, names)
            except Exception as exc:  # noqa: BLE001 - one run's figures must not stop the pass
                failed = True
                why = " ".join(str(exc).split())[:300]
                actions.append(ControllerAction(flow_run_id=str(run.id), flow_run_name=run.name, deployment=name, action="failed",
                                                reason=f"could not account the run that ended ({type(exc).__name__}: {why})"))
                break
            actions.append(ControllerAction(flow_run_id=str(run.id), flow_run_name=run.name, deployment=name, action="accounted",
                                            reason=_reason(figures), old_start=_iso_or_none(attempt.started),
                                            new_start=_iso_or_none(attempt.finished), region=figures["region"]))
        if failed:
            left.append(run)
        else:
            done += 1
    # the next pass looks back to the earliest run left (over the limit, failed), else to RESCAN before the
    # latest end read: the server's times, so a controller whose clock runs ahead misses nothing
    behind = [to_timestamp(pd.Timestamp(r.end_time)) for r in left] + ([latest - RESCAN] if latest is not None else [since])
    _SCANNED[api] = min(behind)
    return actions


def ran_in(run: Any, plan_region: str) -> str:
    """The region a run really executed in: a ``care-ec2`` worker reports its instance as the
    run's ``infrastructure_pid``, ``region:instance-id``, which differs from the plan's region after
    a capacity fallback to another region; else the plan's.

    >>> from types import SimpleNamespace as S
    >>> ran_in(S(infrastructure_pid="eu-west-3:i-0123456789abcdef0"), "eu-north-1"), ran_in(S(infrastructure_pid="12345"), "eu-north-1")
    ('eu-west-3', 'eu-north-1')
    """
    from care_flows.aws.worker import parse_identifier
    from care_flows.errors import ConfigError
    from care_flows.regions import known_regions

    try:
        region = parse_identifier(str(getattr(run, "infrastructure_pid", None) or ""))[0]
    except ConfigError:  # not a care-ec2 worker's instance (a process id, none)
        return plan_region
    return region if region in known_regions() else plan_region


def _account(client: Any, run: Any, attempt: Attempt, signal: Any, flow_names: dict[Any, str]) -> dict[str, Any]:
    from care_flows.orchestration.checkpoint import RunState
    from care_flows.orchestration.decorator import CareConfig, _policy_of_plan, publish_segment_realized
    from care_flows.orchestration.plan import Plan

    marker = _marker(run)
    plan = Plan.from_dict(marker["plan"])
    found = _policy_of_plan(marker, plan, {})
    if found is None:
        raise ValueError("its care marker holds no policy or plan this CaRE can read")
    policy = found[0]
    if run.flow_id not in flow_names:
        flow_names[run.flow_id] = client.read_flow(run.flow_id).name
    flow_name = flow_names[run.flow_id]
    region = ran_in(run, plan.region)
    state = RunState(policy=policy, plan=plan, region=region, segment=int(marker.get("segment") or 0),
                     root=str(marker.get("root") or run.id), work_done_s=float(marker.get("work_done_s") or 0.0) + attempt.earlier_s,
                     flow_name=flow_name)
    config = CareConfig(policy, signal=signal, sample_usage=False)
    # after a fallback to another region: the plan's type there (the worker tries it first in each region; the run does not say which ran)
    moved_type = plan.instance_type if region != plan.region else None
    return publish_segment_realized(config, state, attempt.started, attempt.finished, attempt.outcome, flow_run_id=run.id,
                                    flow_name=flow_name, client=client, recorded_by=RECORDED_BY, instance_type=moved_type)


def _reason(figures: dict[str, Any]) -> str:
    """One line: what the run realized and saved against running now at home.

    >>> _reason({"outcome": "completed", "duration_s": 3600.0, "realized_g": 21.5, "realized_usd": 0.0864, "realized_from": "embedded history",
    ...          "baseline_realized_kwh": 0.11, "baseline_realized_g_per_kwh": 206.0, "realized_savings_usd": 0.0048})
    'completed, ran 1h: 21.5 gCO2eq (embedded history), 0.0864 USD; run now at home: 22.7 gCO2eq, saved 0.0048 USD'
    """
    from care_flows.timeutil import format_duration

    g, usd = figures.get("realized_g"), figures.get("realized_usd")
    line = (f"{figures.get('outcome')}, ran {format_duration(timedelta(seconds=round(float(figures.get('duration_s') or 0))))}: "
            f"{'n/a' if g is None else f'{g:.3g}'} gCO2eq ({figures.get('realized_from') or 'no intensity data'}), "
            f"{'n/a' if usd is None else f'{usd:.4f}'} USD")
    kwh, rate = figures.get("baseline_realized_kwh"), figures.get("baseline_realized_g_per_kwh")
    if kwh is not None and rate is not None:
        saved = figures.get("realized_savings_usd")
        line += f"; run now at home: {kwh * rate:.3g} gCO2eq" + ("" if saved is None else f", saved {saved:.4f} USD")
    return line
