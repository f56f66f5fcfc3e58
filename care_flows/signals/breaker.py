"""A per-process circuit breaker for the HTTP carbon providers: remember a failing provider for a while.

Without it, a hanging provider costs the full timeout and retries on *every* question (each zone,
each run, each controller pass). With it, the first failure opens the breaker for that provider
(keyed by source name and base URL) for a cool-down, and every call in the cool-down fails at once
with :class:`~care_flows.errors.ProviderUnavailableError`, so the fallback chain goes straight to
the stale cache or the embedded data. After the cool-down one call is let through (half-open): if
the provider answers, the breaker closes; if it fails again, it opens for another cool-down.

What opens it: a timeout, a connection error, HTTP 5xx after the retries
(``ProviderUnavailableError``) and a rate limit (``ProviderRateLimitError``; the cool-down is then at
least the ``Retry-After``). What does not: 401/403 (``ProviderAuthError``) and malformed answers
(``ProviderResponseError``). Those are answered quickly, are never retried, and often concern only one
zone or region (an Electricity Maps plan without ``SE``, a WattTime account without ``SE``), so opening
the breaker for the whole provider would also drop the zones that work.

The cool-down is ``cooldown_s`` of the client (``get_signal(..., cooldown_s=60)``), else the
environment variable ``CARE_PROVIDER_COOLDOWN_S``, else 300 s; ``0`` switches the breaker off. The
state is shared by the threads of one process (a lock guards it); other processes that share the
cache folder learn of a failure from :class:`~care_flows.signals.cache.CachedSignal`'s negative entries.

>>> import pandas as pd
>>> from care_flows.errors import ProviderUnavailableError
>>> b = CircuitBreaker()
>>> t0 = pd.Timestamp("2024-05-01T12:00Z")
>>> b.before_call("electricitymaps", "http://x", t0)        # closed: go ahead
>>> b.record_failure("electricitymaps", "http://x", t0, "HTTP 500", cooldown_s=300)
>>> try:
...     b.before_call("electricitymaps", "http://x", t0 + pd.Timedelta("30s"))
... except ProviderUnavailableError as exc:
...     print(exc)
electricitymaps failed 30 s ago (HTTP 500); skipping it until 2024-05-01T12:05:00+00:00
>>> b.before_call("electricitymaps", "http://x", t0 + pd.Timedelta("301s"))   # half-open: one trial
>>> b.record_success("electricitymaps", "http://x")
>>> b.is_open("electricitymaps", "http://x", t0 + pd.Timedelta("302s"))
False
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pandas as pd

from care_flows.errors import ConfigError, ProviderUnavailableError
from care_flows.timeutil import iso

__all__ = ["CircuitBreaker", "BREAKER", "DEFAULT_COOLDOWN_S", "COOLDOWN_ENV", "default_cooldown_s"]

DEFAULT_COOLDOWN_S = 300.0
COOLDOWN_ENV = "CARE_PROVIDER_COOLDOWN_S"
TRIAL_LEASE = pd.Timedelta("60s")
"""A half-open trial that has not reported back after this long (its thread died) lets another one through."""


def default_cooldown_s() -> float:
    """``$CARE_PROVIDER_COOLDOWN_S`` if set, else 300 s.

    >>> default_cooldown_s() >= 0
    True
    """
    raw = os.environ.get(COOLDOWN_ENV, "").strip()
    if not raw:
        return DEFAULT_COOLDOWN_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{COOLDOWN_ENV}={raw!r} is not a number of seconds; give e.g. 300 (0 switches the breaker off)") from None
    if value < 0 or value != value:
        raise ConfigError(f"{COOLDOWN_ENV}={raw!r} is negative; give seconds >= 0 (0 switches the breaker off)")
    return value


@dataclass
class _Trip:
    failed_at: pd.Timestamp
    until: pd.Timestamp
    reason: str
    failures: int = 1
    trial_since: pd.Timestamp | None = None


class CircuitBreaker:
    """Open/closed state per ``(source, base_url)``; times come from the caller's clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trips: dict[tuple[str, str], _Trip] = {}

    @staticmethod
    def _key(source: str, base_url: str) -> tuple[str, str]:
        return (str(source), str(base_url).rstrip("/"))

    def before_call(self, source: str, base_url: str, now: pd.Timestamp) -> None:
        """Return if a call may go out; raise ``ProviderUnavailableError`` while the breaker is open.

        After the cool-down the first caller is the half-open trial; others keep failing fast until
        it reports :meth:`record_success` or :meth:`record_failure`.
        """
        key = self._key(source, base_url)
        with self._lock:
            trip = self._trips.get(key)
            if trip is None:
                return
            # a clock that went back before the failure (a replayed scenario) does not keep it open
            if now >= trip.until or now < trip.failed_at:
                if trip.trial_since is None or not (trip.trial_since <= now < trip.trial_since + TRIAL_LEASE):
                    trip.trial_since = now
                    return
                until, note = trip.trial_since + TRIAL_LEASE, "; a retry is under way"
            else:
                until, note = trip.until, ""
            ago = max(0.0, (now - trip.failed_at).total_seconds())
            exc = ProviderUnavailableError(
                f"{source} failed {ago:.0f} s ago ({trip.reason}){note}; skipping it until {until.isoformat()}", source=str(source)
            )
        # a full ISO instant (date and offset): the reason ends up in warnings and JSON read on another day
        exc.reason = f"{trip.reason}, {ago:.0f} s ago, skipping until {iso(until.floor('s'))}"  # type: ignore[attr-defined]
        exc.circuit_open = True  # type: ignore[attr-defined]
        exc.trip_reason = trip.reason  # type: ignore[attr-defined]  # the failure itself, for a layer that adds its own "ago"
        raise exc

    def record_failure(self, source: str, base_url: str, now: pd.Timestamp, reason: str, *, cooldown_s: float) -> None:
        """Open the breaker for ``cooldown_s`` from ``now`` (a later failure extends it)."""
        if cooldown_s <= 0:
            return
        key = self._key(source, base_url)
        until = now + pd.Timedelta(seconds=float(cooldown_s))
        with self._lock:
            old = self._trips.get(key)
            self._trips[key] = _Trip(now, until, reason, (old.failures + 1) if old else 1)

    def record_success(self, source: str, base_url: str) -> None:
        """The provider answered (possibly with an auth or format error): close the breaker."""
        with self._lock:
            self._trips.pop(self._key(source, base_url), None)

    def is_open(self, source: str, base_url: str, now: pd.Timestamp) -> bool:
        """True while calls to this provider fail fast (within the cool-down)."""
        with self._lock:
            trip = self._trips.get(self._key(source, base_url))
            return trip is not None and trip.failed_at <= now < trip.until

    def reset(self) -> None:
        """Forget every failure (tests; or after fixing the network)."""
        with self._lock:
            self._trips.clear()


BREAKER = CircuitBreaker()
"""The process-wide breaker every :class:`~care_flows.signals._http.HttpClient` uses by default."""
