"""GB Carbon Intensity API (``https://api.carbonintensity.org.uk``, no key), half-hourly gCO2/kWh.

National: ``/intensity/{from}/fw48h`` (forecast) and ``/intensity/{from}/{to}`` (``actual``
when published, else ``forecast``); regional: ``/regional/intensity/{from}/fw48h/regionid/{id}``
and ``/regional/intensity/{from}/{to}/regionid/{id}`` (forecast values only). Times are
``YYYY-MM-DDThh:mmZ``; each point is ``{"from", "to", "intensity": {"forecast", "actual",
"index"}}``.

The API's numbers are *operational* (direct, combustion-only) average intensities of the GB
grid, so they are labelled ``signal="direct"``; they are not comparable to Electricity Maps
life-cycle values (see docs/SIGNALS.md).

Zones: ``GB`` (national), ``GB-<id>`` (regional id 1-17, 13 = London) or an AWS region on the
GB grid (``eu-west-2`` -> London, region 13).

Checked against the API's published definition (github.com/carbon-intensity/api-definitions
``docs/index.html``, served at carbon-intensity.github.io/api-definitions): ``{from}/{to}`` ranges
are limited to 14 days, errors are ``{"error": {"code", "message"}}`` (their message is carried
into the raised error), and the regional-by-id endpoints document ``"data": [{"regionid", ...,
"data": [...]}]`` while the live API answers ``"data": {"regionid", ..., "data": [...]}`` (as
decoded by github.com/jnioche/carbonintensity-api ``src/lib.rs``): both are accepted. A range may
start with the half hour that ends at ``from`` and consecutive ranges share their boundary
period, so points before the window or already seen are dropped.

>>> GBCarbonSignal().target("GB"), GBCarbonSignal().target("GB-13"), GBCarbonSignal().target("eu-west-2")
(None, 13, 13)
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import pandas as pd
import requests

from care_flows.errors import ConfigError, ProviderResponseError, UnknownZoneError
from care_flows.signals._http import DEFAULT_DEADLINE_S, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, HttpClient, redacts_errors, resolve_base_url
from care_flows.signals.base import CarbonSignal, SignalMeta, check_horizon, check_window, make_series, read_points, regularize, split_window, with_meta
from care_flows.timeutil import parse_time, utcnow

__all__ = ["GBCarbonSignal", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
MAX_RANGE = pd.Timedelta("14D")


def _fmt(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ")


class GBCarbonSignal(CarbonSignal):
    """Great Britain national or regional intensity (direct/operational), half-hourly."""

    name = "gb"
    step = timedelta(minutes=30)
    kind = "direct"
    accepts_aws_regions = True
    """The planner passes ``eu-west-2`` itself, which is London (region 13), not the national ``GB``."""

    def __init__(
        self,
        *,
        kind: str = "direct",
        base_url: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        cooldown_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        if kind != "direct":
            raise ConfigError(f"the GB Carbon Intensity API serves direct (operational) intensity, not {kind!r}; use kind='direct' (on the command line --kind direct)")
        self.http = HttpClient(
            self.name, resolve_base_url(base_url, env_var="GB_CARBON_INTENSITY_BASE_URL", default=DEFAULT_BASE_URL), session=session, timeout_s=timeout_s, max_retries=max_retries, deadline_s=deadline_s,
            cooldown_s=cooldown_s, sleep=sleep, clock=clock,
        )
        self.clock = clock

    def __repr__(self) -> str:
        return f"GBCarbonSignal(base_url={self.http.shown_base_url!r})"

    @staticmethod
    def target(zone: str) -> int | None:
        """None for the national series, else the GB regional id."""
        from care_flows.regions import REGIONS

        key = str(zone).strip()
        if key in REGIONS and REGIONS[key].gb_region_id is not None:
            return REGIONS[key].gb_region_id
        up = key.upper()
        if up in ("GB", "UK", "GB-NATIONAL"):
            return None
        if up.startswith("GB-") and up[3:].isdigit() and 1 <= int(up[3:]) <= 17:
            return int(up[3:])
        raise UnknownZoneError(f"zone {zone!r} is not on the GB grid; use GB, GB-<regionid 1-17> or eu-west-2")

    def _points(self, body: Any, path: str) -> list[dict]:
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):  # regional: {"data": {"regionid", "shortname", "data": [...]}}
            data = data.get("data")
        elif isinstance(data, list) and data and isinstance(data[0], dict) and "regionid" in data[0]:
            data = data[0].get("data")
        if not isinstance(data, list):
            raise ProviderResponseError(f"{self.name} {path}: no 'data' list in the body; the API format may have changed", source=self.name)
        return data

    def _series(self, points: list[dict], path: str, zone: str, issued_at: pd.Timestamp, model: str | None, prefer_actual: bool,
                until: pd.Timestamp | None = None) -> pd.Series:
        def value(p: dict) -> Any:
            it = p["intensity"]
            v = it.get("actual") if prefer_actual else None
            return it["forecast"] if v is None else v

        times, values = read_points(
            points, time_key="from", value=value, value_name="intensity.forecast",
            where=f"{self.name} {path}", error=ProviderResponseError, skip_null=True, data_until=until, source=self.name,
        )
        times, values = regularize(times, values, what=f"{self.name} {path}", step=pd.Timedelta(self.step) if len(times) > 1 else None, error=ProviderResponseError)
        return make_series(values, times, SignalMeta(source=self.name, signal="direct", zone=zone, issued_at=issued_at, forecast_model=model))

    def _label(self, rid: int | None) -> str:
        return "GB" if rid is None else f"GB-{rid}"

    @redacts_errors
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """Observed (national ``actual``) or regional estimated intensity over ``[start, end)``."""
        s, e = check_window(start, end)
        rid = self.target(zone)
        points: list[dict] = []
        for a, b in split_window(s, e, MAX_RANGE):  # the API serves at most 14 days per request
            path = f"/intensity/{_fmt(a)}/{_fmt(b)}" if rid is None else f"/regional/intensity/{_fmt(a)}/{_fmt(b)}/regionid/{rid}"
            part = self._points(self.http.get_json(path), path)
            if points:  # ranges are inclusive at both ends: keep only periods after the last one seen
                last = str(points[-1].get("from")) if isinstance(points[-1], dict) else ""
                part = [p for p in part if not (isinstance(p, dict) and isinstance(p.get("from"), str) and p["from"] <= last)]
            points += part
        out = self._series(points, path, self._label(rid), self.clock(), None, prefer_actual=True)
        out = out[(out.index >= s.floor(self.step)) & (out.index < e)]
        # a half hour without a published actual (recent ones; regional data has none) is the API's forecast: say so,
        # so that it is not taken for measured data (review 46a M2)
        measured = {parse_time(p["from"], name="from") for p in points
                    if isinstance(p, dict) and isinstance(p.get("intensity"), dict) and p["intensity"].get("actual") is not None}
        if not set(out.index) <= measured:  # which half hours: a run none of them is in was measured (review 46d L5)
            out = with_meta(out, forecast_model="gb-carbon-intensity (where no actual is published)",
                            unmeasured=tuple(t.isoformat() for t in out.index if t not in measured))
        return out

    @redacts_errors
    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        """The 48 h forecast from ``start`` (the API's forecast is issued continuously; issue time = fetch time)."""
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        rid = self.target(zone)
        path = f"/intensity/{_fmt(s)}/fw48h" if rid is None else f"/regional/intensity/{_fmt(s)}/fw48h/regionid/{rid}"
        out = self._series(self._points(self.http.get_json(path), path), path, self._label(rid), self.clock(), "gb-carbon-intensity", prefer_actual=False,
                           until=s + h)
        out = out[(out.index >= s.floor(self.step)) & (out.index < s + h)]
        if out.empty:
            raise ProviderResponseError(f"{self.name} forecast does not cover {s.isoformat()}; ask for a start within the next 48 h", source=self.name)
        return out
