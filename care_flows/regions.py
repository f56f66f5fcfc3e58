"""Region registry: AWS region -> grid zone (Electricity Maps, WattTime, GB API) and location.

The grid zone is where the region's electricity comes from: eu-south-2 (Aragón) is on the
Spanish grid (Electricity Maps ``ES``), eu-north-1 (Stockholm) on the Swedish bidding zone
SE3 (``SE-SE3``; the embedded trace is the country-level ``SE`` series). Coordinates are the
metro area AWS names for the region (approximate, for distance and latency estimates).
WattTime region names are best-effort: when a WattTime source has credentials it resolves the
region from the coordinates with ``/v3/region-from-loc`` instead.

>>> region_info("eu-south-2").zone, region_info("eu-north-1").zone
('ES', 'SE-SE3')
>>> region_info("eu-north-1").embedded_zone
'SE'
>>> region_info("mars-1")
Traceback (most recent call last):
...
care_flows.errors.UnknownRegionError: unknown region 'mars-1'; known regions: ...
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass

from care_flows.errors import UnknownRegionError, UnknownZoneError

__all__ = ["Region", "REGIONS", "region_info", "known_regions", "zone_for_region", "regions_for_zone", "distance_km"]


@dataclass(frozen=True)
class Region:
    """One AWS region and the grid that powers it."""

    name: str
    location: str
    zone: str
    """Electricity Maps zone id."""
    lat: float
    lon: float
    watttime_region: str | None = None
    gb_region_id: int | None = None
    """GB Carbon Intensity API region id (only for regions on the GB grid; 13 = London)."""

    @property
    def embedded_zone(self) -> str | None:
        """The zone of the embedded traces that stands for this region's grid, if any."""
        key = self.zone.split("-")[0] if self.zone.startswith("SE") else self.zone
        return key if key in {"ES", "SE", "DE", "FR", "GB"} else None


_R = Region
REGIONS: dict[str, Region] = {
    r.name: r
    for r in [
        # Europe
        _R("eu-north-1", "Stockholm, Sweden", "SE-SE3", 59.33, 18.07, "SE"),
        _R("eu-south-2", "Aragón, Spain", "ES", 41.65, -0.88, "ES"),
        _R("eu-south-1", "Milan, Italy", "IT-NO", 45.46, 9.19, "IT"),
        _R("eu-central-1", "Frankfurt, Germany", "DE", 50.11, 8.68, "DE"),
        _R("eu-central-2", "Zurich, Switzerland", "CH", 47.37, 8.54, "CH"),
        _R("eu-west-1", "Dublin, Ireland", "IE", 53.35, -6.26, "IE"),
        _R("eu-west-2", "London, United Kingdom", "GB", 51.51, -0.13, "UK", gb_region_id=13),
        _R("eu-west-3", "Paris, France", "FR", 48.86, 2.35, "FR"),
        # United States
        _R("us-east-1", "N. Virginia, USA", "US-MIDA-PJM", 38.95, -77.45, "PJM_DC"),
        _R("us-east-2", "Ohio, USA", "US-MIDA-PJM", 39.96, -83.00, "PJM_WEST"),
        _R("us-west-1", "N. California, USA", "US-CAL-CISO", 37.35, -121.96, "CAISO_NORTH"),
        _R("us-west-2", "Oregon, USA", "US-NW-BPAT", 45.84, -119.70, "BPA"),
        # Elsewhere (zones only; no embedded trace)
        _R("ca-central-1", "Montréal, Canada", "CA-QC", 45.50, -73.57, "HQ"),
        _R("sa-east-1", "São Paulo, Brazil", "BR-CS", -23.55, -46.63, None),
        _R("ap-northeast-1", "Tokyo, Japan", "JP-TK", 35.68, 139.69, None),
        _R("ap-southeast-2", "Sydney, Australia", "AU-NSW", -33.87, 151.21, None),
        _R("ap-south-1", "Mumbai, India", "IN-WE", 19.08, 72.88, None),
    ]
}


def known_regions() -> list[str]:
    """All region names in the registry, sorted.

    >>> "eu-north-1" in known_regions() and "eu-south-2" in known_regions()
    True
    """
    return sorted(REGIONS)


def region_info(region: str) -> Region:
    """The :class:`Region` for an AWS region name; unknown names list the known ones.

    >>> r = region_info("eu-north-1")
    >>> r.location, r.zone, r.embedded_zone
    ('Stockholm, Sweden', 'SE-SE3', 'SE')
    >>> region_info("eu-moon-1")
    Traceback (most recent call last):
    ...
    care_flows.errors.UnknownRegionError: unknown region 'eu-moon-1'; known regions: ...
    """
    try:
        return REGIONS[region.strip()]
    except (KeyError, AttributeError):
        raise UnknownRegionError(f"unknown region {region!r}{_region_hint(region)}; known regions: {', '.join(known_regions())}") from None


@functools.lru_cache(maxsize=1)
def _aws_regions() -> frozenset[str]:
    """Every EC2 region in botocore's bundled endpoint data (no network; read once: a session costs ~0.25 s),
    or none when it cannot be read (it only adds a hint)."""
    try:
        import botocore.session

        session = botocore.session.get_session()
        return frozenset(r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", partition_name=p))
    except Exception:  # noqa: BLE001
        return frozenset()


def _region_hint(region: object) -> str:
    """What to say about a region name the table does not know: a real AWS region CaRE has no data
    for, or the known region it is a typo of (or nothing).

    >>> _region_hint("eu-nort-1"), _region_hint("ap-southeast-1"), _region_hint("eu-moon-1")
    (" (did you mean 'eu-north-1'?)", ' (an AWS region CaRE has no grid zone, prices or latencies for)', '')
    >>> _region_hint("EU-North-1")
    " (AWS region names are lower case: did you mean 'eu-north-1'?)"
    """
    import difflib

    text = str(region).strip()
    if text.lower() != text and text.lower() in REGIONS:
        return f" (AWS region names are lower case: did you mean {text.lower()!r}?)"
    text = text.lower()  # an AWS region CaRE does not know is named so in any case (review 44d L6)
    if text in _aws_regions():
        return " (an AWS region CaRE has no grid zone, prices or latencies for)"
    close = difflib.get_close_matches(text, known_regions(), n=1, cutoff=0.85)
    return f" (did you mean {close[0]!r}?)" if close else ""


def zone_for_region(region: str) -> str:
    """The Electricity Maps zone id of a region's grid."""
    return region_info(region).zone


def regions_for_zone(zone: str) -> list[str]:
    """Regions on a grid zone (``SE`` matches ``SE-SE3``); an unknown zone lists the known ones."""
    z = zone.strip().upper()
    found = [r.name for r in REGIONS.values() if r.zone.upper() == z or r.embedded_zone == z]
    if not found:
        zones = sorted({r.zone for r in REGIONS.values()} | {"SE"})
        raise UnknownZoneError(f"unknown zone {zone!r}; known zones: {', '.join(zones)}")
    return found


def distance_km(a: str, b: str) -> float:
    """Great-circle distance between two regions' metro areas, in km.

    >>> round(distance_km("eu-south-2", "eu-north-1"))
    2361
    """
    ra, rb = region_info(a), region_info(b)
    p1, p2 = math.radians(ra.lat), math.radians(rb.lat)
    dp, dl = p2 - p1, math.radians(rb.lon - ra.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))
