"""The fallback chain: answer from the first source that works, and say which one did.

``FallbackSignal([live, live_cache.stale(), embedded])`` tries each source in order. Bad input
(start after end, a time without offset, an empty zone) is a ConfigError raised before any source
is tried; after that, whatever a source raises (a provider error, or an unexpected exception from a
changed API format) is that source's failure and the next source is tried. A provider failure never
stops a run: only when *every* source fails (e.g. a zone the embedded data
has no trace for) a single :class:`~care_flows.errors.ProviderUnavailableError` is raised, which the
caller turns into "run now". A provider skipped by the circuit breaker
(:mod:`care_flows.signals.breaker`) fails at once, so the chain goes straight to the next source.

Every answer carries, in ``series.attrs`` (read them with :func:`~care_flows.signals.series_meta`):

- ``source``: who served the numbers (``electricitymaps``, ``cache:electricitymaps``,
  ``stale-cache:electricitymaps``, ``embedded``);
- ``signal``: the kind served (``lifecycle``, ``direct``, ``marginal``); a ``marginal`` request
  answered by the embedded data is ``lifecycle``: check it before comparing series;
- ``requested_source``: the source asked first (the chain's first source, without ``cache:``);
- ``fallback_errors``: one line per source that failed before the one that served,
  ``"<source>: <ErrorType>: <message>"`` (empty when the first source answered; never credentials);
- ``fallback_note``: ``None`` when the requested source (or its cache) answered, else one readable
  line, e.g. ``electricitymaps failed for ES (HTTP 500); using embedded (lifecycle, 2023 replay)``,
  which is also logged once per call as a WARNING on ``care_flows.signals.fallback``.

>>> from care_flows.signals.trace import TraceSignal
>>> chain = FallbackSignal([TraceSignal({}, source="empty-csv"), TraceSignal.embedded()])
>>> s = chain.history("ES", "2023-06-01T00:00Z", "2023-06-01T02:00Z")
>>> s.attrs["source"], s.attrs["requested_source"], s.attrs["signal"]
('embedded', 'empty-csv', 'lifecycle')
>>> s.attrs["fallback_errors"]
["empty-csv: UnknownZoneError: zone 'ES' is not in this empty-csv trace; it has no zones"]
>>> s.attrs["fallback_note"]
'empty-csv failed for ES (no data for this zone); using embedded (lifecycle)'
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import pandas as pd

from care_flows.errors import ConfigError, ProviderError, ProviderResponseError, ProviderUnavailableError, UnknownZoneError
from care_flows.signals.base import CarbonSignal, base_source, check_horizon, check_window, with_meta
from care_flows.timeutil import parse_time

__all__ = ["FallbackSignal", "short_reason"]

log = logging.getLogger("care_flows.signals.fallback")


def _one_line(source: str, exc: BaseException) -> str:
    return f"{source}: {type(exc).__name__}: {' '.join(str(exc).split())}"[:400]


def short_reason(exc: BaseException) -> str:
    """A few words on why a source failed, for people: ``HTTP 500``, ``timed out after 10 s``...

    >>> from care_flows.errors import ProviderUnavailableError
    >>> short_reason(ProviderUnavailableError("x", status=503)), short_reason(UnknownZoneError("zone 'XX' ..."))
    ('HTTP 503', 'no data for this zone')
    >>> short_reason(TypeError("unsupported operand"))  # a fault in the source itself is named
    'TypeError: unsupported operand'
    """
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, UnknownZoneError):
        return "no data for this zone"
    status = getattr(exc, "status", None)
    if isinstance(exc, ProviderError) and status:
        return f"HTTP {status}"
    if isinstance(exc, ProviderResponseError):
        return "unexpected answer format"
    if isinstance(exc, ProviderUnavailableError):
        text = str(exc)
        return "nothing cached" if text.startswith("no cached") else "unavailable"
    if isinstance(exc, ProviderError):
        return "failed"
    # not a provider's answer: a fault in the source or its set-up, which the note must name
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}".rstrip(": ")


def _served(series: pd.Series, asked_kind: str) -> str:
    """``embedded (lifecycle, 2023 replay)``, ``stale-cache:electricitymaps (lifecycle)``."""
    attrs = series.attrs
    signal = str(attrs.get("signal"))
    bits = [signal if signal == asked_kind else f"{signal}, not {asked_kind}"]
    model = str(attrs.get("forecast_model") or "")
    if "+replay(" in model:
        bits.append(model.split("+replay(", 1)[1].rstrip(")") + " replay")
    return f"{attrs.get('source')} ({', '.join(bits)})"


def _check_zone(zone: Any) -> None:
    if not isinstance(zone, str) or not zone.strip():
        raise ConfigError(f"zone {zone!r} is empty or not text; give a zone id such as ES or an AWS region such as eu-south-2")
    from care_flows.signals.base import zone_for

    zone_for(zone)  # a region-shaped typo (eu-sout-2) is a ConfigError with a did-you-mean, not "no source answered" (review 55a L2)


class FallbackSignal(CarbonSignal):
    """Try ``sources`` in order; record who answered and who failed."""

    def __init__(self, sources: Sequence[CarbonSignal], *, name: str | None = None) -> None:
        if not sources:
            raise ConfigError("FallbackSignal needs at least one source")
        self.sources = list(sources)
        first = self.sources[0]
        self.name = name or f"fallback:{first.name}"
        self.kind = first.kind
        self.step = first.step

    def __repr__(self) -> str:
        return f"FallbackSignal([{', '.join(repr(s) for s in self.sources)}])"

    def _try(self, what: str, zone: str, call: Callable[[CarbonSignal], pd.Series]) -> pd.Series:
        errors: list[str] = []
        first: BaseException | None = None
        requested = base_source(self.sources[0].name)
        for source in self.sources:
            try:
                series = call(source)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # the caller's input was checked above: anything a source raises is its failure
                errors.append(_one_line(source.name, exc))
                first = first or exc
                continue
            note = None
            if first is not None:
                served_zone = str(series.attrs.get("zone") or zone)
                where = zone if served_zone.upper() == str(zone).strip().upper() else f"{zone} ({served_zone})"
                note = f"{requested} failed for {where} ({short_reason(first)}); using {_served(series, self.kind)}"
                log.warning("%s", note)
            return with_meta(series, fallback_errors=tuple(errors), requested_source=requested, fallback_note=note)
        failed = ProviderUnavailableError(
            f"no carbon source answered the {what} for zone {zone} ({' | '.join(errors)}); "
            "run now, or use a zone with embedded data (ES, SE, DE, FR, GB) or a CSV trace",
            source=self.name,
        )
        if first is not None:  # why the requested source failed, in a few words (short_reason), for a caller's note
            failed.reason = short_reason(first)  # type: ignore[attr-defined]
        raise failed

    @property
    def accepts_aws_regions(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.sources[0], "accepts_aws_regions", False))

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        _check_zone(zone)  # bad input is a ConfigError, not a reason to fall back
        check_window(start, end)
        return self._try("history", zone, lambda s: s.history(zone, start, end))

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        _check_zone(zone)
        parse_time(start, name="start")
        check_horizon(horizon)
        return self._try("forecast", zone, lambda s: s.forecast(zone, start, horizon))
