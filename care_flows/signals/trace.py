"""Carbon traces: the packaged Electricity Maps data and any Electricity Maps hourly (or 5/15-min) CSV.

:meth:`TraceSignal.embedded` serves the data shipped in the package (ES, SE, DE, FR, GB,
2021-2023, life-cycle or direct). :meth:`TraceSignal.from_csv` reads exports in both header
schemas: ``Datetime (UTC)``, ``Zone id`` or ``Zone Id``, and
``Carbon intensity gCO₂eq/kWh (Life cycle)`` or ``Carbon Intensity gCO₂eq/kWh (LCA)`` (plus
``... (direct)``). Validation is strict and one-line (file, line, value, fix; the line as an editor numbers it, the
header being line 1):

- unparseable timestamp, or one with a non-UTC offset -> DataError (naive = UTC, per the header);
- negative value -> DataError; empty value -> DataError, or interpolated with ``repair="interpolate"``;
- duplicate timestamps: identical rows are dropped, conflicting ones -> DataError;
- gaps -> DataError, or with ``repair="interpolate"`` gaps of at most 3 steps are filled linearly
  (a missing first/last value takes the nearest value);
- rows out of order are sorted.

``forecast()`` uses :func:`care_flows.forecast.carbon.forecast_carbon` on the history strictly
before ``start``; ``oracle=True`` returns the actual rows instead, labelled ``forecast_model="oracle"``.
``shift`` replays the trace at other dates: a query at ``t`` reads the trace at ``t - shift``.
``replay=True`` (the default of ``get_signal("embedded")`` and of the fallback chain) moves a
*forecast* issued after the trace's end by whole 52-week periods into it (forecast_model gets a
``+replay(<year>)`` suffix), so the embedded data can forecast for any date; history outside
the trace stays an error (it would be made-up data).

>>> sig = TraceSignal.embedded()
>>> s = sig.history("ES", "2023-06-01T00:00Z", "2023-06-01T03:00Z")
>>> len(s), s.attrs["source"], s.attrs["signal"]
(3, 'embedded', 'lifecycle')
>>> f = sig.forecast("eu-south-2", "2023-06-02T00:00Z", "6h")
>>> len(f), f.attrs["forecast_model"] != "oracle"
(6, True)
>>> TraceSignal.embedded(oracle=True).forecast("ES", "2023-06-01T00:00Z", "3h").tolist() == s.tolist()
True
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError, UnknownZoneError
from care_flows.forecast.usage_io import FileText, csv_line_of, one_field_separator
from care_flows.signals.base import CarbonSignal, SignalMeta, check_horizon, check_window, make_series, zone_for
from care_flows.timeutil import format_duration
from care_flows.timeutil import parse_time, utcnow

__all__ = ["TraceSignal", "read_electricitymaps_csv", "join_pieces", "REPAIRS", "MAX_REPAIR_GAP_STEPS"]

REPAIRS = (None, "interpolate")
MAX_REPAIR_GAP_STEPS = 3
_YEAR_WEEKS = pd.Timedelta(weeks=52)  # replay by whole weeks so weekdays line up

_TIME_HEADERS = ("datetime (utc)", "datetime", "time", "timestamp")
_KIND_HEADERS = {
    "lifecycle": ("carbon intensity gco2eq/kwh (life cycle)", "carbon intensity gco2eq/kwh (lca)", "lifecycle_g_per_kwh", "g_per_kwh"),
    "direct": ("carbon intensity gco2eq/kwh (direct)", "direct_g_per_kwh"),
}
_OFFSET = re.compile(r"(?:[+-]\d{2}(?::?\d{2})?|Z)$", re.IGNORECASE)  # +01:00, +0100 and +01 (psql's output)
_ZERO_OFFSET = re.compile(r"(?:[+-]00(?::?00)?|Z)$", re.IGNORECASE)


def _local_time_hint(t: pd.Timestamp) -> str:
    """A hint when a gap or duplicate falls on a European or US daylight-saving change (a Sunday in March,
    October or November, small hours): the times are likely local, not UTC (review 45e L1).

    >>> _local_time_hint(pd.Timestamp("2023-03-26T02:00Z")), _local_time_hint(pd.Timestamp("2023-06-01T02:00Z"))
    ('; are these local times? the time column must be UTC', '')
    """
    if t.dayofweek == 6 and t.month in (3, 10, 11) and t.hour < 12:
        return "; are these local times? the time column must be UTC"
    return ""


def _norm(header: str) -> str:
    return " ".join(str(header).replace("₂", "2").strip().lower().split())


def _embedded_key(zone: str) -> str:
    from care_flows.regions import REGIONS

    raw = str(zone).strip()
    if raw in REGIONS:
        emb = REGIONS[raw].embedded_zone
        if emb is None:
            raise UnknownZoneError(f"region {raw!r} (zone {REGIONS[raw].zone}) has no embedded trace; embedded zones are ES, SE, DE, FR, GB")
        return emb
    zone_for(raw)  # an AWS region name CaRE does not know (a typo) is an UnknownRegionError with a did-you-mean
    up = raw.upper()
    if up.startswith("SE"):  # Sweden's bidding zones SE-SE1..4: the national trace
        return "SE"
    if up[:3] == "GB-" and up[3:].isdigit():  # the GB API's regions GB-1..17: Great Britain's trace (not GB-NIR)
        return "GB"
    return up


def read_electricitymaps_csv(path: str | Path, *, kind: str = "lifecycle", zone: str | None = None, repair: str | None = None) -> dict[str, pd.Series]:
    """Read an Electricity Maps export into ``{zone: g_per_kwh Series}`` (validated; see module doc).

    ``zone`` overrides/supplies the zone when the file has no ``Zone id`` column.
    """
    if repair not in REPAIRS:
        raise ConfigError(f"repair={repair!r} is not supported; use None (strict) or 'interpolate'")
    if kind not in _KIND_HEADERS:
        raise ConfigError(f"CSV traces hold 'lifecycle' or 'direct' intensity, not {kind!r}")
    p = Path(path)
    name = p.name
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{p}: file not found; give the path of an Electricity Maps CSV export") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty; give an Electricity Maps CSV export") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: not a readable CSV ({type(exc).__name__}); export it again from Electricity Maps") from None
    cols = {_norm(c): c for c in df.columns}
    tcol = next((cols[h] for h in _TIME_HEADERS if h in cols), None)
    if tcol is None:
        if sep := one_field_separator(df.columns):
            raise DataError(f"{name}: the file looks {sep}-separated (one header field {str(df.columns[0])[:60]!r}...); "
                            "save it comma-separated, as Electricity Maps exports it")
        raise DataError(f"{name}: no 'Datetime (UTC)' column (found {list(df.columns)[:6]}); use an Electricity Maps export")
    vcol = next((cols[h] for h in _KIND_HEADERS[kind] if h in cols), None)
    if vcol is None:
        want = "Carbon intensity gCO₂eq/kWh (Life cycle) or (LCA)" if kind == "lifecycle" else "Carbon intensity gCO₂eq/kWh (direct)"
        other = "direct" if kind == "lifecycle" else "lifecycle"
        if not any(h in cols for h in _KIND_HEADERS[other]):
            raise DataError(f"{name}: no carbon-intensity column (found {list(df.columns)[:6]}); this is not an Electricity Maps "
                            f"carbon-intensity export: give one with a '{want}' column")
        raise DataError(f"{name}: no {kind} column ({want}), only the {other} one; ask for {other} intensity "
                        f"(--kind {other}, or kind='{other}' from Python)")
    zcol = cols.get("zone id")
    if df.empty:
        raise DataError(f"{name}: no data rows; export a non-empty period")
    rows = np.arange(len(df))  # data row positions; errors name a row's line in the file (header = line 1)
    line = csv_line_of(FileText.of(p), rows=len(df))  # the file is read again only to word an error

    raw_t = df[tcol].str.strip()
    has_offset = raw_t.str.contains(_OFFSET) & raw_t.str.contains(":")  # after a time of day: a date's "-01" is no offset
    non_utc = has_offset & ~raw_t.str.contains(_ZERO_OFFSET)
    if non_utc.any():
        i = int(np.flatnonzero(non_utc.to_numpy())[0])
        raise DataError(f"{name} line {line(rows[i])}: timestamp {raw_t.iloc[i]!r} is not UTC; convert the column '{tcol}' to UTC (naive or +00:00)")
    stripped = raw_t.where(~has_offset, raw_t.str.replace(_ZERO_OFFSET, "", regex=True))
    try:
        times = pd.to_datetime(stripped, errors="coerce", format="ISO8601")
        if getattr(times.dt, "tz", None) is not None:  # an offset form the patterns missed: pandas kept it
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    except (TypeError, ValueError) as exc:  # mixed forms pandas cannot put in one column (review 45e L1)
        raise DataError(f"{name}: the times in column '{tcol}' mix forms pandas cannot read together ({exc}); "
                        "write them all as ISO 8601 UTC, e.g. 2023-01-01T00:00:00Z") from None
    if times.isna().any():
        i = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(f"{name} line {line(rows[i])}: timestamp {raw_t.iloc[i]!r} is not parseable; use ISO 8601 UTC such as 2023-01-01 00:00:00")
    times = pd.DatetimeIndex(times).tz_localize("UTC")

    raw_v = df[vcol].str.strip()
    values = pd.to_numeric(raw_v, errors="coerce").to_numpy(dtype=float)
    bad_text = (np.isnan(values) & (raw_v != "").to_numpy()) | np.isinf(values)
    if bad_text.any():
        i = int(np.flatnonzero(bad_text)[0])
        raise DataError(f"{name} line {line(rows[i])}: value {raw_v.iloc[i]!r} in '{vcol}' is not a number; fix or remove the row")
    negative = values < 0
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise DataError(f"{name} line {line(rows[i])}: value {values[i]:g} in '{vcol}' is negative; carbon intensity must be >= 0, fix the export")
    missing = np.isnan(values)
    if missing.any() and repair is None:
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{name} line {line(rows[i])}: value in '{vcol}' is empty; fill it or pass repair='interpolate' (fills up to {MAX_REPAIR_GAP_STEPS} steps)")

    zones = df[zcol].str.strip().to_numpy() if (zcol is not None and zone is None) else np.full(len(df), (zone or "").upper() or "CSV")
    out: dict[str, pd.Series] = {}
    for z in pd.unique(zones):
        sel = zones == z
        out[str(z).upper()] = _validate_series(times[sel], values[sel], rows[sel], name=name, zone=str(z), repair=repair, line=line)
    return out


def _validate_series(
    times: pd.DatetimeIndex, values: np.ndarray, rows: np.ndarray, *, name: str, zone: str, repair: str | None, line: Callable[[int], int]
) -> pd.Series:
    order = np.argsort(times.asi8, kind="stable")
    times, values, rows = times[order], values[order], rows[order]
    dup = times.duplicated(keep="first")
    if dup.any():
        keep_idx = {}
        for i in range(len(times)):
            t = times[i]
            if t in keep_idx:
                j = keep_idx[t]
                same = (np.isnan(values[i]) and np.isnan(values[j])) or values[i] == values[j]
                if not same:
                    raise DataError(f"{name} line {line(rows[i])}: duplicate time {t.isoformat()} with a different value ({values[i]:g} vs {values[j]:g} on line {line(rows[j])}); keep one row per time{_local_time_hint(t)}")
            else:
                keep_idx[t] = i
        times, values, rows = times[~dup], values[~dup], rows[~dup]
    if len(times) < 2:
        if np.isnan(values).any():
            raise DataError(f"{name}: zone {zone} has no usable value (a single empty row cannot be interpolated); fix the export")
        return pd.Series(values, index=times.rename("time"), name="g_per_kwh")
    diffs = (times[1:] - times[:-1])
    step = pd.Timedelta(pd.Series(diffs).mode().iloc[0])
    grid = pd.date_range(times[0], times[-1], freq=step)
    on_grid = times.isin(grid)
    if not on_grid.all():
        i = int(np.flatnonzero(~on_grid)[0])
        raise DataError(f"{name} line {line(rows[i])}: time {times[i].isoformat()} is off the {step} grid of zone {zone}; use one row per interval start")
    s = pd.Series(values, index=times).reindex(grid)
    gap = s.isna().to_numpy()
    if gap.any():
        run = _runs(gap)
        first = int(np.flatnonzero(gap)[0])
        if repair is None:
            where = grid[first].isoformat()
            raise DataError(f"{name}: zone {zone} has a gap at {where} ({int(gap.sum())} missing {format_duration(step)} steps); fix the export or pass repair='interpolate' (fills gaps up to {MAX_REPAIR_GAP_STEPS} steps){_local_time_hint(grid[first])}")
        if run > MAX_REPAIR_GAP_STEPS:
            raise DataError(f"{name}: zone {zone} has a gap of {run} steps near {grid[first].isoformat()}; repair='interpolate' fills at most {MAX_REPAIR_GAP_STEPS}, fix the export")
        s = s.interpolate(method="linear", limit_direction="both")  # edges hold the nearest value
        if s.isna().any():
            raise DataError(f"{name}: zone {zone} has no usable value to interpolate from; fix the export")
    s.index = pd.DatetimeIndex(s.index).as_unit("ns").rename("time")
    s.name = "g_per_kwh"
    return s.astype(float)


def _runs(mask: np.ndarray) -> int:
    best = cur = 0
    for m in mask:
        cur = cur + 1 if m else 0
        best = max(best, cur)
    return best


class TraceSignal(CarbonSignal):
    """A signal served from in-memory traces (embedded data or CSV files).

    >>> import pandas as pd
    >>> trace = pd.Series([120.0, 80.0, 60.0, 90.0], index=pd.date_range("2023-06-01", periods=4, freq="h", tz="UTC"))
    >>> s = TraceSignal({"ES": trace})
    >>> s.history("ES", "2023-06-01T01:00Z", "2023-06-01T03:00Z").tolist()
    [80.0, 60.0]
    """

    def __init__(
        self,
        traces: Mapping[str, pd.Series] | Callable[[str], pd.Series],
        *,
        kind: str = "lifecycle",
        source: str = "csv",
        oracle: bool = False,
        shift: timedelta | pd.Timedelta | None = None,
        forecast_model: str = "default",
        replay: bool = False,
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        self.kind = kind
        self.replay = replay
        self.name = source
        self.oracle = oracle
        self.shift = pd.Timedelta(shift or 0)
        self.forecast_model = forecast_model
        self.clock = clock
        self._traces = dict(traces) if isinstance(traces, Mapping) else None
        self._loader = traces if callable(traces) else None

    def __repr__(self) -> str:
        return f"TraceSignal(source={self.name!r}, kind={self.kind!r}, oracle={self.oracle}, shift={self.shift})"

    @classmethod
    def embedded(cls, kind: str = "lifecycle", **options: Any) -> "TraceSignal":
        """The packaged Electricity Maps data (ES, SE, DE, FR, GB 2021-2023; lifecycle or direct)."""
        from care_flows.data import embedded_intensity

        if kind not in ("lifecycle", "direct"):
            raise ConfigError(f"embedded traces hold 'lifecycle' or 'direct' intensity, not {kind!r}")
        return cls(lambda zone: embedded_intensity(_embedded_key(zone), kind), kind=kind, source="embedded", **options)

    @classmethod
    def from_csv(cls, path: str | Path | Mapping[str, str | Path], *, kind: str = "lifecycle", repair: str | None = None, **options: Any) -> "TraceSignal":
        """Traces from one CSV (zones from its ``Zone id`` column) or ``{zone: path}`` (several years may be
        concatenated by giving a list of paths per zone)."""
        parts: dict[str, list[tuple[pd.Series, str]]] = {}
        items = path.items() if isinstance(path, Mapping) else [(None, path)]
        for zone, p in items:
            paths = p if isinstance(p, (list, tuple)) else [p]
            for one in paths:
                for z, s in read_electricitymaps_csv(one, kind=kind, zone=zone, repair=repair).items():
                    parts.setdefault(z, []).append((s, str(one)))
        traces = {z: join_pieces(pieces, z) for z, pieces in parts.items()}
        return cls(traces, kind=kind, source="csv", **options)

    def zones(self) -> list[str]:
        """Zones this signal has traces for."""
        from care_flows.data import EMBEDDED_ZONES

        return sorted(self._traces) if self._traces is not None else list(EMBEDDED_ZONES)

    def trace(self, zone: str) -> pd.Series:
        """The whole trace of a zone (on the trace's own dates, without shift)."""
        if self._traces is not None:
            key = str(zone).strip().upper()
            if key not in self._traces:
                from care_flows.regions import REGIONS

                r = REGIONS.get(str(zone).strip())
                key = r.zone.upper() if r is not None and r.zone.upper() in self._traces else (
                    r.embedded_zone if r is not None and r.embedded_zone in self._traces else key)
            if key not in self._traces:
                raise UnknownZoneError(f"zone {zone!r} is not in this {self.name} trace; it has {', '.join(sorted(self._traces)) or 'no zones'}")
            return self._traces[key]
        assert self._loader is not None
        return self._loader(zone)

    def _label(self, zone: str) -> str:
        z = str(zone).strip()
        return _embedded_key(z) if self.name == "embedded" else z.upper()

    def _shift_for(self, full: pd.Series, start: pd.Timestamp, end: pd.Timestamp | None) -> pd.Timedelta:
        """``shift``, plus whole 52-week periods when ``replay`` and the question lies outside the trace.

        ``end=None`` is a forecast issued at ``start``: only its issue time must fall in the trace
        (a forecast needs the history before it, not the rows after it).
        """
        shift = self.shift
        if not self.replay or len(full) < 2:
            return shift
        step = pd.Timedelta(full.index[1] - full.index[0])
        lo, hi = full.index[0] + pd.Timedelta("1D"), full.index[-1] + step
        a = start - shift
        b = a if end is None else end - shift
        if b > hi and a - _YEAR_WEEKS * int(np.ceil((b - hi) / _YEAR_WEEKS)) >= lo:
            shift += _YEAR_WEEKS * int(np.ceil((b - hi) / _YEAR_WEEKS))
        return shift  # only forward: a question before the trace starts stays an error

    def _window(self, zone: str, start: pd.Timestamp, end: pd.Timestamp, shift: pd.Timedelta | None = None) -> pd.Series:
        full = self.trace(zone)
        step = pd.Timedelta(full.index[1] - full.index[0]) if len(full) > 1 else pd.Timedelta("1h")
        shift = self.shift if shift is None else shift
        a, b = start - shift, end - shift
        a = a.floor(step)
        if a < full.index[0] or b > full.index[-1] + step:
            shift_note = f" (shift {shift} maps the query to {a.isoformat()}..{b.isoformat()})" if shift else ""
            raise DataError(
                f"{self.name} trace for {zone} covers {full.index[0].isoformat()} to {(full.index[-1] + step).isoformat()}; "
                f"the window {start.isoformat()}..{end.isoformat()} is outside it{shift_note}; ask within it (from Python, TraceSignal(..., shift=...) replays it at other dates)"
            )
        lo, hi = full.index.searchsorted(a, "left"), full.index.searchsorted(b, "left")
        return full.iloc[lo:hi]

    def history(self, zone: str, start: Any, end: Any) -> pd.Series:
        """Trace rows over ``[start, end)`` (interval starts; ``start`` floored to the step)."""
        s, e = check_window(start, end)
        rows = self._window(zone, s, e, self.shift)  # history is never replayed: outside the trace is an error
        meta = SignalMeta(source=self.name, signal=self.kind, zone=self._label(zone), issued_at=self.clock())
        return make_series(rows.to_numpy(dtype=float), rows.index + self.shift, meta)

    def forecast(self, zone: str, start: Any, horizon: Any, *, oracle: bool | None = None) -> pd.Series:
        """A forecast issued at ``start`` from the history before it (or the actual rows if ``oracle``)."""
        s, h = parse_time(start, name="start"), check_horizon(horizon)
        use_oracle = self.oracle if oracle is None else oracle
        full = self.trace(zone)
        # an oracle is the recorded rows of the window itself: it is never replayed from another year
        shift = self.shift if use_oracle else self._shift_for(full, s, None)
        if use_oracle:
            rows = self._window(zone, s, s + h, shift)
            meta = SignalMeta(source=self.name, signal=self.kind, zone=self._label(zone), issued_at=s, forecast_model="oracle")
            return make_series(rows.to_numpy(dtype=float), rows.index + shift, meta)
        from care_flows.forecast.carbon import forecast_carbon

        t = s - shift
        if t <= full.index[0]:
            raise DataError(f"{self.name} trace for {zone} starts {full.index[0].isoformat()}; a forecast issued at {t.isoformat()} has no history before it")
        past = full.iloc[: full.index.searchsorted(t, "left")]
        fc = forecast_carbon(past, t, h, self.forecast_model)
        model = str(fc.attrs.get("forecast_model", self.forecast_model))
        if shift != self.shift:
            model += f"+replay({t.year})"
        meta = SignalMeta(source=self.name, signal=self.kind, zone=self._label(zone), issued_at=s, forecast_model=model)
        return make_series(fc.to_numpy(dtype=float), fc.index + shift, meta)


def join_pieces(pieces: list[tuple[pd.Series, str]], zone: str | None = None) -> pd.Series:
    """One zone's trace from consecutive files, each ``(series, where)``, in time order whatever
    order they came in (review 45g L4): each file must start one step after the one before ends, on
    the same step (else a one-line :class:`DataError` naming the file, ``zone`` if given, and the time).

    >>> a = pd.Series([1.0, 2.0], index=pd.date_range("2023-01-01", periods=2, freq="h", tz="UTC"))
    >>> b = pd.Series([3.0], index=pd.date_range("2023-01-01T02:00", periods=1, freq="h", tz="UTC"))
    >>> join_pieces([(b, "b.csv"), (a, "a.csv")], "ES").tolist()
    [1.0, 2.0, 3.0]
    """
    ordered = sorted(pieces, key=lambda piece: piece[0].index[0])
    out = ordered[0][0]
    for s, where in ordered[1:]:
        out = _concat(out, s, where, zone)
    return out


def _concat(first: pd.Series, second: pd.Series, where: str, zone: str | None) -> pd.Series:
    """``first`` (the files so far) followed by ``second`` (the file ``where``, which starts no earlier)."""
    where = f"{where}: zone {zone}" if zone else where
    both = pd.concat([first, second]).sort_index()
    dup = both.index.duplicated(keep="first")
    if dup.any():
        raise DataError(f"{where} overlaps another file at {both.index[dup][0].isoformat()}; give non-overlapping files")
    gap = second.index[0] - first.index[-1]
    steps = {pd.Timedelta(s.index[1] - s.index[0]) for s in (first, second) if len(s) > 1} or {gap}  # two one-row files: their gap
    if len(steps) > 1:
        raise DataError(f"{where} has {' and '.join(sorted(format_duration(s) for s in steps))} steps in different "
                        "files; give exports of one resolution")
    step = steps.pop()
    # one trace on one grid: the next file starts one step after the last row of the one before (45f L3, 45g L5, 45h L3)
    if gap <= pd.Timedelta(0):
        raise DataError(f"{where} starts at {second.index[0].isoformat()}, inside another file's span "
                        f"({first.index[0].isoformat()} to {first.index[-1].isoformat()}); give non-overlapping files")
    if gap % step:
        raise DataError(f"{where} is not on the {format_duration(step)} grid of another file ({first.index[-1].isoformat()} "
                        f"then {second.index[0].isoformat()}); give exports on one grid")
    if gap != step:
        # the missing rows themselves, not the two rows either side of them (review 46d L2)
        raise DataError(f"{where} does not follow on from another file: the rows {(first.index[-1] + step).isoformat()} to "
                        f"{(second.index[0] - step).isoformat()} are missing; give consecutive exports (e.g. 2022 and 2023)")
    return both

