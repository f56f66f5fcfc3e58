"""HTTP for the provider clients: injectable session, timeouts, bounded retries, error mapping.

Status mapping (one-line messages without secrets; URLs carry no credentials):

- 401/403 -> ProviderAuthError (not retried)
- 429 -> ProviderRateLimitError(retry_after_s) after retries that honour ``Retry-After``
- 5xx, timeout, connection error -> ProviderUnavailableError after retries with back-off
- other 4xx -> ProviderResponseError; 2xx whose body is not JSON -> ProviderResponseError

``Retry-After`` may be seconds or an HTTP date:

>>> _retry_after("2"), _retry_after(None), _retry_after("soon")
(2.0, None, None)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import requests

from care_flows.errors import (
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderUnavailableError,
)

__all__ = ["HttpClient"]

log = logging.getLogger("care_flows.signals.http")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class HttpClient:
    """GET JSON with retries. ``sleep`` is injectable so tests do not wait."""

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_retry_after_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.sleep = sleep
        self.calls = 0

    def __repr__(self) -> str:
        return f"HttpClient(source={self.source!r}, base_url={self.base_url!r})"

    def get_json(self, path: str, *, params: dict[str, Any] | None = None, **request_kwargs: Any) -> Any:
        """GET ``base_url + path`` and return the decoded JSON body."""
        url = self.base_url + path
        where = f"{self.source} GET {path}"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * (2**attempt)
            self.calls += 1
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout_s, **request_kwargs)
            except requests.Timeout:
                last = ProviderUnavailableError(f"{where} timed out after {self.timeout_s:g} s; the provider is slow or down, try later", source=self.source)
            except requests.RequestException as exc:
                last = ProviderUnavailableError(f"{where} failed to connect ({type(exc).__name__}); check the network or base_url", source=self.source)
            else:
                status = resp.status_code
                if status in (401, 403):
                    raise ProviderAuthError(f"{where} was refused with HTTP {status}; check the {self.source} credentials and plan", source=self.source, status=status)
                if status == 429:
                    ra = _retry_after(resp.headers.get("Retry-After"))
                    last = ProviderRateLimitError(
                        f"{where} was rate limited (HTTP 429, Retry-After {ra if ra is not None else 'not given'} s); slow down or enable the cache",
                        source=self.source,
                        retry_after_s=ra,
                    )
                    if ra is not None:
                        if ra > self.max_retry_after_s:
                            raise last
                        wait = ra
                elif status >= 500:
                    last = ProviderUnavailableError(f"{where} returned HTTP {status}; the provider is down, try later", source=self.source, status=status)
                elif status >= 400:
                    raise ProviderResponseError(f"{where} returned HTTP {status}; check the zone, times and parameters", source=self.source, status=status)
                else:
                    try:
                        return resp.json()
                    except ValueError:
                        raise ProviderResponseError(f"{where} returned HTTP {status} with a body that is not JSON; the API format may have changed", source=self.source, status=status) from None
            if attempt < self.max_retries:
                log.info("%s; retry %d/%d in %.2f s", last, attempt + 1, self.max_retries, wait)
                self.sleep(wait)
        assert last is not None
        last.args = (f"{last} (after {self.max_retries + 1} attempt(s))",)
        raise last
