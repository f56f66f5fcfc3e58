"""HTTP for the provider clients: injectable session, timeouts, bounded retries, error mapping.

Status mapping (one-line messages without secrets; URLs carry no credentials):

- 401/403 -> ProviderAuthError (not retried)
- 429 -> ProviderRateLimitError(retry_after_s) after retries that honour ``Retry-After``
- 5xx, timeout, connection error -> ProviderUnavailableError after retries with back-off
- other 4xx -> ProviderResponseError; 2xx whose body is not JSON -> ProviderResponseError

Every error raised for an HTTP status carries the provider's own explanation as ``exc.detail`` and
in its message, read from the documented error bodies: Electricity Maps ``{"error", "message"}``
(e.g. ``Request unauthorized for zoneKey=...`` when the plan lacks a zone), WattTime
``{"error", "message", "docs"}``, the GB API ``{"error": {"code", "message"}}`` and FastAPI's
``{"detail": ...}``. It is one line, at most 200 characters, and any credential the request sent
(header values, basic-auth user/password and their base64 form) is replaced by ``***`` first, so an
API that echoes the request cannot leak it.

``Retry-After`` may be seconds or an HTTP date:

>>> _retry_after("2"), _retry_after(None), _retry_after("soon")
(2.0, None, None)
>>> _detail(b'{"error": {"code": "400 Bad Request", "message": "Invalid date"}}', [])
'400 Bad Request: Invalid date'
>>> _detail(b'{"error": "Invalid auth-token", "message": "token s3cr3t is invalid"}', ["s3cr3t"])
'Invalid auth-token: token *** is invalid'
>>> _detail(b"<html>down</html>", []) is None
True
"""

from __future__ import annotations

import base64
import json
import logging
import re
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


_MAX_DETAIL = 200


def _detail(body: bytes | str | None, secrets: list[str]) -> str | None:
    """The provider's one-line explanation from a JSON error body, credentials redacted; None if none."""
    try:
        doc = json.loads(body) if body else None
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    err, parts = doc.get("error"), []
    if isinstance(err, dict):  # GB Carbon Intensity API: {"error": {"code", "message"}}
        parts = [err.get("code"), err.get("message")]
    else:  # Electricity Maps / WattTime: {"error", "message"}; FastAPI: {"detail"}
        parts = [err, doc.get("message"), doc.get("msg")]
        if not any(isinstance(x, str) and x for x in parts) and doc.get("detail") is not None:
            parts = [json.dumps(doc["detail"])[:_MAX_DETAIL]]
    text = ": ".join(str(x) for x in parts if isinstance(x, (str, int, float)) and str(x).strip())
    for secret in sorted((x for x in secrets if x and len(x) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return None
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _sent_secrets(request_kwargs: dict[str, Any]) -> list[str]:
    """Every credential a request carries (header values, bearer tokens, basic auth), for redaction."""
    out: list[str] = []
    for key, value in (request_kwargs.get("headers") or {}).items():
        if key.lower() in ("auth-token", "authorization", "x-api-key", "x-blobr-key") and isinstance(value, str):
            out += [value, value.split(" ", 1)[-1]]
    auth = request_kwargs.get("auth")
    if isinstance(auth, tuple) and len(auth) == 2:
        user, password = (str(x) for x in auth)
        out += [user, password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    return out


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


def _with_detail(exc: Exception, detail: str | None) -> Exception:
    exc.detail = detail  # type: ignore[attr-defined]
    return exc


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
        secrets = _sent_secrets(request_kwargs)
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
                detail = _detail(getattr(resp, "content", None), secrets) if status >= 400 else None
                said = f" ({detail})" if detail else ""
                if status in (401, 403):
                    raise _with_detail(ProviderAuthError(f"{where} was refused with HTTP {status}{said}; check the {self.source} credentials and plan", source=self.source, status=status), detail)
                if status == 429:
                    ra = _retry_after(resp.headers.get("Retry-After"))
                    last = _with_detail(
                        ProviderRateLimitError(
                            f"{where} was rate limited (HTTP 429, Retry-After {ra if ra is not None else 'not given'} s){said}; slow down or enable the cache",
                            source=self.source,
                            retry_after_s=ra,
                        ),
                        detail,
                    )
                    if ra is not None:
                        if ra > self.max_retry_after_s:
                            raise last
                        wait = ra
                elif status >= 500:
                    last = _with_detail(ProviderUnavailableError(f"{where} returned HTTP {status}{said}; the provider is down, try later", source=self.source, status=status), detail)
                elif status >= 400:
                    raise _with_detail(ProviderResponseError(f"{where} returned HTTP {status}{said}; check the zone, times and parameters", source=self.source, status=status), detail)
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
