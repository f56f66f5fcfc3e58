"""Carbon sources chosen by name: the one entry point the rest of CaRE uses.

``get_signal(name, kind=..., cache=True, fallback=True, **settings)`` builds the source and,
for live providers, wraps it as ``FallbackSignal([CachedSignal(live), cache.stale(), embedded])``
so that a provider failure degrades to cached, then embedded-history answers:

- ``embedded``: packaged Electricity Maps traces (settings: ``oracle``, ``shift``, ``replay``, ``forecast_model``);
- ``csv``: :meth:`TraceSignal.from_csv` (``path`` required, ``repair``, ``oracle``, ``shift``);
- ``electricitymaps``: Electricity Maps API v3 (``api_token``, ``base_url``, ``session``, ``timeout_s``);
- ``watttime``: WattTime API v3, marginal (``username``, ``password``, ``base_url``, ``session``);
- ``gb``: GB Carbon Intensity API, direct (``base_url``, ``session``).

``kind`` defaults to the source's own signal (lifecycle; marginal for WattTime; direct for GB).
The embedded fallback serves the same kind when it has it (lifecycle/direct) and life-cycle
data for a marginal request; the answer's ``attrs["signal"]`` always says which it is.
A live provider without credentials fails here, at start-up, with a "not configured" error.

>>> s = get_signal("embedded")
>>> s.history("ES", "2023-06-01T00:00Z", "2023-06-01T01:00Z").attrs["source"]
'embedded'
>>> get_signal("nope")
Traceback (most recent call last):
...
care_flows.errors.ConfigError: unknown carbon source 'nope'; known sources: csv, electricitymaps, embedded, gb, watttime
"""

from __future__ import annotations

from typing import Any, Callable

from care_flows.errors import ConfigError
from care_flows.signals.base import CarbonSignal
from care_flows.signals.cache import CachedSignal
from care_flows.signals.fallback import FallbackSignal
from care_flows.signals.trace import TraceSignal

__all__ = ["get_signal", "SOURCES", "known_sources"]

_TRACE_OPTIONS = ("oracle", "shift", "forecast_model", "replay", "clock")


def _electricitymaps(kind: str | None, **settings: Any) -> CarbonSignal:
    from care_flows.signals.electricitymaps import ElectricityMapsSignal

    return ElectricityMapsSignal(kind=kind or "lifecycle", **settings)


def _watttime(kind: str | None, **settings: Any) -> CarbonSignal:
    from care_flows.signals.watttime import WattTimeSignal

    return WattTimeSignal(kind=kind or "marginal", **settings)


def _gb(kind: str | None, **settings: Any) -> CarbonSignal:
    from care_flows.signals.gb import GBCarbonSignal

    return GBCarbonSignal(kind=kind or "direct", **settings)


def _embedded(kind: str | None, **settings: Any) -> CarbonSignal:
    settings.setdefault("replay", True)  # forecasts for dates after 2023 replay the last year
    if kind == "marginal":
        raise ConfigError("the embedded data has no marginal signal; use kind='lifecycle' or 'direct' (on the command line --kind lifecycle or --kind direct), or source 'watttime'")
    return TraceSignal.embedded(kind or "lifecycle", **settings)


def _csv(kind: str | None, **settings: Any) -> CarbonSignal:
    path = settings.pop("path", None)
    if path is None:
        raise ConfigError("carbon source 'csv' needs path=<Electricity Maps CSV> (or {zone: path})")
    return TraceSignal.from_csv(path, kind=kind or "lifecycle", **settings)


SOURCES: dict[str, Callable[..., CarbonSignal]] = {
    "embedded": _embedded,
    "csv": _csv,
    "electricitymaps": _electricitymaps,
    "watttime": _watttime,
    "gb": _gb,
}
LIVE = {"electricitymaps", "watttime", "gb"}


def known_sources() -> list[str]:
    """Names :func:`get_signal` accepts."""
    return sorted(SOURCES)


def get_signal(
    name: str = "embedded",
    *,
    kind: str | None = None,
    cache: bool = True,
    fallback: bool = True,
    cache_dir: Any = None,
    ttl: Any = None,
    history_ttl: Any = None,
    **settings: Any,
) -> CarbonSignal:
    """The carbon signal called ``name``: cached and fallback-wrapped for live providers.

    >>> import pandas as pd
    >>> fc = get_signal("embedded").forecast("eu-north-1", pd.Timestamp("2023-06-01T08:00Z"), pd.Timedelta("4h"))
    >>> len(fc), fc.name, fc.attrs["source"], fc.attrs["zone"], fc.attrs["forecast_model"]
    (4, 'g_per_kwh', 'embedded', 'SE', 'ridge')
    >>> get_signal("electricmaps")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: unknown carbon source 'electricmaps'...
    """
    key = str(name).strip().lower()
    if key not in SOURCES:
        raise ConfigError(f"unknown carbon source {name!r}; known sources: {', '.join(known_sources())}")
    if kind is not None and kind not in ("lifecycle", "direct", "marginal"):
        raise ConfigError(f"unknown signal kind {kind!r}; use lifecycle, direct or marginal")
    if key not in LIVE:
        return SOURCES[key](kind, **settings)
    trace_options = {k: settings.pop(k) for k in _TRACE_OPTIONS if k in settings and k != "clock"}
    live = SOURCES[key](kind, **settings)
    chain: list[CarbonSignal] = []
    if cache:
        opts: dict[str, Any] = {"cache_dir": cache_dir}
        if ttl is not None:
            opts["ttl"] = ttl
        if history_ttl is not None:
            opts["history_ttl"] = history_ttl
        if "clock" in settings:
            opts["clock"] = settings["clock"]
        cached = CachedSignal(live, **opts)
        chain += [cached, cached.stale()]
    else:
        chain.append(live)
    if not fallback:
        return chain[0]
    emb_kind = live.kind if live.kind in ("lifecycle", "direct") else "lifecycle"
    trace_options.setdefault("replay", True)
    chain.append(TraceSignal.embedded(emb_kind, **trace_options))
    return FallbackSignal(chain, name=f"fallback:{live.name}")
