"""A disk cache with TTL in front of any signal, so a thousand flows asking the same question cost one call.

``CachedSignal(inner, cache_dir=..., ttl=..., history_ttl=...)``: the key is built from
(source name, zone, signal kind, operation, window rounded to the source's step) and nothing
else: no credential, no URL. Each entry is one JSON file
``<cache_dir>/<source>/<op>-<zone>-<kind>-<hash>.json`` written atomically (temporary file in the
same directory, then :func:`os.replace`), so a crash never leaves a half-written entry; a corrupt
file is treated as a miss. Concurrent callers of the same key (threads, or processes via
``fcntl`` locks) wait for the first fetch instead of each calling the provider.

- Default directory: ``$CARE_CACHE_DIR`` or ``~/.cache/care``.
- Default TTL: 15 min for forecasts, 6 h for history.
- A hit is labelled ``source="cache:<source>"``. :meth:`CachedSignal.stale` is a signal that
  serves *expired* entries too (``source="stale-cache:<source>"``); the fallback chain uses it
  when the live source fails.

>>> import tempfile
>>> from care_flows.signals.trace import TraceSignal
>>> c = CachedSignal(TraceSignal.embedded(), cache_dir=tempfile.mkdtemp())
>>> a = c.history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
>>> b = c.history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
>>> a.attrs["source"], b.attrs["source"], a.tolist() == b.tolist(), c.misses, c.hits
('embedded', 'cache:embedded', True, 1, 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from care_flows.atomic import atomic_open
from care_flows.errors import ProviderUnavailableError
from care_flows.signals.base import CarbonSignal, SignalMeta, check_horizon, check_window, make_series, series_meta
from care_flows.timeutil import parse_duration, parse_time, utcnow

try:  # POSIX only; elsewhere concurrent processes may each fetch once
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["CachedSignal", "StaleCacheSignal", "default_cache_dir", "DEFAULT_FORECAST_TTL", "DEFAULT_HISTORY_TTL"]

log = logging.getLogger("care_flows.signals.cache")

DEFAULT_FORECAST_TTL = timedelta(minutes=15)
DEFAULT_HISTORY_TTL = timedelta(hours=6)
_FORMAT = 1
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def default_cache_dir() -> Path:
    """``$CARE_CACHE_DIR`` or ``~/.cache/care``."""
    env = os.environ.get("CARE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "care"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:40] or "_"


class CachedSignal(CarbonSignal):
    """Serve repeated questions from disk within ``ttl`` (forecasts) / ``history_ttl`` (history)."""

    def __init__(
        self,
        inner: CarbonSignal,
        *,
        cache_dir: str | Path | None = None,
        ttl: Any = DEFAULT_FORECAST_TTL,
        history_ttl: Any = DEFAULT_HISTORY_TTL,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.step = inner.step
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.ttl = pd.Timedelta(parse_duration(ttl, name="ttl"))
        self.history_ttl = pd.Timedelta(parse_duration(history_ttl, name="history_ttl"))
        self.clock = clock
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedSignal({self.inner!r}, cache_dir={str(self.cache_dir)!r}, ttl={self.ttl})"

    # -- keys and files -------------------------------------------------------------------
    def _request(self, op: str, zone: str, a: pd.Timestamp, b: pd.Timestamp) -> dict[str, str]:
        return {"source": self.inner.name, "zone": str(zone).strip(), "kind": self.inner.kind, "op": op, "start": a.isoformat(), "end": b.isoformat()}

    def _path(self, req: dict[str, str]) -> Path:
        digest = hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / _slug(req["source"]) / f"{req['op']}-{_slug(req['zone'])}-{_slug(req['kind'])}-{digest}.json"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("format") != _FORMAT:
                return None
            return doc
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s)", path.name, type(exc).__name__)
            return None

    def _write(self, path: Path, req: dict[str, str], series: pd.Series) -> None:
        meta = series_meta(series)
        doc = {
            "format": _FORMAT,
            "stored_at": self.clock().isoformat(),
            "request": req,
            "meta": {
                "source": meta.source,
                "signal": meta.signal,
                "zone": meta.zone,
                "issued_at": None if meta.issued_at is None else pd.Timestamp(meta.issued_at).isoformat(),
                "unit": meta.unit,
                "forecast_model": meta.forecast_model,
            },
            "times": [t.isoformat() for t in series.index],
            "g_per_kwh": [float(v) for v in series.to_numpy()],
        }
        with atomic_open(path, make_parents=True, fsync=True) as fh:
            json.dump(doc, fh)

    def _series(self, doc: dict[str, Any], label: str) -> pd.Series:
        m = doc["meta"]
        meta = SignalMeta(
            source=f"{label}:{m['source']}",
            signal=m["signal"],
            zone=m["zone"],
            issued_at=None if m.get("issued_at") is None else pd.Timestamp(m["issued_at"]),
            unit=m.get("unit", "gCO2eq/kWh"),
            forecast_model=m.get("forecast_model"),
        )
        return make_series(np.asarray(doc["g_per_kwh"], dtype=float), pd.DatetimeIndex(doc["times"]), meta)

    def _fresh(self, doc: dict[str, Any] | None, ttl: pd.Timedelta) -> bool:
        return doc is not None and self.clock() - pd.Timestamp(doc["stored_at"]) <= ttl

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        with _locks_guard:
            lock = _locks.setdefault(str(path), threading.Lock())
        with lock:
            if fcntl is None:
                yield
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _get(self, req: dict[str, str], ttl: pd.Timedelta, fetch: Callable[[], pd.Series]) -> pd.Series:
        path = self._path(req)
        doc = self._read(path)
        if self._fresh(doc, ttl):
            self.hits += 1
            return self._series(doc, "cache")  # type: ignore[arg-type]
        with self._lock(path):
            doc = self._read(path)  # another caller may have filled it meanwhile
            if self._fresh(doc, ttl):
                self.hits += 1
                return self._series(doc, "cache")  # type: ignore[arg-type]
            self.misses += 1
            series = fetch()
            try:
                self._write(path, req, series)
            except OSError as exc:  # a read-only or full disk must not fail the run
                log.warning("could not write cache entry %s (%s)", path.name, type(exc).__name__)
            return series

    # -- the signal interface -------------------------------------------------------------
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        s, e = check_window(start, end)
        step = pd.Timedelta(self.step)
        a, b = s.floor(step), e.ceil(step)
        return self._get(self._request("history", zone, a, b), self.history_ttl, lambda: self.inner.history(zone, a, b))

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        step = pd.Timedelta(self.step)
        a, b = s.floor(step), (s + h).ceil(step)
        return self._get(self._request("forecast", zone, a, b), self.ttl, lambda: self.inner.forecast(zone, a, b - a))

    def stale(self) -> "StaleCacheSignal":
        """A signal answering from any stored entry, however old (for the fallback chain)."""
        return StaleCacheSignal(self)


class StaleCacheSignal(CarbonSignal):
    """Answers from expired cache entries whose window covers the question (newest entry first)."""

    def __init__(self, cached: CachedSignal) -> None:
        self.cached = cached
        self.name = f"stale-cache:{cached.inner.name}"
        self.kind = cached.kind
        self.step = cached.step

    def __repr__(self) -> str:
        return f"StaleCacheSignal({self.cached!r})"

    def _answer(self, op: str, zone: str, a: pd.Timestamp, b: pd.Timestamp) -> pd.Series:
        c = self.cached
        folder = c.cache_dir / _slug(c.inner.name)
        best: tuple[pd.Timestamp, pd.Series] | None = None
        for path in folder.glob(f"{op}-{_slug(str(zone).strip())}-{_slug(c.inner.kind)}-*.json"):
            doc = c._read(path)
            if doc is None or not doc["times"]:
                continue
            s = c._series(doc, "stale-cache")
            part = s[(s.index >= a) & (s.index < b)]
            if part.empty or part.index[0] > a:
                continue
            stored = pd.Timestamp(doc["stored_at"])
            if best is None or stored > best[0]:
                best = (stored, part)
        if best is None:
            raise ProviderUnavailableError(f"no cached {op} of {c.inner.name} for zone {zone} covering {a.isoformat()}", source=self.name)
        return best[1]

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        s, e = check_window(start, end)
        return self._answer("history", zone, s.floor(pd.Timedelta(self.step)), e)

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        return self._answer("forecast", zone, s.floor(pd.Timedelta(self.step)), s + h)
