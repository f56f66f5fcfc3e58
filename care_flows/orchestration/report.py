"""The realized-savings report (``care report``, the ``care-report`` flow): what CaRE saved, per flow and in total, from the ``care-realized`` artifacts.

Example::

    care report --since 7d
    care report --start 2026-03-02T00:00:00Z --end 2026-03-09T00:00:00Z --flow etl-nightly --json

Every ``@care`` flow run publishes a ``care-realized`` markdown artifact when its body ends
(:func:`care_flows.orchestration.artifacts.publish_realized`), keyed per flow
(``care-realized-nightly-training``; ``care-realized`` for every flow before CaRE named the flow in
the key). This command reads those created in ``[start, end)`` under either key
(:func:`is_realized_key`) from the Prefect API in ``PREFECT_API_URL`` (all pages), maps each to its
flow run and flow (never from the key), and adds them up per flow:

- a *segment* is one artifact (one flow run of the body); a *job* is the segments that share the
  CaRE root run id (the ``root`` figure: the run that was triggered, whose work may have been
  continued in later runs). Artifacts written before the root was recorded are one job each;
- realized kWh, gCO2eq and USD are summed over a job's segments (each at the segment's measured
  mean CPU when its samples cover it, ``realized_rates_from``; else at the plan's utilisation); the
  plan's expected gCO2eq and USD are the whole job's, counted once per job;
- baseline gCO2eq = each segment's run time on the home-sized instance at home, at the same CPU use
  as its realized figures (``baseline_realized_kwh``; for artifacts without that figure, written
  before it existed or whose home-sized instance was not known at the measured CPU use, the energy
  the segment really used: those jobs are counted in ``baseline_g_from_energy_used_jobs`` and a
  footnote says so), at the intensity running it now at home
  met (``baseline_realized_g_per_kwh``, from the same data as the realized intensity: observed, or
  the plan's home forecast over the same slice; the plan's ``baseline_g_per_kwh`` only for
  artifacts written before that figure existed, when the realized intensity is itself the plan's
  forecast, so a forecast's error never counts as a saving): the same work, not shifted. Saved gCO2eq =
  baseline - realized, over the jobs that know both, so a run that was shorter or longer than
  planned does not count as saved or lost carbon; a failed segment has no baseline (the job is
  left out of saved), unless a later segment of the same job took its work over (a Prefect retry
  of the run, or of its trigger): that attempt is counted like any other segment, its energy in
  realized and its run time at home in the baseline (run now at home, it would have failed and
  been retried too); saved % is relative to those jobs' baseline;
- baseline USD = each segment's duration on the home-sized instance at home, at the same CPU use as
  its realized USD (``baseline_realized_usd``); saved USD = baseline USD - realized USD, over the
  jobs that know both (a failed segment has no baseline, as above);
- a figure a job does not know (no realized intensity, a local run without a price, no plan) is
  left out of that sum, never added as 0: each sum says how many jobs it covers.

A job is counted in a period by the segments whose artifacts were created in it, so a job that
straddles the start of the period is counted with its later segments only.

>>> segments = [
...     {"flow": "etl", "job": "r1", "outcome": "continued", "realized_g": 10.0, "realized_kwh": 0.5, "realized_usd": 0.01,
...      "expected_g": 25.0, "expected_usd": 0.02, "baseline_realized_g_per_kwh": 60.0},
...     {"flow": "etl", "job": "r1", "outcome": "completed", "realized_g": 12.0, "realized_kwh": 0.5, "realized_usd": 0.01,
...      "expected_g": 25.0, "expected_usd": 0.02, "baseline_realized_g_per_kwh": 60.0},
...     {"flow": "etl", "job": "r2", "outcome": "completed", "realized_g": None, "realized_kwh": None, "realized_usd": None,
...      "expected_g": None, "expected_usd": None, "baseline_realized_g_per_kwh": None},
... ]
>>> row = summarize(segments)["flows"][0]
>>> row["jobs"], row["segments"], row["segments_completed"], row["segments_continued"]
(2, 3, 2, 1)
>>> row["realized_g"], row["baseline_g"], row["saved_g"], row["saved_pct"]
({'value': 22.0, 'jobs': 1}, {'value': 60.0, 'jobs': 1}, {'value': 38.0, 'jobs': 1}, {'value': 63.3333333, 'jobs': 1})
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd

from care_flows.accounting import format_sig
from care_flows.errors import CareError, ConfigError, OrchestrationError
from care_flows.orchestration.artifacts import REALIZED_KIND as KEY
from care_flows.orchestration.artifacts import is_realized_key, parse_realized

__all__ = ["parse_realized", "summarize", "read_segments", "read_deferred", "build_report", "render_report", "report_markdown",
           "publish_report", "report_flow_body", "report_key", "is_realized_key", "REPORT_KEY", "FIGURES"]

UNKNOWN_FLOW = "(unknown flow)"
"""The flow name of segments whose flow run is gone (deleted) or that ran outside a flow run."""

FIGURES: dict[str, str] = {
    "realized_kwh": "realized kWh",
    "realized_g": "realized gCO2eq",
    "realized_usd": "realized USD",
    "expected_g": "expected gCO2eq",
    "expected_usd": "expected USD",
    "baseline_g": "baseline gCO2eq (the same run time on the home-sized instance, now, at home)",
    "baseline_usd": "baseline USD (the same run time, now, at home, on the home-sized instance)",
    "saved_g": "saved gCO2eq",
    "saved_pct": "saved %",
    "saved_usd": "saved USD",
}
"""The summed figures of a report row (key -> label); each is ``{"value": sum or None, "jobs": n}``."""

ENERGY_USED_JOBS = "baseline_g_from_energy_used_jobs"
"""A report row's count of the jobs in its ``baseline_g`` whose baseline is the energy the instance
that ran used (artifacts without ``baseline_realized_kwh``), not the home-sized instance's."""

_PER_SEGMENT = ("realized_kwh", "realized_g", "realized_usd", "baseline_g", "baseline_usd")  # summed over a job's segments
_PER_JOB = ("expected_g", "expected_usd")  # the plan's: once per job


def _figure(values: Iterable[float | None]) -> dict[str, Any]:
    """The sum of the known values to 9 significant digits (a 3-second run's 1.12377e-05 kWh keeps
    its digits; never ``-0.0``) and how many there were.

    >>> _figure([1.1237682e-05, None]), _figure([-0.0]), _figure([])
    ({'value': 1.1237682e-05, 'jobs': 1}, {'value': 0.0, 'jobs': 1}, {'value': None, 'jobs': 0})
    """
    known = [v for v in values if v is not None]
    return {"value": _sig9(math.fsum(known)) if known else None, "jobs": len(known)}


def _sig9(value: float) -> float:
    """``value`` to 9 significant digits, never ``-0.0`` (the report's JSON figures)."""
    return float(f"{value:.9g}") + 0.0


def _at_home_g(segment: dict[str, Any], *, retried: bool = False) -> float | None:
    """The segment's run time on the home-sized instance (``baseline_realized_kwh``; the energy the
    segment used, for artifacts written before that figure existed) at the run-now-at-home
    intensity, taken from the same kind of data as its realized intensity (observed when that was observed, the plan's forecast when that was a
    forecast: a forecast's error is not a saving); None when unknown or the segment failed (its
    work is not done: nothing was saved), unless it was ``retried`` (a later segment of its job
    took the work over: the attempt's run time counts as any segment's).

    >>> seg = {"outcome": "completed", "realized_kwh": 0.5, "baseline_g_per_kwh": 200.0, "realized_from": "electricitymaps history"}
    >>> _at_home_g(seg) is None, _at_home_g({**seg, "baseline_realized_g_per_kwh": 250.0})
    (True, 125.0)
    >>> _at_home_g({**seg, "realized_from": "embedded forecast"}), _at_home_g({**seg, "realized_from": "gb history+forecast"})
    (100.0, None)
    >>> tiny = {"outcome": "completed", "realized_kwh": 1e-06, "realized_g": 0.000145, "realized_g_per_kwh": 89.163, "baseline_realized_g_per_kwh": 89.163}
    >>> _at_home_g(tiny) == tiny["realized_g"]  # ran now at home: nothing saved, whatever the rounding of kWh
    True
    >>> _at_home_g({**seg, "baseline_realized_g_per_kwh": 250.0, "baseline_realized_kwh": 0.8})  # home-sized: 0.8 kWh
    200.0
    >>> _at_home_g({**tiny, "baseline_realized_kwh": 1e-06}) == tiny["realized_g"]  # the home-sized instance itself: the same
    True
    >>> failed = {**seg, "outcome": "failed", "baseline_realized_g_per_kwh": 250.0}
    >>> _at_home_g(failed), _at_home_g(failed, retried=True)
    (None, 125.0)
    """
    kwh = segment.get("realized_kwh")
    rate = segment.get("baseline_realized_g_per_kwh")
    # a forecast, not "gb history+forecast" (mostly observed: its baseline must be observed too, review 46d M2)
    if rate is None and str(segment.get("realized_from") or "").endswith(" forecast"):
        rate = segment.get("baseline_g_per_kwh")
    if (segment.get("outcome") == "failed" and not retried) or kwh is None or rate is None:
        return None
    home_kwh = segment.get("baseline_realized_kwh")
    realized_g, realized_rate = segment.get("realized_g"), segment.get("realized_g_per_kwh")
    same_energy = home_kwh is None or home_kwh == kwh  # ran on the home-sized instance (or written before CaRE recorded it)
    if home_kwh is not None and not (same_energy and realized_g is not None and realized_rate):
        return home_kwh * rate  # the home-sized instance's energy over the same run time, as for baseline USD
    if realized_g is not None and realized_rate:  # the energy realized_g was computed on, not kWh rounded apart from it
        return realized_g / realized_rate * rate  # (a 0.1 s run's kWh rounded to 6 decimals showed an 18.8 % "saving"; "-0.0 g saved")
    return kwh * rate


def _at_home_usd(segment: dict[str, Any], *, retried: bool = False) -> float | None:
    """The segment's run time on the home-sized instance at home, at the same CPU use as its realized
    USD (``baseline_realized_usd`` of ``care-realized``); None when unknown (an artifact from before
    CaRE recorded it, a plan that priced nothing) or the segment failed (nothing was saved) and was
    not ``retried``.

    >>> _at_home_usd({"outcome": "completed", "baseline_realized_usd": 0.1112}), _at_home_usd({"outcome": "failed", "baseline_realized_usd": 0.1112})
    (0.1112, None)
    >>> _at_home_usd({"outcome": "failed", "baseline_realized_usd": 0.1112}, retried=True)
    0.1112
    """
    if segment.get("outcome") == "failed" and not retried:
        return None
    return segment.get("baseline_realized_usd")


def _job(segments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One job's figures: realized and baseline summed over its segments (None if any segment
    lacks one), the plan's expected figures from its first segment that has them.

    A failed segment followed by a later one of the same job (a retry took its work over) is a
    retried attempt: its baseline counts, so the job stays in saved.

    >>> base = {"realized_kwh": 0.1, "realized_g": 5.0, "realized_usd": 0.01, "baseline_realized_g_per_kwh": 100.0,
    ...         "baseline_realized_usd": 0.01, "expected_g": 9.0, "expected_usd": 0.02}
    >>> t = pd.Timestamp("2026-03-02T00:00:00Z")
    >>> retried = _job([{**base, "outcome": "failed", "started": t}, {**base, "outcome": "completed", "started": t + pd.Timedelta("1min")}])
    >>> retried["realized_g"], retried["baseline_g"], retried["saved_g"]
    (10.0, 20.0, 10.0)
    >>> _job([{**base, "outcome": "completed", "started": t}, {**base, "outcome": "failed", "started": t + pd.Timedelta("1min")}])["saved_g"] is None
    True
    """
    order = sorted(segments, key=lambda s: (s.get("started") is None, s.get("started") or 0))
    retried = [s.get("outcome") == "failed" and i < len(order) - 1 for i, s in enumerate(order)]
    job: dict[str, Any] = {}
    for key in _PER_SEGMENT:
        at_home = {"baseline_g": _at_home_g, "baseline_usd": _at_home_usd}.get(key)
        values = [at_home(s, retried=r) if at_home else s.get(key) for s, r in zip(order, retried)]
        job[key] = None if any(v is None for v in values) else math.fsum(values)
    for key in _PER_JOB:
        job[key] = next((s[key] for s in order if s.get(key) is not None), None)
    # its baseline gCO2eq is (in part) on the energy of the instance that ran, not the home-sized one
    job["baseline_g_from_energy_used"] = job["baseline_g"] is not None and any(s.get("baseline_realized_kwh") is None for s in order)
    both = job["baseline_g"] is not None and job["realized_g"] is not None
    job["saved_g"] = _difference(job["baseline_g"], job["realized_g"]) if both else None
    job["saved_base_g"] = job["baseline_g"] if both else None
    priced = job["baseline_usd"] is not None and job["realized_usd"] is not None
    job["saved_usd"] = _difference(job["baseline_usd"], job["realized_usd"]) if priced else None
    return job


def _difference(baseline: float, realized: float) -> float:
    """``baseline - realized``, 0 where the two are the same figure reached along two paths (a run
    now at home: 8.47e-21 g "saved" was float residue).

    >>> _difference(0.1 + 0.2, 0.3), _difference(10.0, 4.0)
    (0.0, 6.0)
    """
    diff = baseline - realized
    return 0.0 if abs(diff) <= 1e-9 * max(abs(baseline), abs(realized)) else diff


def _row(segments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    jobs: dict[Any, list[dict[str, Any]]] = {}
    for s in segments:
        jobs.setdefault(s["job"], []).append(s)
    figures = [_job(group) for group in jobs.values()]
    outcomes = [str(s.get("outcome") or "") for s in segments]
    started = [s["started"] for s in segments if s.get("started") is not None]
    finished = [s["finished"] for s in segments if s.get("finished") is not None]
    row: dict[str, Any] = {
        "jobs": len(jobs),
        "segments": len(segments),
        "segments_completed": outcomes.count("completed"),
        "segments_continued": outcomes.count("continued"),
        "segments_failed": outcomes.count("failed"),
        "first_started": pd.Timestamp(min(started)).isoformat() if started else None,
        "last_finished": pd.Timestamp(max(finished)).isoformat() if finished else None,
    }
    for key in (*_PER_SEGMENT, *_PER_JOB, "saved_g", "saved_usd"):
        row[key] = _figure(j[key] for j in figures)
    base = math.fsum(j["saved_base_g"] for j in figures if j["saved_base_g"] is not None)
    saved = row["saved_g"]
    saved_g = math.fsum(j["saved_g"] for j in figures if j["saved_g"] is not None)  # not the rounded figure
    pct = None if saved["value"] is None or base <= 0 else _sig9(100.0 * saved_g / base)
    row["saved_pct"] = {"value": pct, "jobs": saved["jobs"] if pct is not None else 0}
    row["saved_usd"] = row.pop("saved_usd")  # after saved_pct, in FIGURES order
    # of the jobs in baseline_g: those whose baseline is the energy the segment used, not the home-sized
    # instance's (care-realized without baseline_realized_kwh: written before CaRE recorded it, or no home-sized type)
    row[ENERGY_USED_JOBS] = sum(1 for j in figures if j["baseline_g_from_energy_used"])
    stopped, waiting = _unfinished(segments)
    row["jobs_waiting"] = waiting
    row["jobs_unfinished"] = len(stopped)
    row["unfinished"] = stopped
    return row


def summarize(segments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-flow rows (sorted by flow name) and a total row from parsed segments.

    Each segment is the figures of one ``care-realized`` artifact plus ``flow`` (its flow's name)
    and ``job`` (what groups a job's segments: the CaRE root run id). See the module docstring.

    >>> summarize([])["total"]["jobs"], summarize([])["flows"]
    (0, [])
    """
    by_flow: dict[str, list[dict[str, Any]]] = {}
    for s in segments:
        by_flow.setdefault(str(s["flow"]), []).append(s)
    # a job key is only unique within its flow: the total regroups by (flow, job)
    total = _row([{**s, "job": (s["flow"], s["job"])} for s in segments])
    return {"flows": [{"flow": name, **_row(group)} for name, group in sorted(by_flow.items())], "total": total}


def _chunks(items: Sequence[Any], size: int = 50) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def read_segments(client: Any, start: pd.Timestamp, end: pd.Timestamp, *, page_size: int | None = None,
                  continuations: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """The parsed ``care-realized`` artifacts created in ``[start, end)`` (per-flow keys and the
    older shared key: :func:`is_realized_key`), each with its ``flow`` name (its flow run's flow)
    and ``job`` key, and the flow names of the artifacts in range that could not be read.

    ``client``: a sync Prefect client (``get_client(sync_client=True)``). Artifacts are read
    newest first, page by page (``page_size``: None = the server's default limit), until one is
    older than ``start``.

    ``continuations``: also look up, for each job paused at a checkpoint, the run that continues it
    (each such segment gets ``continuation``: see :func:`_add_continuations`), which the report's
    unfinished and waiting jobs need. With False, no segment has ``continuation`` (the report then
    counts its paused jobs in neither): :func:`build_report` reads with False and looks the
    continuations up itself, after its flow filter, for the segments it keeps only.
    """
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    from care_flows.orchestration.controller import iter_pages
    from care_flows.timeutil import to_timestamp

    # like_ is a case-insensitive substring match (ILIKE '%care-realized%'): is_realized_key keeps the realized ones
    wanted = ArtifactFilter(key=ArtifactFilterKey(like_=KEY))
    found: dict[Any, Any] = {}
    for artifact in iter_pages(client.read_artifacts, limit=page_size, artifact_filter=wanted, sort=ArtifactSort.CREATED_DESC):
        created = to_timestamp(artifact.created) if artifact.created is not None else None
        if created is not None and created < start:
            break  # newest first: everything after this is older still
        if created is None or created >= end or not is_realized_key(artifact.key):
            continue
        found.setdefault(artifact.id, artifact)  # a page shifted by a new artifact repeats one
    run_ids = sorted({a.flow_run_id for a in found.values() if a.flow_run_id is not None}, key=str)
    flow_of_run: dict[Any, Any] = {}
    segment_of_run: dict[Any, int] = {}
    for chunk in _chunks(run_ids):
        for run in iter_pages(client.read_flow_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk))):
            flow_of_run[run.id] = run.flow_id
            marker = (getattr(run, "job_variables", None) or {}).get("care")
            segment_of_run[run.id] = _int_or_zero(marker.get("segment") if isinstance(marker, dict) else None)
    name_of_flow = _flow_names(client, flow_of_run.values())
    segments: list[dict[str, Any]] = []
    skipped: list[str] = []
    for artifact in found.values():
        run_id = artifact.flow_run_id
        flow = name_of_flow.get(flow_of_run.get(run_id), UNKNOWN_FLOW) if run_id is not None else UNKNOWN_FLOW
        try:
            figures = parse_realized(artifact.data)
        except ValueError:
            skipped.append(flow)
            continue
        job = figures.get("root") or f"artifact-{artifact.id}"  # written before the root was recorded: its own job
        segments.append({**figures, "flow": flow, "job": str(job), "flow_run_id": None if run_id is None else str(run_id),
                         "artifact_id": str(artifact.id), "created": to_timestamp(artifact.created),
                         "segment_index": segment_of_run.get(run_id)})  # None: its flow run is gone (or there is none)
    if continuations:
        _add_continuations(client, segments)
    return segments, skipped


def _flow_names(client: Any, flow_ids: Iterable[Any]) -> dict[Any, str]:
    """Flow id -> flow name for ``flow_ids``, read in chunks (every page)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    from care_flows.orchestration.controller import iter_pages

    names: dict[Any, str] = {}
    for chunk in _chunks(sorted(set(flow_ids), key=str)):
        for fl in iter_pages(client.read_flows, flow_filter=FlowFilter(id=FlowFilterId(any_=chunk))):
            names[fl.id] = fl.name
    return names


def _int_or_zero(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _last_segments(segments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job's latest segment (by start), per flow."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for s in segments:
        key = (str(s["flow"]), str(s["job"]))
        known = last.get(key)
        if known is None or (s.get("started") is not None and (known.get("started") is None or s["started"] >= known["started"])):
            last[key] = s
    return list(last.values())


def _add_continuations(client: Any, segments: list[dict[str, Any]]) -> None:
    """For each job whose latest segment in the period paused at a checkpoint (``continued``): the
    run that continues it (``care-<root>-part<segment + 1>``, the dispatch's idempotency key) as
    ``continuation`` = ``{"name", "state", "type"}``, or ``{"name": None, ...}`` when there is none.
    A paused job whose continuation was cancelled or failed is unfinished, and before this the report
    could not tell it from one still waiting (review 42b L3).

    A segment whose flow run is not found (deleted: artifacts outlive their runs) has no known
    segment index (``segment_index`` None), so its continuation's key is unknown: it is not looked
    up and gets no ``continuation``, and :func:`_unfinished` counts its job in neither the waiting
    nor the unfinished jobs (before, it was looked up as ``-part1`` and reported unfinished even when
    its real continuation was waiting; review 43c L1)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    from care_flows.orchestration.controller import iter_pages
    from care_flows.orchestration.dispatch import dispatch_key

    paused = {dispatch_key(s["root"], int(s["segment_index"]) + 1): s for s in _last_segments(segments)
              if s.get("outcome") == "continued" and s.get("root") and s.get("segment_index") is not None}
    found: dict[str, Any] = {}
    for chunk in _chunks(sorted(paused)):
        for run in iter_pages(client.read_flow_runs, flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=chunk))):
            found[run.idempotency_key] = run
    for key, segment in paused.items():
        run = found.get(key)
        state = getattr(run, "state", None)
        kind = getattr(getattr(state, "type", None), "value", getattr(state, "type", None))
        segment["continuation"] = {"name": getattr(run, "name", None), "state": getattr(state, "name", None),
                                   "type": None if kind is None else str(kind)}


_STOPPED = frozenset({"CANCELLED", "CANCELLING", "FAILED", "CRASHED"})


def _unfinished(segments: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The jobs paused at a checkpoint whose continuation was stopped (cancelled, failed, crashed) or
    is missing, each ``{"job", "flow", "continuation", "state"}``; and how many paused jobs still wait
    (their continuation scheduled or running). Segments read without their continuation
    (:func:`summarize` on parsed artifacts alone, ``read_segments(continuations=False)``, or a
    segment whose flow run was deleted, whose continuation is unknown: :func:`_add_continuations`)
    count in neither.

    >>> t = pd.Timestamp("2026-03-02T00:00:00Z")
    >>> segs = [{"flow": "etl", "job": "r1", "outcome": "continued", "started": t,
    ...          "continuation": {"name": "etl-run-part1", "state": "Cancelled", "type": "CANCELLED"}},
    ...         {"flow": "etl", "job": "r2", "outcome": "continued", "started": t,
    ...          "continuation": {"name": "etl-run2-part1", "state": "Scheduled", "type": "SCHEDULED"}}]
    >>> _unfinished(segs)
    ([{'flow': 'etl', 'job': 'r1', 'continuation': 'etl-run-part1', 'state': 'Cancelled'}], 1)
    """
    stopped, waiting = [], 0
    for s in _last_segments(segments):
        nxt = s.get("continuation")
        if s.get("outcome") != "continued" or not isinstance(nxt, dict):
            continue
        if nxt.get("name") is None or nxt.get("type") in _STOPPED:
            job = s["job"][1] if isinstance(s["job"], tuple) else s["job"]  # the total groups by (flow, job)
            stopped.append({"flow": str(s["flow"]), "job": str(job), "continuation": nxt.get("name"), "state": nxt.get("state")})
        elif nxt.get("type") != "COMPLETED":
            waiting += 1
    return stopped, waiting


def read_deferred(client: Any, flows: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The runs CaRE planned for later that have not started yet, as of now, soonest first (review
    48c L5): a ``@care`` trigger's dispatched run (``care:dispatched``) or a deployment's run the
    controller moved (``care:moved``; one it kept at its scheduled time was not deferred, review 49b
    H2), in a ``Scheduled`` or ``Late`` state (not ``AwaitingRetry``: that run has started, 49b M3).
    Continuations are not listed: paused jobs are the report's ``jobs_waiting``. Each is ``{"flow",
    "flow_run_id", "name", "state", "start", "region"}`` (``start``: its scheduled start now, ISO: a
    controller's move changes it, not Prefect's ``expected_start_time``, 49b H1; ``region``: the
    plan's). ``flows``: only runs of these flow names. Their work has no ``care-realized`` artifact
    before it runs, so without this a report just after a deferral would show nothing of it.
    """
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from care_flows.orchestration.controller import iter_pages
    from care_flows.orchestration.dispatch import CONTINUATION_TAG, DISPATCHED_TAG, MOVED_TAG, PLANNED_TAG
    from care_flows.timeutil import iso, to_timestamp

    waiting = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]),
                                                     name=FlowRunFilterStateName(any_=["Scheduled", "Late"])),
                            tags=FlowRunFilterTags(all_=[PLANNED_TAG]))
    only = FlowFilter(name=FlowFilterName(any_=list(flows))) if flows else None
    runs = [r for r in iter_pages(client.read_flow_runs, flow_run_filter=waiting, flow_filter=only, sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC)
            if {DISPATCHED_TAG, MOVED_TAG} & set(r.tags or []) and CONTINUATION_TAG not in (r.tags or [])]
    names = _flow_names(client, (r.flow_id for r in runs))
    rows = []
    for r in runs:
        marker = (r.job_variables or {}).get("care")
        plan = marker.get("plan") if isinstance(marker, dict) else None
        details = getattr(r.state, "state_details", None)
        start = getattr(details, "scheduled_time", None) or r.next_scheduled_start_time or r.expected_start_time
        rows.append({"flow": names.get(r.flow_id, UNKNOWN_FLOW), "flow_run_id": str(r.id), "name": r.name,
                     "state": getattr(r.state, "name", None), "start": None if start is None else iso(to_timestamp(start)),
                     "region": plan.get("region") if isinstance(plan, dict) else None})
    return rows


def _deferred_line(deferred: Sequence[dict[str, Any]]) -> str | None:
    """The report's line on runs planned for later and not started (None: there are none); ``Late``
    runs (their start has passed and no worker took them) are named apart.

    >>> print(_deferred_line([{"flow": "etl", "start": "2026-03-02T13:00:00+00:00", "state": "Scheduled"},
    ...                       {"flow": "etl", "start": "2026-03-03T13:00:00+00:00", "state": "Scheduled"},
    ...                       {"flow": "train", "start": "2026-03-02T04:00:00+00:00", "state": "Scheduled"}]))
    deferred: 3 runs planned for later, not started yet (now): etl: 2, next at 2026-03-02T13:00:00+00:00; train: 1, next at 2026-03-02T04:00:00+00:00
    >>> print(_deferred_line([{"flow": "etl", "start": "2026-03-01T13:00:00+00:00", "state": "Late"}]))
    deferred: 1 run planned for later, not started yet (now): etl: 1 Late (planned for 2026-03-01T13:00:00+00:00; is a worker running for its pool?)
    """
    if not deferred:
        return None
    by_flow: dict[str, tuple[list[str], list[str]]] = {}
    for row in deferred:
        late = row.get("state") == "Late"
        by_flow.setdefault(str(row["flow"]), ([], []))[1 if late else 0].append(str(row.get("start") or ""))
    parts = []
    for flow, (coming, late) in sorted(by_flow.items()):
        said = [f"{len(coming)}, next at {min(coming)}"] if coming else []
        if late:
            said.append(f"{len(late)} Late (planned for {min(late)}; is a worker running for its pool?)")
        parts.append(f"{flow}: {', '.join(said)}")
    shown = "; ".join(parts[:10]) + (f"; and {len(parts) - 10} more flows" if len(parts) > 10 else "")
    runs = f"{len(deferred)} run" + ("" if len(deferred) == 1 else "s")
    return f"deferred: {runs} planned for later, not started yet (now): {shown}"


def _api_url() -> str | None:
    """The Prefect API's URL as it may be shown (a user:password in it as ``***``), or None."""
    try:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value() or None
    except Exception:  # noqa: BLE001 - the report still works without naming the URL
        return None
    from care_flows.aws.userdata import mask_url

    return None if url is None else mask_url(url)


def _api_failure(exc: BaseException) -> CareError | None:
    """A one-line error for an unreachable or refusing Prefect API, else None (a bug)."""
    import httpx

    from care_flows.orchestration.controller import prefect_api_error, unwrap_prefect_api_error

    unreachable = prefect_api_error(exc)
    if unreachable is not None:
        return unreachable
    exc = unwrap_prefect_api_error(exc)  # running the report flow checks the server's version first
    if isinstance(exc, httpx.HTTPStatusError):
        url = _api_url() or "(none: ephemeral)"
        return OrchestrationError(f"the Prefect API at {url} answered HTTP {exc.response.status_code} to {exc.request.url.path}; "
                                  "check PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) and that the server runs Prefect 3")
    return None


@contextlib.contextmanager
def _one_line_api_failures() -> Iterator[None]:
    """An unreachable API becomes a one-line :class:`~care_flows.errors.OrchestrationError`;
    CaRE's own errors pass; anything else is a bug and keeps its traceback."""
    try:
        yield
    except CareError:
        raise
    except Exception as exc:  # noqa: BLE001 - an API failure is one line; anything else is a bug
        failure = _api_failure(exc)
        if failure is None:
            raise
        raise failure from None


def build_report(start: pd.Timestamp, end: pd.Timestamp, *, flows: Sequence[str] | None = None, client: Any = None,
                 page_size: int | None = None) -> dict[str, Any]:
    """The report document (JSON-ready) for ``care-realized`` artifacts created in ``[start, end)``.

    ``flows``: keep only these flow names (and count only their unreadable artifacts as skipped;
    ``artifacts_read`` counts every ``care-realized`` artifact in the period); the continuations of
    paused jobs are looked up for the kept flows' segments only. ``client``: a sync Prefect client (default: a new
    ``get_client(sync_client=True)`` on ``PREFECT_API_URL``). An unreachable API raises
    :class:`~care_flows.errors.OrchestrationError` naming the URL and the fix.
    """
    from care_flows.timeutil import iso

    with _one_line_api_failures():
        if client is None:
            from prefect import get_client

            opened: contextlib.AbstractContextManager[Any] = get_client(sync_client=True)
        else:
            opened = contextlib.nullcontext(client)
        with opened as api:
            segments, skipped = read_segments(api, start, end, page_size=page_size, continuations=False)
            read = len(segments) + len(skipped)
            in_period = sorted({s["flow"] for s in segments})
            if flows:
                segments = [s for s in segments if s["flow"] in set(flows)]
                skipped = [f for f in skipped if f in set(flows)]
            _add_continuations(api, segments)  # after the filter: another flow's paused jobs are not looked up (review 43c L2)
            deferred = read_deferred(api, flows)
    summary = summarize(segments)
    return {"start": iso(start), "end": iso(end), "api_url": _api_url(), "flows_requested": list(flows) if flows else None,
            "artifacts_read": read, "skipped": len(skipped), "flows_in_period": in_period, **summary, "deferred_runs": deferred}


def _num(value: float | None, digits: int, sig: bool = True) -> str:
    """``digits`` decimals, and (``sig``) at least 3 significant digits: a run of seconds read
    "0.0 g" next to a saving of 77 % (review 48c M1).

    >>> _num(0.0034, 1), _num(40.0, 1), _num(0.0004, 4), _num(77.23, 1, sig=False), _num(0.0034, 1, sig=False), _num(None, 1)
    ('0.00340', '40.0', '0.000400', '77.2', '0.0', '-')
    """
    if value is None:
        return "-"
    return format_sig(value, "", digits).strip() if sig else f"{value:,.{digits}f}"


def _cell(figure: dict[str, Any], jobs: int, digits: int, sig: bool = True) -> str:
    """``12.3`` when every job contributed, ``12.3 [2/3]`` when only some did, ``-`` when none."""
    text = _num(figure["value"], digits, sig)
    return text if figure["jobs"] in (0, jobs) else f"{text} [{figure['jobs']}/{jobs}]"


_CAPTION = ("g: gCO2eq; expected g and USD: the plan's figures for the job's expected duration; baseline g and USD: the time "
            "the job really ran, on the home-sized instance, now, at home (the decision artifact's baseline is for the expected "
            "duration); segments: completed/continued/failed")
_DIGITS = {"realized_kwh": 3, "realized_g": 1, "realized_usd": 4, "expected_g": 1, "expected_usd": 4, "baseline_g": 1, "baseline_usd": 4,
           "saved_g": 1, "saved_pct": 1, "saved_usd": 4}


def render_report(doc: dict[str, Any]) -> list[str]:
    """The total line and footnotes of a report document (the table is printed by rich).

    >>> doc = {"skipped": 1, "total": {**summarize([{"flow": "etl", "job": "r1", "outcome": "completed", "realized_g": 40.0,
    ...        "realized_kwh": 0.2, "realized_usd": 0.01, "expected_g": 38.0, "expected_usd": 0.01, "baseline_realized_g_per_kwh": 500.0,
    ...        "baseline_realized_kwh": 0.2, "baseline_realized_usd": 0.012}])["total"]}}
    >>> print("\\n".join(render_report(doc)))
    total: 1 job, 1 segment (1 completed, 0 continued, 0 failed); realized 40.0 gCO2eq, 0.0100 USD, 0.200 kWh; expected 38.0 gCO2eq, 0.0100 USD; baseline (now, home) 100.0 gCO2eq, 0.0120 USD; saved 60.0 gCO2eq (60.0%), 0.00200 USD
    skipped 1 artifact that could not be read
    >>> worse = {"total": {**summarize([{"flow": "etl", "job": "r1", "outcome": "completed", "realized_g": 11.4, "realized_kwh": 0.1,
    ...          "realized_usd": 0.012, "baseline_realized_g_per_kwh": 100.0, "baseline_realized_kwh": 0.1, "baseline_realized_usd": 0.01}])["total"]}}
    >>> render_report(worse)[0].rsplit("; ", 1)[1]
    'emitted 1.40 gCO2eq (14.0%) more, cost 0.00200 USD more'
    >>> render_report({"total": {**worse["total"], "saved_usd": {"value": 0.002, "jobs": 1}}})[0].rsplit("; ", 1)[1]
    'emitted 1.40 gCO2eq (14.0%) more, saved 0.00200 USD'
    >>> tiny = {"saved_g": {"value": -0.0004, "jobs": 1}, "saved_pct": {"value": -0.004, "jobs": 1}}
    >>> render_report({"total": {**worse["total"], **tiny}})[0].rsplit("; ", 1)[1]
    'saved 0.0 gCO2eq (0.0%), cost 0.00200 USD more'
    >>> small = {"saved_g": {"value": -0.04, "jobs": 1}, "saved_pct": {"value": -40.0, "jobs": 1}}  # 0.0 g, but 40 % more
    >>> render_report({"total": {**worse["total"], **small}})[0].rsplit("; ", 1)[1]
    'emitted 0.0400 gCO2eq (40.0%) more, cost 0.00200 USD more'
    """
    t = doc["total"]
    jobs = t["jobs"]

    def part(key: str, unit: str, sign: float = 1.0, sig: bool = True) -> str:
        figure = t[key]
        text = f"{_num(None if figure['value'] is None else sign * figure['value'], _DIGITS[key], sig)} {unit}"
        return text if figure["jobs"] == jobs else f"{text} [{figure['jobs']}/{jobs}]"  # the table's mark, not "over 5 of 6 jobs" x 8

    def outcome(key: str, unit: str, more: str, pct: float | None = None, saved: str = "saved ") -> str:
        """``saved 4.5 gCO2eq (93.3%)``, or ``emitted 1.4 gCO2eq (14.0%) more`` for a negative saving (review 46a L2)."""
        value = t[key]["value"]
        # a loss whose grams round to 0.0 may still be 40 % more (a short job, review 46f M1): only when both round
        # to nothing is it "saved 0.0 (0.0%)", not "emitted 0.0 (0.0%) more" nor "-0.0" (review 46d L6)
        if value is not None and value < 0 and (round(-value, _DIGITS[key]) > 0 or (pct is not None and round(-pct, 1) > 0)):
            return f"{more} {part(key, unit, -1.0)}" + ("" if pct is None else f" ({-pct:.1f}%)") + " more"
        loss = value is not None and value < 0  # a rounding-level one: "saved 0.0", not its significant digits
        return f"{saved}{part(key, unit, -1.0 if loss else 1.0, sig=not loss)}" + ("" if pct is None else f" ({abs(pct):.1f}%)")

    carbon = outcome("saved_g", "gCO2eq", "emitted", t["saved_pct"]["value"])

    plural = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")  # noqa: E731
    lines = [f"total: {plural(jobs, 'job')}, {plural(t['segments'], 'segment')} ({t['segments_completed']} completed, "
             f"{t['segments_continued']} continued, {t['segments_failed']} failed); realized {part('realized_g', 'gCO2eq')}, "
             f"{part('realized_usd', 'USD')}, {part('realized_kwh', 'kWh')}; expected {part('expected_g', 'gCO2eq')}, "
             f"{part('expected_usd', 'USD')}; baseline (now, home) {part('baseline_g', 'gCO2eq')}, {part('baseline_usd', 'USD')}; "
             f"{carbon}, {outcome('saved_usd', 'USD', 'cost', saved='' if carbon.startswith('saved') else 'saved ')}"]
    partial = any(row[k]["jobs"] not in (0, row["jobs"]) for row in [*doc.get("flows", []), t] for k in FIGURES)
    if partial:
        lines.append("[n/m]: the sum covers n of the flow's m jobs; the others do not know that figure "
                     "(no realized intensity, no price for a local run, no plan, a failed segment, or an artifact from before CaRE recorded it)")
    fell_back = t.get(ENERGY_USED_JOBS) or 0
    if fell_back:
        flows = [f"{row['flow']}: {row[ENERGY_USED_JOBS]}" for row in doc.get("flows", []) if row.get(ENERGY_USED_JOBS)]
        shown = ", ".join(flows[:10]) + (f" and {len(flows) - 10} more flows" if len(flows) > 10 else "")
        lines.append(f"baseline gCO2eq of {fell_back} of {t['baseline_g']['jobs']} jobs ({shown}) is on the energy of the "
                     "instance that ran, not the home-sized instance: their care-realized artifacts have no baseline_realized_kwh "
                     "(written before CaRE recorded it, or the home-sized instance was not known at the measured CPU use)")
    if t.get("jobs_unfinished"):
        shown = ", ".join(f"{u['flow']}: {u['continuation']} ({u['state']})" if u["continuation"]
                          else f"{u['flow']}: job {u['job']} (no continuation run: retry the run that paused, which then does the rest)"
                          for u in t["unfinished"][:10]) + (f" and {len(t['unfinished']) - 10} more" if len(t["unfinished"]) > 10 else "")
        what = ("retry that run to do the rest of the work" if all(u["continuation"] for u in t["unfinished"])
                else "retry the stopped continuation, or the run that paused where there is none, to do the rest of the work")
        lines.append(f"unfinished: {plural(t['jobs_unfinished'], 'job')} paused at a checkpoint and the run that was to continue "
                     f"{'it' if t['jobs_unfinished'] == 1 else 'them'} stopped or is missing ({shown}); {what}")
    if t.get("jobs_waiting"):
        lines.append(f"waiting: {plural(t['jobs_waiting'], 'job')} paused at a checkpoint, continuation scheduled or running")
    deferred = _deferred_line(doc.get("deferred_runs") or [])
    if deferred:
        lines.append(deferred)
    if doc.get("skipped"):
        lines.append(f"skipped {plural(doc['skipped'], 'artifact')} that could not be read")
    return lines


REPORT_KEY = "care-report"
_NO_API_URL = ("(none: PREFECT_API_URL is not set, so a temporary server on this machine's Prefect database (PREFECT_HOME): "
               "runs on other servers are not included)")
_COLUMNS = ("realized_kwh", "realized_g", "realized_usd", "expected_g", "expected_usd", "baseline_g", "baseline_usd", "saved_g", "saved_pct",
            "saved_usd")
_HEADERS = ("flow", "jobs", "segments", "kWh", "realized g", "realized USD", "expected g", "expected USD", "baseline g", "baseline USD",
            "saved g", "saved %", "saved USD")


def _table_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row of cells per flow, in :data:`_HEADERS` order (the terminal table and the artifact)."""
    return [(row["flow"], str(row["jobs"]), f"{row['segments']} ({row['segments_completed']}/{row['segments_continued']}/{row['segments_failed']})",
             *(_cell(row[k], row["jobs"], _DIGITS[k], sig=k != "saved_pct") for k in _COLUMNS)) for row in doc["flows"]]


def report_markdown(doc: dict[str, Any]) -> str:
    """The report as markdown (what ``--publish`` puts in the Prefect UI): title, per-flow table, total line.

    >>> doc = summarize([{"flow": "etl", "job": "r1", "outcome": "completed", "realized_g": 40.0,
    ...        "realized_kwh": 0.2, "realized_usd": 0.01, "expected_g": 38.0, "expected_usd": 0.01, "baseline_realized_g_per_kwh": 500.0,
    ...        "baseline_realized_kwh": 0.2, "baseline_realized_usd": 0.012}])
    >>> print(report_markdown({"start": "2026-03-01T00:00:00+00:00", "end": "2026-03-08T00:00:00+00:00", "skipped": 0, **doc}), end="")
    # CaRE report 2026-03-01T00:00:00+00:00 -> 2026-03-08T00:00:00+00:00
    <BLANKLINE>
    | flow | jobs | segments | kWh | realized g | realized USD | expected g | expected USD | baseline g | baseline USD | saved g | saved % | saved USD |
    |---|---|---|---|---|---|---|---|---|---|---|---|---|
    | etl | 1 | 1 (1/0/0) | 0.200 | 40.0 | 0.0100 | 38.0 | 0.0100 | 100.0 | 0.0120 | 60.0 | 60.0 | 0.00200 |
    <BLANKLINE>
    total: 1 job, 1 segment (1 completed, 0 continued, 0 failed); realized 40.0 gCO2eq, 0.0100 USD, 0.200 kWh; expected 38.0 gCO2eq, 0.0100 USD; baseline (now, home) 100.0 gCO2eq, 0.0120 USD; saved 60.0 gCO2eq (60.0%), 0.00200 USD
    <BLANKLINE>
    g: gCO2eq; expected g and USD: the plan's figures for the job's expected duration; baseline g and USD: the time the job really ran, on the home-sized instance, now, at home (the decision artifact's baseline is for the expected duration); segments: completed/continued/failed.
    """
    lines = [f"# {_title(doc)}".replace("|", "\\|"), ""]
    if doc["flows"]:
        lines += ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _table_rows(doc)]
        lines += ["", *render_report(doc), "", _CAPTION + "."]
    else:
        which = " of these flows" if doc.get("flows_requested") else ""
        lines.append(f"No care-realized artifacts{which} in this period: @care flow runs publish one when their body ends, the controller one for each run it planned once that run ended.")
        deferred = _deferred_line(doc.get("deferred_runs") or [])
        if deferred:
            lines += ["", deferred]
    return "\n".join(lines) + "\n"


def report_key(flows: Sequence[str] | None) -> str:
    """The artifact key a report is published under: :data:`REPORT_KEY` for every flow; a report of
    some flows only gets its own key, so it never becomes the latest version of the full history.

    >>> report_key(None), report_key(["ETL nightly", "train_v2"])
    ('care-report', 'care-report-etl-nightly-train-v2')
    """
    if not flows:
        return REPORT_KEY
    import hashlib

    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(sorted(flows)).lower()).strip("-")
    if len(slug) > 60 or not slug:
        slug = f"{slug[:40].strip('-')}-{hashlib.sha1('|'.join(sorted(flows)).encode()).hexdigest()[:8]}".strip("-")
    return f"{REPORT_KEY}-{slug}"


def _title(doc: dict[str, Any]) -> str:
    which = f" of {', '.join(doc['flows_requested'])}" if doc.get("flows_requested") else ""
    return f"CaRE report{which} {doc['start']} -> {doc['end']}"


def _publish(doc: dict[str, Any]) -> str:
    from prefect.artifacts import create_markdown_artifact

    total = doc["total"]
    pct = total["saved_pct"]["value"]
    saved = "" if total["saved_g"]["value"] is None else f": saved {total['saved_g']['value']:,.1f} gCO2eq" + ("" if pct is None else f" ({pct:.1f}%)")
    return str(create_markdown_artifact(markdown=report_markdown(doc), key=report_key(doc.get("flows_requested")),
                                        description=f"{_title(doc)}{saved}"[:500], _sync=True))


def report_flow_body(since: str | None = "1d", start: str | None = None, end: str | None = None,
                     flows: list[str] | None = None) -> dict[str, Any]:
    """Build the report of ``[end - since, end)``, or ``[start, end)`` when ``start`` is given, and
    publish it as the current flow run's markdown artifact (:func:`report_key`); returns the report
    document with ``published_artifact_id``. ``end`` defaults to the run's scheduled start (so a
    daily schedule reports back-to-back days however late its runs start), else now. The body of
    :data:`care_flows.orchestration.report_flow.report_flow`."""
    if end is None:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        scheduled = ctx.flow_run.expected_start_time if ctx is not None and ctx.flow_run is not None else None
        end = pd.Timestamp(scheduled).isoformat() if scheduled is not None else None
    begin, until = _period(None if start is not None else since, start, end, names=("since", "start", "end"), default_since="1d")
    doc = build_report(begin, until, flows=flows)
    doc["published_artifact_id"] = _publish(doc)
    return doc


def publish_report(start: pd.Timestamp, end: pd.Timestamp, *, flows: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the ``care-report`` flow for ``[start, end)``: the report document, published in the
    Prefect UI as the :data:`REPORT_KEY` artifact of that run (the Artifacts page keeps every
    publication as a version). An unreachable API raises a one-line
    :class:`~care_flows.errors.OrchestrationError`."""
    from care_flows.timeutil import iso

    from care_flows.orchestration.report_flow import report_flow

    with _one_line_api_failures():
        return report_flow(since=None, start=iso(start), end=iso(end), flows=list(flows) if flows else None)


def _period(since: str | None, start: str | None, end: str | None, *, names: tuple[str, str, str] = ("--since", "--start", "--end"),
            default_since: str = "7d") -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[begin, end)`` from the options (``names``: how the errors call them)."""
    from care_flows.timeutil import parse_duration, parse_time, utcnow

    n_since, n_start, n_end = names
    if since is not None and start is not None:
        raise ConfigError(f"give {n_since} ({since}) or {n_start} ({start}), not both")
    until = parse_time(end, name=n_end) if end is not None else utcnow()
    if start is not None:
        begin = parse_time(start, name=n_start)
    else:
        span = parse_duration(since or default_since, name=n_since)
        if span.total_seconds() <= 0:
            raise ConfigError(f"{n_since} {since!r} must be positive, e.g. 7d or 24h")
        begin = until - pd.Timedelta(span)
    if begin >= until:
        raise ConfigError(f"the period starts ({begin.isoformat()}) at or after it ends ({until.isoformat()}); "
                          f"give an earlier {n_start} or a later {n_end}")
    return begin, until
