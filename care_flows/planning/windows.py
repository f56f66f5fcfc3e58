"""Temporal shifting: when to run a job inside ``[earliest, deadline]`` on a carbon forecast.

Pure, vectorised numpy; no I/O. A forecast is a :class:`pandas.Series` of gCO2eq/kWh on a
regular UTC index (hourly, 15-minute, 5-minute...); slot ``i`` covers ``[t_i, t_i + step)`` and
its intensity is constant over the slot. The job must *finish* by the deadline.

Planners (all return a :class:`TimePlan`):

- :func:`plan_contiguous`: one run; the start that minimises the mean intensity over the job
  (rolling mean, ties -> earliest);
- :func:`plan_interruptible`: the lowest-intensity pieces of time adding up to the duration,
  optionally with a minimum segment length and a maximum number of segments (exact DP);
- :func:`plan_threshold`: run whenever the intensity is at or below a threshold (absolute or a
  percentile of the forecast), the rest (if needed) in the lowest remaining time.

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
from care_flows.timeutil import duration_arg, format_duration, parse_time

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
    "window_percentile",
    "threshold_amounts",
    "naive_index_error",
]

_EPS = 1e-9
_DECIMALS = 9  # window means are rounded to 1e-9 g/kWh: ties are ties despite float noise
_MAX_UNITS_PER_SLOT = 60  # a grid with at most this many units per slot is always built (any window)
_MAX_WINDOW_UNITS = 1_000_000  # a finer grid (seconds on hourly data) only when the window has at most this many units
_DP_MAX_CELLS = 100_000_000  # state updates (units x states): bounds the DP's memory (two bool tables of units x states / (m+1))
# The DP's running time is a Python loop over units with a few numpy calls on the states each:
# about 14 us per unit plus ~20 ns per (units used, segments) state and ~1.5 ns per cell
# (measured, review 32 #2: 172,800 one-minute units took 4 s with two states; 1.9-2.1 s CPU on 2026-11-29 by
# benchmarks/experiment_exact_dp.py, so the model is conservative). One DP may take
# about _DP_BUDGET_S by that model; a longer one is solved coarse-to-fine (see _coarse_to_fine).
_DP_S_PER_UNIT = 14e-6
_DP_S_PER_STATE = 20e-9
_DP_S_PER_CELL = 1.5e-9
_DP_BUDGET_S = 0.3


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
    ``forecast_end`` is the end of the forecast's last slot: a run past it was priced on the part
    the forecast covers.
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
    forecast_end: pd.Timestamp | None = None

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
    or ``first_idx[j]`` when the range is empty (the job cannot be shifted: run now). Slot
    boundaries only: for a fractional duration :func:`plan_contiguous` also tries the starts whose
    end is on a slot boundary, so it can find a lower mean.

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
    ``0 .. last_start[j]`` (clipped to where its window fits; none left, ``last_start[j] < 0``: column 0,
    run now, as :func:`best_contiguous_starts`) and lasts ``n_slots[j]`` slots
    (fractional allowed). Returns ``(start_col, planned_mean)`` with ties -> earliest column
    (slot boundaries only, like :func:`best_contiguous_starts`).
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
        cut = np.clip(last[rows], 0, count - 1)  # no start left (last < 0): run now, column 0 (review 54c L2)
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


def _fill_in_order(caps: np.ndarray, key1: np.ndarray, key2: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Fill ``need`` (n,) from chunks of capacity ``caps`` (n, K), in increasing (key1, key2, index)
    order per row; returns the amount used per chunk (same dtype as ``caps``: int64 caps stay exact).
    """
    order = np.lexsort((np.broadcast_to(np.arange(caps.shape[1]), caps.shape), key2, key1), axis=-1)
    cs = np.take_along_axis(caps, order, axis=1)
    before = np.cumsum(cs, axis=1) - cs
    amt = np.minimum(np.maximum(np.asarray(need)[:, None] - before, 0), cs)
    out = np.zeros_like(caps)
    np.put_along_axis(out, order, amt, axis=1)
    return out


def window_percentile(values: np.ndarray, caps: np.ndarray, percentile: float, slot: float) -> np.ndarray:
    """Per row, the time-weighted ``percentile`` (0-100) of a window's forecast.

    Row ``j``: chunks of the window with capacity ``caps[j]`` (time; 0 = not in the window) at
    intensity ``values[j]``, and ``slot`` the length of a full slot in the same unit. With the
    chunks sorted by value, the time-weighted quantile function is averaged over one slot length
    centred at ``p (W - slot) + slot / 2`` (``W`` = the window's length). When every chunk is a
    full slot this is exactly numpy's (linear) percentile of the slot values; unlike it, it moves
    continuously when "now" moves a second into a slot, so a threshold plan does not jump.

    >>> window_percentile(np.array([[100.0, 10, 100, 20, 100, 100, 100, 100]]), np.ones((1, 8)), 25, 1.0).tolist()
    [80.0]
    >>> window_percentile(np.array([[10.0, 30.0, 20.0, 99.0]]), np.array([[1, 1, 1e-9, 0]]), 50, 1.0).round(6).tolist()
    [20.0]
    """
    v = np.asarray(values, dtype=float)
    c = np.where(np.asarray(caps) > 0, np.asarray(caps, dtype=float), 0.0)
    order = np.argsort(np.where(c > 0, v, np.inf), axis=1, kind="stable")
    cs = np.take_along_axis(c, order, axis=1)
    vs = np.where(cs > 0, np.take_along_axis(v, order, axis=1), 0.0)
    total = cs.sum(axis=1)
    h = np.minimum(float(slot), total)
    lo = float(percentile) / 100.0 * (total - h)
    before = np.cumsum(cs, axis=1) - cs

    def integral(x: np.ndarray) -> np.ndarray:  # of the sorted (quantile) step function on [0, x)
        return (vs * np.clip(x[:, None] - before, 0.0, cs)).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        out = (integral(lo + h) - integral(lo)) / h
    return np.where(total > 0, out, np.nan)


def threshold_amounts(
    caps: np.ndarray,
    values: np.ndarray,
    need: np.ndarray,
    *,
    threshold_g_per_kwh: float | np.ndarray | None = None,
    percentile: float | None = None,
    slot: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CaRE's threshold rule for many interruptible jobs at once (shared by :func:`plan_threshold`
    and the simulator's ``threshold`` policy, so both make the same decision).

    Row ``j`` is job ``j``'s window cut into chunks (one per slot it overlaps, in time order) of
    capacity ``caps[j]`` (any time unit; 0 = not in the window) at forecast intensity
    ``values[j]``; it needs ``need[j]`` of that unit. The threshold is ``threshold_g_per_kwh``
    (scalar or per job) or the ``percentile`` of the window (:func:`window_percentile`; ``slot``
    is the length of a full slot in the unit of ``caps``). The job
    takes the chunks *at or below* the threshold in time order until done; if they cannot hold it,
    the rest comes from the lowest remaining chunks (ties -> earliest), never a forced tail at the
    deadline. Returns ``(amounts (n, K), threshold (n,), any_below (n,))``; a row with nothing at
    or below its threshold should be planned as one contiguous run (the callers do that).

    This is never worse than running now: running now takes a time prefix of the window; every
    chunk it uses that the rule does not is above the threshold, and is swapped for a chunk at or
    below it or for one of the lowest remaining chunks.

    >>> amt, thr, ok = threshold_amounts(np.array([[1, 1, 1, 1, 1]]), np.array([[90.0, 10, 50, 90, 20]]),
    ...                                  np.array([3]), threshold_g_per_kwh=40)
    >>> amt.tolist(), thr.tolist(), ok.tolist()
    ([[0, 1, 1, 0, 1]], [40.0], [True])
    """
    caps = np.asarray(caps)
    v = np.asarray(values, dtype=float)
    if (threshold_g_per_kwh is None) == (percentile is None):
        raise ConfigError("give exactly one of threshold_g_per_kwh or percentile")
    if threshold_g_per_kwh is not None:
        thr = np.broadcast_to(np.asarray(threshold_g_per_kwh, dtype=float), (caps.shape[0],)).copy()
    else:
        thr = window_percentile(v, caps, float(percentile), float(slot))
    below = (caps > 0) & (v <= thr[:, None] + 1e-9)
    k = np.broadcast_to(np.arange(caps.shape[1], dtype=float), caps.shape)
    # at-or-below chunks first, in time order; then the others by value (ties -> earliest)
    amt = _fill_in_order(caps, ~below, np.where(below, k, v), need)
    return amt, thr, below.any(axis=1)


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
    """A time argument in UTC; one without an offset is refused (ambiguous), as everywhere in CaRE."""
    if isinstance(value, (pd.Timedelta, timedelta, np.timedelta64)):
        raise ConfigError(f"{name} {value!s} is a duration, not a time; give a time such as earliest + pd.Timedelta('24h')")
    if isinstance(value, str):
        return parse_time(value, name=name)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a time; give an ISO 8601 UTC time such as 2023-06-01T08:00:00Z") from None
    if ts is pd.NaT:
        raise ConfigError(f"{name} is missing; give an ISO 8601 UTC time")
    if ts.tzinfo is None:
        raise ConfigError(f"{name} {ts.isoformat()} has no UTC offset; give an aware time (e.g. .tz_localize('UTC'), or your zone)")
    return ts.tz_convert("UTC")


def _duration_s(duration: Any, name: str = "duration") -> float:
    """Seconds of a duration argument (:func:`~care_flows.timeutil.duration_arg`: a bare number is seconds)."""
    return float(duration_arg(duration, name=name).total_seconds())


def naive_index_error(index: pd.DatetimeIndex) -> DataError:
    """The error for a carbon forecast whose times have no time zone (every planner refuses one).

    >>> str(naive_index_error(pd.DatetimeIndex(["2023-06-01 00:00"])))
    "the carbon forecast index has no time zone (first 2023-06-01T00:00:00); localise it, e.g. .tz_localize('UTC') for UTC times"
    """
    return DataError(f"the carbon forecast index has no time zone (first {index[0].isoformat()}); "
                     "localise it, e.g. .tz_localize('UTC') for UTC times")


def _grid(forecast: pd.Series) -> _Grid:
    if isinstance(forecast, pd.DataFrame):
        raise DataError(f"the carbon forecast is a DataFrame (columns {list(forecast.columns)[:5]}); pass one column as a Series, "
                        "e.g. df['g_per_kwh']")
    if not isinstance(forecast, pd.Series):
        raise DataError(f"the carbon forecast is a {type(forecast).__name__}, not a pandas Series; give a Series of g/kWh indexed by UTC time")
    if len(forecast) == 0:
        raise DataError("the carbon forecast is empty; give a Series of g/kWh on a regular UTC index")
    idx = forecast.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataError("the carbon forecast index is not a DatetimeIndex; index it by UTC time")
    if not idx.is_unique:
        first = idx[idx.duplicated()][0]
        raise DataError(f"the carbon forecast has {int(idx.duplicated().sum())} duplicate time(s) (first {first.isoformat()}); "
                        "keep one value per time, e.g. .groupby(level=0).mean()")
    if not idx.is_monotonic_increasing:
        raise DataError("the carbon forecast index is not sorted; sort it (.sort_index())")
    if idx.tz is None:  # as naive times are refused: a local-time index read as UTC would plan hours off
        raise naive_index_error(idx)
    t0 = idx[0].tz_convert("UTC")
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
    if not np.isfinite(values).all():
        bad = "NaN" if np.isnan(values).any() else "infinite"
        raise DataError(f"the carbon forecast has {bad} values; fill or drop them before planning")
    if (values < 0).any():
        i = int(np.argmin(values))
        raise DataError(f"the carbon forecast has a negative value ({values[i]:g} g/kWh at {forecast.index[i]}); "
                        "carbon intensity is never below 0: check the source and its unit")
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
    dur_ns: int = 0  # the duration in integer nanoseconds (exact segment arithmetic)


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
    return _Window(grid, dur_s, n_slots, earliest, deadline, e_pos, d_pos, run_now, feasible, no_window,
                   int(pd.Timedelta(duration).value))


def _savings(run_now: float, expected: float) -> float:
    return 0.0 if run_now == 0 else 100.0 * (run_now - expected) / run_now


def _chunks(w: _Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window ``[earliest, deadline)`` (clipped to the forecast) cut at slot boundaries, in
    integer ns: (chunk start, chunk capacity, slot value). The first and last chunks may be
    partial slots: that is how an off-grid "now" keeps the rest of the current slot."""
    g = w.grid
    step_ns = int(round(g.step_s * 1e9))
    t0 = int(g.t0.value)
    e_ns = max(int(w.earliest.value), t0)
    d_ns = min(int(w.deadline.value), t0 + len(g.values) * step_ns)
    k0 = (e_ns - t0) // step_ns
    k1 = max(-(-(d_ns - t0) // step_ns), k0)
    k = np.arange(k0, k1, dtype=np.int64)
    slot_start = t0 + k * step_ns
    start = np.maximum(slot_start, e_ns)
    cap = np.maximum(np.minimum(slot_start + step_ns, d_ns) - start, 0)
    return start, cap, g.values[k]


def _ns_segments(start: np.ndarray, amount: np.ndarray) -> tuple[Segment, ...]:
    """Segments ``[start, start + amount)`` (ns) of the used chunks, adjacent ones merged."""
    used = amount > 0
    s = start[used].astype(np.int64)
    e = s + amount[used].astype(np.int64)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] != e[:-1]
    firsts = np.nonzero(new)[0]
    lasts = np.append(firsts[1:] - 1, len(s) - 1)
    return tuple(
        Segment(pd.Timestamp(int(s[a]), tz="UTC"), pd.Timestamp(int(e[b]), tz="UTC")) for a, b in zip(firsts, lasts)
    )


def _finish(w: _Window, segments: list[tuple[float, float]] | tuple[Segment, ...], expected: float, mode: str, warnings: list[str]) -> TimePlan:
    g = w.grid
    if segments and isinstance(segments[0], Segment):  # built exactly (integer ns) by the caller
        segs: tuple[Segment, ...] = tuple(segments)  # type: ignore[arg-type]
    elif len(segments) == 1:  # one run: its end is exactly start + duration (no float round trip)
        start = g.time(segments[0][0])
        dur = pd.Timedelta(int(round(w.dur_s * 1e6)), "us")
        if w.feasible:  # a float position may land a few microseconds outside [earliest, deadline]
            start = max(min(start, w.deadline - dur), w.earliest)
            segs = (Segment(start, min(start + dur, w.deadline)),)
        else:
            segs = (Segment(start, start + dur),)
    else:
        segs = tuple(Segment(g.time(a), g.time(b)) for a, b in segments)
    return TimePlan(
        start=segs[0].start,
        end=segs[-1].end,
        segments=segs,
        expected_g_per_kwh=float(expected),
        run_now_g_per_kwh=w.run_now,
        expected_savings_pct=_savings(w.run_now, float(expected)),
        latest_start=w.deadline - pd.Timedelta(w.dur_ns, "ns") if w.feasible else None,  # exact (review 54c L3)
        mode=mode,
        feasible=w.feasible,
        warnings=tuple(g.warnings + warnings),
        forecast_model=g.model,
        data_source=g.source,
        duration_s=w.dur_s,
        deadline=w.deadline,
        forecast_end=g.time(g.end_pos),
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
    seg = Segment(w.earliest, w.earliest + pd.Timedelta(w.dur_ns, "ns"))
    return TimePlan(**{**plan.__dict__, "start": seg.start, "end": seg.end, "segments": (seg,)})


def _contiguous(w: _Window) -> tuple[float, float]:
    """(start position, mean) of the best contiguous window in ``w``."""
    # The carbon of a run is piecewise linear in its start, with breaks where the start or the
    # end crosses a slot boundary, so the exact minimum over all real starts is at one of:
    # earliest, the slot boundaries up to the latest start, the latest start itself, and every
    # start whose end falls on a slot boundary in (earliest + duration, deadline] (the
    # simulator's "grid+ends"). Ties go to the earliest start.
    g = w.grid
    end = min(w.d_pos, g.end_pos)
    last = end - w.n_slots  # latest start position within the forecast
    if last < w.e_pos - _EPS:
        # the forecast window is shorter than the job: run from the earliest covered point
        return w.e_pos, w.run_now
    best_pos, best = w.e_pos, w.run_now
    c, vpad = g.prefix()
    # what float arithmetic can get wrong in a mean: positions are slots since the forecast's start and
    # integrals differences of cumulative sums, both divided by the duration; for a job of seconds on
    # hourly data that is more than the 1e-9 rounding, and a later start of the same slot looked greener
    tol = 8 * np.finfo(float).eps * ((end + 2) * float(np.abs(vpad).max()) + float(np.abs(c).max())) / w.n_slots
    first_i = int(math.ceil(w.e_pos - _EPS))
    last_i = int(math.floor(last + _EPS))
    if first_i <= last_i:
        wm = window_means(g.values, w.n_slots, _prefixed=g.prefix())
        last_i = min(last_i, len(wm) - 1)
        if first_i <= last_i:
            seg = wm[first_i : last_i + 1]
            j = int(np.argmin(seg))
            if seg[j] < best - tol:  # earliest (off-grid or not) wins ties: it is earlier
                best_pos, best = float(first_i + j), float(seg[j])
    _, frac = _split_slots(w.n_slots)
    if frac:  # ends on slot boundaries are off-grid starts only for a fractional duration
        b = np.arange(int(math.floor(w.e_pos + w.n_slots + _EPS)) + 1, int(math.floor(end + _EPS)) + 1)
        pos = np.clip(np.append(b - w.n_slots, last), w.e_pos, last)
    elif abs(last - round(last)) > _EPS:  # whole-slot duration: only the latest start is off the grid
        pos = np.array([last])
    else:
        return best_pos, best
    means = np.round((_integral(c, vpad, pos + w.n_slots) - _integral(c, vpad, pos)) / w.n_slots, _DECIMALS)
    m = float(means.min())
    if m <= best + tol:
        p = float(pos[means <= m + tol].min())
        if m < best - tol or p < best_pos:
            best_pos, best = p, float(means[pos == p].min())
    return best_pos, best


# --------------------------------------------------------------------------------------------
# Planners
# --------------------------------------------------------------------------------------------


def plan_contiguous(forecast: pd.Series, duration: timedelta | pd.Timedelta | str, earliest: Any, deadline: Any) -> TimePlan:
    """One uninterrupted run: the start minimising the mean forecast intensity over the job.

    Candidate starts are ``earliest`` itself, every slot boundary after it up to the latest start
    ``deadline - duration`` (the job finishes by the deadline), the latest start itself, and every
    start whose end falls on a slot boundary: the mean is piecewise linear in the start with
    breaks exactly there, so this is the exact minimum over all real starts. A duration that is not a whole
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


def _ns_frame(w: _Window, min_segment_ns: int | None) -> tuple[int, int, int, int, int]:
    """Integer ns of the unit grids: (slot step, forecast start, base unit = gcd of step, duration
    and min segment, earliest and deadline clipped to the forecast)."""
    g = w.grid
    step_ns = int(round(g.step_s * 1e9))
    t0 = int(g.t0.value)
    base = math.gcd(step_ns, w.dur_ns, *([min_segment_ns] if min_segment_ns else []))
    return step_ns, t0, base, max(int(w.earliest.value), t0), min(int(w.deadline.value), t0 + len(g.values) * step_ns)


def _unit_grids(w: _Window, min_segment_ns: int | None) -> list[tuple[int, int, np.ndarray, int, int | None]]:
    """Fine time grids on which slots, the duration and the min segment are whole units (for the
    DP), finest first: ``[(unit ns, first unit's start ns, unit costs in the window, units needed,
    min-segment units), ...]``. A grid is usable when it has at most ``_MAX_UNITS_PER_SLOT`` units
    per slot or at most ``_MAX_WINDOW_UNITS`` units in the window (a duration of 74 min 30 s on
    hourly data: 30-second units, fine over a few hours); raises ``ValueError`` when none is.
    The costs are built over the window only, so time and memory scale with the window, not
    the forecast.

    The base unit is the gcd of step, duration and min segment. An earliest start or deadline off
    that grid (a trigger at 08:20:00.123) is reached exactly when the gcd with its offset still
    fits; otherwise earliest is snapped up and the deadline down to whole minutes (then 5 and 15
    minutes, then the base unit). A unit DP cannot give the first and last units a fractional
    capacity the way :func:`_chunks` does (segment lengths are counted in whole units), so this
    keeps the DP exact on its grid and costs at most one snap step (usually under a minute) of the
    current slot; the caller takes the finest grid whose DP stays small.
    """
    g = w.grid
    step_ns, t0, base, e_ns, d_ns = _ns_frame(w, min_segment_ns)
    grids: list[tuple[int, int, np.ndarray, int, int | None]] = []
    seen = set()
    for snap in (1, 60 * 10**9, 300 * 10**9, 900 * 10**9, base):
        e2 = t0 + -(-(e_ns - t0) // snap) * snap
        d2 = t0 + ((d_ns - t0) // snap) * snap
        unit = math.gcd(base, (e2 - t0) % step_ns, (d2 - t0) % step_ns)
        per_slot = step_ns // unit
        first_u, last_u = (e2 - t0) // unit, max((d2 - t0) // unit, (e2 - t0) // unit)
        if not _grid_usable(per_slot, last_u - first_u) or (unit, e2, d2) in seen:
            continue
        seen.add((unit, e2, d2))
        # every unit inside the snapped [earliest, deadline), from the slot it lies in: memory scales with
        # the window's units, never with a slot's (a 1 us unit on hourly data has 3.6e9 units per slot)
        costs = g.values[np.arange(first_u, last_u) // per_slot]
        m = min_segment_ns // unit if min_segment_ns else None
        grids.append((unit, t0 + first_u * unit, costs, w.dur_ns // unit, m))
    if not grids:
        raise ValueError("grid too fine")
    return _drop_enclosed(grids)


def _drop_enclosed(grids: list[tuple[int, int, np.ndarray, int, int | None]]) -> list[tuple[int, int, np.ndarray, int, int | None]]:
    """The grids whose window no other grid of the same unit encloses (the first of equal ones).

    A DP over a window inside another on the same unit lattice cannot beat the DP over the whole
    window, yet solving it first could spend the budget the enclosing one needs (a 4 s base unit:
    the minute, 5- and 15-minute snaps are the base grid cut shorter; review 54c L1).

    >>> c = np.zeros
    >>> [(u, f) for u, f, *_ in _drop_enclosed([(4, 8, c(5), 1, None), (4, 0, c(9), 1, None), (1, 8, c(9), 1, None)])]
    [(4, 0), (1, 8)]
    """
    span = [(u, f, f + len(c) * u) for u, f, c, *_ in grids]

    def encloses(j: int, i: int) -> bool:
        return span[j][0] == span[i][0] and span[j][1] <= span[i][1] and span[j][2] >= span[i][2]

    return [g for i, g in enumerate(grids)
            if not any(j != i and encloses(j, i) and (not encloses(i, j) or j < i) for j in range(len(grids)))]


def _grid_usable(per_slot: int, n_units: int) -> bool:
    """Whether a unit grid may be built: few units per slot, or few units in the window.

    >>> _grid_usable(60, 10**7), _grid_usable(120, 660), _grid_usable(3600, 2 * 10**6)
    (True, True, False)
    """
    return per_slot <= _MAX_UNITS_PER_SLOT or n_units <= _MAX_WINDOW_UNITS


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


def _dp_seconds(n_units: int, need: int, m: int, k_max: int | None) -> float:
    """Estimated running time of :func:`_dp_segments` in seconds (the model of ``_DP_BUDGET_S``).

    >>> round(_dp_seconds(172_800, 61, 1, 2), 1)  # review 32 #2: one-minute units over 120 days
    3.2
    """
    states = (need + 1) * ((k_max + 1) if k_max is not None else 1)
    return n_units * (_DP_S_PER_UNIT + states * (_DP_S_PER_STATE + (m + 1) * _DP_S_PER_CELL))


def _dp_fits(n_units: int, need: int, m: int, k_max: int | None, budget_s: float | None = None) -> bool:
    """Whether :func:`_dp_segments` may run: ``need`` units fit, the cells stay under
    ``_DP_MAX_CELLS`` and the estimated time under ``budget_s`` (default ``_DP_BUDGET_S``)."""
    kk = (k_max + 1) if k_max is not None else 1
    return (
        need <= n_units
        and n_units * (need + 1) * kk * (m + 1) <= _DP_MAX_CELLS
        and _dp_seconds(n_units, need, m, k_max) <= (_DP_BUDGET_S if budget_s is None else budget_s)
    )


def _solve_units(costs: np.ndarray, need: int, m: int, k_max: int | None) -> np.ndarray | None:
    """The cheapest ``need`` units in runs of >= ``m`` units, at most ``k_max`` runs (a mask), or
    ``None``: a stable sort without limits, else :func:`_dp_segments`."""
    if m <= 1 and k_max is None:
        mask = np.zeros(len(costs), dtype=bool)
        mask[np.argsort(costs, kind="stable")[:need]] = True
        return mask
    return _dp_segments(costs, need, m, k_max)


def _coarse_factors(per_slot: int, n_units: int) -> list[int]:
    """Coarsening factors (fine units per coarse unit), ascending: the divisors of ``per_slot``
    (a coarse unit inside a slot), then whole slots (1, 2, 3, 4, 6, 8, 12, 24 slots and doublings).

    >>> _coarse_factors(60, 10**6)[:12]
    [2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120]
    """
    d = np.arange(2, min(per_slot, max(n_units, 2)) + 1, dtype=np.int64)  # a coarser unit than the window is useless
    out = d[per_slot % d == 0].tolist()
    if per_slot >= 2 and (not out or out[-1] != per_slot):
        out.append(per_slot)
    for j in (2, 3, 4, 6, 8, 12, 24):
        out.append(per_slot * j)
    while out[-1] < n_units:
        j *= 2
        out.append(per_slot * j)
    return out


def _trim(mask: np.ndarray, costs: np.ndarray, need: int, m: int) -> np.ndarray | None:
    """``mask`` with its surplus units over ``need`` cut from run ends (the costliest end unit
    first, every run kept at >= ``m`` units), or ``None`` when the runs cannot give them up."""
    extra = int(mask.sum()) - need
    if extra <= 0:
        return mask if extra == 0 else None
    runs = [list(r) for r in _runs(mask)]
    if sum(b - a - m for a, b in runs) < extra:
        return None
    out = mask.copy()
    for _ in range(extra):
        best, pick = -np.inf, None
        for r in runs:
            if r[1] - r[0] > m:
                for side, i in ((0, r[0]), (1, r[1] - 1)):
                    if costs[i] > best:
                        best, pick = costs[i], (r, side, i)
        r, side, i = pick
        out[i] = False
        if side == 0:
            r[0] += 1
        else:
            r[1] -= 1
    return out


def _coarse_to_fine(costs: np.ndarray, need: int, m: int, k_max: int | None, per_slot: int, first_unit: int) -> tuple[np.ndarray | None, float]:
    """A segment plan (a mask over ``costs``' units) when the exact DP on them is too slow, and the
    estimated time of the DPs it ran (:func:`_dp_seconds`); each half of ``_DP_BUDGET_S`` goes to:

    1. Where to run: the units are grouped ``q`` to a coarse unit (the smallest ``q`` of
       :func:`_coarse_factors` that fits; coarse units start on slot boundaries: the first unit is
       unit ``first_unit`` of the forecast) and the DP picks ``ceil(need / q)`` coarse units in
       runs of at least ``ceil(m / q)``.
    2. The exact DP on the fine units near that answer: every picked run widened on both sides by
       as much as the budget allows (at least one coarse unit), plus the first and last coarse
       unit of the window (the rest of the current slot) and the cheapest coarse units, the
       stretches joined by an infinite-cost unit so no run can span a gap. The coarse answer cut
       down to ``need`` units is a plan of that DP, so this is never worse than it; when even the
       unwidened DP is too big, that cut-down coarse answer is the plan.

    Not exact in general (a cheap spot far from every picked run is not seen), but the segment
    limits, the duration and the window always hold; the mask is ``None`` when nothing fits.
    """
    n = len(costs)
    half = _DP_BUDGET_S / 2
    for q in _coarse_factors(per_slot, n):
        o = (-first_unit) % q
        nq = (n - o) // q
        need_c, m_c = -(-need // q), max(1, -(-m // q))
        if _dp_fits(nq, need_c, m_c, k_max, half):  # (False while nq < need_c: the job does not fit)
            break
    else:  # the coarse units that fit the budget cannot hold the job (a window barely longer than it)
        return None, 0.0
    spent = _dp_seconds(nq, need_c, m_c, k_max)
    coarse_costs = costs[o : o + nq * q].reshape(nq, q).mean(axis=1)
    coarse = _dp_segments(coarse_costs, need_c, m_c, k_max)
    if coarse is None:
        return None, spent
    picked = np.zeros(n, dtype=bool)
    picked[o : o + nq * q] = np.repeat(coarse, q)
    # stretches the refinement always sees: the first and last coarse unit of the window (the rest
    # of the current slot), and the cheapest coarse units (up to a quarter of what the budget
    # holds): cheap spots the coarse answer passed over because of its rounded need or run lengths
    per_unit = _dp_seconds(1, need, m, k_max)
    cheap = np.zeros(nq, dtype=bool)
    lowest = costs[o : o + nq * q].reshape(nq, q).min(axis=1)  # rank by the cheapest fine unit, not the mean
    cheap[np.argsort(lowest, kind="stable")[: int(half / per_unit) // 4 // q]] = True
    fixed = np.array([(0, o + q), (max(o + (nq - 1) * q, 0), n)] + [(o + x * q, o + y * q) for x, y in _runs(cheap)], dtype=np.int64)
    runs = o + q * np.array(_runs(coarse), dtype=np.int64).reshape(-1, 2)  # the picked runs, in fine units

    def blocks(margin: int) -> np.ndarray:
        """The picked runs widened by ``margin`` units, with the fixed stretches, merged: (k, 2)."""
        iv = np.concatenate([np.stack([np.maximum(runs[:, 0] - margin, 0), np.minimum(runs[:, 1] + margin, n)], axis=1), fixed])
        iv = iv[np.argsort(iv[:, 0], kind="stable")]
        reach = np.maximum.accumulate(iv[:, 1])
        new = np.ones(len(iv), dtype=bool)
        new[1:] = iv[1:, 0] > reach[:-1]
        firsts = np.nonzero(new)[0]
        return np.stack([iv[firsts, 0], reach[np.append(firsts[1:] - 1, len(iv) - 1)]], axis=1)

    def fits(bl: np.ndarray) -> bool:  # the units of the stretches plus one separator between each two
        return _dp_fits(int((bl[:, 1] - bl[:, 0]).sum()) + len(bl) - 1, need, m, k_max, half)

    best = None
    if fits(blocks(q)):  # widen as far as the budget allows: the largest margin that fits
        lo, hi = q, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(blocks(mid)) else (lo, mid - 1)
        best = blocks(lo)
    elif len(runs) and fits(runs):
        best = runs
    if best is not None:
        sub = np.concatenate([np.append(costs[a:b], np.inf) for a, b in best.tolist()])[:-1]
        spent += _dp_seconds(len(sub), need, m, k_max)
        chosen = _dp_segments(sub, need, m, k_max)
        if chosen is not None:
            where = np.concatenate([np.append(np.arange(a, b), -1) for a, b in best.tolist()])[:-1]
            mask = np.zeros(n, dtype=bool)
            mask[where[chosen]] = True
            return mask, spent
    return _trim(picked, costs, need, m), spent


def _anchored_grid(w: _Window, min_segment_ns: int | None, k_max: int | None, budget_s: float) -> tuple[int, int, np.ndarray, int, int] | None:
    """The base-unit grid (gcd of step, duration and min segment) starting exactly at ``earliest``
    rather than on a slot boundary, as a ``_unit_grids`` row; ``None`` when earliest is on the
    slot grid, the base unit is too fine, the job does not fit or its DP would not fit ``budget_s``.

    A unit may straddle two slots; its cost is the exact mean of the forecast over it, so a plan
    on this grid is priced exactly and keeps all of the current slot (review 32 #4: a snapped
    grid can lose up to a whole green slot); its segment ends are off the slot boundaries by the
    same offset, so the caller keeps the better of the two plans.
    """
    g = w.grid
    step_ns, t0, base, e_ns, d_ns = _ns_frame(w, min_segment_ns)
    n, need = (d_ns - e_ns) // base, w.dur_ns // base
    m = max(min_segment_ns // base, 1) if min_segment_ns else 1
    if (e_ns - t0) % base == 0 or not _grid_usable(step_ns // base, n) or n < need:
        return None
    if not (m <= 1 and k_max is None) and not _dp_fits(n, need, m, k_max, budget_s):
        return None
    p = (e_ns - t0) + base * np.arange(n, dtype=np.int64)
    k = p // step_ns
    inside = np.minimum(step_ns - (p - k * step_ns), base)  # the part of the unit in slot k
    vpad = g.prefix()[1]
    costs = (inside * vpad[k] + (base - inside) * vpad[np.minimum(k + 1, len(vpad) - 1)]) / base
    return base, e_ns, costs, need, m


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

    Without limits the window is cut at slot boundaries (the first and last pieces may be
    partial slots: an off-grid "now" keeps the rest of its slot) and the cheapest time wins
    (ties -> earliest): a fractional knapsack on the step function, exact for any duration. With
    limits, time is cut on a grid on which slots, the duration and ``min_segment`` are whole
    units (their gcd; at most 60 units per slot, or a finer unit such as 30 s for 74 min 30 s on
    hourly data when the window holds at most a million of them), refined to an off-grid earliest start or
    deadline when that fits, else with them snapped inwards to whole minutes (then 5, 15 minutes,
    the base unit: see ``_unit_grids``) so the DP stays small. With ``min_segment`` (every
    segment at least this long; capped at the duration) and/or ``max_segments`` (at most K
    segments: each resume costs something) the choice is exact on that grid: a dynamic programme
    over units with state (units used, segments, current run length), vectorised over states,
    ``O(units x duration x K x min_segment)``, as long as its estimated time stays within
    ``_DP_BUDGET_S`` (0.3 s; about 14 us per unit, plus the states). Beyond that (a long window
    on a fine unit, e.g. 61 min over 120 days: 172,800 one-minute units) it is solved
    coarse-to-fine (``_coarse_to_fine``: a DP on coarser units finds where to run, then the exact
    DP on the fine units around there), so the plan takes well under a second but is not
    guaranteed optimal. When earliest is off the chosen grid, a grid of whole base units starting
    at earliest itself (``_anchored_grid``) is tried too (if the budget has room) and the better
    plan kept, so a snapped grid does not lose a green current slot. Adjacent units merge into
    segments. The best contiguous plan is always a candidate too, so the result is never worse
    than :func:`plan_contiguous`; it is also the answer (with a warning) when no grid fits.

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
    min_ns = None
    if min_segment is not None:
        min_ns = min(int(duration_arg(min_segment, name="min_segment").value), w.dur_ns)
    c_pos, c_mean = _contiguous(w)
    warnings: list[str] = []

    def contiguous(mode: str) -> TimePlan:
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, mode, warnings)

    if max_segments == 1 or (min_ns is not None and min_ns >= w.dur_ns):
        # one run is the only shape these limits allow: the contiguous plan is exact, and needs no DP
        # (a DP over a long window with a short unit took seconds: review 32)
        return contiguous("interruptible")

    if min_ns is None and max_segments is None:
        # no limits: a fractional knapsack on the step function, exact for any earliest/deadline
        # (the first and last slots are partial chunks) and any duration: lowest first, ties earliest
        start, cap, vals = _chunks(w)
        if int(cap.sum()) < w.dur_ns:
            return contiguous("contiguous")
        amt = _fill_in_order(cap[None, :], np.zeros((1, len(cap))), vals[None, :], np.array([w.dur_ns]))[0]
        mean = round(float((amt * vals).sum() / w.dur_ns), _DECIMALS)
        if not mean < c_mean:  # the contiguous plan is as good (ties -> its single segment)
            return contiguous("interruptible")
        return _finish(w, _ns_segments(start, amt), mean, "interruptible", warnings)
    try:
        grids = _unit_grids(w, min_ns)
    except ValueError:
        warnings.append("duration/min_segment not on a usable time grid; planned as one contiguous run")
        return contiguous("contiguous")
    step_ns, t0, _, e_ns, _ = _ns_frame(w, min_ns)
    chosen: tuple[int, int, np.ndarray, int, np.ndarray | None] | None = None  # unit, first ns, costs, need, mask
    spent_s = 0.0  # the estimated DP time used so far
    too_big = False

    def mean_of(c: tuple[int, int, np.ndarray, int, np.ndarray]) -> float:
        return round(float(c[2][c[4]].sum() / c[3]), _DECIMALS)

    ran = False  # an exact solve ran on some grid
    for unit, first_ns, costs, need, m in grids:
        if need > len(costs):
            continue  # a snapped grid lost the little slack there was: try the next one
        m = m or 1
        if m <= 1 and max_segments is None:
            cand = (unit, first_ns, costs, need, _solve_units(costs, need, m, None))
        elif _dp_fits(len(costs), need, m, max_segments, _DP_BUDGET_S - spent_s):
            # every grid whose exact DP fits the remaining budget is tried; the best plan is kept
            spent_s += _dp_seconds(len(costs), need, m, max_segments)
            cand = (unit, first_ns, costs, need, _dp_segments(costs, need, m, max_segments))
        else:
            continue
        ran = True  # grids differ in unit and snap, and which is best is not monotone: keep the best plan
        if cand[4] is not None and (chosen is None or mean_of(cand) < mean_of(chosen)):
            chosen = cand
    if not ran:
        # no grid is small enough for the exact DP (a long window on a fine unit: review 32 #2):
        # coarse-to-fine on the finest grid that can hold the job
        usable = [gr for gr in grids if gr[3] <= len(gr[2])]
        # the finest grid with at most _MAX_UNITS_PER_SLOT units per slot when there is one (a finer
        # one, allowed for a short window, gives coarse-to-fine less to work with per unit of budget)
        usable = [gr for gr in usable if step_ns // gr[0] <= _MAX_UNITS_PER_SLOT] or usable
        if usable:
            unit, first_ns, costs, need, m = usable[0]
            mask, spent_s = _coarse_to_fine(costs, need, m or 1, max_segments, step_ns // unit, (first_ns - t0) // unit)
            chosen = (unit, first_ns, costs, need, mask)
            too_big = mask is None
    if chosen is None or chosen[1] != e_ns:
        # earliest is off the chosen grid: a grid anchored at earliest keeps the rest of the current slot
        anchored = _anchored_grid(w, min_ns, max_segments, _DP_BUDGET_S - spent_s)
        if anchored is not None:
            unit, first_ns, costs, need, m = anchored
            cand = (unit, first_ns, costs, need, _solve_units(costs, need, m, max_segments))
            if cand[4] is not None and (chosen is None or chosen[4] is None or mean_of(cand) < mean_of(chosen)):
                chosen = cand
    if chosen is None or chosen[4] is None:
        if too_big:
            warnings.append("segment limits too large for the DP; planned as one contiguous run")
        return contiguous("contiguous")
    unit, first_ns, costs, need, mask = chosen
    mean = round(float(costs[mask].sum() / need), _DECIMALS)
    if not mean < c_mean:  # the contiguous plan is as good (ties -> its single segment)
        return contiguous("interruptible")
    runs = np.array(_runs(mask), dtype=np.int64)
    segs = tuple(Segment(pd.Timestamp(first_ns + int(a) * unit, tz="UTC"), pd.Timestamp(first_ns + int(b) * unit, tz="UTC")) for a, b in runs)
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
    """Run whenever the forecast is at or below a threshold, in time order, until the job is done.

    The threshold is ``threshold_g_per_kwh`` or the ``percentile`` (0-100) of the forecast
    values of the slots that overlap ``[earliest, deadline)``. The job runs in the at-or-below
    stretches in time order; if they cannot hold it, the rest goes to the lowest remaining
    forecast time (ties -> earliest), never to a forced stretch at the deadline; if nothing is at
    or below the threshold it runs as the best contiguous plan (:func:`plan_contiguous`, with a
    warning). So the plan is never worse than running now on the forecast. The window is cut at
    slot boundaries exactly (an off-grid "now" keeps the rest of its slot). The rule is
    :func:`threshold_amounts`, which the simulator's ``threshold`` policy uses too.

    >>> import pandas as pd
    >>> idx = pd.date_range("2023-06-01", periods=8, freq="h", tz="UTC")
    >>> fc = pd.Series([90.0, 10.0, 90.0, 50.0, 90.0, 90.0, 20.0, 90.0], index=idx)
    >>> p = plan_threshold(fc, "3h", idx[0], idx[0] + pd.Timedelta("8h"), threshold_g_per_kwh=40)
    >>> [(s.start.hour, s.end.hour) for s in p.segments], round(p.expected_g_per_kwh, 3)
    ([(1, 2), (3, 4), (6, 7)], 26.667)
    """
    if (threshold_g_per_kwh is None) == (percentile is None):
        raise ConfigError("give exactly one of threshold_g_per_kwh or percentile")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ConfigError(f"percentile {percentile} must be between 0 and 100")
    w = _prepare(forecast, duration, earliest, deadline)
    if not w.feasible or w.no_window:
        return _run_now_plan(w)
    c_pos, c_mean = _contiguous(w)
    start, cap, vals = _chunks(w)
    if int(cap.sum()) < w.dur_ns:  # the forecast does not cover enough of the window
        return _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "contiguous", [])
    amt, thr_row, below = threshold_amounts(
        cap[None, :], vals[None, :], np.array([w.dur_ns]), threshold_g_per_kwh=threshold_g_per_kwh, percentile=percentile,
        slot=float(round(w.grid.step_s * 1e9)),
    )
    thr = float(thr_row[0])
    if not below[0]:
        plan = _finish(w, [(c_pos, c_pos + w.n_slots)], c_mean, "threshold",
                       [f"no forecast slot is at or below the threshold {thr:g} g/kWh; planned as the best contiguous run"])
    else:
        mean = round(float((amt[0] * vals).sum() / w.dur_ns), _DECIMALS)
        plan = _finish(w, _ns_segments(start, amt[0]), mean, "threshold", [])
    return TimePlan(**{**plan.__dict__, "threshold_g_per_kwh": thr})
