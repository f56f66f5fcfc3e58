"""Temporal shifting: when to run a job inside ``[earliest, deadline]`` on a carbon forecast.

Pure, vectorised numpy; no I/O. A forecast is a :class:`pandas.Series` of gCO2eq/kWh on a
regular UTC index (hourly, 15-minute, 5-minute...); slot ``i`` covers ``[t_i, t_i + step)`` and
its intensity is constant over the slot. The job must *finish* by the deadline.

Planners (all return a :class:`TimePlan`):

- :func:`plan_contiguous`: one run; the start that minimises the mean intensity over the job
  (rolling mean, ties -> earliest);
- :func:`plan_interruptible`: the lowest-intensity pieces of time adding up to the duration,
  optionally with a minimum segment length and a maximum number of segments (exact DP);
- :func:`plan_threshold`: run whenever the intensity is below a threshold (absolute or a
  percentile of the forecast), finishing in the latest contiguous stretch if needed.

A job whose deadline cannot be met runs now (``mode="now"``, ``feasible=False``,
``latest_start=None``, a warning), never later. A deadline before the earliest start is nonsense input: :class:`DeadlineError`.

Batch kernels for simulation (many jobs on one long trace, slot-index arithmetic only):
:func:`best_contiguous_starts` and :func:`run_now_means`.

>>> import pandas as pd
>>> idx = pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC")
>>> fc = pd.Series([300.0, 200.0, 100.0, 100.0, 250.0, 50.0], index=idx)
>>> p = plan_contiguous(fc, pd.Timedelta("2h"), idx[0], idx[0] + pd.Timedelta("5h"))
>>> p.start.isoformat(), p.expected_g_per_kwh, p.run_now_g_per_kwh
('2023-06-01T02:00:00+00:00', 100.0, 250.0)
>>> q = plan_interruptible(fc, pd.Timedelta("2h"), idx[0], idx[0] + pd.Timedelta("6h"))
>>> [(s.start.hour, s.end.hour) for s in q.segments], q.expected_g_per_kwh
([(2, 3), (5, 6)], 75.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError, DeadlineError
from care_flows.timeutil import format_duration

__all__ = [
    "Segment",
    "TimePlan",
    "plan_contiguous",
    "plan_interruptible",
    "plan_threshold",
    "best_contiguous_starts",
    "best_contiguous_starts_rows",
    "run_now_means",
    "window_means",
]

_EPS = 1e-9
_DECIMALS = 9  # window means are rounded to 1e-9 g/kWh: ties are ties despite float noise
_MAX_UNITS_PER_SLOT = 60
_DP_MAX_CELLS = 100_000_000  # state updates (units x states); about a second or two
_REFINE_UNITS_PER_SLOT = 12  # finest grid used only to reach an off-grid earliest/deadline


# --------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


@dataclass(frozen=True)
class Segment:
    """One uninterrupted run ``[start, end)`` (UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def duration(self) -> pd.Timedelta:
        return self.end - self.start

    def to_dict(self) -> dict[str, str]:
        return {"start": _iso(self.start), "end": _iso(self.end)}


@dataclass(frozen=True)
class TimePlan:
    """When to run: the planned segments and what they are expected to emit per kWh.

    ``expected_g_per_kwh`` is the duration-weighted mean forecast intensity over the planned
    segments; ``run_now_g_per_kwh`` the mean over ``[earliest, earliest + duration)``;
    ``expected_savings_pct`` = 100 * (run_now - expected) / run_now. ``latest_start`` is
    ``deadline - duration`` (the latest contiguous start that still finishes on time), or ``None``
    when the deadline cannot be met (no start at or after ``earliest`` meets it; the plan runs now).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    segments: tuple[Segment, ...]
    expected_g_per_kwh: float
    run_now_g_per_kwh: float
    expected_savings_pct: float
    latest_start: pd.Timestamp | None
    mode: str
    feasible: bool
    warnings: tuple[str, ...] = ()
    forecast_model: str | None = None
    data_source: str | None = None
    duration_s: float = 0.0
    deadline: pd.Timestamp | None = None
    threshold_g_per_kwh: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; every time is ISO 8601 UTC with ``+00:00``."""
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "segments": [s.to_dict() for s in self.segments],
            "expected_g_per_kwh": self.expected_g_per_kwh,
            "run_now_g_per_kwh": self.run_now_g_per_kwh,
            "expected_savings_pct": self.expected_savings_pct,
            "latest_start": _iso(self.latest_start) if self.latest_start is not None else None,
            "deadline": _iso(self.deadline) if self.deadline is not None else None,
            "duration_s": self.duration_s,
            "mode": self.mode,
            "threshold_g_per_kwh": self.threshold_g_per_kwh,
            "feasible": self.feasible,
            "warnings": list(self.warnings),
            "forecast_model": self.forecast_model,
            "data_source": self.data_source,
        }


# --------------------------------------------------------------------------------------------
# Slot-index kernels (no pandas)
# --------------------------------------------------------------------------------------------


def _split_slots(n_slots: float) -> tuple[int, float]:
    nf = int(math.floor(n_slots + _EPS))
    frac = n_slots - nf
    return nf, (0.0 if frac < _EPS else frac)


def _prefix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sums ``C`` (len n+1) and values padded with one 0 (len n+1)."""
    v = np.asarray(values, dtype=float)
    c = np.empty(len(v) + 1)
    c[0] = 0.0
    np.cumsum(v, out=c[1:])
    return c, np.append(v, 0.0)


def _integral(c: np.ndarray, vpad: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The integral of the step function from slot 0 to position ``pos`` (in slots)."""
    pos = np.asarray(pos, dtype=float)
    k = np.floor(pos + _EPS).astype(np.int64)
    k = np.clip(k, 0, len(c) - 1)
    return c[k] + np.clip(pos - k, 0.0, None) * vpad[k]


def _integral_at(c: np.ndarray, vpad: np.ndarray, pos: float) -> float:
    """Scalar :func:`_integral` (no array overhead)."""
    k = min(max(int(math.floor(pos + _EPS)), 0), len(c) - 1)
    return float(c[k]) + max(pos - k, 0.0) * float(vpad[k])


def window_means(values: np.ndarray, n_slots: float, *, _prefixed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mean intensity of a job of ``n_slots`` slots started at each slot boundary.

    ``n_slots`` may be fractional: the last slot is weighted by the fraction. Entry ``i`` is
    the mean over ``[i, i + n_slots)``; there are ``floor(len(values) - n_slots) + 1`` entries.

    >>> window_means(np.array([4.0, 2.0, 6.0, 0.0]), 1.5).tolist()
    [3.333333333, 3.333333333, 4.0]
    """
    c, vpad = _prefixed if _prefixed is not None else _prefix(values)
    nf, frac = _split_slots(float(n_slots))
    n = len(values)
    count = int(math.floor(n - n_slots + _EPS)) + 1
    if count <= 0:
        return np.empty(0)
    i = np.arange(count)
    ends = c[i + nf] + frac * vpad[i + nf] if frac else c[i + nf]
    # rounded to 1e-9 g/kWh so float noise in the cumulative sums cannot break ties
    return np.round((ends - c[i]) / float(n_slots), _DECIMALS)


def _sparse_argmin_table(w: np.ndarray) -> list[np.ndarray]:
    """Sparse table: ``table[k][i]`` = earliest argmin of ``w[i : i + 2**k]``."""
    table = [np.arange(len(w))]
    k = 1
    while (1 << k) <= len(w):
        prev = table[-1]
        half = 1 << (k - 1)
        left, right = prev[: len(prev) - half], prev[half:]
        table.append(np.where(w[right] < w[left], right, left))
        k += 1
    return table


def best_contiguous_starts(
    values: np.ndarray,
    first_idx: np.ndarray,
    last_start_idx: np.ndarray,
    n_slots: float | np.ndarray,
) -> np.ndarray:
    """Vectorised best contiguous start (slot index) for many jobs on one trace.

    For job ``j`` the candidate starts are the slot indices ``first_idx[j] .. last_start_idx[j]``
    (inclusive; clipped to the starts whose window fits in ``values``) and the job lasts
    ``n_slots[j]`` slots (a scalar or one per job; fractional allowed: the last slot is weighted
    by the fraction). Returns the start index with the lowest window mean, ties -> earliest,
    or ``first_idx[j]`` when the range is empty (the job cannot be shifted: run now).

    Cost: one cumulative sum and one sparse table of range-argmin per distinct duration
    (``O(n log n)``), then ``O(1)`` per job; a year of hourly data with 100k jobs of a few
    distinct durations takes milliseconds. Window means for the chosen starts:
    ``run_now_means(values, result, n_slots)``.

    >>> v = np.array([5.0, 1.0, 1.0, 3.0, 0.0, 9.0])
    >>> best_contiguous_starts(v, np.array([0, 2, 0]), np.array([4, 3, 0]), 2).tolist()
    [1, 3, 0]
    """
    values = np.asarray(values, dtype=float)
    first = np.asarray(first_idx, dtype=np.int64)
    last = np.asarray(last_start_idx, dtype=np.int64)
    first, last = np.broadcast_arrays(first, last)
    out = first.copy()
    durations = np.broadcast_to(np.asarray(n_slots, dtype=float), first.shape)
    for dur in np.unique(durations):
        sel = np.nonzero(durations == dur)[0]
        w = window_means(values, float(dur))
        if len(w) == 0:
            continue
        a = np.clip(first[sel], 0, None)
        b = np.minimum(last[sel], len(w) - 1)
        ok = a <= b
        if not ok.any():
            continue
        sel, a, b = sel[ok], a[ok], b[ok]
        table = _sparse_argmin_table(w)
        length = b - a + 1
        k = np.floor(np.log2(length)).astype(np.int64)
        # guard against log2 rounding at exact powers of two
        k = np.where((1 << (k + 1)) <= length, k + 1, k)
        k = np.where((1 << k) > length, k - 1, k)
        res = np.empty(len(sel), dtype=np.int64)
        for kk in np.unique(k):
            m = k == kk
            t = table[int(kk)]
            i1 = t[a[m]]
            i2 = t[b[m] - (1 << int(kk)) + 1]
            res[m] = np.where(w[i2] < w[i1], i2, i1)
        out[sel] = res
    return out


def best_contiguous_starts_rows(
    forecasts: np.ndarray,
    last_start: np.ndarray | int,
    n_slots: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Best contiguous start for many jobs, each on its own forecast row (the simulator's case).

    ``forecasts`` has shape ``(jobs, horizon)`` (e.g. from
    :func:`care_flows.forecast.carbon.forecast_matrix`: row ``j`` issued at job ``j``'s
    arrival, column 0 = the arrival slot). Job ``j`` may start at columns
    ``0 .. last_start[j]`` (clipped to where its window fits) and lasts ``n_slots[j]`` slots
    (fractional allowed). Returns ``(start_col, planned_mean)`` with ties -> earliest column.
    Fully vectorised: one cumulative sum over the matrix, one masked argmin per distinct
    duration.

    >>> f = np.array([[5.0, 1.0, 1.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    >>> cols, means = best_contiguous_starts_rows(f, np.array([1, 2]), 2)
    >>> cols.tolist(), means.tolist()
    ([1, 0], [1.0, 3.0])
    """
    f = np.asarray(forecasts, dtype=float)
    jobs, horizon = f.shape
    last = np.broadcast_to(np.asarray(last_start, dtype=np.int64), (jobs,))
    durations = np.broadcast_to(np.asarray(n_slots, dtype=float), (jobs,))
    c = np.zeros((jobs, horizon + 1))
    np.cumsum(f, axis=1, out=c[:, 1:])
    cols = np.zeros(jobs, dtype=np.int64)
    means = np.full(jobs, np.nan)
    for dur in np.unique(durations):
        nf, frac = _split_slots(float(dur))
        count = int(math.floor(horizon - dur + _EPS)) + 1
        if count <= 0:
            continue
        every = bool((durations == dur).all())
        rows = np.arange(jobs) if every else np.nonzero(durations == dur)[0]
        cr = c if every else c[rows]
        w = cr[:, nf : nf + count] - cr[:, :count]
        if frac:
            w += frac * (f if every else f[rows])[:, nf : nf + count]
        w /= float(dur)
        np.round(w, _DECIMALS, out=w)
        cut = np.minimum(last[rows], count - 1)
        if (cut < count - 1).any():
            w[np.arange(count)[None, :] > cut[:, None]] = np.inf
        best = np.argmin(w, axis=1)
        cols[rows] = best
        means[rows] = w[np.arange(len(rows)), best]
    return cols, means


def run_now_means(values: np.ndarray, start_pos: np.ndarray, n_slots: float | np.ndarray) -> np.ndarray:
    """Mean intensity over ``[start_pos, start_pos + n_slots)`` for many jobs (slot units).

    ``start_pos`` may be fractional (a job arriving mid-slot) and so may ``n_slots``; the
    step function is integrated exactly. Windows must lie within ``values``.

    >>> run_now_means(np.array([4.0, 2.0, 6.0]), np.array([0.0, 0.5]), 2).tolist()
    [3.0, 3.5]
    """
    c, vpad = _prefix(values)
    pos = np.asarray(start_pos, dtype=float)
    n = np.asarray(n_slots, dtype=float)
    return (_integral(c, vpad, pos + n) - _integral(c, vpad, pos)) / n


# --------------------------------------------------------------------------------------------
# pandas-facing helpers
# --------------------------------------------------------------------------------------------


@dataclass
class _Grid:
    values: np.ndarray
    t0: pd.Timestamp
    step_s: float
    model: str | None
    source: str | None
    warnings: list[str] = field(default_factory=list)
    prefixed: tuple[np.ndarray, np.ndarray] | None = None

    def prefix(self) -> tuple[np.ndarray, np.ndarray]:
        if self.prefixed is None:
            self.prefixed = _prefix(self.values)
        return self.prefixed

    @property
    def end_pos(self) -> float:
        return float(len(self.values))

    def pos(self, ts: pd.Timestamp) -> float:
        """The position of a UTC time, in slots from the forecast start (``.value`` is ns)."""
        return (ts.value - self.t0.value) / 1e9 / self.step_s

    def time(self, pos: float) -> pd.Timestamp:
        """The UTC time at a position (in slots), to the microsecond."""
        return self.t0 + np.timedelta64(int(round(pos * self.step_s * 1e6)), "us")


def _as_ts(value: Any, name: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ConfigError(f"{name} is missing; give an ISO 8601 UTC time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _duration_s(duration: Any) -> float:
    seconds = pd.Timedelta(duration).total_seconds()
    if not seconds > 0:
        raise ConfigError(f"duration {duration!s} must be positive; give e.g. 2h")
    return float(seconds)


def _grid(forecast: pd.Series) -> _Grid:
    if not isinstance(forecast, pd.Series) or len(forecast) == 0:
        raise DataError("the carbon forecast is empty; give a Series of g/kWh on a regular UTC index")
    idx = forecast.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataError("the carbon forecast index is not a DatetimeIndex; index it by UTC time")
    t0 = idx[0].tz_localize("UTC") if idx.tz is None else idx[0].tz_convert("UTC")
    if len(idx) >= 2:
        ticks = idx.asi8  # integers in the index's own unit (pandas 3 may use "us", not "ns")
        per_s = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[idx.unit]
        step_s = (int(ticks[1]) - int(ticks[0])) / per_s
        span_s = (int(ticks[-1]) - int(ticks[0])) / per_s
        if not step_s > 0 or abs(span_s - step_s * (len(idx) - 1)) > 1e-6 or not (idx.is_monotonic_increasing and idx.is_unique):
            raise DataError(
                "the carbon forecast index is not regular and increasing; resample it to one step (e.g. .resample('1h').mean())"
            )
    else:
        step_s = pd.Timedelta(forecast.attrs.get("step", "1h")).total_seconds()
    values = forecast.to_numpy(dtype=float)
    if np.isnan(values).any():
        raise DataError("the carbon forecast has NaN values; fill or drop them before planning")
    attrs = forecast.attrs
    return _Grid(
        values=values,
        t0=t0,
        step_s=step_s,
        model=attrs.get("forecast_model"),
        source=attrs.get("data_source", attrs.get("source")),
    )


@dataclass
class _Window:
    grid: _Grid
    dur_s: float
    n_slots: float
    earliest: pd.Timestamp
    deadline: pd.Timestamp
    e_pos: float  # earliest, in slots (clipped to the forecast)
    d_pos: float  # deadline, in slots (clipped to the forecast)
    run_now: float
    feasible: bool
    no_window: bool = False  # the forecast starts after the latest start: only "now" meets the deadline


def _prepare(forecast: pd.Series, duration: Any, earliest: Any, deadline: Any) -> _Window:
    grid = _grid(forecast)
    dur_s = _duration_s(duration)
    earliest = _as_ts(earliest, "earliest")
    deadline = _as_ts(deadline, "deadline")
    if deadline < earliest:
        raise DeadlineError(
            f"deadline {_iso(deadline)} is before the earliest start {_iso(earliest)}; give a later deadline"
        )
    n_slots = dur_s / grid.step_s
    e_pos, d_pos = grid.pos(earliest), grid.pos(deadline)
    if e_pos >= grid.end_pos or (d_pos <= 0 and e_pos < 0):
        raise DataError(
            f"the carbon forecast ({_iso(grid.t0)} to {_iso(grid.time(grid.end_pos))}) does not cover "
            f"{_iso(earliest)} to {_iso(deadline)}; give a forecast for the planning window"
        )
    late = e_pos < 0
    if late:
        grid.warnings.append(
            f"forecast starts at {_iso(grid.t0)}, after the earliest start {_iso(earliest)}; planning from there "
            "(run-now intensity estimated from the forecast's first hours)"
        )
        e_pos = 0.0
    if d_pos > grid.end_pos + _EPS:
        grid.warnings.append(
            f"forecast ends at {_iso(grid.time(grid.end_pos))}, before the deadline; planning within the forecast"
        )
        d_pos = grid.end_pos
    feasible = deadline.value - earliest.value >= round(dur_s * 1e9)
    c, vpad = grid.prefix()
    now_end = min(e_pos + n_slots, grid.end_pos)
    if now_end - e_pos < n_slots - _EPS:
        grid.warnings.append("forecast is shorter than the job; run-now intensity is over the covered part")
    covered = n_slots if now_end == e_pos + n_slots else now_end - e_pos
    run_now = round((_integral_at(c, vpad, now_end) - _integral_at(c, vpad, e_pos)) / covered, _DECIMALS)
    no_window = late and d_pos - n_slots < -_EPS
    return _Window(grid, dur_s, n_slots, earliest, deadline, e_pos, d_pos, run_now, feasible, no_window)


def _savings(run_now: float, expected: float) -> float:
    return 0.0 if run_now == 0 else 100.0 * (run_now - expected) / run_now


def _finish(w: _Window, segments: list[tuple[float, float]], expected: float, mode: str, warnings: list[str]) -> TimePlan:
    g = w.grid
    if len(segments) == 1:  # one run: its end is exactly start + duration (no float round trip)
        start = g.time(segments[0][0])
        segs: tuple[Segment, ...] = (Segment(start, start + np.timedelta64(int(round(w.dur_s * 1e6)), "us")),)
    else:
        segs = tuple(Segment(g.time(a), g.time(b)) for a, b in segments)
    return TimePlan(
        start=segs[0].start,
        end=segs[-1].end,
        segments=segs,
        expected_g_per_kwh=float(expected),
        run_now_g_per_kwh=w.run_now,
        expected_savings_pct=_savings(w.run_now, float(expected)),
        latest_start=w.deadline - pd.Timedelta(seconds=w.dur_s) if w.feasible else None,
        mode=mode,
        feasible=w.feasible,
        warnings=tuple(g.warnings + warnings),
        forecast_model=g.model,
        data_source=g.source,
        duration_s=w.dur_s,
        deadline=w.deadline,
    )


def _run_now_plan(w: _Window) -> TimePlan:
    if not w.feasible:
        warn = (
            f"deadline {_iso(w.deadline)} cannot be met: the job needs {format_duration(w.dur_s)} but only "
            f"{format_duration(w.deadline - w.earliest)} remain from {_iso(w.earliest)}; running now"
        )
    else:
        warn = (
            f"the forecast starts at {_iso(w.grid.t0)}, after the latest start "
            f"{_iso(w.deadline - pd.Timedelta(seconds=w.dur_s))}; running now to meet the deadline"
        )
    w.grid.warnings.append(warn)
    plan = _finish(w, [(w.e_pos, w.e_pos + w.n_slots)], w.run_now, "now", [])
    # the segment is anchored at the real earliest start even if the forecast starts later
    seg = Segment(w.earliest, w.earliest + pd.Timedelta(seconds=w.dur_s))
    return TimePlan(**{**plan.__dict__, "start": seg.start, "end": seg.end, "segments": (seg,)})


def _contiguous(w: _Window) -> tuple[float, float]:
    """(start position, mean) of the best contiguous window in ``w``."""
    g = w.grid
    last = min(w.d_pos, g.end_pos) - w.n_slots  # latest start position within the forecast
    if last < w.e_pos - _EPS:
        # the forecast window is shorter than the job: run from the earliest covered point
        return w.e_pos, w.run_now
    first_i = int(math.ceil(w.e_pos - _EPS))
    last_i = int(math.floor(last + _EPS))
    on_grid = abs(first_i - w.e_pos) <= _EPS
    if first_i <= last_i:
        wm = window_means(g.values, w.n_slots, _prefixed=g.prefix())
        last_i = min(last_i, len(wm) - 1)
        if first_i <= last_i:
            seg = wm[first_i : last_i + 1]
            j = int(np.argmin(seg))
            # an off-grid earliest start is itself a candidate and wins ties (it is earlier)
            if on_grid or seg[j] < w.run_now:
                return float(first_i + j), float(seg[j])
    return w.e_pos, w.run_now


# --------------------------------------------------------------------------------------------
# Planners
# --------------------------------------------------------------------------------------------


def plan_contiguous(forecast: pd.Series, duration: timedelta | pd.Timedelta | str, earliest: Any, deadline: Any) -> TimePlan:
    """One uninterrupted run: the start minimising the mean forecast intensity over the job.

    Candidate starts are ``earliest`` itself and every slot boundary after it up to
    ``deadline - duration`` (the job finishes by the deadline). A duration that is not a whole
    number of slots (50 min on hourly data, 7 min on 5-minute data) is handled exactly: the last
    slot is weighted by the fraction used. Ties go to the earliest start. If
    ``deadline - duration < earliest`` the plan runs now (``mode="now"``, ``feasible=False``,
    a warning); ``deadline < earliest`` raises :class:`DeadlineError`. If the forecast does not
    cover the whole window, the plan stays within what it covers and says so in ``warnings``.

    >>> import pandas as pd
    >>> idx = pd.date_range("2023-06-01", periods=4, freq="15min", tz="UTC")
    >>> fc = pd.Series([100.0, 80.0, 80.0, 90.0], index=idx)
    >>> p = plan_contiguous(fc, "20min", idx[0], idx[-1] + pd.Timedelta("15min"))
    >>> p.start.isoformat(), round(p.expected_g_per_kwh, 6)
    ('2023-06-01T00:15:00+00:00', 80.0)
    """
    w = _prepare(forecast, duration, earliest, deadline)
    if not w.feasible or w.no_window:
        return _run_now_plan(w)
    pos, mean = _contiguous(w)
    return _finish(w, [(pos, pos + w.n_slots)], mean, "contiguous", [])


def _unit_grid(w: _Window, min_segment_s: float | None) -> tuple[float, int, np.ndarray, int, int, int | None]:
    """A fine time grid on which duration, min segment and slots are whole units.

    Returns (unit in slots, units per slot, unit costs in the window, first unit index,
    units needed, min-segment units). Raises ``ValueError`` when no grid of at most
    ``_MAX_UNITS_PER_SLOT`` units per slot fits.
    """
    g = w.grid
    parts = [int(round(g.step_s)), int(round(w.dur_s))]
    if min_segment_s:
        parts.append(int(round(min_segment_s)))
    if any(abs(p - x) > 1e-6 for p, x in zip(parts, [g.step_s, w.dur_s, min_segment_s or 0.0])):
        raise ValueError("non-integer seconds")
    unit_s = math.gcd(*parts)
    # off-grid earliest/deadline: refine the grid to them too when that stays coarse enough
    offsets = [int(round((p % 1.0) * g.step_s)) for p in (w.e_pos, w.d_pos)]
    finer = math.gcd(unit_s, *offsets)
    if g.step_s / finer <= _REFINE_UNITS_PER_SLOT:
        unit_s = finer
    per_slot = int(round(g.step_s / unit_s))
    if per_slot > _MAX_UNITS_PER_SLOT:
        raise ValueError("grid too fine")
    first_u = int(math.ceil(w.e_pos * per_slot - _EPS))
    last_u = int(math.floor(w.d_pos * per_slot + _EPS))  # exclusive
    costs = np.repeat(g.values, per_slot)[first_u:last_u]
    need = int(round(w.dur_s / unit_s))
    m = int(round(min_segment_s / unit_s)) if min_segment_s else None
    return 1.0 / per_slot, per_slot, costs, first_u, need, m


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, end) index pairs, end exclusive."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    return list(zip(starts.tolist(), ends.tolist()))


def _dp_segments(costs: np.ndarray, need: int, m: int, k_max: int | None) -> np.ndarray | None:
    """Exact min-cost choice of ``need`` units in runs of >= ``m`` units, at most ``k_max`` runs.

    State after each unit: (units used j, runs started k, r) with r = 0 "off" or the current
    run length capped at m (a run may only end once r == m). One vectorised update per unit
    over all states. Only two transitions have a choice (r=0: was off / ended a run; r=m:
    continued a long run / grew into m), so two boolean tables per unit are kept and the mask
    is rebuilt by walking back through them. Returns the mask, or ``None`` when infeasible.
    """
    n = len(costs)
    kk = (k_max + 1) if k_max is not None else 1
    if n * (need + 1) * kk * (m + 1) > _DP_MAX_CELLS:
        raise ValueError("problem too large for the exact DP")
    inc = 1 if kk > 1 else 0  # runs counted only when limited
    f = np.full((need + 1, kk, m + 1), np.inf)
    f[0, 0, 0] = 0.0
    g = np.empty_like(f)
    ended = np.zeros((n, need + 1, kk), dtype=bool)  # r=0 came from r=m (a run ended)
    stayed = np.zeros((n, need, kk), dtype=bool)  # r=m came from r=m (not from m-1 / a start)
    for i in range(n):
        c = costs[i]
        np.less(f[:, :, m], f[:, :, 0], out=ended[i])
        np.minimum(f[:, :, 0], f[:, :, m], out=g[:, :, 0])
        g[0, :, 1:] = np.inf
        g[1:, :, 1] = np.inf
        g[1:, inc:, 1] = f[:-1, : kk - inc, 0] + c
        if m >= 2:
            g[1:, :, 2 : m + 1] = f[:-1, :, 1:m] + c
        stay = f[:-1, :, m] + c
        np.less(stay, g[1:, :, m], out=stayed[i])
        np.minimum(g[1:, :, m], stay, out=g[1:, :, m])
        f, g = g, f
    end = np.stack([f[need, :, 0], f[need, :, m]], axis=-1)
    if not np.isfinite(end).any():
        return None
    k, which = divmod(int(np.argmin(end)), 2)
    r = 0 if which == 0 else m
    j = need
    mask = np.zeros(n, dtype=bool)
    for i in range(n - 1, -1, -1):
        if r == 0:
            r = m if ended[i, j, k] else 0
            continue
        mask[i] = True
        if r == m and stayed[i, j - 1, k]:
            pass  # continued a long-enough run
        elif r == 1:
            k -= inc  # started a run here
            r = 0
        else:
            r -= 1
        j -= 1
    return mask


def plan_interruptible(
    forecast: pd.Series,
    duration: timedelta | pd.Timedelta | str,
    earliest: Any,
    deadline: Any,
    *,
    min_segment: timedelta | pd.Timedelta | str | None = None,
    max_segments: int | None = None,
) -> TimePlan:
    """The lowest-intensity pieces of time that add up to ``duration`` before the deadline.

    Time is cut on a grid on which slots, the duration and ``min_segment`` are whole units
    (their gcd, at most 60 units per slot; refined to an off-grid earliest start or deadline
    when that needs at most 12 units per slot, otherwise those partial slots are skipped).
    Without limits the cheapest units win (ties -> earliest). With ``min_segment`` (every
    segment at least this long; capped at the duration) and/or ``max_segments`` (at most K
    segments: each resume costs something) the choice is exact: a dynamic programme over
    units with state (units used, segments, current run length), vectorised over states,
    ``O(units x duration x K x min_segment)``. Adjacent units merge into segments. The best
    contiguous plan is always a candidate too, so the result is never worse than
    :func:`plan_contiguous`; it is also the answer (with a warning) when no grid fits or the
    DP would exceed 1e8 state updates.

    >>> import pandas as pd
    >>> idx = pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC")
    >>> fc = pd.Series([10.0, 90.0, 20.0, 90.0, 30.0, 15.0], index=idx)
    >>> p = plan_interruptible(fc, "3h", idx[0], idx[0] + pd.Timedelta("6h"), max_segments=2)
    >>> [(s.start.hour, s.end.hour) for s in p.segments], round(p.expected_g_per_kwh, 3)
    ([(0, 1), (4, 6)], 18.333)
    """
    w = _prepare(forecast, duration, earliest, deadline)
    if not w.feasible or w.no_window:
        return _run_now_plan(w)
    if max_segments is not None and max_segments < 1:
        raise ConfigError(f"max_segments {max_segments} must be at least 1")
    min_s = _duration_s(min_segment) if min_segment is not None else None
    if min_s is not None:
        min_s = min(min_s, w.dur_s)
    c_pos, c_mean = _contiguous(w)
    warnings: list[str] = []
    try:
        unit, _per, costs, first_u, need, m = _unit_grid(w, min_s)
    except ValueError:
        warnings.append("duration/min_segment not on a usable time grid; planned as one contiguous run")
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "contiguous", warnings)
    mask: np.ndarray | None = None
    if need <= len(costs):
        if (m is None or m <= 1) and max_segments is None:
            order = np.argsort(costs, kind="stable")[:need]
            mask = np.zeros(len(costs), dtype=bool)
            mask[order] = True
        else:
            try:
                mask = _dp_segments(costs, need, m or 1, max_segments)
            except ValueError:
                warnings.append("segment limits too large for the exact DP; planned as one contiguous run")
    if mask is None:
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "contiguous", warnings)
    mean = round(float(costs[mask].sum() / need), _DECIMALS)
    if not mean < c_mean:  # the contiguous plan is as good (ties -> its single segment)
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "interruptible", warnings)
    segs = [((first_u + a) * unit, (first_u + b) * unit) for a, b in _runs(mask)]
    return _finish(w, segs, mean, "interruptible", warnings)


def plan_threshold(
    forecast: pd.Series,
    duration: timedelta | pd.Timedelta | str,
    earliest: Any,
    deadline: Any,
    *,
    threshold_g_per_kwh: float | None = None,
    percentile: float | None = None,
) -> TimePlan:
    """Run whenever the forecast is below a threshold, in time order, until the job is done.

    The threshold is ``threshold_g_per_kwh`` or the ``percentile`` (0-100) of the forecast
    inside ``[earliest, deadline)``. Once the time left before the deadline equals the work
    left, the rest runs as one contiguous stretch ending at the deadline, so the deadline is
    always met (the plan may then be worse than running now).

    >>> import pandas as pd
    >>> idx = pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC")
    >>> fc = pd.Series([90.0, 10.0, 90.0, 90.0, 90.0, 90.0], index=idx)
    >>> p = plan_threshold(fc, "3h", idx[0], idx[0] + pd.Timedelta("6h"), threshold_g_per_kwh=50)
    >>> [(s.start.hour, s.end.hour) for s in p.segments]
    [(1, 2), (4, 6)]
    """
    if (threshold_g_per_kwh is None) == (percentile is None):
        raise ConfigError("give exactly one of threshold_g_per_kwh or percentile")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ConfigError(f"percentile {percentile} must be between 0 and 100")
    w = _prepare(forecast, duration, earliest, deadline)
    if not w.feasible or w.no_window:
        return _run_now_plan(w)
    c_pos, c_mean = _contiguous(w)
    try:
        unit, _per, costs, first_u, need, _m = _unit_grid(w, None)
    except ValueError:
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "contiguous",
                       ["duration not on a usable time grid; planned as one contiguous run"])
    if need > len(costs):
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "contiguous", [])
    thr = float(threshold_g_per_kwh) if threshold_g_per_kwh is not None else float(np.percentile(costs, percentile))
    n = len(costs)
    idx = np.arange(n)
    below = costs < thr
    done_before = np.concatenate(([0], np.cumsum(below)[:-1]))
    forced = np.nonzero((n - idx) <= (need - done_before))[0]
    tail = int(forced[0]) if len(forced) else n
    mask = (below & (done_before < need) & (idx < tail)) | (idx >= tail)
    mean = round(float(costs[mask].sum() / need), _DECIMALS)
    segs = [((first_u + a) * unit, (first_u + b) * unit) for a, b in _runs(mask)]
    plan = _finish(w, segs, mean, "threshold", [])
    return TimePlan(**{**plan.__dict__, "threshold_g_per_kwh": thr})
