"""Inter-region network round-trip time (RTT), in milliseconds: an ESTIMATE from distance.

No measured inter-region RTT table could be verified offline (cloudping.co-style matrices are
not embedded), so CaRE uses a documented physical model instead of made-up "measurements"::

    rtt_ms = 2 x distance_km x ROUTE_FACTOR / FIBRE_KM_PER_MS + OVERHEAD_MS

- ``distance_km``: great-circle distance between the regions' metro areas
  (:func:`care_flows.regions.distance_km`);
- ``FIBRE_KM_PER_MS = 200``: light in optical fibre travels at about 2/3 c, 200 km per ms;
- ``ROUTE_FACTOR = 1.5``: fibre routes are longer than the great circle (typical path
  inflation between data centres is 1.3-2);
- ``OVERHEAD_MS = 2``: switching, queuing and the in-region hops at both ends.

The same region is ``SAME_REGION_MS`` (1 ms, cross-AZ scale). Every value returned is labelled
``estimate`` by :data:`LATENCY_SOURCE`; pass measured values to :func:`rtt_ms` via
``table=`` (a mapping ``(a, b) -> ms``) to override.

>>> round(rtt_ms("eu-south-2", "eu-north-1"), 1)
37.4
>>> rtt_ms("eu-north-1", "eu-north-1")
1.0
>>> rtt_ms("eu-south-2", "eu-north-1", table={("eu-north-1", "eu-south-2"): 48.0})
48.0
"""

from __future__ import annotations

from collections.abc import Mapping

from care_flows.regions import distance_km, region_info

__all__ = ["rtt_ms", "latency_matrix", "LATENCY_SOURCE", "FIBRE_KM_PER_MS", "ROUTE_FACTOR", "OVERHEAD_MS", "SAME_REGION_MS"]

FIBRE_KM_PER_MS = 200.0
ROUTE_FACTOR = 1.5
OVERHEAD_MS = 2.0
SAME_REGION_MS = 1.0
LATENCY_SOURCE = (
    f"estimate: 2 x great-circle km x {ROUTE_FACTOR} / {FIBRE_KM_PER_MS:.0f} km/ms + {OVERHEAD_MS:.0f} ms "
    "(not measured; see care_flows/latency.py)"
)


def rtt_ms(a: str, b: str, *, table: Mapping[tuple[str, str], float] | None = None) -> float:
    """Round trip between regions ``a`` and ``b`` in ms (symmetric); unknown regions raise ``UnknownRegionError``."""
    region_info(a), region_info(b)
    if table is not None:
        for key in ((a, b), (b, a)):
            if key in table:
                return float(table[key])
    if a == b:
        return SAME_REGION_MS
    return 2.0 * distance_km(a, b) * ROUTE_FACTOR / FIBRE_KM_PER_MS + OVERHEAD_MS


def latency_matrix(regions: list[str]) -> dict[tuple[str, str], float]:
    """All pairwise :func:`rtt_ms` values for ``regions``.

    >>> m = latency_matrix(["eu-south-2", "eu-north-1"])
    >>> m[("eu-south-2", "eu-north-1")] == m[("eu-north-1", "eu-south-2")]
    True
    """
    return {(x, y): rtt_ms(x, y) for x in regions for y in regions}
