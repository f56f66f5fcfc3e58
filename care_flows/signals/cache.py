"""A disk cache with TTL in front of any signal, so a thousand flows asking the same question cost one call.

``CachedSignal(inner, cache_dir=..., ttl=..., history_ttl=...)``: the key is built from
(source name, zone, signal kind, operation, window rounded to the source's step) and nothing
else: no credential, no URL. Each entry is one JSON file
``<cache_dir>/<source>/<op>-<zone>-<kind>-<hash>.json`` written atomically (temporary file in the
same directory, then :func:`os.replace`), so a crash never leaves a half-written entry; a corrupt
file is treated as a miss. Concurrent callers of the same key (threads, or processes via
``fcntl`` locks) wait for the first fetch instead of each calling the provider.

- Default directory: ``$CARE_CACHE_DIR`` or ``~/.cache/care``. A folder that cannot be created or
  written (a read-only root file system, a wrong ``CARE_CACHE_DIR``) means "no cache": one WARNING
  is logged and the provider is asked directly, without a lock.
- Default TTL: 15 min for forecasts, 6 h for history; a history window that ends less than 2 h
  before the fetch (or later) holds data only up to "now", so it is kept for the forecast TTL only.
- An entry that cannot be read or has the wrong shape is a miss (logged), and is replaced by the
  next answer; the stale lookup skips it.
- When the provider is unavailable or rate limited, a short-lived negative entry ``<key>.fail``
  (failure time, short reason, until when; no message text, no credential) is written under the
  lock: other threads and processes waiting for the same key fail fast on it for ``fail_ttl``
  (60 s, at most the provider's breaker cool-down, at least its ``Retry-After``; none when the
  cool-down is 0) instead of each waiting for the provider's timeout in turn. The same failure
  (unavailable; not a rate limit, which is one account's) also writes
  ``<source>/provider-<hash of source and base URL>.down``: for as long, a process
  asking *another* question of that provider (another zone or window: a new CLI call, the next
  deployed run) fails fast too, as the in-process circuit breaker does within one process. The
  provider's next answer removes both.
- Entries of the same operation/zone/kind stored and ending more than ``keep`` (3 days) ago are
  deleted with their ``.lock``/``.fail`` files whenever a new entry is written, so the folder and
  the stale lookup stay bounded.
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
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from care_flows.atomic import atomic_open
from care_flows.errors import ProviderRateLimitError, ProviderUnavailableError
from care_flows.signals._http import MAX_RETRY_AFTER_COOLDOWN_S
from care_flows.signals.base import CarbonSignal, SignalMeta, check_horizon, check_window, make_series, series_meta
from care_flows.timeutil import parse_duration, parse_time, utcnow

try:  # POSIX only; elsewhere concurrent processes may each fetch once
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CachedSignal",
    "StaleCacheSignal",
    "default_cache_dir",
    "DEFAULT_FORECAST_TTL",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_FAIL_TTL",
    "DEFAULT_KEEP",
    "RECENT_HISTORY",
]

log = logging.getLogger("care_flows.signals.cache")

DEFAULT_FORECAST_TTL = timedelta(minutes=15)
DEFAULT_HISTORY_TTL = timedelta(hours=6)
DEFAULT_FAIL_TTL = timedelta(seconds=60)
"""How long a negative entry (the provider failed for this key) makes other callers fail fast."""
DEFAULT_KEEP = timedelta(days=3)
"""Entries stored and ending more than this long ago are pruned when a new one is written."""
RECENT_HISTORY = pd.Timedelta("2h")
"""A history window ending later than ``stored_at - RECENT_HISTORY`` may lack its last points: short TTL."""
CLOCK_SKEW = pd.Timedelta("5min")
"""An entry stored further in the future than this (the clock was ahead, then corrected) is stale."""
_FORMAT = 1
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def default_cache_dir() -> Path:
    """``$CARE_CACHE_DIR`` or ``~/.cache/care``."""
    env = os.environ.get("CARE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "care"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:40] or "_"


_UNUSABLE_WARNED: set[str] = set()
"""Cache folders already said to be unusable in this process (a WARNING once, then DEBUG)."""


class CachedSignal(CarbonSignal):
    """Serve repeated questions from disk within ``ttl`` (forecasts) / ``history_ttl`` (history)."""

    def __init__(
        self,
        inner: CarbonSignal,
        *,
        cache_dir: str | Path | None = None,
        ttl: Any = DEFAULT_FORECAST_TTL,
        history_ttl: Any = DEFAULT_HISTORY_TTL,
        fail_ttl: Any = DEFAULT_FAIL_TTL,
        keep: Any = DEFAULT_KEEP,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.step = inner.step
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.ttl = pd.Timedelta(parse_duration(ttl, name="ttl"))
        self.history_ttl = pd.Timedelta(parse_duration(history_ttl, name="history_ttl"))
        self.fail_ttl = pd.Timedelta(parse_duration(fail_ttl, name="fail_ttl"))
        self.keep = pd.Timedelta(parse_duration(keep, name="keep"))
        self.clock = clock
        self._said: set[tuple[str, int, int]] = set()  # bad entries already warned about (path, mtime, size)
        self.hits = 0
        self.misses = 0
        self._warned_unusable = False

    def __repr__(self) -> str:
        return f"CachedSignal({self.inner!r}, cache_dir={str(self.cache_dir)!r}, ttl={self.ttl})"

    @property
    def accepts_aws_regions(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "accepts_aws_regions", False))

    # -- keys and files -------------------------------------------------------------------
    def _request(self, op: str, zone: str, a: pd.Timestamp, b: pd.Timestamp) -> dict[str, str]:
        req = {"source": self.inner.name, "zone": str(zone).strip(), "kind": self.inner.kind, "op": op, "start": a.isoformat(), "end": b.isoformat()}
        tag = str(getattr(self.inner, "cache_tag", "") or "")
        if tag:  # what else changes the answer (WattTime's signal_type); no credential, no URL
            req["tag"] = tag
        return req

    def _path(self, req: dict[str, str]) -> Path:
        digest = hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / _slug(req["source"]) / f"{_pattern(req['op'], req['zone'], req['kind'])}{digest}.json"

    def _load(self, path: Path, label: str) -> tuple[pd.Timestamp, dict[str, Any], pd.Series] | None:
        """``(stored_at, request, series)`` of a readable entry of the right shape, else None (logged)."""
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (FileNotFoundError, NotADirectoryError):  # no entry (or no usable folder: _lock says so once)
            return None
        except (OSError, ValueError) as exc:
            self._say_once(path, f"ignoring unreadable cache entry {path.name} ({type(exc).__name__})")
            return None
        if isinstance(doc, dict) and doc.get("format") != _FORMAT and isinstance(doc.get("format"), int):
            return None  # another CaRE version's format: not ours to judge
        try:
            problem = _shape_problem(doc)
            if problem is None:
                stored = pd.Timestamp(doc["stored_at"])
                if stored.tzinfo is None:
                    problem = "stored_at has no UTC offset"
                else:
                    return stored.tz_convert("UTC"), doc["request"], self._series(doc, label)
        except Exception as exc:  # any decoding failure makes the entry a miss, never an error
            problem = f"{type(exc).__name__}"
        self._say_once(path, f"ignoring cache entry {path.name} of the wrong shape ({problem}); it is replaced by the next answer")
        return None

    def _say_once(self, path: Path, line: str) -> None:
        """Warn about a bad entry once per version of the file: a lookup reads it twice (before and under
        the lock), and the same bytes need not be reported twice."""
        try:
            st = path.stat()
            version = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            version = (str(path), 0, 0)
        if version not in self._said:
            self._said.add(version)
            log.warning("%s", line)

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
                "unmeasured": list(meta.unmeasured),
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
            unmeasured=tuple(m.get("unmeasured") or ()),
        )
        return make_series(np.asarray(doc["g_per_kwh"], dtype=float), pd.DatetimeIndex(doc["times"]), meta)

    # -- negative entries (the provider failed for this key a moment ago) -------------------
    def _fail_path(self, path: Path) -> Path:
        return path.with_suffix(".fail")

    def _down_path(self, checking: bool = False) -> Path | None:
        """The provider-wide negative entry (None for a source that is not an HTTP provider; when
        ``checking``, also None while this process's circuit breaker is open for the provider: it
        answers at once, with its own cool-down)."""
        http = getattr(self.inner, "http", None)
        base = getattr(http, "base_url", None)
        if not isinstance(base, str):
            return None
        breaker = getattr(http, "breaker", None)
        if checking and breaker is not None and breaker.is_open(getattr(http, "source", self.inner.name), base, http.clock()):
            return None
        digest = hashlib.sha256(f"{self.inner.name}|{base}".encode()).hexdigest()[:16]
        return self.cache_dir / _slug(self.inner.name) / f"provider-{digest}.down"

    def _check_failure(self, path: Path, req: dict[str, str]) -> None:
        """Raise ProviderUnavailableError while a recent negative entry for this key, or for the
        whole provider, is valid. A zone the provider never serves (a source with a ``target(zone)``
        that refuses it, the GB API for SE) is that, not the provider's earlier failure for another
        zone (review 44a L4)."""
        target = getattr(self.inner, "target", None)
        if callable(target):
            target(req["zone"])  # UnknownZoneError: "no data for this zone"
        down = self._down_path(checking=True)
        for fail, scope in ((self._fail_path(path), f"for zone {req['zone']} (the cache's negative entry); skipping it for this window"),
                            (down, "(the cache's negative entry for the provider); skipping it for every zone and window")):
            if fail is None:
                continue
            try:
                with open(fail, encoding="utf-8") as fh:
                    doc = json.load(fh)
                failed_at, until = pd.Timestamp(doc["failed_at"]), pd.Timestamp(doc["until"])
                reason = " ".join(str(doc.get("reason") or "unavailable").split())[:80]
            except Exception:  # noqa: BLE001 - no entry; one that cannot be read or has the wrong shape is none
                continue
            now = self.clock()
            if failed_at.tzinfo is None or until.tzinfo is None or not (failed_at <= now < until):
                continue
            ago = (now - failed_at).total_seconds()
            exc = ProviderUnavailableError(f"{self.inner.name} failed {ago:.0f} s ago ({reason}) {scope} until {until.isoformat()}",
                                           source=self.inner.name)
            exc.reason = f"{reason}, {ago:.0f} s ago"  # type: ignore[attr-defined]
            raise exc

    def _record_failure(self, path: Path, exc: BaseException) -> None:
        now = self.clock()
        ttl = self.fail_ttl
        cooldown_s = getattr(getattr(self.inner, "http", None), "cooldown_s", None)
        if isinstance(cooldown_s, (int, float)):  # the provider's circuit-breaker setting: 0 = always ask
            if cooldown_s <= 0:
                return
            ttl = min(ttl, pd.Timedelta(seconds=float(cooldown_s)))
        retry_after = getattr(exc, "retry_after_s", None)
        if isinstance(retry_after, (int, float)) and retry_after > ttl.total_seconds():
            ttl = pd.Timedelta(seconds=min(float(retry_after), max(MAX_RETRY_AFTER_COOLDOWN_S, ttl.total_seconds())))
        if ttl <= pd.Timedelta(0):
            return
        # the breaker's own failure, not its decorated reason (", 0 s ago, skipping until ..."): this entry adds its own "ago"
        reason = str(getattr(exc, "trip_reason", None) or getattr(exc, "reason", None)
                     or ("rate limited" if isinstance(exc, ProviderRateLimitError) else "unavailable"))
        doc = {"format": _FORMAT, "failed_at": now.isoformat(), "until": (now + ttl).isoformat(), "reason": " ".join(reason.split())[:80], "error": type(exc).__name__}
        # a rate limit is the account's, not the provider's: another token may still be served
        down = None if isinstance(exc, ProviderRateLimitError) else self._down_path()
        for fail in (self._fail_path(path), down):
            if fail is None:
                continue
            try:
                with atomic_open(fail, make_parents=True) as fh:
                    json.dump(doc, fh)
            except OSError as err:
                log.debug("could not write negative cache entry %s (%s)", fail.name, type(err).__name__)

    # -- locking ---------------------------------------------------------------------------
    def _unusable(self, exc: OSError) -> None:
        folder = str(self.cache_dir)  # once per folder and process: care regions and @care build a cached signal per use
        level = logging.DEBUG if (self._warned_unusable or folder in _UNUSABLE_WARNED) else logging.WARNING
        self._warned_unusable = True
        _UNUSABLE_WARNED.add(folder)
        log.log(
            level,
            "cache folder %s cannot be used (%s: %s); asking %s without a cache: set CARE_CACHE_DIR to a writable folder",
            self.cache_dir, type(exc).__name__, exc.strerror or exc, self.inner.name,
        )

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[bool]:
        """Hold the key's lock (threads and processes); yields False when the cache folder is unusable."""
        with _locks_guard:
            lock = _locks.setdefault(str(path), threading.Lock())
        with lock:
            if fcntl is None:
                yield True
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(path.with_suffix(".lock"), "a")
            except OSError as exc:  # read-only or missing folder: no cache, no lock, still ask the provider
                self._unusable(exc)
                fh = None
            if fh is None:
                yield False
                return
            with fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                    locked = True
                except OSError:  # a file system without locks: go on, at worst two processes fetch
                    locked = False
                try:
                    yield True
                finally:
                    if locked:
                        fcntl.flock(fh, fcntl.LOCK_UN)

    def _get(self, req: dict[str, str], ttl: pd.Timedelta, fetch: Callable[[], pd.Series]) -> pd.Series:
        path = self._path(req)
        hit = self._load(path, "cache")
        if hit is not None and self._fresh(hit[0], ttl, req):
            self.hits += 1
            return hit[2]
        self._check_failure(path, req)
        with self._lock(path) as usable:
            if usable:
                hit = self._load(path, "cache")  # another caller may have filled it meanwhile
                if hit is not None and self._fresh(hit[0], ttl, req):
                    self.hits += 1
                    return hit[2]
                self._check_failure(path, req)  # ... or found the provider down: fail fast
            self.misses += 1
            try:
                series = fetch()
            except (ProviderUnavailableError, ProviderRateLimitError) as exc:
                if usable:
                    self._record_failure(path, exc)
                raise
            if not usable:
                return series
            try:
                self._write(path, req, series)
                for fail in (self._fail_path(path), self._down_path()):
                    if fail is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(fail)
            except OSError as exc:  # a read-only or full disk must not fail the run
                log.warning("could not write cache entry %s (%s: %s)", path.name, type(exc).__name__, exc.strerror or exc)
                return series
            self._prune(path, req)
            return series

    def _fresh(self, stored_at: pd.Timestamp, ttl: pd.Timedelta, req: dict[str, str]) -> bool:
        """Whether an entry stored at ``stored_at`` may still be served.

        A history window that ended less than :data:`RECENT_HISTORY` before the entry was *stored*
        holds data only up to then: it keeps the short ``ttl`` however long ago that was (judged at
        lookup, a history stored at 10:30 for 06:00-12:00 passed as complete at 14:10: review 55a M2).
        An entry stored more than :data:`CLOCK_SKEW` in the future (a clock corrected since) is stale.
        """
        now = self.clock()
        if stored_at > now + CLOCK_SKEW:
            return False
        if req["op"] == "history" and pd.Timestamp(req["end"]) > stored_at - RECENT_HISTORY:
            ttl = min(ttl, self.ttl)
        return now - stored_at <= ttl

    def _prune(self, keep_path: Path, req: dict[str, str]) -> None:
        """Delete entries of this op/zone/kind stored and ending more than ``keep`` ago, with their lock files."""
        now = self.clock()
        cutoff = now - self.keep
        wall_cutoff = time.time() - self.keep.total_seconds()
        folder = keep_path.parent
        stem = _pattern(req["op"], req["zone"], req["kind"])
        try:
            for p in folder.glob(f"{stem}*.json"):
                if p == keep_path:
                    continue
                old = False
                try:
                    with open(p, encoding="utf-8") as fh:
                        doc = json.load(fh)
                    stored = pd.Timestamp(doc["stored_at"])
                    end = pd.Timestamp(doc["request"]["end"])
                    old = stored.tzinfo is not None and end.tzinfo is not None and (max(stored, end) < cutoff or stored > now + CLOCK_SKEW)
                except FileNotFoundError:
                    continue
                except Exception:  # unreadable: judge by the file's age
                    old = p.stat().st_mtime < wall_cutoff
                if old:
                    self._remove_entry(p)
            for p in list(folder.glob(f"{stem}*.lock")) + list(folder.glob(f"{stem}*.fail")):
                if not p.with_suffix(".json").exists() and p.stat().st_mtime < wall_cutoff:
                    self._remove_entry(p.with_suffix(".json"))
        except OSError as exc:
            log.debug("could not prune cache folder %s (%s)", folder, type(exc).__name__)

    @staticmethod
    def _remove_entry(path: Path) -> None:
        for p in (path, path.with_suffix(".lock"), path.with_suffix(".fail")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        with _locks_guard:
            _locks.pop(str(path), None)

    # -- the signal interface -------------------------------------------------------------
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        s, e = check_window(start, end)
        step = pd.Timedelta(self.step)
        a, b = s.floor(step), e.ceil(step)
        # a window ending near the time it is stored gets the short TTL (_fresh)
        return self._get(self._request("history", zone, a, b), self.history_ttl, lambda: self.inner.history(zone, a, b))

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        step = pd.Timedelta(self.step)
        a, b = s.floor(step), (s + h).ceil(step)
        return self._get(self._request("forecast", zone, a, b), self.ttl, lambda: self.inner.forecast(zone, a, b - a))

    def stale(self) -> "StaleCacheSignal":
        """A signal answering from any stored entry, however old (for the fallback chain)."""
        return StaleCacheSignal(self)


def _pattern(op: str, zone: str, kind: str) -> str:
    """The file-name prefix shared by the entries of one operation, zone and kind."""
    return f"{op}-{_slug(str(zone).strip())}-{_slug(kind)}-"


def _shape_problem(doc: Any) -> str | None:
    """What is wrong with a cache document's shape, or None."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    if doc.get("format") != _FORMAT:
        return "no format"
    if not isinstance(doc.get("stored_at"), str):
        return "no stored_at"
    if not isinstance(doc.get("request"), dict):
        return "no request"
    times, values = doc.get("times"), doc.get("g_per_kwh")
    if not isinstance(times, list) or not isinstance(values, list) or len(times) != len(values):
        return "times and g_per_kwh are not lists of the same length"
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("source", "signal", "zone")):
        return "no meta"
    return None


STALE_MIN_COVERAGE = 0.5
"""An expired entry answers only if it covers at least this share of the question's window."""


class StaleCacheSignal(CarbonSignal):
    """Answers from expired cache entries whose window covers the question.

    Among the entries that start at or before the question and cover at least half of it
    (``STALE_MIN_COVERAGE``), the one covering most of it wins (the newest among equals), so a
    recent short question does not hide an older full-horizon answer. An entry covering less is
    passed over, so the next source in the chain answers the whole window: before, a cached 2 h
    forecast answered a 24 h question and the planner ran the job now. Unreadable entries are skipped.
    """

    def __init__(self, cached: CachedSignal) -> None:
        self.cached = cached
        self.name = f"stale-cache:{cached.inner.name}"
        self.kind = cached.kind
        self.step = cached.step

    def __repr__(self) -> str:
        return f"StaleCacheSignal({self.cached!r})"

    @property
    def accepts_aws_regions(self) -> bool:  # type: ignore[override]
        return self.cached.accepts_aws_regions

    def _answer(self, op: str, zone: str, a: pd.Timestamp, b: pd.Timestamp) -> pd.Series:
        c = self.cached
        folder = c.cache_dir / _slug(c.inner.name)
        tag = c._request(op, zone, a, b).get("tag")
        best: tuple[int, pd.Timestamp, pd.Series] | None = None
        try:
            paths = list(folder.glob(f"{_pattern(op, zone, c.inner.kind)}*.json"))
        except OSError:
            paths = []
        for path in paths:
            entry = c._load(path, "stale-cache")
            if entry is None:
                continue
            stored, req, s = entry
            if req.get("tag") != tag or str(req.get("zone", "")).strip() != str(zone).strip():
                continue
            part = s[(s.index >= a) & (s.index < b)]
            if part.empty or part.index[0] > a:
                continue
            if part.index[-1] + pd.Timedelta(self.step) - a < STALE_MIN_COVERAGE * (b - a):
                continue  # a 2 h answer to a 24 h question: the next source (the embedded data) answers it whole
            if best is None or (len(part), stored) > (best[0], best[1]):
                best = (len(part), stored, part)
        if best is None:
            raise ProviderUnavailableError(f"no cached {op} of {c.inner.name} for zone {zone} covering {a.isoformat()} and at least "
                                           f"{STALE_MIN_COVERAGE:.0%} of the window", source=self.name)
        return best[2]

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        s, e = check_window(start, end)
        return self._answer("history", zone, s.floor(pd.Timedelta(self.step)), e)

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        return self._answer("forecast", zone, s.floor(pd.Timedelta(self.step)), s + h)
