"""Instance prices: the :class:`PriceSource` protocol and the embedded snapshot.

A price source answers two questions, both in on-demand Linux USD per hour:

- ``usd_per_hour(region, instance_type) -> float``
- ``catalog(region) -> pd.DataFrame`` with columns ``instance_type, vcpu, memory_gib,
  usd_per_hour, architecture, gpu`` (one row per type offered in the region).

Planning code takes a ``PriceSource`` as a parameter (no I/O inside planning); the embedded
source reads ``care_flows.data.price_table()`` (apache-libcloud 2025-03 and karpenter 2026-07
snapshots, see ``care_flows/data/README.md``). An AWS Price List source can be swapped in.

>>> prices = EmbeddedPrices()
>>> prices.usd_per_hour("eu-south-2", "t3.large"), prices.usd_per_hour("eu-north-1", "t3.large")
(0.0912, 0.0864)
>>> prices.usd_per_hour("eu-north-1", "t3.gigantic")
Traceback (most recent call last):
...
care_flows.errors.ConfigError: instance type 't3.gigantic' has no price in eu-north-1; ...
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Protocol, runtime_checkable

import pandas as pd

from care_flows.errors import ConfigError, UnknownRegionError
from care_flows.regions import region_info

__all__ = [
    "PriceSource", "EmbeddedPrices", "CATALOG_COLUMNS", "instance_family", "cpu_credit_usd_per_hour",
    "BURSTABLE_BASELINE", "CREDIT_USD_PER_VCPU_HOUR", "instance_shape", "is_accelerated",
]

CATALOG_COLUMNS = ["instance_type", "vcpu", "memory_gib", "usd_per_hour", "architecture", "gpu"]

_ACCELERATOR_FAMILY = re.compile(r"^(p\d|g\d|gr\d|inf\d|trn\d|dl\d|f\d|vt\d)")
"""Families built around an accelerator (GPU, Inferentia, Trainium, Gaudi, FPGA, video transcoding): the
``gpu`` column of a catalogue, which the embedded specs set only where they list GPU memory (inf1, f1,
dl1 and vt1 have none there; review 44b M3: a CPU job was sized onto an inf1.6xlarge)."""


def is_accelerated(instance_type: str) -> bool:
    """Whether ``instance_type`` is of an accelerator family (what ``allow_gpu=False`` excludes).

    >>> [is_accelerated(t) for t in ("inf1.6xlarge", "f1.2xlarge", "g4dn.xlarge", "c5a.xlarge", "m7g.large", "gr6.4xlarge")]
    [True, True, True, False, False, True]
    """
    return bool(_ACCELERATOR_FAMILY.match(str(instance_type)))


# Burstable (T) types: the baseline CPU utilisation per vCPU each size earns credits for, from AWS's
# "Burstable performance instances" docs (credits earned per hour / 60 / vCPU). t3, t3a and t4g share
# one table; t2's xlarge and 2xlarge earn less (54 and 81.6 credits/h over 4 and 8 vCPU).
BURSTABLE_BASELINE: dict[str, dict[str, float]] = {
    **{f: {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.40, "2xlarge": 0.40}
       for f in ("t3", "t3a", "t4g")},
    "t2": {"nano": 0.05, "micro": 0.10, "small": 0.20, "medium": 0.20, "large": 0.30, "xlarge": 0.225, "2xlarge": 0.17},
}
# Surplus CPU credits in unlimited mode, Linux on-demand: USD per vCPU-hour above the baseline.
CREDIT_USD_PER_VCPU_HOUR: dict[str, float] = {"t2": 0.05, "t3": 0.05, "t3a": 0.05, "t4g": 0.04}


def cpu_credit_usd_per_hour(instance_type: str, vcpu: float, utilisation: float) -> float:
    """USD per hour of surplus CPU credits a burstable type costs at a sustained ``utilisation``.

    ``max(0, utilisation - baseline) x vcpu x rate``: ``utilisation`` is the mean CPU use as a
    fraction of the instance's ``vcpu`` (clipped to [0, 1]); ``baseline`` the per-vCPU baseline
    of the size (:data:`BURSTABLE_BASELINE`); ``rate`` 0.05 USD per vCPU-hour for t2/t3/t3a and
    0.04 for t4g (:data:`CREDIT_USD_PER_VCPU_HOUR`). That is the charge of "unlimited" mode, the
    launch default of t3/t3a/t4g. t2 launches in "standard" mode, where a sustained load above the
    baseline is throttled instead of charged; it is priced the same way here (what sustaining the
    load costs), so that a throttled t2 never looks cheaper than a t3. Non-burstable types and t1
    (no credit pricing): 0. The credits an instance earns while under its baseline are ignored (a
    batch run keeps its load), and so are launch credits.

    >>> round(cpu_credit_usd_per_hour("t3.large", 2, 0.5), 4)  # (0.5 - 0.3) x 2 x 0.05
    0.02
    >>> cpu_credit_usd_per_hour("t3.xlarge", 4, 0.4), cpu_credit_usd_per_hour("m5.large", 2, 1.0)
    (0.0, 0.0)
    >>> round(cpu_credit_usd_per_hour("t4g.large", 2, 1.0), 4)  # (1 - 0.3) x 2 x 0.04
    0.056
    """
    fam, _, size = str(instance_type).partition(".")
    rate = CREDIT_USD_PER_VCPU_HOUR.get(fam)
    baseline = BURSTABLE_BASELINE.get(fam, {}).get(size)
    if rate is None or baseline is None:
        return 0.0
    u = float(utilisation)
    if not u == u:  # NaN
        raise ConfigError(f"utilisation {utilisation!r} of {instance_type} must be a number in [0, 1]")
    return max(0.0, min(1.0, u) - baseline) * float(vcpu) * rate


@lru_cache(maxsize=1024)
def instance_shape(instance_type: str) -> tuple[float, float] | None:
    """(vCPU, memory GiB) of an EC2 type from the embedded price table (the same in every region
    that prices it), or None for a type it does not know.

    >>> instance_shape("c6i.xlarge"), instance_shape("x9.unknown")
    ((4.0, 8.0), None)
    """
    from care_flows.data import price_table

    table = price_table()
    rows = table[table["instance_type"] == instance_type]
    if rows.empty:
        return None
    return float(rows["vcpu"].iloc[0]), float(rows["memory_gib"].iloc[0])


def instance_family(instance_type: str) -> str:
    """The family of an EC2 type: the part before the dot.

    >>> instance_family("m6i.xlarge")
    'm6i'
    """
    return str(instance_type).split(".")[0]


@runtime_checkable
class PriceSource(Protocol):
    """Where on-demand prices come from (embedded snapshot, AWS Price List API, a test stub)."""

    name: str

    def usd_per_hour(self, region: str, instance_type: str) -> float:
        """On-demand Linux USD per hour of ``instance_type`` in ``region``."""
        ...

    def catalog(self, region: str) -> pd.DataFrame:
        """Types offered in ``region``: ``instance_type, vcpu, memory_gib, usd_per_hour, architecture, gpu``."""
        ...


class EmbeddedPrices:
    """Prices from the embedded snapshot (``care_flows.data.price_table()``); no network.

    ``table`` may be injected (same columns as :data:`CATALOG_COLUMNS` plus ``region``) for tests.

    >>> cat = EmbeddedPrices().catalog("eu-north-1")
    >>> list(cat.columns)
    ['instance_type', 'vcpu', 'memory_gib', 'usd_per_hour', 'architecture', 'gpu']
    """

    name = "embedded"

    def __init__(self, table: pd.DataFrame | None = None) -> None:
        if table is None:
            from care_flows.data import price_table

            table = price_table()
        self._table = table
        self._by_region: dict[str, pd.DataFrame] = {}

    @property
    def regions(self) -> list[str]:
        """Regions with prices in this source, sorted."""
        return sorted(set(self._table["region"]))

    def catalog(self, region: str) -> pd.DataFrame:
        """The instance types priced in ``region`` (cheapest first); unknown regions list the priced ones."""
        if region not in self._by_region:
            region_info(region)  # unknown to the registry -> UnknownRegionError
            rows = self._table[self._table["region"] == region]
            if rows.empty:
                raise UnknownRegionError(
                    f"region {region!r} has no embedded prices; priced regions: {', '.join(self.regions)}"
                )
            cat = rows[CATALOG_COLUMNS].copy()
            cat["vcpu"] = cat["vcpu"].astype(float)
            cat["memory_gib"] = cat["memory_gib"].astype(float)
            cat["usd_per_hour"] = cat["usd_per_hour"].astype(float)
            cat["gpu"] = cat["gpu"].astype(bool) | cat["instance_type"].map(is_accelerated).astype(bool)
            cat["architecture"] = cat["architecture"].astype(str)
            cat["instance_type"] = cat["instance_type"].astype(str)
            self._by_region[region] = cat.sort_values(["usd_per_hour", "instance_type"]).reset_index(drop=True)
        return self._by_region[region]

    def usd_per_hour(self, region: str, instance_type: str) -> float:
        """USD per hour; an unknown type names the closest priced types in that region."""
        cat = self.catalog(region)
        hit = cat.loc[cat["instance_type"] == instance_type, "usd_per_hour"]
        if hit.empty:
            close = difflib.get_close_matches(str(instance_type), cat["instance_type"].tolist(), n=5, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else f"{len(cat)} types are priced there, e.g. {', '.join(cat['instance_type'].head(5))}"
            raise ConfigError(f"instance type {instance_type!r} has no price in {region}; {hint}")
        return float(hit.iloc[0])
