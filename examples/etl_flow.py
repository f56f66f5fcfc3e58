"""ETL example: daily carbon-intensity report from CaRE's embedded grid data (real 2021-2023 data).

Extract the hourly intensity of a few grid zones, transform it to daily statistics and the
greenest hours of each day, load it to CSV. CaRE decides when and where it runs: with a 12 h
deadline it may wait for a greener window or move to Stockholm (eu-north-1).

Run locally (plans, records the decision, runs now)::

    .venv/bin/python examples/etl_flow.py

Deploy per region (see deployments/prefect.yaml): a scheduled run plans and dispatches.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from prefect import flow, task

from care_flows.orchestration import care
from care_flows.policy import CarePolicy, RegionTarget

__all__ = ["POLICY", "extract", "transform", "load", "carbon_report"]

POLICY = CarePolicy(
    home_region="eu-south-2",
    regions=["eu-south-2", "eu-north-1"],
    deadline_within="12h",
    expected_duration="20m",
    min_savings_pct=5,
    vcpu=2,
    memory_gib=4,
    targets={
        "eu-south-2": RegionTarget(work_pool="care-eu-south-2"),
        "eu-north-1": RegionTarget(work_pool="care-eu-north-1"),
    },
)


@task
def extract(zone: str, year: int) -> pd.Series:
    """Hourly lifecycle intensity of ``zone`` in ``year`` (g/kWh)."""
    from care_flows.data import embedded_intensity

    s = embedded_intensity(zone, "lifecycle")
    return s[s.index.year == year]


@task
def transform(series: pd.Series, zone: str) -> pd.DataFrame:
    """Daily mean/min/max, the daily greenest hour, and the share of hours below the yearly p25."""
    p25 = series.quantile(0.25)
    daily = series.resample("D")
    out = pd.DataFrame({
        "mean_g_per_kwh": daily.mean(),
        "min_g_per_kwh": daily.min(),
        "max_g_per_kwh": daily.max(),
        "greenest_hour_utc": daily.apply(lambda d: int(d.idxmin().hour) if len(d) else -1),
        "green_share": daily.apply(lambda d: float((d < p25).mean()) if len(d) else float("nan")),
    })
    out.insert(0, "zone", zone)
    return out


@task
def load(frames: list[pd.DataFrame], out_dir: str) -> str:
    """Write the report CSV; returns its path."""
    path = Path(out_dir) / "carbon_daily_report.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(path, index_label="day")
    return str(path)


@care(policy=POLICY)
@flow(name="care-etl", log_prints=True)
def carbon_report(zones: list[str] = ["ES", "SE", "DE", "FR"], year: int = 2023, out_dir: str = "care-report/etl") -> str:  # noqa: B006
    """Build the daily carbon report for ``zones`` in ``year``."""
    frames = [transform(extract(z, year), z) for z in zones]
    path = load(frames, out_dir)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    carbon_report(out_dir=os.environ.get("CARE_EXAMPLE_OUT", "care-report/etl"))
