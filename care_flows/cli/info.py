"""``care info``: the region registry and the embedded data CaRE ships with."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from care_flows.cli import emit_json


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")) -> None:
        """List known AWS regions with their grid zone, location and embedded data."""
        from care_flows.data import price_table
        from care_flows.regions import REGIONS

        priced = set(price_table()["region"])
        rows = [
            {
                "region": r.name,
                "location": r.location,
                "zone": r.zone,
                "embedded_zone": r.embedded_zone,
                "watttime_region": r.watttime_region,
                "lat": r.lat,
                "lon": r.lon,
                "embedded_prices": r.name in priced,
            }
            for r in REGIONS.values()
        ]
        if json_out:
            emit_json({"regions": rows})
            return
        table = Table(title="CaRE region registry")
        for col in ("region", "location", "zone", "embedded trace", "embedded prices"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["region"], row["location"], row["zone"], row["embedded_zone"] or "-", "yes" if row["embedded_prices"] else "-")
        Console().print(table)
