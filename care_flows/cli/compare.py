"""``care compare``: the reference study's table, one instance type in several regions.

For each region: price (embedded on-demand USD/h), carbon intensity (``--intensity`` or the
embedded trace's 2023 annual mean life-cycle gCO2eq/kWh), energy (power model at
``--utilisation``, x PUE 1.135, or ``--energy-wh``, taken at the wall: PUE included, not
multiplied by 1.135), gCO2eq and USD; then, against the first region, the carbon and cost ratios
and the abatement cost (USD per tCO2eq avoided; negative when the greener region is also cheaper).
A ratio, savings % or abatement cost with nothing to divide by is ``None`` (``n/a`` in the text),
and the comparison's ``notes`` say why (printed under it in the text). With the study's inputs
(``--intensity ES=206,SE=20``, t3.large, 1 h) Spain emits 10.3x Sweden, at 0.0912 vs 0.0864 USD/h.
"""

from __future__ import annotations

import math
from typing import Any

import typer

from care_flows.cli import emit_json, known_region
from care_flows.errors import ConfigError

__all__ = ["register", "parse_intensity", "compare_regions"]

DEFAULT_INTENSITY_YEAR = 2023
MAX_HOURS = 87_840.0  # ten years: a longer run is a typo (and 1e308 h overflows the figures to inf)
MAX_ENERGY_WH = 1e12  # a TWh per run: a larger figure is a typo (and 1e308 Wh overflows the figures to inf)


def parse_intensity(text: str | None) -> dict[str, float]:
    """``"ES=206,SE=20"`` -> ``{"ES": 206.0, "SE": 20.0}`` (keys: grid zone or region name)."""
    if text is None:
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            v = float(value)
        except ValueError:
            raise ConfigError(f"--intensity item {item.strip()!r} is not ZONE=g_per_kwh; use e.g. ES=206,SE=20") from None
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"--intensity {key}={value} must be a finite, non-negative gCO2eq/kWh, e.g. {key}=206")
        if key.strip().upper() in {k.upper() for k in out}:
            raise ConfigError(f"--intensity gives {key.strip()} twice ({text}); give each zone once")
        out[key.strip()] = v
    return out


def _intensity_for(region: str, given: dict[str, float]) -> tuple[float, str]:
    from care_flows.data import embedded_intensity
    from care_flows.regions import region_info

    info = region_info(region)
    for key in (region, info.zone, info.embedded_zone):
        if key is not None:
            for k, v in given.items():
                if k.upper() == key.upper():
                    return v, f"given (--intensity {k}={v:g})"
    if info.embedded_zone is None:
        raise ConfigError(f"region {region} has no embedded carbon trace; give --intensity {info.zone}=<g/kWh>")
    s = embedded_intensity(info.embedded_zone)
    mean = float(s[str(DEFAULT_INTENSITY_YEAR)].mean())
    return mean, f"embedded {info.embedded_zone} {DEFAULT_INTENSITY_YEAR} annual mean life-cycle (Electricity Maps, ODbL)"


def compare_regions(
    regions: list[str],
    instance_type: str,
    hours: float,
    *,
    intensity: dict[str, float] | None = None,
    energy_wh: float | None = None,
    utilisation: float = 0.5,
    prices: Any = None,
) -> dict[str, Any]:
    """The comparison document (rows per region; ratios and abatement against the first region).

    >>> doc = compare_regions(["eu-south-2", "eu-north-1"], "t3.large", 1, intensity={"ES": 206, "SE": 20})
    >>> [r["usd_per_hour"] for r in doc["rows"]], doc["versus"][0]["carbon_ratio"]
    ([0.0912, 0.0864], 10.3)
    """
    from care_flows.accounting import PUE_AWS, compare_to_baseline, footprint, format_sig
    from care_flows.pricing import EmbeddedPrices, cpu_credit_usd_per_hour
    from care_flows.regions import region_info

    if len(regions) < 2:
        raise ConfigError(f"--regions {','.join(regions)!r} needs at least two regions to compare, e.g. eu-south-2,eu-north-1")
    twice = sorted({r for r in regions if regions.count(r) > 1})
    if twice:
        raise ConfigError(f"--regions {','.join(regions)!r} gives {', '.join(twice)} twice; name each region once")
    if not 0 < hours <= MAX_HOURS:
        raise ConfigError(f"--hours {hours:g} must be positive and at most {MAX_HOURS:g} (ten years), e.g. 1")
    if energy_wh is not None and not (math.isfinite(energy_wh) and 0 <= energy_wh <= MAX_ENERGY_WH):
        raise ConfigError(f"--energy-wh {energy_wh:g} must be a number of Wh from 0 to {MAX_ENERGY_WH:g} (a TWh), e.g. 50")
    if not 0 <= utilisation <= 1:  # NaN too; checked here, not in the power model, to name the option
        raise ConfigError(f"--utilisation {utilisation:g} must be between 0 and 1, e.g. 0.5 for 50%")
    given = dict(intensity or {})
    known_keys = set()
    for r in regions:
        info = known_region(r, name="--regions")
        known_keys |= {r.upper(), info.zone.upper(), (info.embedded_zone or "").upper()}
    unused = [k for k in given if k.upper() not in known_keys]
    if unused:
        raise ConfigError(f"--intensity key(s) {', '.join(unused)} match none of the regions {', '.join(regions)}; use their zones, e.g. ES, SE")
    prices = prices or EmbeddedPrices()
    cat = None
    rows, fps = [], []
    for r in regions:
        try:
            usd_h = prices.usd_per_hour(r, instance_type)
        except ConfigError as exc:  # "instance type 't3.huge' has no price in ...": the option typed
            text = str(exc)
            if not text.startswith("instance type "):
                raise
            raise ConfigError("--instance-type " + text.removeprefix("instance type ")) from None
        cat = prices.catalog(r)
        spec = cat[cat["instance_type"] == instance_type].iloc[0]
        gpk, src = _intensity_for(r, given)
        fp = footprint(
            instance_type, hours=hours, g_per_kwh=gpk, usd_per_hour=usd_h, utilisation=utilisation, region=r,
            vcpu=float(spec["vcpu"]), memory_gib=float(spec["memory_gib"]),
            kwh=None if energy_wh is None else energy_wh / 1000.0,
        )
        fps.append(fp)
        rows.append({
            "region": r, "zone": region_info(r).zone, "instance_type": instance_type, "hours": hours, "usd_per_hour": usd_h,
            "usd": fp.usd, "g_per_kwh": gpk, "intensity_source": src, "kwh": fp.kwh, "g_co2eq": fp.g_co2eq,
            "power_model": fp.power_model, "watts": fp.watts,
            # not in usd (the study's list prices): what a burstable type in unlimited mode pays on top at --utilisation
            "credit_usd_per_hour": cpu_credit_usd_per_hour(instance_type, float(spec["vcpu"]), utilisation),
        })
    versus = []
    for fp in fps[1:]:
        c = compare_to_baseline(fp, fps[0])
        versus.append({
            "baseline_region": fps[0].region, "region": fp.region,
            "carbon_ratio": None if c.carbon_ratio is None else float(f"{c.carbon_ratio:.3g}"),  # 3 digits: x0.00143, not x0.0
            "cost_ratio": None if c.cost_ratio is None else round(c.cost_ratio, 4),
            "savings_g": c.savings_g, "savings_pct": c.savings_pct, "savings_usd": c.savings_usd,
            "abatement_usd_per_tco2": c.abatement_usd_per_tco2, "notes": c.notes,
        })
    notes = []
    if energy_wh is not None:
        energy = f"given: {energy_wh:g} Wh per run, at the wall (PUE included, not multiplied by {PUE_AWS})"
        notes.append(f"--energy-wh is taken at the wall (PUE included): it is not multiplied by PUE {PUE_AWS}, and each "
                     f"row's watts is the mean IT power it stands for, Wh / hours / {PUE_AWS}; multiply a measured IT "
                     f"energy (e.g. RAPL) by {PUE_AWS} first to compare it with the power model's figures")
    else:
        energy = f"power model at {utilisation:.0%} CPU (CCF/Teads watts) x PUE {PUE_AWS}"
    credit = rows[0]["credit_usd_per_hour"]
    if credit > 0:
        notes.append(f"USD is the list price (the study's); at {utilisation:.0%} CPU a {instance_type} in unlimited mode (the launch "
                     f"default) also pays {credit:.4f} USD/h of CPU credits ({format_sig(credit * hours, 'USD', 4)} for the run, "
                     "each row's credit_usd_per_hour in --json), which care regions and the planner add")
    # "warnings" as in every command's JSON (README): compare has none of its own, its caveats are the result's notes
    return {"instance_type": instance_type, "hours": hours, "energy": energy, "rows": rows, "versus": versus, "notes": notes, "warnings": []}


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare(
        regions: str = typer.Option(..., "--regions", help="Regions to compare, comma-separated; the first is the baseline."),
        instance_type: str = typer.Option(..., "--instance-type", help="EC2 instance type, e.g. t3.large."),
        hours: float = typer.Option(1.0, "--hours", help="Run time in hours."),
        intensity: str | None = typer.Option(
            None, "--intensity",
            help="Carbon intensity per zone or region, gCO2eq/kWh, e.g. ES=206,SE=20 (default: embedded 2023 annual life-cycle means).",
        ),
        energy_wh: float | None = typer.Option(
            None, "--energy-wh",
            help="Energy of the whole run in Wh at the wall, PUE included (not multiplied by 1.135); overrides the power model.",
        ),
        utilisation: float = typer.Option(0.5, "--utilisation", help="Mean CPU utilisation 0..1 of the instance's vCPUs for the power model (not of a vCPU need, as care regions --cpu-utilisation). USD stays the list price; a burstable type's CPU credits at it are a note."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Compare gCO2eq and USD of one instance type across regions (the reference study's table)."""
        from care_flows.cli.regions import parse_list

        names = parse_list(regions, name="--regions")
        doc = compare_regions(names, instance_type, hours, intensity=parse_intensity(intensity), energy_wh=energy_wh, utilisation=utilisation)
        if json_out:
            emit_json(doc)
            return
        from rich.console import Console
        from rich.table import Table

        from care_flows.accounting import format_sig

        table = Table(title=f"{instance_type} for {hours:g} h ({doc['energy']})")
        for col in ("region", "zone", "g/kWh", "kWh", "gCO2eq", "USD/h", "USD"):
            table.add_column(col)
        for r in doc["rows"]:
            table.add_row(r["region"], r["zone"], f"{r['g_per_kwh']:.1f}", format_sig(r["kwh"], min_digits=5), format_sig(r["g_co2eq"], min_digits=3),
                          f"{r['usd_per_hour']:.4f}", format_sig(r["usd"], min_digits=4))
        console = Console()
        console.print(table)
        for r in doc["rows"]:
            console.print(f"{r['region']} intensity: {r['intensity_source']}")
        for v in doc["versus"]:
            abate, carbon, cost = v["abatement_usd_per_tco2"], v["carbon_ratio"], v["cost_ratio"]
            console.print(
                f"{v['baseline_region']} / {v['region']}: {'carbon ratio n/a' if carbon is None else f'carbon x{carbon}'}, "
                f"{'cost ratio n/a' if cost is None else f'cost x{cost}'}; "
                f"abatement {'n/a' if abate is None else f'{abate if round(abate) else 0.0:,.0f} USD/tCO2eq'}", soft_wrap=True,
            )
            for note in v["notes"]:  # why a figure is n/a: part of the result (its JSON "notes"), not a warning
                console.print(f"  note: {note}", soft_wrap=True)
        for note in doc["notes"]:
            console.print(f"note: {note}", soft_wrap=True)
