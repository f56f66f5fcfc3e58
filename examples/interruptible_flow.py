"""Interruptible example: a multi-stage batch that may pause between stages.

Each stage is a :func:`care.resumable_task` (persisted result, cache key = inputs + source).
``care.checkpoint()`` between stages: when the current slot is no longer green and the deadline
allows, CaRE dispatches a continuation run at the next green slot and ends this run
*Completed*; the continuation reads the finished stages back instead of recomputing them.
Result storage must be readable by both runs (same machine: the default local storage; across
machines: set PREFECT_DEFAULT_RESULT_STORAGE_BLOCK to e.g. an S3 bucket block).

    .venv/bin/python examples/interruptible_flow.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import flow

from care_flows.orchestration import care
from care_flows.policy import CarePolicy

__all__ = ["POLICY", "zone_stats", "seasonal_profile", "backfill"]

POLICY = CarePolicy(
    home_region="eu-south-2",
    regions=["eu-south-2"],
    interruptible=True,
    deadline_within="24h",
    expected_duration="3h",
    min_segment="30m",
    max_segments=3,
    targets={"eu-south-2": {"work_pool": "care-eu-south-2"}},
)


@care.resumable_task
def zone_stats(zone: str, year: int) -> dict:
    """Hourly-profile statistics of one zone and year (a stage)."""
    from care_flows.data import embedded_intensity

    s = embedded_intensity(zone, "lifecycle")
    s = s[s.index.year == year]
    return {"zone": zone, "mean": float(s.mean()), "p10": float(s.quantile(0.1)), "p90": float(s.quantile(0.9))}


@care.resumable_task
def seasonal_profile(zone: str, year: int) -> list[float]:
    """Mean intensity by hour of day (a stage)."""
    from care_flows.data import embedded_intensity

    s = embedded_intensity(zone, "lifecycle")
    s = s[s.index.year == year]
    return s.groupby(s.index.hour).mean().round(2).tolist()


@care(policy=POLICY)
@flow(name="care-interruptible-backfill", log_prints=True)
def backfill(zones: list[str] = ["ES", "SE", "DE", "FR", "GB"], year: int = 2023) -> pd.DataFrame:  # noqa: B006
    """Stats + hourly profiles per zone, one stage per zone, checkpoint between stages."""
    rows = []
    for zone in zones:
        stats = zone_stats(zone, year)
        profile = seasonal_profile(zone, year)
        rows.append({**stats, "greenest_hour_utc": int(np.argmin(profile))})
        care.checkpoint()
    out = pd.DataFrame(rows)
    print(out.to_string(index=False))
    return out


if __name__ == "__main__":
    backfill()
