"""Carbon-intensity signals: one interface, several sources, a disk cache and a fallback chain.

Typical use (the rest of CaRE calls this)::

    from care_flows.signals import get_signal
    signal = get_signal(policy.carbon_source, kind=policy.signal)   # cached + fallback to embedded
    fc = signal.forecast("ES", start, "24h")                        # g_per_kwh Series
    series_meta(fc).source                                          # who actually answered

>>> from care_flows.signals import get_signal, series_meta
>>> s = get_signal("embedded").forecast("eu-north-1", "2023-03-01T00:00Z", "3h")
>>> series_meta(s).zone, series_meta(s).unit, len(s)
('SE', 'gCO2eq/kWh', 3)

See docs/SIGNALS.md for sources, units, signal kinds, cache, fallback and environment variables.
"""

from __future__ import annotations

from care_flows.signals.base import SIGNAL_KINDS, UNIT, CarbonSignal, SignalMeta, make_series, series_meta, zone_for
from care_flows.signals.cache import CachedSignal, StaleCacheSignal, default_cache_dir
from care_flows.signals.fallback import FallbackSignal
from care_flows.signals.registry import get_signal, known_sources
from care_flows.signals.trace import TraceSignal, read_electricitymaps_csv

__all__ = [
    "CarbonSignal",
    "SignalMeta",
    "SIGNAL_KINDS",
    "UNIT",
    "make_series",
    "series_meta",
    "zone_for",
    "TraceSignal",
    "read_electricitymaps_csv",
    "CachedSignal",
    "StaleCacheSignal",
    "default_cache_dir",
    "FallbackSignal",
    "get_signal",
    "known_sources",
    "ElectricityMapsSignal",
    "WattTimeSignal",
    "GBCarbonSignal",
]


def __getattr__(name: str):  # the HTTP clients import requests: load them on first use
    if name == "ElectricityMapsSignal":
        from care_flows.signals.electricitymaps import ElectricityMapsSignal

        return ElectricityMapsSignal
    if name == "WattTimeSignal":
        from care_flows.signals.watttime import WattTimeSignal

        return WattTimeSignal
    if name == "GBCarbonSignal":
        from care_flows.signals.gb import GBCarbonSignal

        return GBCarbonSignal
    raise AttributeError(f"module 'care_flows.signals' has no attribute {name!r}")
