"""``care plan``: when to run a job before its deadline, on a carbon forecast.

The forecast comes from a carbon signal (:mod:`care_flows.signals`): the embedded traces, a live
provider, or an Electricity Maps CSV (``--carbon-csv``). A forecast issued at ``--now`` uses only
data before ``--now`` (the issue time is ``--now`` floored to the data's step, so the current slot
is covered without peeking); ``--oracle`` plans on the actual rows instead and says so
(``forecast_model: "oracle"``). Planning itself is :mod:`care_flows.planning.windows`.

A deadline that cannot be met (``--within`` shorter than ``--duration``) is not an error: the job
runs now with a warning, and ``latest_start`` is ``null`` in JSON ("none" in the text output). A
deadline before ``--now`` is bad input (exit 2). Warnings are ``warning:`` lines on stderr, with or
without ``--json``; the JSON lists them in ``warnings``.

Example::

    care plan --zone ES --now 2023-06-01T08:00:00Z --duration 2h --within 24h --json
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import pandas as pd
import typer

from care_flows.cli import check_source_kind, check_source_zone, emit_json, fallbacks_reported_here, known_region, warn
from care_flows.errors import ConfigError, DataError, DeadlineError, UnknownZoneError
from care_flows.timeutil import iso, parse_duration, parse_time, utcnow

__all__ = ["register", "load_forecast", "build_plan"]

SOURCES = ("embedded", "electricitymaps", "watttime", "gb")
KINDS = ("lifecycle", "direct", "marginal")


def _check_history_before(signal: Any, zone: str, now: pd.Timestamp, issue: pd.Timestamp) -> None:
    """A one-line error naming from when a trace signal can forecast, when ``--now`` is before that
    (a forecast needs at least two rows before its issue time; one day of them is the sensible start).

    >>> from care_flows.signals import get_signal
    >>> _check_history_before(get_signal("embedded"), "ES", pd.Timestamp("2019-06-01T08:00Z"), pd.Timestamp("2019-06-01T08:00Z"))
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: --now 2019-06-01T08:00:00+00:00 is before the embedded data for ES can forecast: it starts 2021-01-01T00:00:00+00:00 and a forecast needs the history before --now; give --now from 2021-01-02T00:00:00+00:00 on
    """
    trace = getattr(signal, "trace", None)
    if trace is None:
        return
    rows = trace(zone)
    if len(rows) < 2:
        return
    first = rows.index[0] + pd.Timedelta(getattr(signal, "shift", None) or 0)
    if issue <= first + (rows.index[1] - rows.index[0]):
        raise DataError(f"--now {iso(now)} is before the {signal.name} data for {zone} can forecast: it starts {iso(first)} and a "
                        f"forecast needs the history before --now; give --now from {iso(first + pd.Timedelta('1D'))} on")


def _no_embedded_data(region: str, *, carbon_csv: bool = True) -> str | None:
    """Why ``region`` cannot be planned on the embedded data (its grid zone has none), else ``None``
    (``carbon_csv``: the command has a ``--carbon-csv`` option to suggest).

    >>> _no_embedded_data("eu-south-2") is None
    True
    >>> print(_no_embedded_data("us-east-1"))
    region us-east-1 (grid zone US-MIDA-PJM) has no embedded data; embedded regions: eu-south-2 (ES), eu-north-1 (SE), eu-central-1 (DE), eu-west-3 (FR), eu-west-2 (GB); use --source electricitymaps or watttime (live, with credentials), or --zone US-MIDA-PJM --carbon-csv FILE
    """
    from care_flows.data import EMBEDDED_ZONES
    from care_flows.regions import REGIONS, region_info

    info = region_info(region)
    if info.embedded_zone is not None:
        return None
    embedded = [f"{r.name} ({r.embedded_zone})" for z in EMBEDDED_ZONES for r in REGIONS.values() if r.embedded_zone == z]
    return (f"region {info.name} (grid zone {info.zone}) has no embedded data; embedded regions: {', '.join(embedded)}; "
            f"use --source electricitymaps or watttime (live, with credentials)"
            + (f", or --zone {info.zone} --carbon-csv FILE" if carbon_csv else ""))


def no_embedded_zone(zone: str, *, carbon_csv: bool = True) -> str:
    """The one-line error for a ``--zone`` the embedded data does not cover, in the command's options.

    >>> print(no_embedded_zone("XX", carbon_csv=False))
    --zone 'XX' has no embedded data; embedded zones are ES, SE, DE, FR, GB; use a live --source (electricitymaps or watttime, with credentials) for others
    """
    from care_flows.data import EMBEDDED_ZONES

    return (f"--zone {zone!r} has no embedded data; embedded zones are {', '.join(EMBEDDED_ZONES)}; use a live --source "
            f"(electricitymaps or watttime, with credentials){' or --carbon-csv FILE' if carbon_csv else ''} for others")


def is_no_embedded_zone(exc: Exception) -> bool:
    """``exc`` is the embedded data's "zone 'XX' has no embedded data" (not another zone error)."""
    text = str(exc)
    return text.startswith("zone ") and " has no embedded data" in text


def load_forecast(
    *,
    zone: str,
    now: pd.Timestamp,
    deadline: pd.Timestamp,
    source: str = "embedded",
    kind: str | None = None,
    carbon_csv: str | list[str] | None = None,
    oracle: bool = False,
) -> pd.Series:
    """The carbon forecast (g/kWh) covering ``[now, deadline)``, issued at ``now`` (no peeking).

    With ``oracle=True`` (trace sources only) the actual rows are returned, labelled ``oracle``.

    >>> now = pd.Timestamp("2023-06-01T08:30:00Z")
    >>> fc = load_forecast(zone="ES", now=now, deadline=now + pd.Timedelta("6h"))
    >>> fc.index[0].isoformat(), fc.attrs["source"], fc.attrs["forecast_model"] != "oracle"
    ('2023-06-01T08:00:00+00:00', 'embedded', True)
    """
    from care_flows.signals import TraceSignal, get_signal
    from care_flows.signals.base import slot_step

    if carbon_csv is not None:
        try:
            signal = TraceSignal.from_csv(carbon_csv, kind=kind or "lifecycle")
        except DataError as exc:  # repair='interpolate' is a Python argument; this command has no such option
            raise DataError(re.sub(r" or pass repair='interpolate' \([^)]*\)", "", str(exc))) from None
        if not zone:
            zones = signal.zones()
            if len(zones) != 1:
                shown = carbon_csv if isinstance(carbon_csv, str) else " + ".join(map(str, carbon_csv))
                raise ConfigError(f"{shown} holds zones {', '.join(zones)}; pick one with --zone")
            zone = zones[0]
    else:
        if oracle and source != "embedded":
            raise ConfigError(f"--oracle needs recorded data: use --carbon-csv or --source embedded, not {source}")
        signal = get_signal(source, kind=kind)
    issue = now.floor(slot_step(signal, zone))
    horizon = deadline - issue
    if not oracle:
        _check_history_before(signal, zone, now, issue)
    if oracle:
        trace = signal.trace(zone)
        step = slot_step(signal, zone)
        if issue < trace.index[0] or deadline > trace.index[-1] + step:
            raise DataError(
                f"--oracle plans on the recorded rows of the window, and the {signal.name} data for {zone} covers "
                f"{iso(trace.index[0])} to {iso(trace.index[-1] + step)}, not {iso(issue)}..{iso(deadline)}; "
                "give --now and --deadline/--within inside it, or drop --oracle")
        return signal.forecast(zone, issue, horizon, oracle=True)
    forecast = signal.forecast(zone, issue, horizon)
    trace = getattr(signal, "trace", None)
    if trace is not None:
        last = trace(zone).index[-1]
        if issue - last > pd.Timedelta("2D"):
            forecast.attrs["stale_warning"] = (
                f"the {forecast.attrs.get('source', source)} data for {zone} ends {iso(last)}; this forecast for "
                f"{iso(issue)} extrapolates from it (give --now within the data or a live --source)"
            )
    return forecast


def build_plan(
    forecast: pd.Series,
    *,
    now: pd.Timestamp,
    duration: pd.Timedelta,
    deadline: pd.Timestamp,
    interruptible: bool = False,
    min_segment: pd.Timedelta | None = None,
    max_segments: int | None = None,
    threshold_g_per_kwh: float | None = None,
    percentile: float | None = None,
):
    """Dispatch to the contiguous, interruptible or threshold planner (threshold mode needs
    ``interruptible=True``, as in ``CarePolicy``).

    >>> idx = pd.date_range("2023-06-01", periods=4, freq="h", tz="UTC")
    >>> fc = pd.Series([90.0, 10.0, 80.0, 20.0], index=idx)
    >>> p = build_plan(fc, now=idx[0], duration=pd.Timedelta("2h"), deadline=idx[0] + pd.Timedelta("4h"), interruptible=True)
    >>> p.mode, [s.start.hour for s in p.segments], p.expected_g_per_kwh
    ('interruptible', [1, 3], 15.0)
    """
    from care_flows.planning.windows import plan_contiguous, plan_interruptible, plan_threshold

    if threshold_g_per_kwh is not None or percentile is not None:
        if not interruptible:
            raise ConfigError("threshold mode runs the job in green segments, which needs interruptible=True")
        return plan_threshold(forecast, duration, now, deadline, threshold_g_per_kwh=threshold_g_per_kwh, percentile=percentile)
    if interruptible:
        return plan_interruptible(forecast, duration, now, deadline, min_segment=min_segment, max_segments=max_segments)
    return plan_contiguous(forecast, duration, now, deadline)


def run_now_unless_it_saves(plan: Any, forecast: pd.Series, now: pd.Timestamp, min_savings_pct: float) -> Any:
    """``plan``, or running at ``now`` when waiting saves less than ``min_savings_pct`` % of run-now's
    carbon (a policy's ``min_savings_pct``): the run-now plan with ``plan``'s deadline and latest
    start, mode ``now`` and a warning saying why. 0 keeps every plan (ties already go to the
    earliest start), and so does an infeasible plan (it runs now already).

    >>> idx = pd.date_range("2023-06-01", periods=4, freq="h", tz="UTC")
    >>> fc = pd.Series([100.0, 99.5, 100.0, 100.0], index=idx)
    >>> p = build_plan(fc, now=idx[0], duration=pd.Timedelta("1h"), deadline=idx[-1])
    >>> p.start.hour, round(p.expected_savings_pct, 2)
    (1, 0.5)
    >>> q = run_now_unless_it_saves(p, fc, idx[0], 1.0)
    >>> q.mode, q.start.hour, q.expected_savings_pct, q.latest_start == p.latest_start, q.warnings[-1][:40]
    ('now', 0, 0.0, True, 'waiting saves 0.5% of carbon, below --mi')
    """
    from dataclasses import replace

    from care_flows.planning.windows import plan_contiguous

    work = pd.Timedelta(seconds=plan.duration_s)
    starts_now = len(plan.segments) == 1 and plan.start <= now
    if min_savings_pct <= 0 or starts_now or not plan.feasible or not plan.expected_savings_pct < min_savings_pct:
        return plan
    here = plan_contiguous(forecast, work, now, now + work)
    why = (f"waiting saves {plan.expected_savings_pct:.1f}% of carbon, below --min-savings-pct {min_savings_pct:g}%: "
           f"running now (the best plan started {iso(plan.start)})")
    return replace(here, mode="now", deadline=plan.deadline, latest_start=plan.latest_start, warnings=(*plan.warnings, why),
                   expected_g_per_kwh=plan.run_now_g_per_kwh, run_now_g_per_kwh=plan.run_now_g_per_kwh, expected_savings_pct=0.0,
                   threshold_g_per_kwh=plan.threshold_g_per_kwh)


def _typed(ctx: Any, name: str) -> bool:
    """The user gave the option ``name`` (on the command line or via an environment variable), not
    left it at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _print_summary(doc: dict[str, Any], zone: str) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)  # long values (times, warnings) stay on one line
    segs = doc["segments"]
    console.print(f"[bold]{zone}[/bold] {doc['mode']} plan, {len(segs)} segment(s):")
    for s in segs:
        console.print(f"  run {s['start']} .. {s['end']}")
    console.print(
        f"expected {doc['expected_g_per_kwh']:.1f} g/kWh vs run now {doc['run_now_g_per_kwh']:.1f} g/kWh: "
        f"{doc['expected_savings_pct']:.1f}% less carbon"
    )
    if doc.get("threshold_g_per_kwh") is not None:
        console.print(f"threshold: {doc['threshold_g_per_kwh']:.1f} g/kWh")
    latest = doc["latest_start"] or "none: the deadline cannot be met (running now)"
    console.print(f"latest start meeting the deadline: {latest}")
    console.print(f"forecast: {doc['forecast_model']} from {doc['data_source']}")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        ctx: typer.Context,
        zone: Optional[str] = typer.Option(None, "--zone", help="Grid zone, e.g. ES, SE-SE3, DE (also picks the zone of a multi-zone --carbon-csv)."),
        region: Optional[str] = typer.Option(None, "--region", help="AWS region whose grid zone to plan on, e.g. eu-south-2."),
        carbon_csvs: Optional[list[str]] = typer.Option(None, "--carbon-csv", help="Electricity Maps CSV export to plan on instead of a source; repeat it for consecutive exports of one zone (e.g. 2022 and 2023: a forecast early in January reads the year before)."),
        now: Optional[str] = typer.Option(None, "--now", help="Earliest start / forecast issue time, ISO 8601 with offset (default: the current time)."),
        duration: str = typer.Option(..., "--duration", help="How long the job runs, e.g. 2h, 90m, 1h30m."),
        deadline: Optional[str] = typer.Option(None, "--deadline", help="Time by which the job must FINISH, ISO 8601 with offset."),
        within: Optional[str] = typer.Option(None, "--within", help="Deadline relative to --now, e.g. 24h (instead of --deadline)."),
        interruptible: bool = typer.Option(False, "--interruptible", help="The job may pause and resume: pick the greenest pieces of time."),
        min_segment: Optional[str] = typer.Option(None, "--min-segment", help="With --interruptible: shortest allowed run, e.g. 1h."),
        max_segments: Optional[int] = typer.Option(None, "--max-segments", help="With --interruptible: at most this many runs (each resume costs)."),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="With --interruptible: run whenever the forecast is at or below this many gCO2eq/kWh."),
        percentile: Optional[float] = typer.Option(None, "--percentile", help="With --interruptible: run whenever the forecast is at or below this percentile (above 0, below 100) of the window."),
        source: str = typer.Option("embedded", "--source", help="Carbon source: embedded, electricitymaps, watttime or gb (live ones need credentials)."),
        kind: Optional[str] = typer.Option(None, "--kind", help="Intensity kind: lifecycle or direct (marginal for watttime). Default: the source's own kind (lifecycle for embedded and --carbon-csv)."),
        oracle: bool = typer.Option(False, "--oracle", help="Plan on the actual recorded data (peeks; labelled 'oracle'). Trace sources only."),
        min_savings_pct: float = typer.Option(0.0, "--min-savings-pct", help="Run now unless waiting saves at least this % of carbon (a policy's min_savings_pct; default 0: any gain)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Choose when to run a job so it emits least, finishing by the deadline.

        Example: care plan --zone ES --now 2023-06-01T08:00:00Z --duration 2h --within 24h --json
        """
        from care_flows.regions import region_info

        csv_paths = list(carbon_csvs or [])  # several: concatenated per zone, overlaps refused (TraceSignal.from_csv)
        carbon_csv = ", ".join(csv_paths) if csv_paths else None  # for messages
        if sum(x is not None for x in (region, carbon_csv)) + (zone is not None and carbon_csv is None) != 1:
            raise ConfigError("give exactly one of --zone, --region or --carbon-csv")
        if (deadline is None) == (within is None):
            raise ConfigError("give exactly one of --deadline ISO or --within DURATION")
        if threshold is not None and percentile is not None:
            raise ConfigError("give --threshold or --percentile, not both")
        if carbon_csv is not None and _typed(ctx, "source"):  # the CSV is the source: a --source would be silently ignored
            raise ConfigError(f"give --carbon-csv or --source, not both (got --carbon-csv {carbon_csv} and --source {source}); drop one")
        if (min_segment is not None or max_segments is not None) and not interruptible:
            raise ConfigError("--min-segment and --max-segments need --interruptible")
        if source not in SOURCES:
            raise ConfigError(f"unknown --source {source!r}; use one of {', '.join(SOURCES)}")
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown --kind {kind!r}; use lifecycle, direct or marginal")
        check_source_kind("csv" if carbon_csv is not None else source, kind, csv=carbon_csv is not None)
        if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"--threshold {threshold:g} must be a finite, non-negative gCO2eq/kWh, e.g. 150")
        if percentile is not None and not 0 < percentile < 100:  # as CarePolicy.threshold_percentile
            raise ConfigError(f"--percentile {percentile:g} must be above 0 and below 100, e.g. 25")
        if (threshold is not None or percentile is not None) and not interruptible:
            # as CarePolicy (policy.py): threshold mode runs the job in green segments, so it must be able to pause
            flag = f"--threshold {threshold:g}" if threshold is not None else f"--percentile {percentile:g}"
            raise ConfigError(f"{flag} runs the job in green segments, which needs --interruptible; add it, or drop the threshold")
        if (threshold is not None or percentile is not None) and (min_segment is not None or max_segments is not None):
            raise ConfigError("--min-segment/--max-segments do not apply to threshold mode (--threshold/--percentile); drop one")
        if not (math.isfinite(min_savings_pct) and 0 <= min_savings_pct <= 100):  # as CarePolicy.min_savings_pct
            raise ConfigError(f"--min-savings-pct {min_savings_pct:g} must be between 0 and 100, e.g. 1")
        if max_segments is not None and max_segments < 1:
            raise ConfigError(f"--max-segments {max_segments} must be at least 1")
        t_now = parse_time(now, name="--now") if now is not None else utcnow().floor("s")
        dur = pd.Timedelta(parse_duration(duration, name="--duration"))
        if dur <= pd.Timedelta(0):
            raise ConfigError(f"--duration {duration!r} must be positive; give e.g. 2h")
        end_by = parse_time(deadline, name="--deadline") if deadline is not None else t_now + pd.Timedelta(parse_duration(within, name="--within"))
        if end_by < t_now:
            raise DeadlineError(f"--deadline {iso(end_by)} is before --now {iso(t_now)}; give a later deadline")
        min_seg = pd.Timedelta(parse_duration(min_segment, name="--min-segment")) if min_segment is not None else None
        if min_seg is not None and min_seg <= pd.Timedelta(0):
            raise ConfigError(f"--min-segment {min_segment!r} must be positive")
        if region is not None:
            known_region(region, name="--region")
        if region is not None and source == "embedded" and _no_embedded_data(region):  # name the region typed, not its zone
            raise UnknownZoneError(_no_embedded_data(region))
        the_zone = region_info(region).zone if region is not None else (zone or "")
        if region is not None and source == "gb":  # the GB source maps eu-west-2 to London's regional forecast, as the planner does
            the_zone = region
        if carbon_csv is None:  # --source gb is the GB grid's own API: another zone is a wrong source, not an outage
            check_source_zone(source, region if region is not None else the_zone, name="--region" if region is not None else "--zone")
        try:
            with fallbacks_reported_here():  # each fallback is one of the plan's warnings below
                forecast = load_forecast(
                    zone=the_zone, now=t_now, deadline=max(end_by, t_now + dur), source=source, kind=kind,
                    carbon_csv=None if not csv_paths else (csv_paths[0] if len(csv_paths) == 1 else csv_paths), oracle=oracle
                )
        except UnknownZoneError as exc:
            if region is None and carbon_csv is None and is_no_embedded_zone(exc):  # the option typed, not the data layer's words
                raise UnknownZoneError(no_embedded_zone(the_zone)) from None
            raise
        result = build_plan(
            forecast, now=t_now, duration=dur, deadline=end_by, interruptible=interruptible, min_segment=min_seg,
            max_segments=max_segments, threshold_g_per_kwh=threshold, percentile=percentile,
        )
        result = run_now_unless_it_saves(result, forecast, t_now, min_savings_pct)
        from care_flows.signals.base import fallback_warnings

        doc = result.to_dict()
        if min_seg is not None and min_seg > dur:  # the planner clamps it to the job: say so rather than ignore it
            doc["warnings"].insert(0, f"--min-segment {min_segment} is longer than --duration {duration}: planned as one segment")
        if forecast.attrs.get("stale_warning"):
            doc["warnings"].append(forecast.attrs["stale_warning"])
        doc["warnings"] += [f"fallback: {line}" for line in fallback_warnings(forecast)]
        model = str(forecast.attrs.get("forecast_model") or "")
        if model.split("+")[0] in ("persistence", "profile_persistence"):  # under a week of history before --now (review 45e M3)
            more = " (give the export before it too: repeat --carbon-csv)" if csv_paths else ""
            doc["warnings"].append(f"the forecast is the '{model}' fallback: the data hold under 7 days before --now, "
                                   f"the ridge model needs them{more}")
        doc.update({"zone": forecast.attrs.get("zone", the_zone), "region": region, "now": iso(t_now), "kind": forecast.attrs.get("signal") or kind or "lifecycle"})
        doc["warnings"] = warn(doc["warnings"])  # stderr, in text and --json mode alike; the JSON lists them too
        if json_out:
            emit_json(doc)
        else:
            _print_summary(doc, str(doc["zone"]))
