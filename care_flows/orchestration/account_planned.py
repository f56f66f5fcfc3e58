"""The realized figures of the runs ``care controller`` planned for flows that are not decorated.

A ``@care`` body publishes its own ``care-realized`` artifact when it ends. A plain ``@flow`` of a
``care``-tagged deployment runs at the start (and, on a ``care-ec2`` pool, in the region and on
the instance type) the controller recorded, but says nothing when it ends. So each controller pass
also looks at the runs tagged ``care:planned`` that ended in the last :data:`ACCOUNT_WITHIN` (after
its first pass, since its last pass less :data:`RESCAN`) and have no ``care-realized`` artifact, and publishes one on each (:func:`account_planned_runs`), as
the body would have:

- the run time is Prefect's: from the run's start time, for its ``total_run_time`` (time in
  Running; a retry's wait is not counted), in the region of its plan;
- realized kWh and USD are that time on the instance type the plan sized there, at the planned
  utilisation (no usage samples: nothing ran inside the flow to take them);
- the realized and baseline intensities come from the controller's carbon source (``--source``,
  else the plan's), observed when it has data for the run, else the plan's forecasts re-issued;
- the outcome is ``completed``, or ``failed`` for a Failed, Crashed or Cancelled run.

``care report`` then counts the run like a ``@care`` one (its job is the ``root`` of its marker).
The artifact is the record: a run that has one (``@care`` runs, runs already accounted) is left
alone, so a controller restarted mid-pass does not count a run twice. A run whose body never ran
(cancelled while it waited) used nothing and gets no artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pandas as pd

from care_flows.orchestration.controller import ControllerAction, _iso_or_none, _marker, iter_pages
from care_flows.orchestration.dispatch import PLANNED_TAG
from care_flows.timeutil import to_timestamp

__all__ = ["ACCOUNT_WITHIN", "MAX_ACCOUNTED_PER_PASS", "RESCAN", "account_planned_runs", "accountable_runs"]

log = logging.getLogger("care_flows.controller")

ACCOUNT_WITHIN = timedelta(hours=48)
"""How long after a planned run ended the controller still accounts it (a controller that was
down for longer leaves the runs that ended meanwhile unaccounted)."""
MAX_ACCOUNTED_PER_PASS = 50
"""Runs one pass accounts at most (the earliest ended first); the rest wait for the next pass."""
RESCAN = timedelta(minutes=10)
"""How far back a pass looks again behind the last one (a worker's clock may lag the controller's)."""
_SCANNED: dict[str, pd.Timestamp] = {}
"""Per Prefect API: the runs that ended before this time are accounted (in this process: a restarted
controller looks back :data:`ACCOUNT_WITHIN` once), so each pass reads only what ended since its last pass."""
_OUTCOMES = {"COMPLETED": "completed", "FAILED": "failed", "CRASHED": "failed", "CANCELLED": "failed"}


def accountable_runs(client: Any, now: pd.Timestamp, *, since: pd.Timestamp | None = None) -> list[Any]:
    """The runs tagged ``care:planned`` that ended in ``[since, now]`` (default since: ``now -``
    :data:`ACCOUNT_WITHIN`), ran (:func:`_ran`), carry a plan in their ``care`` marker and have no
    ``care-realized`` artifact yet, the earliest ended first."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from care_flows.orchestration.controller import _page_size

    ended = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[PLANNED_TAG]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[name] for name in _OUTCOMES])),
        end_time=FlowRunFilterEndTime(after_=(now - ACCOUNT_WITHIN if since is None else since).to_pydatetime(), before_=now.to_pydatetime()),
    )
    runs = [r for r in iter_pages(client.read_flow_runs, limit=_page_size(), flow_run_filter=ended, sort=FlowRunSort.END_TIME_DESC)
            if _ran(r) and _marker(r).get("plan")]
    accounted = _with_realized_artifacts(client, [r.id for r in runs])
    return sorted((r for r in runs if r.id not in accounted), key=lambda r: r.end_time)


def _ran(run: Any) -> bool:
    """Whether the run's body ran: time in Running (Prefect also gives a run cancelled while it
    waited a start time)."""
    return run.start_time is not None and run.total_run_time is not None and run.total_run_time.total_seconds() > 0


def _with_realized_artifacts(client: Any, run_ids: Iterable[Any]) -> set[Any]:
    """The ids among ``run_ids`` that have a ``care-realized`` artifact (any version, any key of that kind)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from care_flows.orchestration.artifacts import is_realized_key
    from care_flows.orchestration.controller import _page_size

    ids, found = list(run_ids), set()
    for i in range(0, len(ids), 100):
        wanted = ArtifactFilter(key=ArtifactFilterKey(like_="care-realized"), flow_run_id=ArtifactFilterFlowRunId(any_=ids[i:i + 100]))
        found |= {a.flow_run_id for a in iter_pages(client.read_artifacts, limit=_page_size(), artifact_filter=wanted)
                  if is_realized_key(a.key)}
    return found


def account_planned_runs(client: Any, now: pd.Timestamp, *, signal: Any = None, deployment_name: Any = None,
                         limit: int = MAX_ACCOUNTED_PER_PASS) -> list[ControllerAction]:
    """Publish the ``care-realized`` artifact of each run :func:`accountable_runs` finds (at most
    ``limit``); one ``accounted`` action per run (``failed`` when its figures could not be
    published: it is tried again on the next pass); an ``accounted`` action's ``old_start`` and
    ``new_start`` are when the run started and ended. ``signal``: the controller's carbon source
    (None: the plan's); ``deployment_name(run)``: how actions name a run's deployment."""
    api = str(getattr(client, "api_url", ""))
    since, mark = now - ACCOUNT_WITHIN, _SCANNED.get(api)
    if mark is not None and since < mark <= now:  # (not a mark from another clock: a test's, an injected one)
        since = mark
    runs = accountable_runs(client, now, since=since)
    todo, left = runs[:max(0, int(limit))], runs[max(0, int(limit)):]
    actions = []
    for run in todo:
        name = deployment_name(run) if deployment_name is not None else str(run.deployment_id)
        try:
            figures = _account(client, run, signal)
        except Exception as exc:  # noqa: BLE001 - one run's figures must not stop the pass
            left.append(run)
            why = " ".join(str(exc).split())[:300]
            actions.append(ControllerAction(flow_run_id=str(run.id), flow_run_name=run.name, deployment=name, action="failed",
                                            reason=f"could not account the run that ended ({type(exc).__name__}: {why})"))
            continue
        actions.append(ControllerAction(flow_run_id=str(run.id), flow_run_name=run.name, deployment=name, action="accounted",
                                        reason=_reason(figures), old_start=_iso_or_none(figures["started"]),
                                        new_start=_iso_or_none(figures["finished"]), region=figures["region"]))
    # the next pass looks back to the earliest run left (over the limit, failed), else RESCAN
    _SCANNED[api] = min([to_timestamp(pd.Timestamp(r.end_time)) for r in left] + [now - RESCAN])
    return actions


def _account(client: Any, run: Any, signal: Any) -> dict[str, Any]:
    from care_flows.orchestration.checkpoint import RunState
    from care_flows.orchestration.decorator import CareConfig, _policy_of_plan, publish_segment_realized
    from care_flows.orchestration.plan import Plan

    marker = _marker(run)
    plan = Plan.from_dict(marker["plan"])
    found = _policy_of_plan(marker, plan, {})
    if found is None:
        raise ValueError("its care marker holds no policy or plan this CaRE can read")
    policy = found[0]
    flow_name = client.read_flow(run.flow_id).name
    started = to_timestamp(pd.Timestamp(run.start_time))
    finished = started + pd.Timedelta(run.total_run_time)
    state = RunState(policy=policy, plan=plan, region=plan.region, segment=int(marker.get("segment") or 0),
                     root=str(marker.get("root") or run.id), work_done_s=float(marker.get("work_done_s") or 0.0), flow_name=flow_name)
    config = CareConfig(policy, signal=signal, sample_usage=False)
    outcome = _OUTCOMES.get(run.state_type.value if run.state_type is not None else "", "failed")
    return publish_segment_realized(config, state, started, finished, outcome, flow_run_id=run.id, flow_name=flow_name, client=client)


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
