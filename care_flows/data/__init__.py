"""Embedded real data, read with :mod:`importlib.resources` (no network, no account).

- ``carbon_intensity_hourly.csv.gz``: Electricity Maps hourly life-cycle and direct carbon
  intensity (gCO2eq/kWh) for ES, SE, DE, FR, GB, 2021-2023 (ODbL, attribution: Electricity Maps).
- ``ec2_prices_ondemand_linux.csv.gz``: EC2 on-demand Linux USD/hour with vCPU and memory.
- ``ec2_instance_power_teads.csv.gz``: watts at idle/10/50/100% load per EC2 type (CCF/Teads).

Sources and licences: ``care_flows/data/README.md``.

>>> s = embedded_intensity("ES")
>>> s.index[0].isoformat(), round(float(s["2023"].mean()))
('2021-01-01T00:00:00+00:00', 154)
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from care_flows.errors import UnknownZoneError

__all__ = [
    "EMBEDDED_ZONES",
    "carbon_table",
    "embedded_intensity",
    "price_table",
    "power_table",
    "embodied_table",
    "ccf_use_coefficients",
]

EMBEDDED_ZONES = ("ES", "SE", "DE", "FR", "GB")
KINDS = {"lifecycle": "lifecycle_g_per_kwh", "direct": "direct_g_per_kwh"}


def _open(name: str):
    return resources.files(__name__).joinpath(name).open("rb")


@lru_cache(maxsize=1)
def carbon_table() -> pd.DataFrame:
    """All embedded hourly rows: ``time, zone, zone_id, lifecycle_g_per_kwh, direct_g_per_kwh, estimated``."""
    with _open("carbon_intensity_hourly.csv.gz") as fh:
        df = pd.read_csv(fh, compression="gzip")
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df


@lru_cache(maxsize=32)
def embedded_intensity(zone: str, kind: str = "lifecycle") -> pd.Series:
    """Hourly gCO2eq/kWh for an embedded zone (``kind``: ``lifecycle`` or ``direct``).

    Returns a float Series on a regular hourly UTC index named ``g_per_kwh``.

    >>> es = embedded_intensity("ES")
    >>> es.name, str(es.index[0]), str(es.index[-1]), round(float(es["2023"].mean()), 1)
    ('g_per_kwh', '2021-01-01 00:00:00+00:00', '2023-12-31 23:00:00+00:00', 154.0)
    """
    if kind not in KINDS:
        raise UnknownZoneError(f"signal kind {kind!r} is not embedded; use one of {sorted(KINDS)}")
    key = zone.upper().split("-")[0] if zone.upper().startswith("SE") else zone.upper()
    if key not in EMBEDDED_ZONES:
        raise UnknownZoneError(
            f"zone {zone!r} has no embedded data; embedded zones are {', '.join(EMBEDDED_ZONES)} "
            "(use a CSV or a live source for others)"
        )
    df = carbon_table()
    rows = df[df["zone"] == key]
    series = pd.Series(rows[KINDS[kind]].to_numpy(dtype=float), index=pd.DatetimeIndex(rows["time"]).as_unit("ns"), name="g_per_kwh")
    series.index.name = "time"
    return series


@lru_cache(maxsize=1)
def price_table() -> pd.DataFrame:
    """EC2 on-demand Linux prices: ``region, instance_type, usd_per_hour, vcpu, memory_gib, source, architecture, gpu``.

    Only trustworthy rows (libcloud 2025-03 without ``suspect_price``; karpenter 2026-07 for
    us-east-1), plus sizes missing from a region priced from a same-family sibling with the
    us-east-1 size ratios (``source`` = ``derived-from-<sibling>``).
    """
    with _open("ec2_prices_ondemand_linux.csv.gz") as fh:
        return pd.read_csv(fh, compression="gzip")


@lru_cache(maxsize=1)
def power_table() -> pd.DataFrame:
    """Instance watts at idle/10/50/100% (``watts_idle, watts_10, watts_50, watts_100``) per EC2 type."""
    with _open("ec2_instance_power_teads.csv.gz") as fh:
        return pd.read_csv(fh, compression="gzip").set_index("instance_type")


@lru_cache(maxsize=1)
def embodied_table() -> pd.DataFrame:
    """Embodied kgCO2eq per EC2 type (Cloud Carbon Footprint)."""
    with _open("ec2_embodied_ccf.csv") as fh:
        return pd.read_csv(fh).set_index("instance_type")


@lru_cache(maxsize=1)
def ccf_use_coefficients() -> pd.DataFrame:
    """CCF min/max watts per vCPU by CPU micro-architecture (AWS)."""
    with _open("ccf_aws_use_coefficients.csv") as fh:
        return pd.read_csv(fh).set_index("architecture")
