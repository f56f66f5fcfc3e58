"""``care regions``: score candidate regions for a run at a given time and pick one.

Each region is right-sized, its carbon forecast issued at ``--at`` (the embedded trace's
history before ``--at`` through the carbon-forecast model, or a live source with ``--source``)
is planned over ``[--at, --at + --within]``, and the options are scored under the priorities
or weights, the latency SLA and the budget (:func:`care_flows.planning.decide.decide`).

A deadline that cannot be met (``--within`` shorter than ``--duration``) is not an error, as in
``care plan``: every option still runs now and is scored; each is ``feasible: false`` with a reason
saying by how much it misses the deadline (its ``rank`` is kept), ``chosen`` is the best of them, and
one warning says so. A deadline before ``--at`` (a negative ``--within``) is bad input (exit 2).
Warnings are ``warning:`` lines on stderr, with or without ``--json``; the JSON lists them in ``warnings``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import pandas as pd
import typer

from care_flows.cli import check_source_kind, emit_json, fallbacks_reported_here, known_region, warn
from care_flows.errors import ConfigError, DataError, PlanningError, ProviderError

__all__ = ["register", "parse_list", "parse_weights", "region_forecast"]


def parse_list(text: str | None, *, name: str, example: str = "eu-south-2,eu-north-1") -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (empty items rejected, with ``example`` as the fix).

    >>> parse_list("carbon, cost", name="--priorities")
    ['carbon', 'cost']
    >>> parse_list("", name="--priorities", example="carbon,cost")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --priorities '' is not a comma-separated list; use e.g. carbon,cost
    """
    if text is None:
        return []
    items = [t.strip() for t in text.split(",")]
    if not items or any(not t for t in items):
        raise ConfigError(f"{name} {text!r} is not a comma-separated list; use e.g. {example}")
    return items


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``"carbon=0.7,cost=0.3"`` -> ``{"carbon": 0.7, "cost": 0.3}``."""
    if text is None:
        return None
    out: dict[str, float] = {}
    for item in parse_list(text, name="--weights", example="carbon=0.7,cost=0.3"):
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
        except ValueError:
            raise ConfigError(f"--weights item {item!r} is not objective=number; use e.g. carbon=0.7,cost=0.3") from None
        if key.strip() in out:  # as --priorities and --tie-break: a repeated objective is an error, not last-wins
            raise ConfigError(f"--weights gives {key.strip()} twice ({text}); give each objective once")
        out[key.strip()] = number
    return out


def region_forecast(region: str, at: pd.Timestamp, horizon: pd.Timedelta, source: str = "embedded", kind: str | None = None) -> pd.Series | None:
    """The carbon forecast (gCO2eq/kWh) for ``region`` issued at the start of the slot ``at`` falls in (the
    hour; a sub-hourly trace's step), covering ``at + horizon``; ``None`` if the source has no data for it.

    Uses :func:`care_flows.signals.get_signal` (``source`` by name, signal ``kind``, default the
    source's own: life-cycle for the embedded data and Electricity Maps; cached and
    falling back to the embedded traces for live sources); the answer's ``attrs["data_source"]``
    says who answered and with which forecast model.
    """
    from care_flows.errors import UnknownZoneError
    from care_flows.regions import region_info

    info = region_info(region)
    horizon = max(horizon, pd.Timedelta("1h"))
    try:
        from care_flows.signals import get_signal, series_meta
        from care_flows.signals.base import slot_step, zone_asked
    except ImportError:  # pragma: no cover - signals layer absent: the direct embedded path
        if source != "embedded":
            raise ConfigError(f"carbon source {source!r} is not available in this build; use --source embedded") from None
        from care_flows.data import embedded_intensity
        from care_flows.forecast.carbon import forecast_carbon

        if info.embedded_zone is None:
            return None
        fc = forecast_carbon(embedded_intensity(info.embedded_zone), at, horizon)
        fc.attrs["data_source"] = f"embedded:{info.embedded_zone} ({fc.attrs.get('forecast_model')} forecast)"
        return fc
    try:
        signal = get_signal(source, kind=kind)
        issue = at.floor(slot_step(signal, zone_asked(signal, region)))  # the slot `at` falls in, as care plan and @care (review 45e M2)
        fc = signal.forecast(region, issue, horizon + (at - issue))
    except UnknownZoneError:
        return None
    meta = series_meta(fc)
    fc.attrs["data_source"] = f"{meta.source}:{meta.zone} ({meta.forecast_model} forecast)"
    return fc


def _replay_warning(forecasts: dict[str, pd.Series], at: pd.Timestamp) -> list[str]:
    """One warning when the source asked for replays an earlier year for ``at`` (the embedded traces end
    with 2023), as ``care plan`` says; a fallback's replay is said by its own fallback line.

    >>> fc = pd.Series([1.0], index=[pd.Timestamp("2026-01-01T00:00Z")])
    >>> fc.attrs.update(zone="ES", forecast_model="ridge+replay(2023)", source="embedded")
    >>> _replay_warning({"eu-south-2": fc}, pd.Timestamp("2026-01-01T00:00Z"))
    ['the embedded data ends before 2026-01-01T00:00:00+00:00: the forecasts for ES replay 2023 (give --at within the data, 2021-2023, or a live --source)']
    """
    from care_flows.signals.base import fallback_warnings
    from care_flows.timeutil import iso

    replayed = {}
    for fc in forecasts.values():
        model = str(fc.attrs.get("forecast_model") or "")
        if "+replay(" in model and not fallback_warnings(fc):
            replayed[str(fc.attrs.get("zone"))] = (str(fc.attrs.get("source") or "embedded"), model.split("+replay(", 1)[1].rstrip(")"))
    if not replayed:
        return []
    sources = sorted({src for src, _ in replayed.values()})
    years = sorted({year for _, year in replayed.values()})
    return [f"the {'/'.join(sources)} data ends before {iso(at)}: the forecasts for {', '.join(sorted(replayed))} replay {'/'.join(years)} "
            "(give --at within the data, 2021-2023, or a live --source)"]


_TYPE_MARK = {"max_g_per_run": " (cap)", "priorities": " (lower power)"}
"""How the table marks a type other than the region's right-sized one (the JSON options' ``sized_for``)."""

FLAG_OF_FIELD = {
    "regions": "--regions", "home_region": "--home-region", "expected_duration": "--duration", "deadline_within": "--within",
    "vcpu": "--vcpu", "memory_gib": "--memory-gib", "headroom_pct": "--headroom-pct", "cpu_utilisation": "--cpu-utilisation",
    "tolerance_pct": "--tolerance-pct", "instance_type": "--instance-type", "origin_region": "--origin-region",
    "max_latency_ms": "--max-latency-ms", "budget_usd_per_run": "--budget-usd", "carbon_source": "--source", "signal": "--kind",
    "budget_usd_per_hour": "--budget-usd-per-hour", "max_g_per_run": "--max-g-per-run", "min_savings_pct": "--min-savings-pct",
    "priorities": "--priorities", "weights": "--weights", "tie_break": "--tie-break", "instance_choice": "--instance-choice",
}
"""The CarePolicy field each ``care regions`` option sets."""


def policy_error_as_flags(message: str) -> str:
    """A policy validation error in the words of ``care regions``: its options, not the policy's fields.

    >>> policy_error_as_flags("invalid CaRE policy: budget_usd_per_run: Input should be greater than 0 (got -1.0)")
    '--budget-usd: Input should be greater than 0 (got -1.0)'
    >>> policy_error_as_flags("invalid CaRE policy: priorities.1: Input should be 'carbon', 'cost', 'latency' or 'resource' (got 'foo')")
    "--priorities (item 2): Input should be 'carbon', 'cost', 'latency' or 'resource' (got 'foo')"
    >>> policy_error_as_flags("invalid CaRE policy: weights.foo.[key]: Input should be 'carbon', 'cost', 'latency' or 'resource' (got 'foo')")
    "--weights (key 'foo'): Input should be 'carbon', 'cost', 'latency' or 'resource' (got 'foo')"
    >>> policy_error_as_flags("invalid CaRE policy: origin_region: unknown region 'x'; known regions: eu-north-1")
    "--origin-region: unknown region 'x'; known regions: eu-north-1"
    """
    text = message.removeprefix("invalid CaRE policy: ")

    def flag(m: re.Match[str]) -> str:
        if m.group("item") is not None:
            where = f" (item {int(m.group('item')) + 1})"
        elif m.group("key") is not None:
            where = f" (key {m.group('key')!r})"
        else:
            where = ""
        return f"{m.group('lead')}{FLAG_OF_FIELD[m.group('field')]}{where}:"

    fields = "|".join(sorted(map(re.escape, FLAG_OF_FIELD), key=len, reverse=True))
    # a field path opens the message or one of its "; "-joined parts (not "known regions:" inside a sentence)
    return re.sub(rf"(?P<lead>^|; )(?P<field>{fields})(?:\.(?P<item>\d+)|\.(?P<key>[^.:\s]+)\.\[key\])?:", flag, text)


def _as_flag(text: str | None) -> str | None:
    """``decide``'s words for the minimum saving (the policy field) as this command's flag.

    >>> _as_flag("below the minimum saving (min_savings_pct 1%): saves 0.5% carbon")
    'below the minimum saving (--min-savings-pct 1%): saves 0.5% carbon'
    """
    return None if text is None else re.sub(r"(?<![-\w])min_savings_pct\b", FLAG_OF_FIELD["min_savings_pct"], text)


def _no_home_carbon(home: str, source: str, *, explicit: bool) -> str:
    """The one-line error for a home (baseline) region whose zone the carbon source does not cover."""
    from care_flows.regions import known_regions, region_info

    covered = [f"{r} ({region_info(r).embedded_zone})" for r in known_regions() if region_info(r).embedded_zone]
    which = "--home-region" if explicit else "--home-region (default: the first of --regions)"
    return (
        f"home region {home} (zone {region_info(home).zone}) has no carbon data from --source {source}, so there is no "
        f"baseline to compare against; use a live --source that covers it (electricitymaps or watttime, with credentials) "
        f"or a {which} whose zone is embedded, e.g. {', '.join(covered[:5])}"
    )


def _home_not_sizeable(home: str, vcpu: float, memory_gib: float, headroom_pct: float, instance_type: str | None) -> str:
    """The one-line error when no instance type in the home region can run the job (CLI options, not policy fields)."""
    if instance_type:
        return f"--instance-type {instance_type} is not offered in home region {home}; pick another type or --home-region"
    from care_flows.planning.sizing import fitting_types
    from care_flows.pricing import EmbeddedPrices

    fits = fitting_types(EmbeddedPrices().catalog(home), 1e-6, 1e-6, headroom_pct=0.0)
    big = fits.sort_values(["vcpu", "memory_gib"]).iloc[-1] if len(fits) else None
    largest = f" (largest there: {big['instance_type']}, {big['vcpu']:g} vCPU, {big['memory_gib']:g} GiB)" if big is not None else ""
    return (
        f"no instance type in home region {home} fits --vcpu {vcpu:g} and --memory-gib {memory_gib:g} with "
        f"--headroom-pct {headroom_pct:g}{largest}; ask for fewer vCPU or less memory, lower --headroom-pct, "
        "or choose another --home-region"
    )


def _one_deadline_warning(warnings: list[str], regions: list[str], *, start: pd.Timestamp, deadline: pd.Timestamp,
                          dur: pd.Timedelta) -> list[str]:
    """``warnings`` with each region's "deadline ... cannot be met" (one per region, the same words)
    replaced by one, first: the deadline is the same for every option, and so is ``care plan``'s warning.

    >>> t = pd.Timestamp("2023-06-01T00:00Z")
    >>> w = "deadline 2023-06-01T02:00:00+00:00 cannot be met: the job needs 3h but only 2h remain from 2023-06-01T00:00:00+00:00; running now"
    >>> _one_deadline_warning([f"a-1: {w}", "other", f"b-2: {w}"], ["a-1", "b-2"], start=t, deadline=t + pd.Timedelta("2h"),
    ...                       dur=pd.Timedelta("3h")) == [w, "other"]
    True
    """
    from care_flows.timeutil import format_duration, iso

    said = (f"deadline {iso(deadline)} cannot be met: the job needs {format_duration(dur)} but only "
            f"{format_duration(deadline - start)} remain from {iso(start)}; running now")
    per_region = {f"{r}: {said}" for r in regions}
    return [said, *(w for w in warnings if w not in per_region and w != said)]


def register(app: typer.Typer) -> None:
    @app.command("regions")
    def regions(
        regions_: str = typer.Option(..., "--regions", help="Candidate AWS regions, comma-separated, e.g. eu-south-2,eu-north-1."),
        at: Optional[str] = typer.Option(
            None, "--at", help="When the run would start (ISO 8601 with offset; default: the current time); the forecast is issued at the start of the hour it falls in (a sub-hourly trace: of its step)."),
        duration: str = typer.Option("1h", "--duration", help="Run time, e.g. 1h, 90m."),
        within: str | None = typer.Option(
            None, "--within", help="The run must finish within this time of --at (default: --duration, i.e. start at --at). "
            "Shorter than --duration: the deadline cannot be met, and the run starts at --at, with a warning."
        ),
        vcpu: float = typer.Option(2.0, "--vcpu", help="vCPUs the run needs at peak."),
        memory_gib: float = typer.Option(4.0, "--memory-gib", help="Memory the run needs at peak, GiB."),
        headroom_pct: float = typer.Option(20.0, "--headroom-pct", help="Capacity kept above the need when right-sizing, %."),
        cpu_utilisation: float = typer.Option(
            0.5, "--cpu-utilisation",
            help="Mean CPU use as a fraction of --vcpu (0..1): sets each type's power and a burstable type's CPU credits.",
        ),
        instance_type: str | None = typer.Option(None, "--instance-type", help="Pin an instance type instead of right-sizing."),
        instance_choice: str = typer.Option(
            "cheapest", "--instance-choice",
            help="cheapest: each region offers its right-sized (cheapest fitting) type; priorities: also each fitting type "
            "that draws less power than every cheaper one, marked (lower power), and the priorities choose the type too.",
        ),
        priorities: str | None = typer.Option(
            None, "--priorities", help="Objectives in priority order: carbon, cost, latency, resource (default carbon,cost,latency,resource)."
        ),
        weights: str | None = typer.Option(None, "--weights", help="Weighted sum instead of priorities, e.g. carbon=0.7,cost=0.3."),
        tolerance_pct: float = typer.Option(5.0, "--tolerance-pct", help="Values within this % of the best count as equal."),
        tie_break: str | None = typer.Option(
            None, "--tie-break",
            help="How to order tied options, first key first, comma-separated from home (home region first), earliest "
            "(earliest start), carbon, cost, latency, resource (exact value); then the other objectives by exact value. "
            "Default home,carbon,earliest; home,earliest runs now whenever now is within the tolerance of the best window; "
            "earliest,home prefers an earlier start elsewhere; none: exact values only.",
        ),
        origin_region: str | None = typer.Option(None, "--origin-region", help="Where users/data are; latency is measured from here."),
        max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Exclude regions with a larger round trip from the origin, ms."),
        budget_usd: float | None = typer.Option(None, "--budget-usd", help="Exclude options costing more than this per run, USD."),
        budget_usd_per_hour: float | None = typer.Option(
            None, "--budget-usd-per-hour", help="Exclude instance types dearer than this per hour (list price + CPU credits), USD."
        ),
        max_g_per_run: float | None = typer.Option(None, "--max-g-per-run", help="Exclude options that emit more than this per run, gCO2eq (a region whose right-sized type breaks it at every start also offers its cheapest type that meets it, marked (cap))."),
        min_savings_pct: float | None = typer.Option(
            None, "--min-savings-pct", help="Move or defer only if it saves at least this % of carbon against run-now-at-home (policy default 1)."
        ),
        home_region: str | None = typer.Option(None, "--home-region", help="Baseline region (default: the first of --regions)."),
        source: str = typer.Option("embedded", "--source", help="Carbon source: embedded (trace + forecast model) or a live source name."),
        kind: Optional[str] = typer.Option(None, "--kind", help="Signal kind: lifecycle or direct (marginal for watttime). Default: the source's own kind."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Score regions for one run (carbon, cost, latency, waste) and choose one."""
        from care_flows.latency import LATENCY_SOURCE
        from care_flows.planning.decide import decide
        from care_flows.policy import load_policy
        from care_flows.signals.base import fallback_warnings
        from care_flows.timeutil import format_duration, iso, parse_duration, parse_time, utcnow

        names = parse_list(regions_, name="--regions")
        for r in names:
            known_region(r, name="--regions")
        numbers = {"--vcpu": (vcpu, "2"), "--memory-gib": (memory_gib, "4"), "--headroom-pct": (headroom_pct, "20"), "--cpu-utilisation": (cpu_utilisation, "0.5"),
                   "--tolerance-pct": (tolerance_pct, "5"), "--max-latency-ms": (max_latency_ms, "100"), "--budget-usd": (budget_usd, "0.5"),
                   "--budget-usd-per-hour": (budget_usd_per_hour, "0.1"), "--max-g-per-run": (max_g_per_run, "50"),
                   "--min-savings-pct": (min_savings_pct, "1")}
        for option, (number, example) in numbers.items():
            if number is not None and math.isnan(number):  # NaN slips past range checks, or fails them with a message that hides it
                raise ConfigError(f"{option} nan is not a number; give e.g. {option} {example}")
            if number is not None and math.isinf(number) and option not in ("--max-latency-ms", "--budget-usd", "--budget-usd-per-hour", "--max-g-per-run"):  # inf there: no cap
                raise ConfigError(f"{option} {number:g} is not a finite number; give e.g. {option} {example}")
        if cpu_utilisation is not None and not 0 <= cpu_utilisation <= 1:  # a percentage typed for a fraction (review 44a L3)
            raise ConfigError(f"--cpu-utilisation {cpu_utilisation:g} must be between 0 and 1, e.g. 0.5 for 50%")
        if kind is not None and kind not in ("lifecycle", "direct", "marginal"):
            raise ConfigError(f"--kind {kind!r} is not a signal kind; use lifecycle, direct or marginal")
        check_source_kind(source, kind)
        if weights is not None and priorities is not None:
            raise ConfigError("give --priorities or --weights, not both: weights replace the priority order")
        start = parse_time(at, name="--at") if at is not None else utcnow().floor("s")  # as care plan --now (review 44a L6)
        dur = pd.Timedelta(parse_duration(duration, name="--duration"))
        if dur <= pd.Timedelta(0):
            raise ConfigError(f"--duration {duration!r} must be positive, e.g. 1h")
        window = pd.Timedelta(parse_duration(within, name="--within")) if within else dur  # a negative one is an error there
        deadline = start + window
        # a deadline that cannot be met is not an error (as in care plan): every option runs now, and says it misses the
        # deadline; the policy (which refuses a job longer than its deadline_within) gets the run time, the deadline is passed on
        missed = window < dur
        policy: dict[str, Any] = {
            "home_region": home_region or names[0],
            "regions": names,
            "expected_duration": dur.to_pytimedelta(),
            "deadline_within": max(window, dur).to_pytimedelta(),
            "vcpu": vcpu,
            "memory_gib": memory_gib,
            "headroom_pct": headroom_pct,
            "cpu_utilisation": cpu_utilisation,
            "tolerance_pct": tolerance_pct,
            "instance_type": instance_type,
            "instance_choice": instance_choice,
            "origin_region": origin_region,
            "max_latency_ms": max_latency_ms,
            "budget_usd_per_run": budget_usd,
            "budget_usd_per_hour": budget_usd_per_hour,
            "max_g_per_run": max_g_per_run,
            "min_savings_pct": min_savings_pct,
            "carbon_source": source,
            "signal": kind,
        }
        if priorities is not None:
            policy["priorities"] = parse_list(priorities, name="--priorities", example="carbon,cost")
        if weights is not None:
            policy["weights"] = parse_weights(weights)
        if tie_break is not None:
            keys = [t.strip() for t in tie_break.split(",") if t.strip()]
            policy["tie_break"] = [] if keys == ["none"] else keys
        try:
            pol = load_policy({k: v for k, v in policy.items() if v is not None})
        except ConfigError as exc:  # the policy's field names are not what the user typed: name the flags
            raise ConfigError(policy_error_as_flags(str(exc))) from None
        from care_flows.orchestration.plan import ask_each

        def ask(r: str) -> pd.Series | None:
            with fallbacks_reported_here():  # each fallback is one of the warnings below
                return region_forecast(r, start, max(window, dur), source, kind)

        forecasts, unserved = {}, []
        for r, answer in ask_each(ask, list(pol.candidate_regions)):  # at once: a slow provider costs its time once
            try:
                if isinstance(answer, BaseException):
                    raise answer
                fc = answer
            except DataError as exc:
                raise DataError(f"no carbon forecast for {r} at {iso(start)}: {exc}") from None
            except ProviderError as exc:  # every source failed for this region: a row without carbon data, as decide does
                if r == pol.home_region:
                    raise
                unserved.append(f"no carbon forecast for {r} from --source {source} (every source failed: "
                                f"{' '.join(str(exc).split())[:240]}); scored without carbon data")
                continue
            if fc is not None:
                forecasts[r] = fc
        fallbacks = [f"fallback: {line}" for fc in forecasts.values() for line in fallback_warnings(fc)] + unserved
        fallbacks += _replay_warning(forecasts, start)
        if pol.home_region not in forecasts:
            raise DataError(_no_home_carbon(pol.home_region, source, explicit=home_region is not None))
        try:
            d = decide(pol, forecasts, start, deadline=deadline)
        except PlanningError as exc:
            if pol.home_region not in exc.reasons:
                raise
            raise ConfigError(_home_not_sizeable(pol.home_region, vcpu, memory_gib, headroom_pct, instance_type)) from None
        doc = d.to_dict()
        keep = ("region", "zone", "instance_type", "start", "end", "usd_per_hour", "credit_usd_per_hour", "g_per_kwh", "kwh", "expected_g",
                "expected_usd", "latency_ms", "waste_vcpu", "waste_memory_gib", "feasible", "reason", "below_min_saving", "rank", "kind",
                "data_source", "sized_for")
        options = [{k: row.get(k) for k in keep} for row in doc["options"]]
        for o in options:  # the minimum saving in the words of this command (review 42f L2)
            o["reason"] = _as_flag(o["reason"])
        warnings = [*fallbacks, *map(_as_flag, doc["warnings"])]
        if missed:
            warnings = _one_deadline_warning(warnings, pol.candidate_regions, start=start, deadline=deadline, dur=dur)
            for o in options:
                late = pd.Timestamp(o["end"]) - deadline
                o["reason"] = "; ".join(r for r in (o["reason"], f"misses the deadline {iso(deadline)} by {format_duration(late)}") if r)
                o["feasible"] = False  # its rank is kept: the options are scored as usual, and the best one runs now
        out = {
            "at": iso(start),
            "deadline": iso(deadline),
            "feasible": any(o["feasible"] for o in options),  # the deadline, budget, latency and carbon caps all met by one option
            "duration_s": dur.total_seconds(),
            "options": options,
            "chosen": doc["chosen"],
            "baseline": doc["baseline"],
            "savings_g": doc["savings_g"],
            "savings_pct": doc["savings_pct"],
            "savings_usd": doc["savings_usd"],
            "abatement_usd_per_tco2": doc["abatement_usd_per_tco2"],
            "is_now_here": doc["is_now_here"],
            "warnings": warnings,
            "data_source": doc["data_source"],
            "latency_source": LATENCY_SOURCE,
            "priorities": [p.value for p in pol.priorities] if not pol.weights else None,
            "weights": {k.value: v for k, v in pol.weights.items()} if pol.weights else None,
            "tie_break": list(pol.tie_break),
        }
        out["warnings"] = warn(out["warnings"])  # stderr, in text and --json mode alike; the JSON lists them too
        if json_out:
            emit_json(out)
            return
        from rich.console import Console
        from rich.table import Table

        from care_flows.accounting import format_sig

        table = Table(title=f"CaRE regions at {iso(start)} for {duration}")
        for col in ("rank", "region", "start (UTC)", "instance", "USD/h", "g/kWh", "gCO2eq", "USD", "RTT ms", "feasible / reason"):
            table.add_column(col)
        for o in options:
            f = lambda v, p: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
            sig = lambda v, p: "-" if v is None else format_sig(v, min_digits=p)  # noqa: E731 - a 10 s run's grams are not 0.00
            table.add_row(
                "-" if o["rank"] is None else str(int(o["rank"])), o["region"], str(o["start"])[:16].replace("T", " "),
                (o["instance_type"] or "-") + _TYPE_MARK.get(o.get("sized_for") or "", ""),
                f(o["usd_per_hour"], 4) + (f" +{o['credit_usd_per_hour']:.4f}" if o.get("credit_usd_per_hour") else ""),
                f(o["g_per_kwh"], 0), sig(o["expected_g"], 2), sig(o["expected_usd"], 4),
                f(o["latency_ms"], 1), "yes" if o["feasible"] else o["reason"],
            )
        console = Console(width=max(Console().width, 140), soft_wrap=True)
        console.print(table)
        c = out["chosen"]
        g = "unknown" if c["expected_g"] is None else format_sig(c["expected_g"], min_digits=2)
        usd = "unknown" if c["expected_usd"] is None else format_sig(c["expected_usd"], min_digits=4)
        console.print(f"chosen: {c['region']} {c['instance_type']} at {c['start']} ({g} gCO2eq, {usd} USD)")
        if within is None:  # the default window is the run itself: no later start was weighed (review 44a L6)
            console.print("(only starting at --at was scored: add --within, e.g. --within 24h, to weigh later windows too)")
