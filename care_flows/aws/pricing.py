"""EC2 prices from the AWS Price List API, cached on disk, with the embedded snapshot as fallback.

:class:`AwsPriceList` is a :class:`care_flows.pricing.PriceSource`. For a region it calls
``pricing:GetProducts`` (service ``AmazonEC2``; filters ``operatingSystem=Linux``,
``tenancy=Shared``, ``preInstalledSw=NA``, ``capacitystatus=Used``, ``regionCode=<region>``),
parses each ``PriceList`` entry (a JSON document per SKU) into one catalog row, and keeps the
catalog in a JSON file under ``cache_dir`` for ``ttl`` (written atomically: temp file, then
``os.replace``). On any error (no credentials, network, throttling, an unexpected document, an
empty answer) it serves :class:`~care_flows.pricing.EmbeddedPrices` instead and records which
source served each region in :attr:`AwsPriceList.served_by`.

Spot prices (for interruptible flows) come from ``ec2:DescribeSpotPriceHistory``
(:meth:`AwsPriceList.spot_usd_per_hour`: the lowest latest price over the region's zones).

>>> doc = {"product": {"attributes": {"instanceType": "t3.large", "vcpu": "2", "memory": "8 GiB",
...        "physicalProcessor": "Intel Skylake E5 2686 v5", "operation": "RunInstances", "regionCode": "eu-north-1"}},
...        "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {"X.JRTCKXETXF.6YS6EN2CT7":
...        {"unit": "Hrs", "pricePerUnit": {"USD": "0.0864000000"}}}}}}}
>>> parse_product(doc)
{'instance_type': 't3.large', 'vcpu': 2.0, 'memory_gib': 8.0, 'usd_per_hour': 0.0864, 'architecture': 'x86_64', 'gpu': False}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from care_flows.aws.clients import AwsClients
from care_flows.errors import AwsError, ConfigError
from care_flows.pricing import CATALOG_COLUMNS, EmbeddedPrices

__all__ = ["PRICE_LIST_FILTERS", "AwsPriceList", "parse_product", "parse_price_list", "price_list_filters", "default_cache_dir"]

logger = logging.getLogger(__name__)

PRICE_LIST_FILTERS: dict[str, str] = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}
CACHE_VERSION = 1


def price_list_filters(region: str) -> list[dict[str, str]]:
    """The ``GetProducts`` filters for on-demand Linux shared-tenancy prices in ``region``.

    >>> price_list_filters("eu-south-2")[-1]
    {'Type': 'TERM_MATCH', 'Field': 'regionCode', 'Value': 'eu-south-2'}
    """
    items = {**PRICE_LIST_FILTERS, "regionCode": region}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in items.items()]


def default_cache_dir() -> Path:
    """``aws-price-list`` in CaRE's one cache folder (``$CARE_CACHE_DIR`` or ``~/.cache/care``,
    :func:`care_flows.signals.cache.default_cache_dir`), next to the carbon signal cache."""
    from care_flows.signals.cache import default_cache_dir as care_cache_dir

    return care_cache_dir() / "aws-price-list"


def _memory_gib(text: str) -> float:
    value = str(text).replace(",", "").split()[0]
    return float(value)


def parse_product(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """One catalog row from one ``PriceList`` document, or ``None`` if it is not a plain
    on-demand Linux ``RunInstances`` price (e.g. another operation, no hourly USD price)."""
    attrs = doc.get("product", {}).get("attributes", {})
    itype = attrs.get("instanceType")
    if not itype or attrs.get("operation", "RunInstances") != "RunInstances":
        return None
    price = None
    for term in doc.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit", "Hrs").lower().startswith("hr") and "USD" in dim.get("pricePerUnit", {}):
                price = float(dim["pricePerUnit"]["USD"])
    if price is None or price <= 0:
        return None
    processor = str(attrs.get("physicalProcessor", "")).lower()
    arch = "arm64" if ("graviton" in processor or "arm" in str(attrs.get("processorArchitecture", "")).lower()) else "x86_64"
    gpu_raw = str(attrs.get("gpu", "0")).strip() or "0"
    return {
        "instance_type": str(itype),
        "vcpu": float(attrs.get("vcpu", "nan")),
        "memory_gib": _memory_gib(attrs.get("memory", "nan")),
        "usd_per_hour": price,
        "architecture": arch,
        "gpu": gpu_raw not in ("0", "NA", "N/A"),
    }


def parse_price_list(entries: Iterable[str | Mapping[str, Any]]) -> pd.DataFrame:
    """A catalog (:data:`~care_flows.pricing.CATALOG_COLUMNS`, cheapest first) from ``PriceList`` entries."""
    rows = []
    for entry in entries:
        doc = json.loads(entry) if isinstance(entry, str) else entry
        row = parse_product(doc)
        if row is not None:
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=CATALOG_COLUMNS)
    cat = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    cat = cat.sort_values(["instance_type", "usd_per_hour"]).drop_duplicates("instance_type", keep="first")
    return cat.sort_values(["usd_per_hour", "instance_type"]).reset_index(drop=True)


class AwsPriceList:
    """On-demand prices from the AWS Price List API (a :class:`~care_flows.pricing.PriceSource`).

    Args:
        clients: where the ``pricing`` and ``ec2`` clients come from (default: the credential chain,
            3 attempts per call).
        cache_dir: directory of the per-region JSON cache (default :func:`default_cache_dir`).
        ttl: how long a cached catalog is served without asking AWS again (default 7 days).
        fallback: the source used when the API fails (default :class:`EmbeddedPrices`).
        pricing_region: the Price List API endpoint region (``us-east-1``, ``eu-central-1`` or ``ap-south-1``).
        now: clock (injectable).

    Nothing is asked of AWS until a catalog is needed (``price_list.catalog("eu-north-1")``, not run
    here: it needs credentials):

    >>> import tempfile
    >>> AwsPriceList(cache_dir=tempfile.mkdtemp()).name
    'aws-price-list'
    """

    name = "aws-price-list"

    def __init__(
        self,
        clients: AwsClients | None = None,
        *,
        cache_dir: str | Path | None = None,
        ttl: timedelta = timedelta(days=7),
        fallback: Any = None,
        pricing_region: str = "us-east-1",
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        # botocore's standard retries (3 attempts) for the paginated GetProducts: CaRE adds none here
        self._clients = clients or AwsClients(max_attempts=3)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._ttl = ttl
        self._fallback = fallback if fallback is not None else EmbeddedPrices()
        self._pricing_region = pricing_region
        self._now = now
        self._memory: dict[str, pd.DataFrame] = {}
        self.served_by: dict[str, str] = {}
        """Per region: ``aws-price-list``, ``cache`` or ``embedded (<why>)``."""

    # -- cache -------------------------------------------------------------------------------
    def _cache_path(self, region: str) -> Path:
        return self._cache_dir / f"{region}.json"

    def _read_cache(self, region: str) -> pd.DataFrame | None:
        path = self._cache_path(region)
        try:
            doc = json.loads(path.read_text())
            fetched = datetime.fromisoformat(doc["fetched_at"])
            if doc.get("version") != CACHE_VERSION or self._now() - fetched > self._ttl:
                return None
            cat = pd.DataFrame(doc["rows"], columns=CATALOG_COLUMNS)
            return cat if not cat.empty else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_cache(self, region: str, cat: pd.DataFrame) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        doc = {"version": CACHE_VERSION, "region": region, "fetched_at": self._now().isoformat(), "source": self.name,
               "rows": cat[CATALOG_COLUMNS].to_dict(orient="records")}
        fd, tmp = tempfile.mkstemp(prefix=f".{region}.", suffix=".tmp", dir=self._cache_dir)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self._cache_path(region))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- API -----------------------------------------------------------------------------------
    def fetch(self, region: str) -> pd.DataFrame:
        """Ask the Price List API (no cache, no fallback); raises on any problem."""
        pricing = self._clients.client("pricing", self._pricing_region)
        entries: list[str] = []
        for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=price_list_filters(region), FormatVersion="aws_v1"):
            entries.extend(page.get("PriceList", []))
        cat = parse_price_list(entries)
        if cat.empty:
            raise AwsError(f"the Price List API returned no EC2 Linux prices for {region}")
        return cat

    def catalog(self, region: str) -> pd.DataFrame:
        """Types priced in ``region`` (cheapest first): memory, disk cache, API, else embedded."""
        if region in self._memory:
            return self._memory[region]
        cached = self._read_cache(region)
        if cached is not None:
            self.served_by[region] = "cache"
            self._memory[region] = cached
            return cached
        try:
            cat = self.fetch(region)
        except Exception as exc:  # noqa: BLE001 - any failure -> the embedded snapshot
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            logger.warning("AWS Price List failed for %s (%s); using embedded prices", region, why)
            self.served_by[region] = f"embedded ({why})"
            return self._fallback.catalog(region)
        try:
            self._write_cache(region, cat)
        except OSError as exc:
            logger.warning("cannot write the price cache in %s: %s", self._cache_dir, exc)
        self.served_by[region] = self.name
        self._memory[region] = cat
        return cat

    def usd_per_hour(self, region: str, instance_type: str) -> float:
        """On-demand Linux USD/hour; a type missing from the API answer is priced by the fallback."""
        cat = self.catalog(region)
        hit = cat.loc[cat["instance_type"] == instance_type, "usd_per_hour"]
        if hit.empty:
            return float(self._fallback.usd_per_hour(region, instance_type))
        return float(hit.iloc[0])

    def spot_usd_per_hour(self, region: str, instance_type: str, *, lookback: timedelta = timedelta(hours=6)) -> float:
        """The lowest current Linux spot price over the region's zones (``ec2:DescribeSpotPriceHistory``)."""
        ec2 = self._clients.ec2(region)
        start = self._now() - lookback
        latest: dict[str, tuple[datetime, float]] = {}
        for page in ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=start
        ):
            for item in page.get("SpotPriceHistory", []):
                zone, ts, price = item.get("AvailabilityZone", ""), item.get("Timestamp", start), float(item["SpotPrice"])
                if zone not in latest or ts > latest[zone][0]:
                    latest[zone] = (ts, price)
        if not latest:
            raise ConfigError(f"no spot price for {instance_type} in {region}; it may not be offered as spot there")
        return min(price for _, price in latest.values())
