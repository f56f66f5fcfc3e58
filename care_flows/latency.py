"""Inter-region network round-trip time (RTT), in milliseconds: an embedded MEASURED table.

``care_flows/data/aws_inter_region_rtt_p50_ms.csv`` holds the median (p50) RTT between every pair
of the registry's AWS regions over one year, as measured by CloudPing.co (TCP connections between
AWS regions, https://www.cloudping.co, software MIT-licensed; the snapshot of its API
``/api/latencies?percentile=p_50&timeframe=1Y`` published as ``web-utilities/aws-ping-p50-1y.json``
in oaustegard/oaustegard.github.io, Apache-2.0, commit 22f8adc of 2025-10-09). Each pair is the
mean of both directions, rounded to 0.1 ms; a region to itself is its in-region RTT (2-5 ms).
Sources and licences: ``care_flows/data/README.md``.

A pair the table lacks (a region added to the registry later) falls back to a documented
physical ESTIMATE, labelled as such by :func:`latency_source`::

    rtt_ms = 2 x distance_km x ROUTE_FACTOR / FIBRE_KM_PER_MS + OVERHEAD_MS

with the great-circle distance of :func:`care_flows.regions.distance_km`, light in fibre at
200 km/ms, fibre routes 1.5x the great circle and 2 ms of switching at the ends. Pass your own
measurements with ``table=`` (a mapping ``(a, b) -> ms``) to override both.

>>> rtt_ms("eu-south-2", "eu-north-1")
54.7
>>> rtt_ms("eu-north-1", "eu-north-1")
3.2
>>> rtt_ms("eu-south-2", "eu-north-1", table={("eu-north-1", "eu-south-2"): 48.0})
48.0
>>> latency_source("eu-south-2", "eu-north-1")
'measured: CloudPing.co p50 over 1 year'
>>> round(estimated_rtt_ms("eu-south-2", "eu-north-1"), 1)  # the fallback model, for comparison
37.4
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from care_flows.regions import distance_km, region_info

__all__ = ["rtt_ms", "estimated_rtt_ms", "latency_source", "latency_matrix", "measured_table", "LATENCY_SOURCE",
           "FIBRE_KM_PER_MS", "ROUTE_FACTOR", "OVERHEAD_MS", "SAME_REGION_MS"]

FIBRE_KM_PER_MS = 200.0
ROUTE_FACTOR = 1.5
OVERHEAD_MS = 2.0
SAME_REGION_MS = 1.0
TABLE_FILE = "aws_inter_region_rtt_p50_ms.csv"
MEASURED = "measured: CloudPing.co p50 over 1 year"
ESTIMATED = f"estimate: 2 x great-circle km x {ROUTE_FACTOR} / {FIBRE_KM_PER_MS:.0f} km/ms + {OVERHEAD_MS:.0f} ms"
LATENCY_SOURCE = (
    f"{MEASURED} (embedded snapshot, care_flows/data/{TABLE_FILE}); pairs it lacks: {ESTIMATED} (see care_flows/latency.py)"
)


@lru_cache(maxsize=1)
def measured_table() -> dict[tuple[str, str], float]:
    """The embedded measured table, ``(from_region, to_region) -> ms`` (both orders present)."""
    import csv
    import io
    from importlib import resources

    text = resources.files("care_flows.data").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    return {(row["from_region"], row["to_region"]): float(row["rtt_ms"]) for row in csv.DictReader(io.StringIO(text))}


def estimated_rtt_ms(a: str, b: str) -> float:
    """The physical estimate from distance (the fallback; ``SAME_REGION_MS`` for one region)."""
    if a == b:
        return SAME_REGION_MS
    return 2.0 * distance_km(a, b) * ROUTE_FACTOR / FIBRE_KM_PER_MS + OVERHEAD_MS


def rtt_ms(a: str, b: str, *, table: Mapping[tuple[str, str], float] | None = None) -> float:
    """Round trip between regions ``a`` and ``b`` in ms (symmetric); unknown regions raise ``UnknownRegionError``."""
    region_info(a), region_info(b)
    for source in (table, measured_table()):
        if source is not None:
            for key in ((a, b), (b, a)):
                if key in source:
                    return float(source[key])
    return estimated_rtt_ms(a, b)


def latency_source(a: str, b: str) -> str:
    """Whether :func:`rtt_ms` of this pair is measured (the embedded table) or estimated."""
    region_info(a), region_info(b)
    table = measured_table()
    return MEASURED if (a, b) in table or (b, a) in table else ESTIMATED


def latency_matrix(regions: list[str]) -> dict[tuple[str, str], float]:
    """All pairwise :func:`rtt_ms` values for ``regions``.

    >>> m = latency_matrix(["eu-south-2", "eu-north-1"])
    >>> m[("eu-south-2", "eu-north-1")] == m[("eu-north-1", "eu-south-2")]
    True
    """
    return {(x, y): rtt_ms(x, y) for x in regions for y in regions}
