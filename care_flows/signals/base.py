"""The carbon-signal interface: one small abstract class, one Series format, one metadata record.

Every source (embedded trace, CSV, Electricity Maps, WattTime, GB Carbon Intensity API, the
cache and the fallback chain) answers two questions::

    history(zone, start, end)       -> pd.Series   what the grid emitted in [start, end)
    forecast(zone, start, horizon)  -> pd.Series   what it is expected to emit from start on

The Series is float gCO2eq/kWh named ``g_per_kwh`` on a regular UTC :class:`~pandas.DatetimeIndex`
(each label is the *start* of its interval). ``series.attrs`` records where the numbers come from
(:class:`SignalMeta`); pandas operations may drop ``attrs``, so read them with
:func:`series_meta` right after the call.

>>> import pandas as pd
>>> idx = pd.date_range("2023-06-01", periods=3, freq="h", tz="UTC")
>>> s = make_series([100.0, 90.5, 80.0], idx, SignalMeta(source="embedded", signal="lifecycle", zone="ES",
...                 issued_at=pd.Timestamp("2023-06-01T00:00Z")))
>>> s.name, s.attrs["unit"], series_meta(s).source
('g_per_kwh', 'gCO2eq/kWh', 'embedded')
>>> zone_for("eu-south-2"), zone_for("es"), zone_for("SE-SE3")
('ES', 'ES', 'SE-SE3')
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable, Literal

import numpy as np
import pandas as pd

from care_flows.errors import CareError, ConfigError, DataError
from care_flows.timeutil import format_duration, parse_duration, parse_time

__all__ = [
    "CarbonSignal",
    "fallback_warnings",
    "SignalMeta",
    "SignalKind",
    "SIGNAL_KINDS",
    "UNIT",
    "make_series",
    "series_meta",
    "zone_for",
    "zone_asked",
    "slot_step",
    "check_window",
    "check_horizon",
    "parse_latlon",
    "regularize",
    "split_window",
    "with_meta",
    "read_points",
    "base_source",
]

SignalKind = Literal["lifecycle", "direct", "marginal"]
SIGNAL_KINDS: tuple[str, ...] = ("lifecycle", "direct", "marginal")
"""``lifecycle``: average life-cycle (LCA) intensity; ``direct``: average operational
(combustion-only) intensity; ``marginal``: marginal operating emissions rate (WattTime MOER)."""
UNIT = "gCO2eq/kWh"


@dataclass(frozen=True)
class SignalMeta:
    """Where a carbon series comes from (stored in ``series.attrs``)."""

    source: str
    """The source that actually served it: ``electricitymaps``, ``cache:electricitymaps``, ``embedded``..."""
    signal: str
    """``lifecycle``, ``direct`` or ``marginal``."""
    zone: str
    issued_at: pd.Timestamp | None = None
    """Forecast issue time; for history, the time the data was fetched."""
    unit: str = UNIT
    forecast_model: str | None = None
    """Model that produced a forecast (``oracle`` when it is the actual data); None for history."""
    fallback_errors: tuple[str, ...] = field(default_factory=tuple)
    """One line per source that failed before this one answered (fallback chain only)."""
    requested_source: str | None = None
    """The source asked first (``electricitymaps`` even when ``embedded`` served); None: ``source``
    without its ``cache:``/``stale-cache:`` prefix."""
    fallback_note: str | None = None
    """One readable line when a fallback served, e.g. ``electricitymaps failed for ES (HTTP 500);
    using embedded (lifecycle, 2023 replay)``; None when the requested source (or its cache) answered."""
    unmeasured: tuple[str, ...] = field(default_factory=tuple)
    """A history's times (ISO) that the source filled with its own forecast (the GB API before its
    ``actual`` is published); empty when it measured every time or does not say which."""

    def to_attrs(self) -> dict[str, Any]:
        """The ``series.attrs`` dictionary (``requested_source`` is always filled in)."""
        out = asdict(self)
        out["fallback_errors"] = list(self.fallback_errors)
        out["unmeasured"] = list(self.unmeasured)
        out["requested_source"] = self.requested_source or base_source(self.source)
        return out


def base_source(source: str) -> str:
    """The provider behind a served-by label: ``cache:electricitymaps`` -> ``electricitymaps``.

    >>> base_source("stale-cache:watttime"), base_source("embedded")
    ('watttime', 'embedded')
    """
    for prefix in ("stale-cache:", "cache:"):
        if source.startswith(prefix):
            return source[len(prefix):]
    return source


def fallback_warnings(series: pd.Series) -> list[str]:
    """What a fallback served instead, for a user: the one-line ``fallback_note`` when the chain
    wrote one, else each ``fallback_errors`` entry (e.g. a stale cache answered), else ``[]``.

    >>> s = pd.Series([1.0], index=pd.DatetimeIndex(["2023-06-01"], tz="UTC"))
    >>> s.attrs.update(fallback_errors=["electricitymaps: HTTP 500"], fallback_note=None)
    >>> fallback_warnings(s)
    ['electricitymaps: HTTP 500']
    """
    attrs = getattr(series, "attrs", {})
    if attrs.get("fallback_note"):
        return [str(attrs["fallback_note"])]
    errors = attrs.get("fallback_errors") or ()
    return [str(e) for e in (errors if isinstance(errors, (list, tuple)) else [errors])]


def series_meta(series: pd.Series) -> SignalMeta:
    """Read the :class:`SignalMeta` of a series returned by a signal (ConfigError if it has none)."""
    attrs = dict(series.attrs)
    if "source" not in attrs or "signal" not in attrs:
        raise ConfigError("series has no carbon-signal metadata (attrs lost by a pandas operation?); read series_meta() right after history()/forecast()")
    return SignalMeta(
        source=str(attrs["source"]),
        signal=str(attrs["signal"]),
        zone=str(attrs.get("zone", "")),
        issued_at=attrs.get("issued_at"),
        unit=str(attrs.get("unit", UNIT)),
        forecast_model=attrs.get("forecast_model"),
        fallback_errors=tuple(attrs.get("fallback_errors", ())),
        requested_source=attrs.get("requested_source"),
        fallback_note=attrs.get("fallback_note"),
        unmeasured=tuple(attrs.get("unmeasured", ())),
    )


def make_series(values: Iterable[float] | np.ndarray, index: pd.DatetimeIndex, meta: SignalMeta) -> pd.Series:
    """A ``g_per_kwh`` float Series on ``index`` (converted to UTC) with ``meta`` in ``attrs``."""
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    idx.name = "time"
    out = pd.Series(np.asarray(values, dtype=float), index=idx, name="g_per_kwh")
    out.attrs.update(meta.to_attrs())
    return out


def with_meta(series: pd.Series, **changes: Any) -> pd.Series:
    """A copy of ``series`` whose metadata has ``changes`` applied."""
    meta = series_meta(series)
    fields = asdict(meta)
    fields.update(changes)
    fields["fallback_errors"] = tuple(fields.get("fallback_errors") or ())
    fields["unmeasured"] = tuple(fields.get("unmeasured") or ())
    out = series.copy()
    out.attrs = SignalMeta(**fields).to_attrs()
    return out


_LATLON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_latlon(zone: str) -> tuple[float, float] | None:
    """``"41.65,-0.88"`` -> ``(41.65, -0.88)``; anything else -> None.

    >>> parse_latlon("41.65,-0.88"), parse_latlon("ES")
    ((41.65, -0.88), None)
    """
    m = _LATLON.match(str(zone))
    return (float(m.group(1)), float(m.group(2))) if m else None


_REGION_SHAPE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def zone_for(zone_or_region: str) -> str:
    """The Electricity Maps zone id for a zone id (returned upper-cased) or an AWS region name.

    A ``"lat,lon"`` string is passed through (providers that accept coordinates use it).
    """
    from care_flows.regions import REGIONS

    raw = str(zone_or_region).strip()
    if not raw:
        raise ConfigError("empty zone; give an Electricity Maps zone id such as ES or an AWS region such as eu-south-2")
    if raw in REGIONS:
        return REGIONS[raw].zone
    if parse_latlon(raw):
        return raw
    if _REGION_SHAPE.match(raw):  # an AWS region name CaRE does not know (a typo): say so, with a did-you-mean
        from care_flows.regions import region_info

        region_info(raw)
    return raw.upper()


def zone_asked(signal: Any, region: str) -> str:
    """What to ask ``signal`` for an AWS ``region``: the region itself when the source resolves
    regions more precisely than their grid zone (``accepts_aws_regions``: the GB API's eu-west-2 is
    London, region 13), else the region's grid zone.

    >>> from care_flows.signals.gb import GBCarbonSignal
    >>> zone_asked(GBCarbonSignal(), "eu-west-2"), zone_asked(object(), "eu-west-2")
    ('eu-west-2', 'GB')
    """
    from care_flows.regions import region_info

    return region if getattr(signal, "accepts_aws_regions", False) else region_info(region).zone


def slot_step(signal: Any, zone: str) -> pd.Timedelta:
    """The slot a forecast for ``zone`` should be issued on (``now.floor(slot_step(...))``): a trace
    signal's own step (5 or 15 minutes for a sub-hourly CSV: issuing at the hour would ignore the
    rows since then; review 45e M5), else 1 h (live providers answer from the hour).

    >>> from care_flows.signals.trace import TraceSignal
    >>> quarter = pd.Series(100.0, index=pd.date_range("2023-06-01", periods=8, freq="15min", tz="UTC"))
    >>> str(slot_step(TraceSignal({"ES": quarter}), "ES")), str(slot_step(object(), "ES"))
    ('0 days 00:15:00', '0 days 01:00:00')
    """
    trace = getattr(signal, "trace", None)
    if trace is not None:
        try:
            full = trace(zone)
        except CareError:  # not a zone it holds: the caller's forecast request says so
            return pd.Timedelta("1h")
        if len(full) > 1:
            return pd.Timedelta(full.index[1] - full.index[0])
    return pd.Timedelta("1h")


def check_window(start: Any, end: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Parse ``start``/``end`` to UTC and check ``start < end``."""
    s, e = parse_time(start, name="start"), parse_time(end, name="end")
    if not s < e:
        raise ConfigError(f"end {e.isoformat()} is not after start {s.isoformat()}; give start < end")
    return s, e


def check_horizon(horizon: Any) -> pd.Timedelta:
    """Parse a forecast horizon (``"24h"``, seconds or a timedelta) that must be positive."""
    h = pd.Timedelta(parse_duration(horizon, name="horizon"))
    if h <= pd.Timedelta(0):
        raise ConfigError(f"horizon {horizon!r} is not positive; give e.g. 24h")
    return h


def split_window(start: pd.Timestamp, end: pd.Timestamp, max_span: pd.Timedelta) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Cut ``[start, end)`` into consecutive pieces no longer than ``max_span`` (provider request limits).

    >>> [(a.day, b.day) for a, b in split_window(pd.Timestamp("2023-01-01", tz="UTC"), pd.Timestamp("2023-01-25", tz="UTC"), pd.Timedelta("10D"))]
    [(1, 11), (11, 21), (21, 25)]
    """
    out, a = [], start
    while a < end:
        b = min(end, a + max_span)
        out.append((a, b))
        a = b
    return out


def regularize(
    times: pd.DatetimeIndex,
    values: np.ndarray,
    *,
    what: str,
    step: pd.Timedelta | None = None,
    max_gap_steps: int = 3,
    error: type[Exception] = DataError,
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Sort, drop identical duplicates and put points on a regular grid.

    Gaps of up to ``max_gap_steps`` missing steps are filled by linear interpolation; longer gaps,
    conflicting duplicates or negative/NaN values raise ``error`` naming ``what``.

    >>> idx = pd.DatetimeIndex(["2023-01-01T00:00Z", "2023-01-01T02:00Z", "2023-01-01T01:00Z"])
    >>> t, v = regularize(idx, np.array([1.0, 3.0, 2.0]), what="demo")
    >>> v.tolist()
    [1.0, 2.0, 3.0]
    """
    idx = pd.DatetimeIndex(times)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    vals = np.asarray(values, dtype=float)
    if len(idx) == 0:
        raise error(f"{what}: no data points; check the zone and the time window")
    wrong = ~np.isfinite(vals) | (vals < 0)  # inf: a JSON 1e400 or Infinity (review 55a M1)
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        raise error(f"{what}: value {float(vals[bad]):g} at {idx[bad].isoformat()} is missing, infinite or negative; carbon intensity "
                    "must be a finite number >= 0 gCO2eq/kWh")
    order = np.argsort(idx.asi8, kind="stable")
    idx, vals = idx[order], vals[order]
    dup = idx.duplicated(keep="first")
    if dup.any():
        frame = pd.Series(vals, index=idx)
        spread = frame.groupby(level=0).agg(lambda x: float(np.ptp(x.to_numpy())))
        if (spread > 1e-9).any():
            t = spread[spread > 1e-9].index[0]
            raise error(f"{what}: conflicting duplicate values at {t.isoformat()}; keep one row per time")
        idx, vals = idx[~dup], vals[~dup]
    if len(idx) == 1:
        return idx, vals
    diffs = pd.Series(idx[1:] - idx[:-1])
    if step is None:
        step = pd.Timedelta(diffs.mode().iloc[0])
    full = pd.date_range(idx[0], idx[-1], freq=step)
    if not idx.isin(full).all():
        t = idx[~idx.isin(full)][0]
        raise error(f"{what}: time {t.isoformat()} is off the regular {format_duration(step)} grid; use one row per interval start")
    if len(full) != len(idx):
        s = pd.Series(vals, index=idx).reindex(full)
        missing = s.isna().to_numpy()
        run = _longest_run(missing)
        if run > max_gap_steps:
            first = full[np.flatnonzero(missing)[0]]
            raise error(f"{what}: gap of {run} missing {format_duration(step)} steps starting {first.isoformat()}; at most {max_gap_steps} can be interpolated")
        s = s.interpolate(method="linear")
        idx, vals = pd.DatetimeIndex(s.index), s.to_numpy(dtype=float)
    return idx, vals


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_points(
    points: Any,
    *,
    time_key: str,
    value: Callable[[dict], Any],
    value_name: str,
    where: str,
    error: type[Exception] = DataError,
    skip_null: bool = False,
    data_until: pd.Timestamp | None = None,
    **error_kwargs: Any,
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Times and float values of a provider's list of points, or ``error`` saying which point is wrong and how.

    ``value(point)`` returns the raw value (a KeyError/TypeError means it is absent); ``None`` values
    are dropped when ``skip_null`` (a gap :func:`regularize` interpolates when short; all of them null
    is an error saying so). ``data_until`` (a forecast's end): more than 3 null points at the end of
    the answer before that time are an error, so a fallback chain asks the next source; nulls after
    it, or in a history, are only dropped. Messages are in the API's terms, e.g. ``point 2 has carbonIntensity 'x',
    not a number``.

    >>> t, v = read_points([{"t": "2024-05-01T00:00Z", "v": 5}], time_key="t", value=lambda p: p["v"], value_name="v", where="demo")
    >>> v.tolist()
    [5.0]
    >>> read_points([{"t": "bad", "v": "x"}], time_key="t", value=lambda p: p["v"], value_name="v", where="demo /f")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: demo /f: point 0 has t 'bad', not an ISO 8601 time with offset; the API format may have changed
    """

    def fail(problem: str) -> Exception:
        return error(f"{where}: {problem}; the API format may have changed", **error_kwargs)

    if not isinstance(points, list):
        raise fail(f"the points are {type(points).__name__ if points is not None else 'missing'}, not a list")
    times: list[pd.Timestamp] = []
    values: list[float] = []
    nulls = 0
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise fail(f"point {i} is {_shown(p)}, not an object")
        try:
            raw = value(p)
        except (KeyError, TypeError, AttributeError, IndexError):
            raise fail(f"point {i} has no {value_name}") from None
        if raw is None and skip_null:
            nulls += 1
            continue
        if time_key not in p:
            raise fail(f"point {i} has no {time_key}")
        try:
            t = parse_time(p[time_key], name=time_key)
        except (ConfigError, TypeError, ValueError):
            raise fail(f"point {i} has {time_key} {_shown(p[time_key])}, not an ISO 8601 time with offset") from None
        if isinstance(raw, bool):
            raise fail(f"point {i} has {value_name} {_shown(raw)}, not a number")
        try:
            v = float(raw)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits (review 55a L1)
            raise fail(f"point {i} has {value_name} {_shown(raw)}, not a number") from None
        times.append(t)
        values.append(v)
    if nulls and not times:  # a null is a value not published (yet), not a format change (review 46b L4)
        which = "the only point has" if nulls == 1 else f"all {nulls} points have"
        raise error(f"{where}: {which} {value_name} null (no value published); ask for another window or try later", **error_kwargs)
    tail = _null_tail(points, value, time_key, data_until) if skip_null and data_until is not None else 0
    if tail > _MAX_NULL_TAIL:  # the data stop inside the window: not a gap to interpolate, nor a short forecast to plan on (46d L4)
        raise error(f"{where}: the last {tail} points have {value_name} null (no value published after "
                    f"{times[-1].isoformat()}); the data stop there: ask for an earlier window or try later", **error_kwargs)
    return pd.DatetimeIndex(times), np.asarray(values, dtype=float)


_MAX_NULL_TAIL = 3
"""Null points at the end of an answer that are dropped as a gap; more end the data (an error, so a
fallback chain asks the next source)."""


def _null_tail(points: list, value: Callable[[dict], Any], time_key: str, until: pd.Timestamp) -> int:
    """How many null points end ``points`` before ``until`` (review 46f M2: a window the answer covers is
    not refused for nulls after it)."""
    count = 0
    for p in reversed(points):
        try:
            if value(p) is not None:
                break
            t = parse_time(p[time_key], name=time_key)
        except (KeyError, TypeError, AttributeError, IndexError, ConfigError, ValueError):
            break
        count += t < until
    return count


def _longest_run(mask: np.ndarray) -> int:
    best = cur = 0
    for m in mask:
        cur = cur + 1 if m else 0
        best = max(best, cur)
    return best


class CarbonSignal(ABC):
    """A source of grid carbon intensity in gCO2eq/kWh.

    Subclasses set :attr:`name` and :attr:`step` and implement :meth:`history` and
    :meth:`forecast`; both return a series built with :func:`make_series`.

    >>> from care_flows.signals.base import CarbonSignal
    >>> from care_flows.signals.trace import TraceSignal
    >>> s = TraceSignal.embedded()
    >>> isinstance(s, CarbonSignal), s.name, str(s.step), s.kind
    (True, 'embedded', '1:00:00', 'lifecycle')
    """

    name: str = "signal"
    step: timedelta = timedelta(hours=1)
    """Native resolution (used to round cache keys)."""
    kind: str = "lifecycle"
    cache_tag: str = ""
    """What else, besides source, zone, kind and window, changes the answer (part of the cache key)."""
    accepts_aws_regions: bool = False
    """True when the source resolves an AWS region name more precisely than its grid zone (the GB
    API: ``eu-west-2`` is London, region 13, not the national series); the planner then passes the
    region name."""

    @abstractmethod
    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """Observed intensity for ``zone`` over ``[start, end)``."""

    @abstractmethod
    def forecast(self, zone: str, start: Any, horizon: Any) -> pd.Series:
        """Forecast intensity for ``zone`` from ``start`` over ``horizon`` (issued at ``start``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"
