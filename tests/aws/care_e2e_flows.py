"""The CaRE-decorated flow deployed by test_aws_care_e2e.py (not collected by pytest).

Its policy weighs eu-south-2 (home) against eu-north-1 with a flat synthetic forecast in which
SE is far greener than ES (the shape of the embedded 2021-2023 data), so the plan is a spatial
shift only: eu-north-1, starting now. 2 vCPU / 8 GiB with no headroom at 30 % CPU right-sizes to t3.large.
eu-north-1's runs go to the ``care-ec2`` pool named by ``CARE_E2E_EC2_POOL``.
"""

from __future__ import annotations

import os

import pandas as pd
from prefect import flow

from care_flows.orchestration import care

__all__ = ["FlatSignal", "POLICY", "INTENSITY_G_PER_KWH", "care_ec2_etl"]

INTENSITY_G_PER_KWH = {"ES": 300.0, "SE-SE3": 30.0}  # per zone (eu-south-2, eu-north-1)


class FlatSignal:
    """Constant hourly intensity per zone from the hour ``start`` falls in, covering ``horizon``.

    >>> s = FlatSignal().forecast("SE-SE3", pd.Timestamp("2026-01-01T10:20Z"), pd.Timedelta("2h"))
    >>> s.index[0].isoformat(), len(s), float(s.iloc[-1])
    ('2026-01-01T10:00:00+00:00', 4, 30.0)
    """

    def forecast(self, zone: str, start: pd.Timestamp, horizon: pd.Timedelta) -> pd.Series:
        t0 = pd.Timestamp(start).floor("h")
        idx = pd.date_range(t0, pd.Timestamp(start) + pd.Timedelta(horizon) + pd.Timedelta(hours=1), freq="1h", inclusive="left")
        s = pd.Series(INTENSITY_G_PER_KWH[zone], index=idx, dtype=float, name="g_per_kwh")
        s.attrs["source"] = "synthetic:flat"
        return s


POLICY = {
    "home_region": "eu-south-2",
    "regions": ["eu-south-2", "eu-north-1"],
    "expected_duration": "5m",
    "deadline_within": "30m",
    "vcpu": 2,
    "memory_gib": 8,
    "headroom_pct": 0,
    # the study's microservices: 30 % CPU is t3.large's baseline, so no CPU-credit surcharge; at the
    # default 50 % the surplus credits (0.02 USD/h) would make m7i-flex.large (0.10175) cheaper
    "cpu_utilisation": 0.3,
    "targets": {"eu-north-1": {"work_pool": os.environ.get("CARE_E2E_EC2_POOL", "care-ec2-e2e"), "job_variables": {"ttl_minutes": 15}}},
}


@care(policy=POLICY, signal=FlatSignal(), sample_usage=False)
@flow(name="care-ec2-etl")
def care_ec2_etl(rows: int = 1000) -> int:
    """The body only runs on the instance (never in this test: moto boots nothing)."""
    return sum(range(rows))
