"""Electricity Maps API v3 (``https://api.electricitymaps.com/v3``), header ``auth-token``.

Endpoints used: ``/carbon-intensity/latest``, ``/carbon-intensity/history`` (last 24 h),
``/carbon-intensity/past-range`` (``start``/``end``) and ``/carbon-intensity/forecast``, each
with ``zone=`` (or ``lat=``/``lon=`` when the zone is given as ``"lat,lon"``) and
``emissionFactorType=lifecycle|direct``. Values are ``carbonIntensity`` in gCO2eq/kWh at
``datetime`` (interval start, UTC). The token comes from ``api_token=`` or
``ELECTRICITYMAPS_API_TOKEN`` and is unwrapped only in :meth:`ElectricityMapsSignal._auth_headers`.

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

from care_flows.errors import ConfigError, ProviderResponseError
from care_flows.signals._http import HttpClient
from care_flows.signals.base import (
    CarbonSignal,
    SignalMeta,
    check_horizon,
    check_window,
    make_series,
    parse_latlon,
    regularize,
    split_window,
    zone_for,
)
from care_flows.signals.credentials import resolve_secret
from care_flows.timeutil import parse_time, utcnow

__all__ = ["ElectricityMapsSignal", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.electricitymaps.com/v3"
MAX_PAST_RANGE = pd.Timedelta("10D")


class ElectricityMapsSignal(CarbonSignal):
    """Average life-cycle or direct intensity from Electricity Maps (``kind`` = lifecycle|direct)."""

    name = "electricitymaps"
    step = timedelta(hours=1)

    def __init__(
        self,
        api_token: str | SecretStr | None = None,
        *,
        kind: str = "lifecycle",
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        if kind not in ("lifecycle", "direct"):
            raise ConfigError(f"Electricity Maps has no {kind!r} signal; use kind='lifecycle' or 'direct'")
        self.kind = kind
        self._token = resolve_secret(api_token, env_var="ELECTRICITYMAPS_API_TOKEN", provider=self.name, argument="api_token")
        self.http = HttpClient(self.name, base_url, session=session, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep)
        self.clock = clock

    def __repr__(self) -> str:
        return f"ElectricityMapsSignal(kind={self.kind!r}, base_url={self.http.base_url!r})"

    def _auth_headers(self) -> dict[str, str]:
        """The one place the token is unwrapped."""
        return {"auth-token": self._token.get_secret_value()}

    def _get(self, path: str, zone: str, **params: Any) -> Any:
        where = parse_latlon(zone)
        loc = {"lat": where[0], "lon": where[1]} if where else {"zone": zone}
        return self.http.get_json(path, params={**loc, "emissionFactorType": self.kind, **params}, headers=self._auth_headers())

    def _series(self, points: Any, zone: str, path: str, issued_at: pd.Timestamp, model: str | None) -> pd.Series:
        try:
            times = pd.DatetimeIndex([parse_time(p["datetime"], name="datetime") for p in points])
            values = np.array([np.nan if p["carbonIntensity"] is None else float(p["carbonIntensity"]) for p in points], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderResponseError(f"{self.name} {path}: points lack datetime/carbonIntensity ({type(exc).__name__}); the API format may have changed", source=self.name) from None
        times, values = regularize(times, values, what=f"{self.name} {path} for {zone}", step=pd.Timedelta(self.step) if len(times) > 1 else None, error=ProviderResponseError)
        meta = SignalMeta(source=self.name, signal=self.kind, zone=zone, issued_at=issued_at, forecast_model=model)
        return make_series(values, times, meta)

    def latest(self, zone: str) -> pd.Series:
        """The latest value (one point)."""
        zone = zone_for(zone)
        body = self._get("/carbon-intensity/latest", zone)
        if not isinstance(body, dict):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/latest: body is not an object; the API format may have changed", source=self.name)
        return self._series([body], zone, "/carbon-intensity/latest", self.clock(), None)

    def recent(self, zone: str) -> pd.Series:
        """The last 24 hours (``/carbon-intensity/history``)."""
        zone = zone_for(zone)
        body = self._get("/carbon-intensity/history", zone)
        points = body.get("history") if isinstance(body, dict) else None
        if not isinstance(points, list):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/history: no 'history' list in the body; the API format may have changed", source=self.name)
        return self._series(points, zone, "/carbon-intensity/history", self.clock(), None)

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """``/carbon-intensity/past-range`` over ``[start, end)``, in requests of at most 10 days (the API's hourly limit)."""
        zone = zone_for(zone)
        s, e = check_window(start, end)
        points: list = []
        for a, b in split_window(s, e, MAX_PAST_RANGE):
            body = self._get("/carbon-intensity/past-range", zone, start=a.isoformat(), end=b.isoformat())
            part = body.get("data") if isinstance(body, dict) else None
            if not isinstance(part, list):
                raise ProviderResponseError(f"{self.name} /carbon-intensity/past-range: no 'data' list in the body; the API format may have changed", source=self.name)
            points += part
        out = self._series(points, zone, "/carbon-intensity/past-range", self.clock(), None)
        return out[(out.index >= s.floor(self.step)) & (out.index < e)]

    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        """``/carbon-intensity/forecast`` (issued at the body's ``updatedAt``), cut to ``[start, start + horizon)``."""
        zone = zone_for(zone)
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        hours = int(np.ceil(((s + h) - self.clock()) / pd.Timedelta("1h")))
        params = {"horizonHours": min(72, max(6, hours))} if hours > 24 else {}
        body = self._get("/carbon-intensity/forecast", zone, **params)
        points = body.get("forecast") if isinstance(body, dict) else None
        if not isinstance(points, list):
            raise ProviderResponseError(f"{self.name} /carbon-intensity/forecast: no 'forecast' list in the body; the API format may have changed", source=self.name)
        issued = parse_time(body["updatedAt"], name="updatedAt") if body.get("updatedAt") else self.clock()
        out = self._series(points, zone, "/carbon-intensity/forecast", issued, "electricitymaps")
        out = out[(out.index >= s.floor(self.step)) & (out.index < s + h)]
        if out.empty:
            raise ProviderResponseError(f"{self.name} forecast for {zone} does not cover {s.isoformat()}; ask for a start within the next 72 h", source=self.name)
        return out
