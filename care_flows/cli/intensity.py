"""``care intensity``: print a carbon-intensity series (gCO2eq/kWh) from any carbon source.

The embedded traces end with 2023. A window after them is answered, as ``care plan`` does, by
replaying the trace whole 52-week periods earlier (weekdays line up); the answer is labelled
(``source`` ``embedded+replay(2023)``, ``replayed_from`` in JSON only then, a warning), never
passed off as measured data. A window before the data stays an error.

Warnings (a replay, a live source's fallback) are ``warning:`` lines on stderr, with or without
``--json``; the JSON lists them in ``warnings``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pandas as pd
import typer

from care_flows.cli import check_source_kind, check_source_zone, emit_json, fallbacks_reported_here, known_region, warn

__all__ = ["register", "replayed_history"]

_YEAR_WEEKS = pd.Timedelta(weeks=52)


def replayed_history(zone: str, start: pd.Timestamp, end: pd.Timestamp, kind: str | None = None) -> tuple[pd.Series, pd.Timestamp, pd.Timestamp] | None:
    """Embedded history for a window that ends after the trace: its measured rows, then the rest
    replayed from an earlier year (whole 52-week steps, so weekdays line up); ``None`` if not replayable.

    Returns the series (labelled at the asked times), the first replayed time, and the trace time it
    was copied from. A window that starts inside the data keeps its measured rows (review 45e M1: the
    whole window was shifted, measured rows included).

    >>> s, first, src = replayed_history("ES", pd.Timestamp("2026-06-01T00:00Z"), pd.Timestamp("2026-06-01T02:00Z"))
    >>> len(s), first.isoformat(), src.isoformat()
    (2, '2026-06-01T00:00:00+00:00', '2023-06-05T00:00:00+00:00')
    >>> s, first, src = replayed_history("ES", pd.Timestamp("2023-12-31T22:00Z"), pd.Timestamp("2024-01-01T01:00Z"))
    >>> s.round(2).tolist()[:2], first.isoformat(), src.isoformat()  # the two measured rows, then 2023-01-02 00:00
    ([126.63, 129.01], '2024-01-01T00:00:00+00:00', '2023-01-02T00:00:00+00:00')
    """
    from care_flows.signals import TraceSignal

    full = TraceSignal.embedded(kind or "lifecycle").trace(zone)
    step = pd.Timedelta(full.index[1] - full.index[0]) if len(full) > 1 else pd.Timedelta("1h")
    data_end = full.index[-1] + step
    if end <= data_end:
        return None
    if start < full.index[0]:  # starts before the data: not replayable (the caller says where the data are; review 45f L4)
        return None
    first = max(start, data_end)
    shift = _YEAR_WEEKS * math.ceil((end - data_end) / _YEAR_WEEKS)
    if first - shift < full.index[0]:
        return None
    replayed = TraceSignal.embedded(kind or "lifecycle", shift=shift).history(zone, first, end)
    if start < data_end:
        measured = TraceSignal.embedded(kind or "lifecycle").history(zone, start, data_end)
        replayed = pd.concat([measured, replayed]).rename(replayed.name)
        replayed.attrs = dict(measured.attrs)
    return replayed, first, first - shift


def _outside(zone: str, start: pd.Timestamp, end: pd.Timestamp, kind: str | None) -> str:
    from care_flows.signals import TraceSignal
    from care_flows.timeutil import iso

    full = TraceSignal.embedded(kind or "lifecycle").trace(zone)
    return (
        f"--start {iso(start)} .. --end {iso(end)} is outside the embedded data for {zone} ({iso(full.index[0])} to "
        f"{iso(full.index[-1] + pd.Timedelta('1h'))}); give a window within it, or one after it (replays the last year)"
    )


def register(app: typer.Typer) -> None:
    @app.command("intensity")
    def intensity(
        zone: Optional[str] = typer.Option(None, "--zone", help="Grid zone id (Electricity Maps), e.g. ES, SE-SE3, DE; or GB / GB-13 for --source gb."),
        region: Optional[str] = typer.Option(None, "--region", help="AWS region whose grid to show, e.g. eu-south-2 (alternative to --zone)."),
        source: str = typer.Option("embedded", "--source", help="Carbon source: embedded, electricitymaps, watttime or gb (live sources fall back to cache, then embedded data)."),
        kind: Optional[str] = typer.Option(None, "--kind", help="Signal kind: lifecycle or direct (marginal for watttime). Default: the source's own kind."),
        start: str = typer.Option(..., "--start", help="Window start, ISO 8601 with offset, e.g. 2023-06-01T00:00:00Z."),
        end: str = typer.Option(..., "--end", help="Window end (exclusive), ISO 8601 with offset, e.g. 2023-06-02T00:00:00Z."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout: source, signal, unit, zone, points, warnings (and replayed_from when replayed)."),
    ) -> None:
        """Show the carbon intensity of a grid zone (or an AWS region's grid) over a time window."""
        from care_flows.cli.controller import usable_sources
        from care_flows.cli.plan import _no_embedded_data, is_no_embedded_zone, no_embedded_zone
        from care_flows.errors import ConfigError, DataError, ProviderError, UnknownZoneError
        from care_flows.signals import get_signal, series_meta
        from care_flows.signals.base import fallback_warnings, zone_for
        from care_flows.timeutil import iso, parse_time

        if (zone is None) == (region is None):
            raise ConfigError("give exactly one of --zone (e.g. ES) or --region (e.g. eu-south-2)")
        source = source.strip().lower()  # --source Embedded is embedded, as get_signal reads it
        if kind is not None and kind not in ("lifecycle", "direct", "marginal"):
            raise ConfigError(f"--kind {kind!r} is not a signal kind; use lifecycle, direct or marginal")
        if source == "csv":  # a registry source, but one that needs a file this command has no option for
            raise ConfigError(f"--source 'csv' needs a CSV file, which care intensity cannot take; use one of {', '.join(usable_sources())}")
        if source not in usable_sources():
            raise ConfigError(f"--source: unknown carbon source {source!r} (known sources: {', '.join(usable_sources())})")
        check_source_kind(source, kind)
        s, e = parse_time(start, name="--start"), parse_time(end, name="--end")
        if not s < e:
            raise ConfigError(f"--end {iso(e)} is not after --start {iso(s)}; give an --end later than --start")
        if region is not None:
            info = known_region(region, name="--region")
            if source == "embedded" and _no_embedded_data(region, carbon_csv=False):  # name the region typed, not its zone
                raise UnknownZoneError(_no_embedded_data(region, carbon_csv=False))
            target = region if source in ("gb", "watttime") else info.zone
            check_source_zone(source, region, name="--region")
        else:
            target = zone_for(zone or "")
            check_source_zone(source, target, name="--zone")
        signal = get_signal(source, kind=kind)
        replayed_from: Any = None
        warnings: list[str] = []
        try:
            with fallbacks_reported_here():  # printed below as warning: lines
                series = signal.history(target, s, e)
        except UnknownZoneError as exc:
            if zone is not None and is_no_embedded_zone(exc):  # the option typed, not the data layer's words
                raise UnknownZoneError(no_embedded_zone(zone, carbon_csv=False)) from None
            raise
        except (DataError, ProviderError) as exc:
            if source != "embedded" and not isinstance(exc, ProviderError):
                raise
            # the embedded trace replayed at these dates: the default source's answer after 2023, and
            # what a live source's fallback plans on (the planner replays too), labelled as such; of the
            # live source's kind where the embedded data have it, as its fallback chain (review 55a M4)
            live_kind = getattr(signal, "kind", None)
            replay_kind = kind if source == "embedded" else (live_kind if live_kind in ("lifecycle", "direct") else "lifecycle")
            try:
                replay = replayed_history(target, s, e, replay_kind)
            except (ConfigError, DataError):
                if isinstance(exc, ProviderError):  # no embedded data for the zone: the provider's failure is the news (M3)
                    raise exc from None
                raise
            if replay is None:
                if isinstance(exc, ProviderError):
                    raise
                raise DataError(_outside(target, s, e, kind)) from None
            series, first_replayed, replayed_from = replay
            if isinstance(exc, ProviderError):
                from care_flows.signals.fallback import short_reason

                other = f" ({replay_kind}, not {live_kind})" if live_kind and live_kind != replay_kind else ""
                warnings.append(f"{source} failed for {target} ({short_reason(exc)}); showing the embedded trace{other} replayed instead")
        meta = series_meta(series)
        label = meta.source
        warnings += fallback_warnings(series)  # what failed, why, what served instead
        if replayed_from is not None:
            label = f"{meta.source}+replay({replayed_from.year})"
            ended = ("the embedded data end before this window; these values are" if first_replayed <= s
                     else f"the embedded data end at {iso(first_replayed)}; the rows from then on are")
            warnings.append(f"{ended} replayed from {iso(replayed_from)} "
                            f"({round((first_replayed - replayed_from) / pd.Timedelta(weeks=52))} x 52 weeks earlier), not measured")
        warnings = warn(warnings)  # stderr, in text and --json mode alike; the JSON lists them too
        points = [{"time": iso(t), "g_per_kwh": round(float(v), 3)} for t, v in series.items()]
        if json_out:
            doc = {"source": label, "signal": meta.signal, "unit": meta.unit, "zone": meta.zone, "points": points,
                   "warnings": warnings}
            if replayed_from is not None:  # rows from first_replayed on are copies of the rows from replayed_from on
                doc["replayed_from"], doc["first_replayed"] = iso(replayed_from), iso(first_replayed)
            emit_json(doc)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Carbon intensity, zone {meta.zone} ({meta.signal}, source {label})")
        table.add_column("time (UTC)")
        table.add_column("gCO2eq/kWh", justify="right")
        for p in points:
            table.add_row(p["time"], f"{p['g_per_kwh']:.1f}")
        Console().print(table)
