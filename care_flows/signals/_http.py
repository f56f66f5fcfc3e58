"""HTTP for the provider clients: injectable session, timeouts, bounded retries, error mapping.

Status mapping (one-line messages without secrets; URLs carry no credentials):

- 401/403 -> ProviderAuthError (not retried)
- 429 -> ProviderRateLimitError(retry_after_s) after retries that honour ``Retry-After``
- 5xx, timeout, connection error -> ProviderUnavailableError after retries with back-off; a 5xx's
  ``Retry-After`` (a maintenance window) is honoured as a 429's is, and kept as ``retry_after_s``
- other 4xx -> ProviderResponseError naming the zone/region and window asked for
- 2xx whose body is not JSON -> ProviderResponseError

Each attempt waits at most ``timeout_s`` (10 s) per socket read; the whole call, retries, waits and
the reading of a body that arrives slowly included, at most ``deadline_s`` (15 s) plus one socket
read. A ``ProviderUnavailableError`` or ``ProviderRateLimitError`` opens the per-process circuit
breaker (:mod:`care_flows.signals.breaker`) for ``cooldown_s`` (300 s, or
``$CARE_PROVIDER_COOLDOWN_S``): calls in the cool-down fail at once. Every error carries a short
user-facing cause as ``exc.reason`` (``HTTP 500``, ``timed out after 10 s``, ``connection refused``).

Every error raised for an HTTP status carries the provider's own explanation as ``exc.detail`` and
in its message, read from the documented error bodies: Electricity Maps ``{"error", "message"}``
(e.g. ``Request unauthorized for zoneKey=...`` when the plan lacks a zone), WattTime
``{"error", "message", "docs"}``, the GB API ``{"error": {"code", "message"}}`` and FastAPI's
``{"detail": ...}``. It is one line, at most 200 characters, and any credential the request sent
(header values, basic-auth user/password and their base64 form) is replaced by ``***`` first, so an
API that echoes the request cannot leak it.

The same redaction covers every other provider error: :class:`HttpClient` remembers each credential
it has sent (:meth:`HttpClient.redact`), and the providers' public methods are wrapped in
:func:`redacts_errors`, so a value quoted from a successful answer that is malformed (an echoed
token in a ``datetime`` field) reaches no message, ``detail`` or ``reason`` either.

``Retry-After`` may be seconds or an HTTP date:

>>> _retry_after("2"), _retry_after(None), _retry_after("soon"), _retry_after("-5")
(2.0, None, None, None)
>>> _detail(b'{"error": {"code": "400 Bad Request", "message": "Invalid date"}}', [])
'400 Bad Request: Invalid date'
>>> _detail(b'{"error": "Invalid auth-token", "message": "token s3cr3t is invalid"}', ["s3cr3t"])
'Invalid auth-token: token *** is invalid'
>>> _detail(b"<html>down</html>", []) is None
True
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import pandas as pd
import requests

from care_flows.errors import (
    CareError,
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderUnavailableError,
)
from care_flows.signals.breaker import BREAKER, CircuitBreaker, default_cooldown_s
from care_flows.signals.credentials import credentials_hint
from care_flows.timeutil import utcnow

__all__ = ["HttpClient", "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_RETRIES", "DEFAULT_DEADLINE_S", "MAX_BODY_BYTES", "redacts_errors"]

DEFAULT_TIMEOUT_S = 10.0
"""Per attempt (connect and each read)."""
DEFAULT_MAX_RETRIES = 2
DEFAULT_DEADLINE_S = 15.0
"""Per call, all attempts and waits included: a planner asks once per region, so a dead provider
must cost seconds, not half a minute (the breaker then skips it)."""
MAX_BODY_BYTES = 32 * 2**20
"""The largest answer read (decoded): a 72 h hourly forecast is about 10 kB, 32 days of WattTime's
5-minute history about 1 MB; a gzip bomb from a broken proxy stops here, not at the OOM killer."""

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
            parts = [_redact(json.dumps(doc["detail"]), secrets)[:_MAX_DETAIL]]
    text = _redact(": ".join(str(x) for x in parts if isinstance(x, (str, int, float)) and str(x).strip()), secrets)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return None
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


_AUTH_SCHEMES = ("bearer", "basic", "token", "apikey")
"""Authorization schemes a header value may start with ("Bearer <token>")."""

_PREFIX_CHARS = 8
"""A message may quote a credential cut short (``'abc...'``): a run of at least this many of a long
credential's first characters is hidden too."""


def _redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every credential in ``secrets`` (of 3 characters or more) replaced by ``***``,
    longest first (a token that contains another is hidden whole), and, for a credential of 12
    characters or more, any run of its first :data:`_PREFIX_CHARS` or more characters (a quote of
    it cut to a length, as messages cut the values they show).

    >>> _redact("datetime 'tok-SECRET-1234' is not a time", ["tok-SECRET-1234", "ab"])
    "datetime '***' is not a time"
    >>> _redact("point 0 has datetime 'emaps-A1b2C3d4E5f6G7h8I9j0K1l2M..., not a time", ["emaps-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9"])
    "point 0 has datetime '***..., not a time"
    >>> _redact('"bad credentials bob:p\\u00e4ss-2024!", "pa\\"ss\\\\word"', ["p\u00e4ss-2024!", 'pa"ss\\word'])
    '"bad credentials bob:***", "***"'
    """
    forms = set()
    for x in secrets:  # a body quoted as JSON or repr shows 'ä' as \u00e4, '"' as \", '\' as \\
        if x:
            forms |= {x, json.dumps(x)[1:-1], json.dumps(x, ensure_ascii=False)[1:-1], repr(x)[1:-1]}
    ordered = sorted((x for x in forms if len(x) >= 3), key=len, reverse=True)
    for secret in ordered:
        text = text.replace(secret, "***")
    for secret in (x for x in ordered if len(x) >= 12):
        # "Bearer <token>": its first characters are the scheme's, shared by every token; count 8 from the token
        first, _, rest = secret.partition(" ")
        skip = len(first) + 1 if rest and first.lower() in _AUTH_SCHEMES else 0
        head = secret[: skip + _PREFIX_CHARS]
        if len(head) < skip + _PREFIX_CHARS or head not in text:
            continue  # (a token under 8 characters after its scheme is only hidden whole, above)
        pieces, at = [], 0
        while (hit := text.find(head, at)) >= 0:
            end = hit + len(head)
            while end < len(text) and end - hit < len(secret) and text[end] == secret[end - hit]:
                end += 1
            pieces += [text[at:hit], "***"]
            at = end
        text = "".join([*pieces, text[at:]])
    return text


class _Secrets:
    """The credentials an :class:`HttpClient` has sent, kept to be redacted; its ``repr`` shows none
    (``vars(client)`` must not print what it hides).

    >>> secrets = _Secrets(); secrets.update(["tok-SECRET-1234"]); secrets
    <1 credential(s), redacted>
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: set[str] = set()

    def update(self, values: Iterable[str]) -> None:
        self._values.update(v for v in values if isinstance(v, str) and v)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._values))

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:
        return f"<{len(self._values)} credential(s), redacted>"


def redacts_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a provider method so that any CaRE error it raises (a malformed answer quoting the body,
    a zone mismatch...) has the credentials its ``self.http`` client sent replaced by ``***`` in
    its message, ``detail`` and ``reason``, as the HTTP error bodies are."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except CareError as exc:
            http = getattr(self, "http", None)
            if isinstance(http, HttpClient):
                http.redact_error(exc)
            raise

    return wrapper


def _sent_secrets(request_kwargs: dict[str, Any]) -> list[str]:
    """Every credential a request carries (header values, bearer tokens, basic auth), for redaction."""
    out: list[str] = []
    for key, value in (request_kwargs.get("headers") or {}).items():
        if key.lower() in ("auth-token", "authorization", "x-api-key", "x-blobr-key") and isinstance(value, str):
            out += [value, value.split(" ", 1)[-1]]
    auth = request_kwargs.get("auth")
    if isinstance(auth, tuple) and len(auth) == 2:
        user, password = (str(x) for x in auth)  # the user name is not a secret (a plain field of the credential blocks)
        out.append(password)
        for encoding in ("latin-1", "utf-8"):  # requests sends Latin-1 when it can (a password with 'ä'), else UTF-8
            try:
                out.append(base64.b64encode(f"{user}:{password}".encode(encoding)).decode())
            except UnicodeEncodeError:
                pass
    return out


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
        return seconds if seconds >= 0 else None  # "-5" says nothing usable: back off as if not given
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _with_detail(exc: Exception, detail: str | None) -> Exception:
    exc.detail = detail  # type: ignore[attr-defined]
    return exc


def _with_reason(exc: Exception, reason: str) -> Exception:
    """Attach the short, user-facing cause (``HTTP 500``, ``timed out after 10 s``) used in fallback notes."""
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def resolve_base_url(given: str | None, *, env_var: str, default: str) -> str:
    """A provider's base URL: ``given``, else the environment variable ``env_var`` (a proxy, a
    regional endpoint, a test server), else ``default``; an http(s) URL, else a one-line
    :class:`ConfigError` that never echoes credentials.

    >>> resolve_base_url(None, env_var="CARE_SURELY_UNSET_URL", default="https://api.example.org/v3")
    'https://api.example.org/v3'
    >>> resolve_base_url("ftp://u:pw@h/x", env_var="X_URL", default="https://a")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: base URL ftp://***@h/x is not an http(s) URL; give e.g. https://api.example.org (set in X_URL or base_url=)
    """
    import os

    url = (given or os.environ.get(env_var, "") or default).strip()
    if not re.match(r"https?://[^/\s]", url, re.IGNORECASE):
        from care_flows.aws.userdata import mask_url

        raise ConfigError(f"base URL {mask_url(url) or repr(url)} is not an http(s) URL; give e.g. https://api.example.org "
                          f"(set in {env_var} or base_url=)")
    return url


class _SendDeadline(Exception):
    """The call's deadline passed before the answer's status line and headers were in."""


class _BodyDeadline(Exception):
    """The body was still arriving when the call's deadline passed."""


class _BodyTooLarge(Exception):
    """The body passed :data:`MAX_BODY_BYTES`."""


MAX_RETRY_AFTER_COOLDOWN_S = 3600.0
"""The longest a provider's ``Retry-After`` keeps its breaker open and its cache failure entry alive:
a 503 saying ``Retry-After: 31536000`` (a broken gateway) would otherwise silence it for a year; after
an hour one call asks again, and a provider still busy says so again."""


_ASKED = ("zone", "region", "lat", "lon", "latitude", "longitude", "start", "end")


def _asked(params: dict[str, Any] | None) -> str:
    """`` (zone XX, start ...)``: the non-secret query values a 4xx answer is about (URLs carry no credential).

    >>> _asked({"zone": "XX", "emissionFactorType": "lifecycle"}), _asked(None)
    (' (zone XX)', '')
    """
    shown = [f"{k} {str(params[k])[:40]}" for k in _ASKED if params and params.get(k) is not None]
    return f" ({', '.join(shown)})" if shown else ""


class HttpClient:
    """GET JSON with retries, a total deadline per call and the per-process circuit breaker.

    ``timeout_s`` bounds each attempt, ``deadline_s`` the whole call (attempts, back-off and
    ``Retry-After`` waits): with the defaults a hanging provider costs at most about 15 s, once; the
    breaker (:mod:`care_flows.signals.breaker`) then makes the next calls fail at once for
    ``cooldown_s``. ``sleep`` and ``clock`` are injectable so tests do not wait.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        backoff_s: float = 0.5,
        max_retry_after_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utcnow,
        cooldown_s: float | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.deadline_s = None if deadline_s is None else max(float(deadline_s), 0.001)
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.sleep = sleep
        self.clock = clock
        if cooldown_s is not None and (not isinstance(cooldown_s, (int, float)) or cooldown_s < 0):
            raise ConfigError(f"cooldown_s={cooldown_s!r} must be seconds >= 0 (0 switches the circuit breaker off)")
        self.cooldown_s = default_cooldown_s() if cooldown_s is None else float(cooldown_s)
        self.breaker = BREAKER if breaker is None else breaker
        self.calls = 0
        self._secrets = _Secrets()
        """Every credential a request of this client has carried (or a provider registered with
        :meth:`add_secret`): what :meth:`redact` hides."""
        self._budget = threading.local()  # .until: the monotonic deadline of the call in progress (see budget())

    def add_secret(self, value: str) -> None:
        """Hide ``value`` (e.g. a session token an API handed out) in every error, as a sent credential."""
        self._secrets.update([value])

    def redact(self, text: str) -> str:
        """``text`` with every credential this client has sent replaced by ``***``."""
        return _redact(str(text), list(self._secrets))

    def redact_error(self, exc: BaseException) -> None:
        """Redact ``exc``'s message and its ``detail`` and ``reason`` attributes in place."""
        if not self._secrets:
            return
        exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
        for attr in ("detail", "reason"):
            value = getattr(exc, attr, None)
            if isinstance(value, str):
                setattr(exc, attr, self.redact(value))

    @property
    def shown_base_url(self) -> str:
        """``base_url`` as it may be shown (a repr, a log line): any ``user:password`` as ``***`` (review 55a L3)."""
        from care_flows.aws.userdata import mask_url

        return mask_url(self.base_url)

    def __repr__(self) -> str:
        return f"HttpClient(source={self.source!r}, base_url={self.shown_base_url!r})"

    @contextlib.contextmanager
    def budget(self) -> Iterator[None]:
        """One ``deadline_s`` for every GET inside (a WattTime forecast: login, region lookup, data; a
        token refresh), not ``deadline_s`` each; nested, the outer budget holds."""
        if self.deadline_s is None or getattr(self._budget, "until", None) is not None:
            yield
            return
        self._budget.until = time.monotonic() + self.deadline_s
        try:
            yield
        finally:
            self._budget.until = None

    def _until(self) -> float | None:
        """The monotonic time this GET must be done by (a shared :meth:`budget`'s, else its own ``deadline_s``)."""
        shared = getattr(self._budget, "until", None)
        return shared if shared is not None else (None if self.deadline_s is None else time.monotonic() + self.deadline_s)

    def get_json(self, path: str, *, params: dict[str, Any] | None = None, **request_kwargs: Any) -> Any:
        """GET ``base_url + path`` and return the decoded JSON body (fails fast while the breaker is open)."""
        if self.cooldown_s > 0:
            self.breaker.before_call(self.source, self.base_url, self.clock())
        try:
            body = self._get_json(path, params, request_kwargs)
        except (ProviderUnavailableError, ProviderRateLimitError) as exc:
            if self.cooldown_s > 0:
                cool = max(self.cooldown_s, min(getattr(exc, "retry_after_s", None) or 0.0, MAX_RETRY_AFTER_COOLDOWN_S))
                self.breaker.record_failure(self.source, self.base_url, self.clock(), getattr(exc, "reason", None) or "unavailable", cooldown_s=cool)
            raise
        except ProviderError:
            if self.cooldown_s > 0:  # it answered (auth or format error): reachable, so close the breaker
                self.breaker.record_success(self.source, self.base_url)
            raise
        if self.cooldown_s > 0:
            self.breaker.record_success(self.source, self.base_url)
        return body

    def _read_body(self, resp: Any, until: float | None) -> bytes | None:
        """The whole body, read piece by piece against the call's deadline (``timeout`` only bounds
        each socket read, so a body that trickles in would otherwise keep the call open); None when
        the response does not stream (an injected test transport), then ``resp.json()`` is used."""
        raw = getattr(resp, "raw", None)
        read1 = getattr(raw, "read1", None)
        if not callable(read1):
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = read1(65536, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
                if until is not None and time.monotonic() > until:
                    raise _BodyDeadline()
        except (_BodyDeadline, _BodyTooLarge):
            resp.close()
            raise
        except Exception as exc:  # urllib3 read errors: a timeout or a dropped connection mid-body
            resp.close()
            if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
                raise requests.Timeout(str(exc)) from None
            raise requests.ConnectionError(str(exc)) from None
        release = getattr(raw, "release_conn", None)
        if callable(release):  # read to the end: the connection goes back to the pool
            release()
        return b"".join(chunks)

    def _send(self, url: str, until: float | None, **kwargs: Any) -> Any:
        """``session.get(url, **kwargs)``, given up at ``until``: ``timeout`` bounds each socket read
        only, so headers sent a line every few seconds would hold the call as long as they come
        (a broken proxy: 90 s measured). The request runs in a daemon thread; one still going at
        ``until`` is left to finish on its own, its response closed, and this call is timed out."""
        if until is None:
            return self.session.get(url, **kwargs)
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["resp"] = self.session.get(url, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["exc"] = exc
            done.set()
            if box.get("late") and "resp" in box:
                box["resp"].close()

        import contextvars  # the caller's context (a tracing span, a transport reading context variables) in the thread

        threading.Thread(target=contextvars.copy_context().run, args=(run,), name=f"care-{self.source}-get", daemon=True).start()
        if not done.wait(max(0.0, until - time.monotonic())):
            box["late"] = True
            if done.is_set() and "resp" in box:  # it answered in the meantime: not used, closed
                box["resp"].close()
            raise _SendDeadline()
        if "exc" in box:
            raise box["exc"]
        return box["resp"]

    def _get_json(self, path: str, params: dict[str, Any] | None, request_kwargs: dict[str, Any]) -> Any:
        url = self.base_url + path
        where = f"{self.source} GET {path}"
        secrets = _sent_secrets(request_kwargs)
        self._secrets.update(secrets)
        last: Exception | None = None
        t0 = time.monotonic()
        until = self._until()
        attempts = 0
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * (2**attempt)
            timeout = self.timeout_s
            if until is not None:
                timeout = min(timeout, until - time.monotonic())
                if timeout <= 0.05 and (last is not None or timeout <= 0):
                    last = last or _with_reason(ProviderUnavailableError(f"{where} was not asked: the call's {self.deadline_s:.3g} s were spent "
                                                                         "on the requests before it; the provider is slow or down, try later",
                                                                         source=self.source), "timed out")
                    break
                timeout = max(timeout, 0.05)
            self.calls += 1
            attempts += 1
            try:
                # no redirects: Electricity Maps' token travels in its own header, which requests would carry to
                # whatever host a 30x names, or over http (review 55a H1)
                resp = self._send(url, until, params=params, timeout=timeout, stream=True, allow_redirects=False, **request_kwargs)
                raw = self._read_body(resp, until)
            except _SendDeadline:
                last = _with_reason(ProviderUnavailableError(f"{where} timed out after {time.monotonic() - t0:.3g} s, the call's deadline, before its "
                                                             "answer's headers were in; the provider is slow or down, try later", source=self.source), "timed out")
                break
            except _BodyDeadline:
                last = _with_reason(ProviderUnavailableError(f"{where} sent its answer too slowly: not complete after {self.deadline_s:.3g} s; the provider is slow or down, try later", source=self.source), "timed out")
                break
            except _BodyTooLarge:  # a broken proxy or gateway; not retried (review 55a M5)
                raise _with_reason(ProviderResponseError(f"{where} answered with more than {MAX_BODY_BYTES // 2**20} MiB (decoded); a carbon answer is "
                                                         "kilobytes: check the base URL or proxy", source=self.source), "the answer is too large") from None
            except (requests.exceptions.InvalidHeader, UnicodeEncodeError):  # never sent: retrying cannot help
                # not str(exc): requests quotes the offending header value, the credential itself
                raise _with_reason(ProviderAuthError(f"{where} was not sent: a credential or header holds a line break, a leading space or a "
                                                     f"non-Latin-1 character; copy the {self.source} credentials again", source=self.source),
                                   "invalid header") from None
            except requests.Timeout:
                last = _with_reason(ProviderUnavailableError(f"{where} timed out after {timeout:.3g} s; the provider is slow or down, try later", source=self.source), "timed out")
            except requests.RequestException as exc:
                how = "connection refused" if "refused" in str(exc).lower() else "could not connect"
                last = _with_reason(ProviderUnavailableError(f"{where} failed to connect ({how}); check the network or base_url", source=self.source), how)
            else:
                status = resp.status_code
                detail = _detail(raw if raw is not None else getattr(resp, "content", None), secrets) if status >= 400 else None
                said = f" ({detail})" if detail else ""
                if status in (401, 403):
                    # name where the credentials are set (review 46b L2); a request that sent none was refused by something else
                    fix = f"check {credentials_hint(self.source)}" if secrets else "check the base URL or proxy"
                    raise _with_reason(_with_detail(ProviderAuthError(f"{where} was refused with HTTP {status}{said}; {fix}" + (" and the plan" if secrets else ""),
                                                                      source=self.source, status=status), detail), f"HTTP {status}, refused: {fix}")
                if status == 429:
                    ra = _retry_after(resp.headers.get("Retry-After"))
                    last = _with_reason(_with_detail(
                        ProviderRateLimitError(
                            f"{where} was rate limited (HTTP 429, {f'Retry-After {ra:g} s' if ra is not None else 'no usable Retry-After'}){said}; slow down or enable the cache",
                            source=self.source,
                            retry_after_s=ra,
                        ),
                        detail,
                    ), "HTTP 429, rate limited")
                elif status >= 500:
                    ra = _retry_after(resp.headers.get("Retry-After"))
                    later = f" (Retry-After {ra:g} s)" if ra is not None else ""
                    last = _with_reason(_with_detail(ProviderUnavailableError(f"{where} returned HTTP {status}{said}; the provider is down, try later{later}",
                                                                              source=self.source, status=status, retry_after_s=ra), detail), f"HTTP {status}")
                elif status >= 400:
                    raise _with_reason(_with_detail(ProviderResponseError(f"{where}{_asked(params)} returned HTTP {status}{said}; check the zone, times and parameters", source=self.source, status=status), detail), f"HTTP {status}")
                elif 300 <= status < 400:
                    from care_flows.aws.userdata import mask_url

                    to = mask_url(str(resp.headers.get("Location") or "")) or "no Location"
                    raise _with_reason(ProviderResponseError(f"{where} was redirected (HTTP {status} to {to}); CaRE does not follow redirects, so "
                                                             f"credentials go to the configured host only: set the {self.source} base URL to the final "
                                                             "https URL", source=self.source, status=status), f"HTTP {status}, redirected")
                else:
                    try:
                        return json.loads(raw) if raw is not None else resp.json()
                    except (ValueError, RecursionError):  # RecursionError: a body nested too deep (review 55a L1)
                        raise _with_reason(ProviderResponseError(f"{where} returned HTTP {status} with a body that is not JSON; the API format may have changed", source=self.source, status=status), "the answer is not JSON") from None
                if ra is not None:  # the provider said when: no sooner (the breaker and the cache's failure entry keep it too)
                    if ra > self.max_retry_after_s:
                        raise last
                    wait = ra if status == 429 else max(wait, ra)
            if attempt < self.max_retries:
                if until is not None and time.monotonic() + wait >= until:
                    break  # no time left for another attempt within the call's deadline
                log.info("%s; retry %d/%d in %.2f s", last, attempt + 1, self.max_retries, wait)
                self.sleep(wait)
        assert last is not None
        spent = time.monotonic() - t0
        if str(getattr(last, "reason", "")).startswith("timed out"):
            last.reason = f"timed out after {spent:.2g} s" if spent < 10 else f"timed out after {spent:.0f} s"  # type: ignore[attr-defined]
        last.args = (f"{last} (after {attempts} attempt(s) in {spent:.1f} s)",)
        raise last
