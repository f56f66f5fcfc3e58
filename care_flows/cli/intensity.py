"""``care intensity``: print a carbon-intensity series (gCO2eq/kWh) from any carbon source."""

from __future__ import annotations

from typing import Optional

import typer

from care_flows.cli import emit_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("intensity")
    def intensity(
        zone: Optional[str] = typer.Option(None, "--zone", help="Grid zone id (Electricity Maps), e.g. ES, SE-SE3, DE; or GB / GB-13 for --source gb."),
        region: Optional[str] = typer.Option(None, "--region", help="AWS region whose grid to show, e.g. eu-south-2 (alternative to --zone)."),
        source: str = typer.Option("embedded", "--source", help="Carbon source: embedded, electricitymaps, watttime or gb (live sources fall back to cache, then embedded data)."),
        kind: Optional[str] = typer.Option(None, "--kind", help="Signal kind: lifecycle or direct (marginal for watttime). Default: the source's own kind."),
        start: str = typer.Option(..., "--start", help="Window start, ISO 8601 with offset, e.g. 2023-06-01T00:00:00Z."),
        end: str = typer.Option(..., "--end", help="Window end (exclusive), ISO 8601 with offset, e.g. 2023-06-02T00:00:00Z."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout: source, signal, unit, zone, points."),
    ) -> None:
        """Show the carbon intensity of a grid zone (or an AWS region's grid) over a time window."""
        from care_flows.errors import ConfigError
        from care_flows.regions import region_info
        from care_flows.signals import get_signal, series_meta
        from care_flows.signals.base import check_window, zone_for
        from care_flows.timeutil import iso

        if (zone is None) == (region is None):
            raise ConfigError("give exactly one of --zone (e.g. ES) or --region (e.g. eu-south-2)")
        if kind is not None and kind not in ("lifecycle", "direct", "marginal"):
            raise ConfigError(f"--kind {kind!r} is not a signal kind; use lifecycle, direct or marginal")
        s, e = check_window(start, end)
        if region is not None:
            info = region_info(region)
            target = region if source in ("gb", "watttime") else info.zone
        else:
            target = zone_for(zone or "")
        signal = get_signal(source, kind=kind)
        series = signal.history(target, s, e)
        meta = series_meta(series)
        if meta.fallback_errors:
            for line in meta.fallback_errors:
                typer.echo(f"warning: {line}", err=True)
        points = [{"time": iso(t), "g_per_kwh": round(float(v), 3)} for t, v in series.items()]
        if json_out:
            emit_json({"source": meta.source, "signal": meta.signal, "unit": meta.unit, "zone": meta.zone, "points": points})
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Carbon intensity, zone {meta.zone} ({meta.signal}, source {meta.source})")
        table.add_column("time (UTC)")
        table.add_column("gCO2eq/kWh", justify="right")
        for p in points:
            table.add_row(p["time"], f"{p['g_per_kwh']:.1f}")
        Console().print(table)
