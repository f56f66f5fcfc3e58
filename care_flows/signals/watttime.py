"""WattTime API v3: marginal operating emissions rate (MOER), converted to gCO2eq/kWh.

``GET /login`` with HTTP basic auth returns ``{"token": ...}`` (valid 30 min); data calls send
``Authorization: Bearer <token>``: ``/v3/region-from-loc`` (``latitude``, ``longitude``,
``signal_type``), ``/v3/historical`` (``region``, ``start``, ``end``, ``signal_type``) and
``/v3/forecast`` (``region``, ``signal_type``, ``horizon_hours``). Bodies are
``{"data": [{"point_time", "value"}...], "meta": {"units": "lbs_co2_per_mwh", "generated_at"...}}``
on a 5-minute grid. 1 lb/MWh = 453.592 g / 1000 kWh = 0.453592 g/kWh. Labelled ``marginal``.

Checked against WattTime's v3 OpenAPI document and transition guide (github.com/WattTime/aer-test-docs
``openapi.json``/``transition.md``, published at docs.watttime.org) and the official client
(github.com/WattTime/watttime-python-client ``watttime/api.py``):

- a data call answering HTTP 401 means the token expired: log in again and retry once. HTTP 403
  (``{"error", "message", "docs"}``) means the plan does not cover the region or signal: no new
  login, the error names the region (``CAISO_NORTH`` is the free preview region);
- ``/v3/historical`` serves at most 32 days per query and both ``start`` and ``end`` are
  inclusive, so consecutive requests end one 5-minute step before the next one starts;
- ``meta.warnings`` (``[{"type", "message"}]``) are logged.

Zones: a WattTime region name (``CAISO_NORTH``), an AWS region (``us-west-1``) or an
Electricity Maps zone of the region registry (``US-CAL-CISO``), both resolved from their
coordinates with region-from-loc, or ``"lat,lon"``. Credentials: ``username=``/``password=`` or
``WATTTIME_USERNAME``/``WATTTIME_PASSWORD``, unwrapped only in :meth:`WattTimeSignal._auth`.

>>> round(100 * LBS_PER_MWH_TO_G_PER_KWH, 4)
45.3592
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import pandas as pd
import requests
from pydantic import SecretStr

from care_flows.errors import ConfigError, ProviderAuthError, ProviderResponseError
from care_flows.signals._http import DEFAULT_DEADLINE_S, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, HttpClient, redacts_errors, resolve_base_url
from care_flows.signals.base import CarbonSignal, SignalMeta, check_horizon, check_window, make_series, parse_latlon, read_points, regularize, split_window
from care_flows.signals.credentials import resolve_secret
from care_flows.timeutil import parse_time, utcnow

__all__ = ["WattTimeSignal", "DEFAULT_BASE_URL", "LBS_PER_MWH_TO_G_PER_KWH"]

DEFAULT_BASE_URL = "https://api.watttime.org"
LBS_PER_MWH_TO_G_PER_KWH = 0.453592
MAX_HISTORICAL = pd.Timedelta("30D")  # the API allows 32 days per query
log = logging.getLogger("care_flows.signals.watttime")
TOKEN_LIFETIME = pd.Timedelta("25min")  # WattTime tokens last 30 min; renew a little early


class WattTimeSignal(CarbonSignal):
    """Marginal emissions (``co2_moer``) from WattTime, in gCO2eq/kWh."""

    name = "watttime"
    step = timedelta(minutes=5)
    kind = "marginal"

    def __init__(
        self,
        username: str | SecretStr | None = None,
        password: str | SecretStr | None = None,
        *,
        kind: str = "marginal",
        signal_type: str = "co2_moer",
        base_url: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        cooldown_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        if kind != "marginal":
            raise ConfigError(f"WattTime serves the marginal signal, not {kind!r}; use kind='marginal' (on the command line --kind marginal), or electricitymaps for lifecycle/direct")
        if signal_type != "co2_moer":
            raise ConfigError(
                f"WattTime signal_type {signal_type!r} is not supported; CaRE plans on co2_moer (marginal), "
                "so leave signal_type out, or use carbon_source electricitymaps for average (lifecycle/direct) intensity"
            )
        self._username = resolve_secret(username, env_var="WATTTIME_USERNAME", provider=self.name, argument="username")
        self._password = resolve_secret(password, env_var="WATTTIME_PASSWORD", provider=self.name, argument="password")
        self.signal_type = signal_type
        self.http = HttpClient(
            self.name, resolve_base_url(base_url, env_var="WATTTIME_BASE_URL", default=DEFAULT_BASE_URL), session=session, timeout_s=timeout_s, max_retries=max_retries, deadline_s=deadline_s,
            cooldown_s=cooldown_s, sleep=sleep, clock=clock,
        )
        self.clock = clock
        self._token: SecretStr | None = None
        self._token_at: pd.Timestamp | None = None
        self._regions: dict[str, str] = {}

    @property
    def cache_tag(self) -> str:  # type: ignore[override]
        """The signal type is part of the cache key."""
        return self.signal_type

    def __repr__(self) -> str:
        return f"WattTimeSignal(signal_type={self.signal_type!r}, base_url={self.http.shown_base_url!r})"

    def _auth(self, *, login: bool) -> dict[str, Any]:
        """The one place credentials are unwrapped: basic auth for /login, bearer token otherwise."""
        if login:
            return {"auth": (self._username.get_secret_value(), self._password.get_secret_value())}
        assert self._token is not None
        return {"headers": {"Authorization": f"Bearer {self._token.get_secret_value()}"}}

    def _login(self) -> None:
        body = self.http.get_json("/login", **self._auth(login=True))
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderResponseError(f"{self.name} /login: no 'token' in the body; the API format may have changed", source=self.name)
        self.http.add_secret(token)  # a credential too: hidden in any error that quotes it
        self._token, self._token_at = SecretStr(token), self.clock()

    def _get(self, path: str, **params: Any) -> Any:
        if self._token is None or self._token_at is None or self.clock() - self._token_at > TOKEN_LIFETIME:
            self._login()
        try:
            try:
                body = self.http.get_json(path, params=params, **self._auth(login=False))
            except ProviderAuthError as exc:
                if exc.status != 401:
                    raise
                self._login()  # 401 on a data call: the token expired (WattTime: "call /login again")
                body = self.http.get_json(path, params=params, **self._auth(login=False))
        except ProviderAuthError as exc:
            if exc.status == 403:  # documented ErrorResponse: the plan does not cover this region/signal
                what = f"region {params['region']}" if "region" in params else "this request"
                refused = ProviderAuthError(
                    f"{self.name} GET {path}: the account's plan does not cover {what} for signal_type {self.signal_type} "
                    f"(HTTP 403{': ' + exc.detail if getattr(exc, 'detail', None) else ''}); use a region your plan covers "
                    "(GET /v3/my-access lists them; CAISO_NORTH is the free preview) or another carbon source",
                    source=self.name,
                    status=403,
                )
                refused.reason = f"HTTP 403: the plan does not cover {what}"  # type: ignore[attr-defined]
                raise refused from None
            raise
        meta = body.get("meta") if isinstance(body, dict) else None
        warnings = meta.get("warnings") if isinstance(meta, dict) else None
        for w in warnings if isinstance(warnings, list) else []:
            if isinstance(w, dict):
                log.warning("%s %s warns %s: %s", self.name, path, self.http.redact(str(w.get("type", "")))[:80],
                            self.http.redact(str(w.get("message", "")))[:200])
        return body

    @redacts_errors
    def region(self, zone: str) -> str:
        """The WattTime region for a WattTime region name, an AWS region or ``"lat,lon"``."""
        from care_flows.regions import REGIONS

        key = str(zone).strip()
        if key in self._regions:
            return self._regions[key]
        loc = parse_latlon(key)
        if loc is None and key in REGIONS:
            loc = (REGIONS[key].lat, REGIONS[key].lon)
        if loc is None:  # an Electricity Maps zone id of a registry region: use its coordinates
            match = next((r for r in REGIONS.values() if r.zone.upper() == key.upper()), None)
            if match is not None:
                loc = (match.lat, match.lon)
        if loc is None:
            return key
        body = self._get("/v3/region-from-loc", latitude=loc[0], longitude=loc[1], signal_type=self.signal_type)
        region = body.get("region") if isinstance(body, dict) else None
        if not isinstance(region, str) or not region:
            raise ProviderResponseError(f"{self.name} /v3/region-from-loc: no 'region' in the body; the API format may have changed", source=self.name)
        self._regions[key] = region
        return region

    def _series(self, body: Any, path: str, zone: str, issued_at: pd.Timestamp | None, model: str | None,
                until: pd.Timestamp | None = None) -> pd.Series:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderResponseError(f"{self.name} {path}: no 'data' list in the body; the API format may have changed", source=self.name)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        units = meta.get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise ProviderResponseError(f"{self.name} {path}: unexpected units {units!r}; expected lbs_co2_per_mwh", source=self.name)
        times, values = read_points(
            body["data"], time_key="point_time", value=lambda p: p["value"], value_name="value",
            where=f"{self.name} {path}", error=ProviderResponseError, skip_null=True, data_until=until, source=self.name,
        )
        values = values * LBS_PER_MWH_TO_G_PER_KWH
        times, values = regularize(times, values, what=f"{self.name} {path} for {zone}", error=ProviderResponseError)
        if issued_at is None:
            try:
                issued_at = parse_time(meta["generated_at"], name="generated_at") if meta.get("generated_at") else self.clock()
            except ConfigError:
                raise ProviderResponseError(f"{self.name} {path}: meta.generated_at is not an ISO time; the API format may have changed", source=self.name) from None
        return make_series(values, times, SignalMeta(source=self.name, signal="marginal", zone=zone, issued_at=issued_at, forecast_model=model))

    @redacts_errors
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """``/v3/historical`` over ``[start, end)`` (login, region lookup and data calls share one ``deadline_s``)."""
        with self.http.budget():
            return self._history(zone, start, end)

    def _history(self, zone: str, start: Any, end: Any) -> pd.Series:
        s, e = check_window(start, end)
        region = self.region(zone)
        data: list = []
        meta: dict = {}
        pieces = split_window(s, e, MAX_HISTORICAL)  # the API serves at most 32 days per request
        for i, (a, b) in enumerate(pieces):
            if i < len(pieces) - 1:  # start and end are both inclusive: do not ask twice for the point at b
                b = b - pd.Timedelta(self.step)
            body = self._get("/v3/historical", region=region, start=a.isoformat(), end=b.isoformat(), signal_type=self.signal_type)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ProviderResponseError(f"{self.name} /v3/historical: no 'data' list in the body; the API format may have changed", source=self.name)
            data += body["data"]
            meta = body["meta"] if isinstance(body.get("meta"), dict) else meta
        out = self._series({"data": data, "meta": meta}, "/v3/historical", region, self.clock(), None)
        return out[(out.index >= s.floor(self.step)) & (out.index < e)]

    @redacts_errors
    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        """``/v3/forecast`` (issued at ``meta.generated_at``), cut to ``[start, start + horizon)``; login,
        region lookup and forecast share one ``deadline_s`` (a dead provider costs it once, not per call)."""
        with self.http.budget():
            return self._forecast(zone, start, horizon)

    def _forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        region = self.region(zone)
        hours = int(np.ceil(((s + h) - self.clock()) / pd.Timedelta("1h")))
        body = self._get("/v3/forecast", region=region, signal_type=self.signal_type, horizon_hours=min(72, max(1, hours)))
        out = self._series(body, "/v3/forecast", region, None, "watttime", until=s + h)
        out = out[(out.index >= s.floor(self.step)) & (out.index < s + h)]
        if out.empty:
            raise ProviderResponseError(f"{self.name} forecast for {region} does not cover {s.isoformat()}; ask for a start within the next 72 h", source=self.name)
        return out
