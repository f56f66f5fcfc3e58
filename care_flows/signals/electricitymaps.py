"""Electricity Maps API v3 (``https://api.electricitymaps.com/v3``), header ``auth-token``.

Endpoints used: ``/carbon-intensity/latest``, ``/carbon-intensity/history`` (last 24 h, free
tier; :meth:`ElectricityMapsSignal.history` uses it for windows starting within the last 24 h),
``/carbon-intensity/past-range`` (``start``/``end``, at most 10 days per hourly request) and
``/carbon-intensity/forecast`` (``horizonHours`` 24/48/72 when more than the default is needed),
each with ``zone=`` (or ``lat=``/``lon=`` when the zone is given as ``"lat,lon"``),
``emissionFactorType=lifecycle|direct`` and ``shouldUseFallbackCallerLookup=false``. Values are
``carbonIntensity`` in gCO2eq/kWh at ``datetime`` (interval start, UTC); a ``null`` value (a gap
the API could not estimate) is dropped and short gaps are interpolated. The token comes from
``api_token=`` or ``ELECTRICITYMAPS_API_TOKEN`` and is unwrapped only in
:meth:`ElectricityMapsSignal._auth_headers`.

Checked against the API's documented behaviour (docs.electricitymaps.com; the developer hub
reference at portal.electricitymaps.com/developer-hub/api/reference; help.electricitymaps.com
"API authentication errors"; the Green Software Foundation carbon-aware-sdk ElectricityMaps client):

- the API falls back to the *caller's IP location* when it detects no zone, so the fallback is
  switched off and a body whose ``zone`` is not the requested one is refused;
- a token whose plan lacks a zone or endpoint is refused with HTTP 401 and
  ``{"error": "Request unauthorized for zoneKey=ES,requestType=past-range,..."}``: that is reported
  as a plan problem, not as a bad token;
- points carry ``emissionFactorType``; one that differs from the requested kind is refused.

>>> sig = ElectricityMapsSignal(api_token="not-a-real-token")
>>> sig
ElectricityMapsSignal(kind='lifecycle', base_url='https://api.electricitymaps.com/v3')
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import pandas as pd
import requests
from pydantic import SecretStr

from care_flows.errors import ConfigError, ProviderAuthError, ProviderResponseError
from care_flows.signals._http import DEFAULT_DEADLINE_S, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, HttpClient, redacts_errors, resolve_base_url
from care_flows.signals.base import (
    CarbonSignal,
    SignalMeta,
    check_horizon,
    check_window,
    make_series,
    parse_latlon,
    read_points,
    regularize,
    split_window,
    zone_for,
)
from care_flows.signals.credentials import resolve_secret
from care_flows.timeutil import parse_time, utcnow

__all__ = ["ElectricityMapsSignal", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.electricitymaps.com/v3"
MAX_PAST_RANGE = pd.Timedelta("10D")
RECENT_SPAN = pd.Timedelta("24h")
"""``/carbon-intensity/history`` serves the last 24 hourly points (free tier)."""
FORECAST_HORIZONS_H = (24, 48, 72)
"""``horizonHours`` values asked for (the API's default horizon covers 24 h)."""


class ElectricityMapsSignal(CarbonSignal):
    """Average life-cycle or direct intensity from Electricity Maps (``kind`` = lifecycle|direct)."""

    name = "electricitymaps"
    step = timedelta(hours=1)

    def __init__(
        self,
        api_token: str | SecretStr | None = None,
        *,
        kind: str = "lifecycle",
        base_url: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        cooldown_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        if kind not in ("lifecycle", "direct"):
            raise ConfigError(f"Electricity Maps has no {kind!r} signal; use kind='lifecycle' or 'direct' (on the command line --kind lifecycle or --kind direct)")
        self.kind = kind
        self._token = resolve_secret(api_token, env_var="ELECTRICITYMAPS_API_TOKEN", provider=self.name, argument="api_token")
        self.http = HttpClient(
            self.name, resolve_base_url(base_url, env_var="ELECTRICITYMAPS_BASE_URL", default=DEFAULT_BASE_URL), session=session, timeout_s=timeout_s, max_retries=max_retries, deadline_s=deadline_s,
            cooldown_s=cooldown_s, sleep=sleep, clock=clock,
        )
        self.clock = clock

    def __repr__(self) -> str:
        return f"ElectricityMapsSignal(kind={self.kind!r}, base_url={self.http.shown_base_url!r})"

    def _auth_headers(self) -> dict[str, str]:
        """The one place the token is unwrapped."""
        return {"auth-token": self._token.get_secret_value()}

    def _get(self, path: str, zone: str, **params: Any) -> Any:
        where = parse_latlon(zone)
        loc = {"lat": where[0], "lon": where[1]} if where else {"zone": zone}
        query = {**loc, "emissionFactorType": self.kind, "shouldUseFallbackCallerLookup": "false", **params}
        try:
            body = self.http.get_json(path, params=query, headers=self._auth_headers())
        except ProviderAuthError as exc:
            detail = getattr(exc, "detail", None) or ""
            if "unauthorized for zonekey" in detail.lower():  # a valid token whose plan lacks this zone/endpoint
                refused = ProviderAuthError(
                    f"{self.name} GET {path}: the token's plan does not include zone {zone} for this endpoint (HTTP {exc.status}: {detail}); "
                    "use a zone and endpoint your plan covers (GET /v3/zones lists them) or another carbon source",
                    source=self.name,
                    status=exc.status,
                )
                refused.reason = f"HTTP {exc.status}: the token's plan lacks zone {zone}"  # type: ignore[attr-defined]
                raise refused from None
            raise
        got = body.get("zone") if isinstance(body, dict) else None
        if where is None and isinstance(got, str) and got.upper() != zone.upper():
            raise ProviderResponseError(f"{self.name} {path}: asked for zone {zone} but the body is for zone {got}; check the zone id (GET /v3/zones lists them)", source=self.name)
        return body

    @staticmethod
    def _answered(zone: str, body: Any) -> str:
        """The zone to label a series with: ``zone``, or for a ``"lat,lon"`` request the zone the body
        says it answered for (``attrs["zone"]`` is the zone as the source knows it).

        >>> ElectricityMapsSignal._answered("40.4,-3.7", {"zone": "ES"}), ElectricityMapsSignal._answered("ES", {"zone": "ES"})
        ('ES', 'ES')
        """
        got = body.get("zone") if isinstance(body, dict) else None
        return got if parse_latlon(zone) and isinstance(got, str) and got.strip() else zone

    def _series(self, points: Any, zone: str, path: str, issued_at: pd.Timestamp, model: str | None,
                until: pd.Timestamp | None = None) -> pd.Series:
        times, values = read_points(
            points, time_key="datetime", value=lambda p: p["carbonIntensity"], value_name="carbonIntensity",
            where=f"{self.name} {path}", error=ProviderResponseError, skip_null=True, data_until=until, source=self.name,
        )  # a null carbonIntensity is a gap the API could not estimate: dropped
        kinds = {str(k) for p in points if (k := p.get("emissionFactorType")) is not None}
        if kinds - {self.kind}:
            raise ProviderResponseError(f"{self.name} {path}: asked for emissionFactorType {self.kind} but the body has {sorted(kinds)}; the API ignored the parameter", source=self.name)
        times, values = regularize(times, values, what=f"{self.name} {path} for {zone}", step=pd.Timedelta(self.step) if len(times) > 1 else None, error=ProviderResponseError)
        meta = SignalMeta(source=self.name, signal=self.kind, zone=zone, issued_at=issued_at, forecast_model=model)
        return make_series(values, times, meta)

    @redacts_errors
    def latest(self, zone: str) -> pd.Series:
        """The latest value (one point)."""
        zone = zone_for(zone)
        body = self._get("/carbon-intensity/latest", zone)
        if not isinstance(body, dict):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/latest: body is not an object; the API format may have changed", source=self.name)
        return self._series([body], self._answered(zone, body), "/carbon-intensity/latest", self.clock(), None)

    @redacts_errors
    def recent(self, zone: str) -> pd.Series:
        """The last 24 hours (``/carbon-intensity/history``)."""
        zone = zone_for(zone)
        body = self._get("/carbon-intensity/history", zone)
        points = body.get("history") if isinstance(body, dict) else None
        if not isinstance(points, list):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/history: no 'history' list in the body; the API format may have changed", source=self.name)
        return self._series(points, self._answered(zone, body), "/carbon-intensity/history", self.clock(), None)

    @redacts_errors
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """Observed intensity over ``[start, end)``.

        A window that starts within the last 24 hours is served by ``/carbon-intensity/history``
        (the free tier's endpoint, the last 24 hours); older windows by ``/carbon-intensity/past-range``
        (commercial plans) in requests of at most 10 days (the API's hourly limit).
        """
        zone = zone_for(zone)
        s, e = check_window(start, end)
        if s.floor(self.step) >= self.clock().floor(self.step) - RECENT_SPAN + pd.Timedelta(self.step):
            recent = self.recent(zone)
            out = recent[(recent.index >= s.floor(self.step)) & (recent.index < e)]
            if out.empty:
                raise ProviderResponseError(
                    f"{self.name} /carbon-intensity/history for {zone} has no point in [{s.isoformat()}, {e.isoformat()}); "
                    "the last hours may not be published yet, ask again later",
                    source=self.name,
                )
            return out
        points: list = []
        for a, b in split_window(s, e, MAX_PAST_RANGE):
            body = self._get("/carbon-intensity/past-range", zone, start=a.isoformat(), end=b.isoformat())
            part = body.get("data") if isinstance(body, dict) else None
            if not isinstance(part, list):
                raise ProviderResponseError(f"{self.name} /carbon-intensity/past-range: no 'data' list in the body; the API format may have changed", source=self.name)
            points += part
        out = self._series(points, self._answered(zone, body), "/carbon-intensity/past-range", self.clock(), None)
        return out[(out.index >= s.floor(self.step)) & (out.index < e)]

    @redacts_errors
    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        """``/carbon-intensity/forecast`` (issued at the body's ``updatedAt``), cut to ``[start, start + horizon)``."""
        zone = zone_for(zone)
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        # the forecast starts at the current hour (horizon 0), not at now: at 10:17 a 24 h question needs 25 points (review 46b L1)
        hours = int(np.ceil(((s + h) - self.clock().floor("1h")) / pd.Timedelta("1h")))
        params = {"horizonHours": next((x for x in FORECAST_HORIZONS_H if x >= hours), FORECAST_HORIZONS_H[-1])} if hours > 24 else {}
        body = self._get("/carbon-intensity/forecast", zone, **params)
        points = body.get("forecast") if isinstance(body, dict) else None
        if not isinstance(points, list):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/forecast: no 'forecast' list in the body; the API format may have changed", source=self.name)
        issued = self.clock()
        if body.get("updatedAt"):
            try:
                issued = parse_time(body["updatedAt"], name="updatedAt")
            except (ConfigError, TypeError, ValueError):  # the provider's format, not the caller's input
                raise ProviderResponseError(
                    f"{self.name} /carbon-intensity/forecast: updatedAt {str(body['updatedAt'])[:40]!r} is not an ISO time with offset; the API format may have changed",
                    source=self.name,
                ) from None
        out = self._series(points, self._answered(zone, body), "/carbon-intensity/forecast", issued, "electricitymaps", until=s + h)
        out = out[(out.index >= s.floor(self.step)) & (out.index < s + h)]
        if out.empty:
            raise ProviderResponseError(f"{self.name} forecast for {zone} does not cover {s.isoformat()}; ask for a start within the next 72 h", source=self.name)
        return out
