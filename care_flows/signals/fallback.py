"""The fallback chain: answer from the first source that works, and say which one did.

``FallbackSignal([live, live_cache.stale(), embedded])`` tries each source in order. The answer
carries ``attrs["source"]`` (the source that served it) and ``attrs["fallback_errors"]`` (one
line per source that failed before it, ``"<source>: <ErrorType>: <message>"``; messages never
contain credentials). Bad input (start after end, a time without offset) is a ConfigError raised
before any source is tried. A provider failure never stops a run: only when *every* source fails
(e.g. a zone the embedded data has no trace for) a single
:class:`~care_flows.errors.ProviderUnavailableError` is raised, which the caller turns into
"run now".

>>> from care_flows.signals.trace import TraceSignal
>>> chain = FallbackSignal([TraceSignal({}, source="empty-csv"), TraceSignal.embedded()])
>>> s = chain.history("ES", "2023-06-01T00:00Z", "2023-06-01T02:00Z")
>>> s.attrs["source"], s.attrs["fallback_errors"]
('embedded', ["empty-csv: UnknownZoneError: zone 'ES' is not in this empty-csv trace; it has no zones"])
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import pandas as pd

from care_flows.errors import ConfigError, ProviderUnavailableError, UnknownZoneError
from care_flows.signals.base import CarbonSignal, check_horizon, check_window, with_meta
from care_flows.timeutil import parse_time

__all__ = ["FallbackSignal"]

log = logging.getLogger("care_flows.signals.fallback")


def _one_line(source: str, exc: BaseException) -> str:
    return f"{source}: {type(exc).__name__}: {' '.join(str(exc).split())}"[:400]


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
        for source in self.sources:
            try:
                series = call(source)
            except (KeyboardInterrupt, SystemExit):
                raise
            except ConfigError as exc:  # the caller's mistake, not a provider failure (an unknown zone is)
                if not isinstance(exc, UnknownZoneError):
                    raise
                errors.append(_one_line(source.name, exc))
                continue
            except Exception as exc:  # any source failure moves on to the next source
                errors.append(_one_line(source.name, exc))
                continue
            if errors:
                log.warning("carbon %s for %s served by %s after: %s", what, zone, series.attrs.get("source", source.name), " | ".join(errors))
            return with_meta(series, fallback_errors=tuple(errors))
        raise ProviderUnavailableError(
            f"no carbon source answered the {what} for zone {zone} ({' | '.join(errors)}); "
            "run now, or use a zone with embedded data (ES, SE, DE, FR, GB) or a CSV trace",
            source=self.name,
        )

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        check_window(start, end)  # bad input is a ConfigError, not a reason to fall back
        return self._try("history", zone, lambda s: s.history(zone, start, end))

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        parse_time(start, name="start")
        check_horizon(horizon)
        return self._try("forecast", zone, lambda s: s.forecast(zone, start, horizon))
