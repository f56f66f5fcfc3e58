"""Resource-usage forecasting: persistent forecast, anomaly detection, fallback model, sizing.

The model (after the reference study) has two parts:

1. **Persistent forecast**: usage repeats itself with a period ``P`` (steps); the forecast of
   ``y[t+k]`` made at origin ``t`` is ``y[t+k-P]`` (``k > P`` wraps to the latest period). ``P`` is
   detected by autocorrelation at the daily and weekly candidates (:func:`detect_period`) or
   given. **Fallback without a period**: when no candidate is periodic (autocorrelation below
   ``min_acf``, or not a local peak: a drifting level is no period) or the series is too short to test one (fewer than two periods), ``P`` is
   ``None`` and the persistent forecast is the last value (naive forecast); a warning says so.
   By default the persistent forecast is *level-anchored* (``FallbackConfig.anchor_span=12``):
   the EWMA of the recent changes ``y[s] - y[s-P]`` is added, so a day that runs 5 % above the
   previous one is forecast 5 % above it; each change is first clipped to its last period's median
   +- 5 scaled MADs (at least 5 % of the level), so one burst is not carried into the next hour;
   ``anchor_span=None`` gives the plain reference forecast.
2. **Anomaly state + fallback model**: a detector watches the persistent forecast's one-step
   error, scaled by the recent mean level (a relative error that stays finite near zero). When the
   recent error is too high the series is *anomalous* and the forecaster switches to a fallback
   model: usage from the recent level (median of the last 12 values, robust to spikes) with a
   damped trend, for as many steps as the anomaly is
   predicted to last still (the median residual life of the past anomalies that lasted longer than
   the elapsed time; with none, the elapsed time itself), then back to persistence (without a
   period: back to the level before the anomaly). The fallback is used only while its own recent
   one-step error is below the persistent forecast's. The state ends when the persistent error is
   low again.
3. **Selection by recent error**: per horizon step ``k``, the forecast kept is whichever of the
   two-model forecast (1 + 2), the last value and the rolling medians of the last 12, 48, 144 and
   288 values has had the lowest absolute error at step ``k`` over the recent origins whose
   targets are already known (EWMA, span 1008 origins; ties keep the two-model). On spike- or
   noise-dominated series a median over hours wins; on smooth aggregates the last value wins at
   short steps. ``FallbackConfig(select_median_steps=())`` turns it off.

Detectors (both causal: the state at ``t`` uses errors up to ``t`` only):

- ``"mad"`` (default): ``score`` = EWMA (span ``span_steps``) of the scaled error. Enter when
  ``score > abs_threshold`` (the persistent forecast is off by more than e.g. 25 %), or when
  ``score`` exceeds the rolling median of the past ``window_steps`` scores by ``k_mad`` robust
  standard deviations (1.4826 x MAD) and is above ``floor`` (the median of the last ``exit_steps``
  scaled errors must be that high too, so the EWMA's tail never re-enters at once). Leave when the median of the last
  ``exit_steps`` scaled errors drops below the baseline frozen at entry plus ``k_exit`` robust
  standard deviations (and below ``abs_threshold``).
- ``"cusum"``: one-sided CUSUM on the robust z-score of the scaled error (``k`` slack, ``h``
  decision interval); once alarmed, a second CUSUM accumulates evidence of a return to normal.

No peeking: every quantity at origin ``t`` is computed from ``y[:t+1]`` only (EWMAs, shifted
rolling statistics, the detector loop); ``tests/forecast/test_usage_forecast.py`` checks that
changing data after ``t`` changes nothing at origins ``<= t``. In :func:`evaluate_usage` the
period, when auto-detected, is detected on the data before the first origin.

>>> import numpy as np
>>> t = np.arange(288 * 6)
>>> y = 10 + 5 * np.sin(2 * np.pi * t / 288)
>>> detect_period(y, step_s=300)
288
>>> ev = evaluate_usage(y, horizon=12, period=288)
>>> round(ev.wape_pct, 6), round(ev.persistence_wape_pct, 6), ev.anomalous_fraction
(0.0, 0.0, 0.0)

Sizing: :func:`usage_need` turns forecast values into peak/mean vCPU and GiB (quantile +
headroom), :func:`choose_instance` maps that to an instance type through
``care_flows.planning.sizing.right_size``; :func:`capacity_plan` sizes consecutive windows from
rolling forecasts plus a causal error margin (what ``benchmarks/bench_usage.py`` scores).

>>> need = usage_need(np.array([1.0, 2.0, 3.0, 4.0]), cpu_scale_vcpu=1.0, quantile=1.0, headroom_pct=25)
>>> need.peak_vcpu, need.mean_vcpu
(5.0, 2.5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError

__all__ = [
    "DAY_S",
    "WEEK_S",
    "DetectorConfig",
    "FallbackConfig",
    "AnomalyInterval",
    "DetectorResult",
    "UsageEvaluation",
    "UsageNeed",
    "detect_period",
    "resolve_period",
    "persistence_matrix",
    "scaled_errors",
    "detect_anomalies",
    "fallback_matrix",
    "forecast_matrix",
    "evaluate_usage",
    "wape_pct",
    "usage_need",
    "choose_instance",
    "event_precision_recall",
    "forecast_error_margin",
    "adaptive_capacity",
    "capacity_plan",
    "UsageForecast",
    "forecast_usage",
    "MAX_USAGE_VALUE",
]

log = logging.getLogger(__name__)

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
_ROBUST = 1.4826  # MAD -> standard deviation for normal data


# --------------------------------------------------------------------------------------------
# Period detection and the persistent forecast
# --------------------------------------------------------------------------------------------


def _acf(y: np.ndarray, lags: Sequence[int]) -> dict[int, float]:
    """Pearson autocorrelation of ``y`` at each lag (NaN when fewer than 2 pairs or flat)."""
    out: dict[int, float] = {}
    for lag in lags:
        if lag <= 0 or lag >= len(y) - 1:
            out[lag] = float("nan")
            continue
        a, b = y[:-lag], y[lag:]
        sa, sb = a.std(), b.std()
        out[lag] = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else float("nan")
    return out


DRIFT_TOLERANCE = 1.05
"""A period ``P`` is rejected when values ``P`` apart differ more than this times those ``P/2``,
``3P/4`` or ``5P/4`` apart (mean absolute difference) and values ``2P`` apart differ more again
(``DRIFT_GROWTH``): the level drifts, it does not repeat."""

DRIFT_GROWTH = 1.15
"""How much more values ``2P`` apart must differ than values ``P`` apart for a drift: about 1.41
for a random walk, about 1 for a daily cycle whose level varies from day to day (a job every hour
whose load differs by day: its values half a day apart are closer than a day apart, and it still
repeats daily)."""


def _mean_abs_diff(y: np.ndarray, lag: int) -> float:
    """Mean of ``|y[t] - y[t - lag]|`` over the finite pairs (inf when there are none)."""
    d = np.abs(y[lag:] - y[:-lag]) if 0 < lag < len(y) else np.array([])
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("inf")


def detect_period(
    y: np.ndarray,
    *,
    step_s: float = 300.0,
    candidates_s: Sequence[float] = (DAY_S, WEEK_S),
    min_acf: float = 0.3,
    weekly_margin: float = 0.05,
) -> int | None:
    """The period in steps with the highest autocorrelation among ``candidates_s``, or ``None``.

    A candidate is tested only when the series holds at least two periods of it. A longer
    candidate must beat a shorter one by ``weekly_margin`` (it needs more history). ``None`` when no
    candidate reaches ``min_acf`` or none can be tested (documented fallback: last-value forecast).

    A candidate ``P`` must also not be a drift: values ``P`` apart differing more (mean absolute
    difference, beyond ``DRIFT_TOLERANCE``) than values ``P/2``, ``3P/4`` or ``5P/4`` apart, and
    values ``2P`` apart more again (``DRIFT_GROWTH``; a load that differs by day makes the first
    hold for a real daily cycle, not the second). A drifting level (a trend, a random walk such as slowly growing memory) makes the
    autocorrelation high at every lag, so without this test such a series got a "daily period"
    (16 of 20 random walks of 8 days did, none does now: ``tests/forecast/test_usage_review31.py``),
    while values of a real cycle repeat after ``P``. This replaced a test that wanted the
    autocorrelation at ``P`` *above* the lags around it, which rejected every daily cycle that also
    repeats within 12 h (a job every 1, 2, 3, 6 or 12 h: their autocorrelations tie; review 35c
    H1). The test is on the raw series: removing a rolling one-period mean first lowers Alibaba
    2018 memory's daily autocorrelation below ``min_acf`` and lets more random walks through, and
    first differences remove the daily period of the memory aggregates.

    >>> import numpy as np
    >>> t = np.arange(2016 * 3)
    >>> y = np.sin(2 * np.pi * t / 288) + 2 * (((t // 288) % 7) >= 5)   # weekends differ
    >>> detect_period(y, step_s=300)
    2016
    >>> detect_period(np.random.default_rng(0).normal(size=2000), step_s=300) is None
    True
    >>> walk = 50 + np.cumsum(np.random.default_rng(3).normal(0, 0.3, 288 * 8))   # drift, no period
    >>> detect_period(walk, step_s=300) is None
    True
    """
    y = np.asarray(y, dtype=float)
    periods = sorted({int(round(c / step_s)) for c in candidates_s if round(c / step_s) >= 2})
    testable = [p for p in periods if len(y) >= 2 * p]
    if not testable:
        return None
    acf = _acf(y, testable)
    best: int | None = None
    for p in testable:  # shortest first; a longer one must beat the incumbent by the margin
        r = acf[p]
        if not np.isfinite(r) or r < min_acf:
            continue
        # a drift makes the series differ more the further apart two values are; a cycle makes
        # values one period apart no less alike than at P/2, 3P/4 or 5P/4
        at_p = _mean_abs_diff(y, p)
        if (at_p > DRIFT_TOLERANCE * min(_mean_abs_diff(y, lag) for lag in (p // 2, p - p // 4, p + p // 4))
                and _mean_abs_diff(y, 2 * p) > DRIFT_GROWTH * at_p):
            continue  # values further apart keep differing more: a drift (a random walk grows by about 1.41)
        if best is None or r > acf[best] + weekly_margin:
            best = p
    return best


def resolve_period(
    y: np.ndarray, period: int | str | None, *, step_s: float = 300.0, horizon: int = 1
) -> int | None:
    """``period`` as steps: ``"auto"`` detects it; an int is checked against the series length.

    Raises :class:`DataError` when the series is shorter than one period (given, or daily for
    ``auto``) plus one step, since then no persistent forecast can be checked.
    """
    n = len(y)
    if period is None:
        return None
    if isinstance(period, str):
        if period.strip().lower() != "auto":
            try:
                period = int(period)
            except ValueError as exc:
                raise ConfigError(f"period {period!r} is neither 'auto' nor a whole number of steps; use e.g. period=288") from exc
        else:
            day = max(2, int(round(DAY_S / step_s)))
            if n <= day:
                raise DataError(
                    f"series has {n} rows, shorter than one daily period ({day} steps of {step_s:g} s); "
                    "give more than one day of data or a shorter period=N"
                )
            found = detect_period(y, step_s=step_s)
            if found is None:
                log.warning("no daily/weekly period found (autocorrelation < 0.3 or no peak at the period, or fewer than two periods); using the last-value forecast")
            return found
    if isinstance(period, (int, np.integer)) and not isinstance(period, bool):
        if period < 1:
            raise ConfigError(f"period {period} is not a positive number of steps; use e.g. period=288")
        if n <= period:
            raise DataError(f"series has {n} rows, shorter than one period ({period} steps) plus one; give more data or a shorter period=N")
        return int(period)
    raise ConfigError(f"period {period!r} is neither 'auto' nor a whole number of steps; use e.g. period=288")


def _step_offsets(period: int | None, horizon: int) -> np.ndarray:
    """Offset from the origin of the value the persistent forecast copies, for k = 1..horizon."""
    k = np.arange(1, horizon + 1)
    if period is None:
        return np.zeros(horizon, dtype=int)
    back = period * np.ceil(k / period).astype(int)  # k <= P -> P; P < k <= 2P -> 2P ...
    return k - back


def persistence_matrix(y: np.ndarray, origins: np.ndarray, horizon: int, period: int | None) -> np.ndarray:
    """Persistent forecasts, shape ``(len(origins), horizon)``: ``y[t + k - P]`` (or ``y[t]``).

    >>> import numpy as np
    >>> persistence_matrix(np.arange(10.0), np.array([5, 6]), 2, 3).tolist()
    [[3.0, 4.0], [4.0, 5.0]]
    """
    origins = np.asarray(origins, dtype=int)
    idx = origins[:, None] + _step_offsets(period, horizon)[None, :]
    if idx.size and idx.min() < 0:
        raise DataError("an origin lies within the first period; origins need at least one period of history")
    return np.asarray(y, dtype=float)[idx]


def scaled_errors(y: np.ndarray, period: int | None, *, scale_window: int = 288) -> np.ndarray:
    """One-step persistent error ``|y[t] - y[t-P]|`` over the mean ``|y|`` of the previous window.

    NaN where no forecast exists yet (``t < P``). Causal: uses ``y[:t+1]`` only.
    """
    y = np.asarray(y, dtype=float)
    lag = 1 if period is None else period
    err = np.full(len(y), np.nan)
    if len(y) > lag:
        err[lag:] = np.abs(y[lag:] - y[:-lag])
    level = pd.Series(np.abs(y)).rolling(scale_window, min_periods=1).mean().shift(1).to_numpy(copy=True)
    level[0] = abs(y[0]) if len(y) else np.nan
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = np.where(level > 0, err / np.where(level > 0, level, 1.0), np.where(err > 0, 1.0, 0.0))
    # a jump from a level near the smallest float (say 1e-320) overflows the ratio to inf, which the
    # rolling windows would skip as missing: keep it the largest error there is instead (review 39b M10)
    np.minimum(out, np.finfo(float).max, out=out)
    out[np.isnan(err)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# Anomaly detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the anomaly detectors (see the module docstring); defaults for 5-min data."""

    method: Literal["mad", "cusum"] = "mad"
    span_steps: int = 6
    exit_steps: int = 3
    window_steps: int = 2016
    k_mad: float = 5.0
    k_exit: float = 2.0
    floor: float = 0.05
    abs_threshold: float = 0.25
    cusum_k: float = 1.0
    cusum_h: float = 24.0
    cusum_clip: float = 6.0
    prior_duration_steps: int = 36
    min_duration_steps: int = 1


@dataclass(frozen=True)
class AnomalyInterval:
    """A detected anomalous state: indices are inclusive; ``actual_duration_steps`` counts steps."""

    start_index: int
    end_index: int
    predicted_duration_steps: float
    actual_duration_steps: int
    ongoing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_index": self.start_index,
            "end_index": self.end_index,
            "predicted_duration_steps": round(float(self.predicted_duration_steps), 3),
            "actual_duration_steps": self.actual_duration_steps,
            "ongoing": self.ongoing,
        }


@dataclass
class DetectorResult:
    """Per-step state: ``anomalous[t]``, predicted ``remaining_steps[t]`` and ``score[t]``."""

    anomalous: np.ndarray
    remaining_steps: np.ndarray
    score: np.ndarray
    intervals: list[AnomalyInterval]
    start_index: np.ndarray | None = None  # start of the current anomaly at t (-1 when normal)


class _PastDurations:
    """The durations (whole steps, at least 1) of the anomalies that ended so far, and the median
    residual life the detector predicts from them (:meth:`remaining`).

    Kept as counts per duration in a Fenwick tree (binary indexed tree) over ``1..size``, ``size``
    a power of two that doubles when a longer duration comes: adding a duration and finding the
    value of a given rank in sorted order are O(log longest duration), whatever the number of
    past anomalies. Within an anomaly the detector asks for ``elapsed = 0, 1, 2, ...`` with the
    durations unchanged, so the count of durations ``<= elapsed`` is carried on in O(1) and the
    median is looked up again only when that count changes. Before, each anomalous step rebuilt
    an array of all past durations and took its median, so a long series with many anomalies was
    quadratic (review 39b M1: 300 000 rows took 224 s, 2 million did not finish in 20 min).
    :meth:`remaining` returns exactly what ``np.median`` of the longer durations gave: the middle
    one, or the mean of the two middle ones (whole numbers, so the float sums are exact).

    >>> past = _PastDurations()
    >>> past.remaining(4, 36)                  # no past anomaly: the prior minus elapsed (or elapsed)
    32.0
    >>> for d in (2, 5, 9, 12):
    ...     past.add(d)
    >>> past.remaining(0, 36), past.remaining(4, 36), past.remaining(9, 36), past.remaining(12, 36)
    (7.0, 5.0, 3.0, 12.0)
    """

    __slots__ = ("size", "_tree", "_count", "total", "_elapsed", "_lo", "_median")

    def __init__(self, size: int = 64) -> None:
        self.size = 1 << max(int(size) - 1, 1).bit_length()  # a power of two >= size
        self._tree = [0] * (self.size + 1)
        self._count = [0] * (self.size + 1)  # how many past anomalies lasted exactly d steps
        self.total = 0
        self._elapsed = -1  # the last question asked (-1: none since the last add), its count <= elapsed, its median
        self._lo = 0
        self._median: float | None = None

    def _grow(self, at_least: int) -> None:
        """Double ``size`` until it holds ``at_least``; the tree is rebuilt from the counts in O(size)."""
        size = self.size
        while size < at_least:
            size *= 2
        count = self._count + [0] * (size - self.size)
        tree = count[:]
        for i in range(1, size + 1):
            j = i + (i & -i)
            if j <= size:
                tree[j] += tree[i]
        self.size, self._count, self._tree = size, count, tree

    def add(self, duration: int) -> None:
        """Record an anomaly that lasted ``duration`` steps (at least 1)."""
        d = int(duration)
        if d < 1:
            raise ValueError(f"anomaly duration {d} is not a positive number of steps")
        if d > self.size:
            self._grow(d)
        self._count[d] += 1
        self.total += 1
        tree, size = self._tree, self.size
        while d <= size:
            tree[d] += 1
            d += d & -d
        self._elapsed = -1

    def _count_le(self, x: int) -> int:
        """How many durations are ``<= x``."""
        x = min(x, self.size)
        tree, s = self._tree, 0
        while x > 0:
            s += tree[x]
            x -= x & -x
        return s

    def _value_at(self, rank: int) -> int:
        """The duration at 0-based ``rank`` in ascending order (``0 <= rank < total``)."""
        tree, size, pos, want, step = self._tree, self.size, 0, rank + 1, self.size  # size is a power of two
        while step:
            nxt = pos + step
            if nxt <= size and tree[nxt] < want:
                pos, want = nxt, want - tree[nxt]
            step >>= 1
        return pos + 1

    def remaining(self, elapsed: int, prior: int) -> float:
        """Median residual life: of the past anomalies that lasted longer than ``elapsed``, their
        median duration minus ``elapsed``; ``elapsed`` (at least 1) when none did; with no past
        anomaly, ``prior - elapsed`` (or ``elapsed`` when larger)."""
        if self.total == 0:
            return float(max(prior - elapsed, elapsed))
        if elapsed == self._elapsed:
            lo = self._lo
        elif elapsed == self._elapsed + 1 and self._elapsed >= 0:  # the next step of the same anomaly
            lo = self._lo + (self._count[elapsed] if elapsed <= self.size else 0)
        else:
            lo = self._count_le(elapsed)
        if self._elapsed < 0 or lo != self._lo:
            m = self.total - lo  # durations longer than elapsed: ranks lo .. total - 1
            if m == 0:
                self._median = None
            else:
                mid = lo + m // 2
                self._median = float(self._value_at(mid)) if m % 2 else (float(self._value_at(mid - 1)) + float(self._value_at(mid))) / 2.0
        self._elapsed, self._lo = elapsed, lo
        if self._median is None:
            return float(max(elapsed, 1))
        return float(self._median - elapsed)


def detect_anomalies(y: np.ndarray, period: int | None, config: DetectorConfig | None = None) -> DetectorResult:
    """Run the configured detector over the whole series, causally (state at t uses y[:t+1])."""
    cfg = config or DetectorConfig()
    y = np.asarray(y, dtype=float)
    n = len(y)
    a = scaled_errors(y, period, scale_window=period or 288)
    valid = ~np.isnan(a)
    s_a = pd.Series(a)
    win = cfg.window_steps
    if cfg.method == "mad":
        score = s_a.ewm(span=cfg.span_steps, adjust=True, ignore_na=True).mean().to_numpy()
        base_src = pd.Series(score)
    elif cfg.method == "cusum":
        score = a
        base_src = s_a
    else:
        raise ConfigError(f"unknown detector {cfg.method!r}; use 'mad' or 'cusum'")
    med = base_src.rolling(win, min_periods=max(12, cfg.span_steps)).median().shift(1).to_numpy()
    mad = (base_src - pd.Series(med)).abs().rolling(win, min_periods=max(12, cfg.span_steps)).median().shift(1).to_numpy()
    sigma = _ROBUST * np.nan_to_num(mad, nan=0.0) + 1e-9

    anomalous = np.zeros(n, dtype=bool)
    remaining = np.zeros(n)
    started = np.full(n, -1, dtype=int)
    intervals: list[AnomalyInterval] = []
    past = _PastDurations()  # durations of the anomalies that ended
    state, start, predicted = False, 0, 0.0
    base_e, sig_e, s_up, s_down = 0.0, 1.0, 0.0, 0.0
    score_l = np.nan_to_num(score, nan=0.0).tolist()
    recent_l = np.nan_to_num(s_a.rolling(cfg.exit_steps, min_periods=1).median().to_numpy(), nan=0.0).tolist()
    med_l = med.tolist()
    sig_l = sigma.tolist()
    valid_l = valid.tolist()
    for t in range(n):
        if not valid_l[t]:
            continue
        sc, m, sg = score_l[t], med_l[t], sig_l[t]
        have_base = m == m  # not NaN
        if cfg.method == "mad":
            if not state:
                sc = min(sc, recent_l[t])  # both the EWMA and the recent median must be high
                rel = have_base and sc > m + cfg.k_mad * sg and sc > cfg.floor
                if sc > cfg.abs_threshold or rel:
                    state, start = True, t
                    base_e, sig_e = (m, sg) if have_base else (cfg.floor, 0.0)
            else:
                exit_level = min(max(base_e + cfg.k_exit * sig_e, cfg.floor), cfg.abs_threshold)
                if recent_l[t] < exit_level and t - start >= cfg.min_duration_steps:
                    past.add(t - start)
                    intervals.append(AnomalyInterval(start, t - 1, predicted, t - start))
                    state = False
        else:
            z = (sc - m) / sg if have_base else 0.0
            z = min(max(z, -cfg.cusum_clip), cfg.cusum_clip)
            if not state:
                s_up = max(0.0, s_up + z - cfg.cusum_k)
                if s_up > cfg.cusum_h:
                    state, start, s_down = True, t, 0.0
            else:
                s_down = max(0.0, s_down + cfg.cusum_k - z)
                if s_down > cfg.cusum_h and t - start >= cfg.min_duration_steps:
                    past.add(t - start)
                    intervals.append(AnomalyInterval(start, t - 1, predicted, t - start))
                    state, s_up = False, 0.0
        if state:
            if t == start:
                predicted = past.remaining(0, cfg.prior_duration_steps)  # median past duration (or prior)
            anomalous[t] = True
            remaining[t] = past.remaining(t - start + 1, cfg.prior_duration_steps)
            started[t] = start
    if state:
        intervals.append(AnomalyInterval(start, n - 1, predicted, n - start, ongoing=True))
    return DetectorResult(
        anomalous=anomalous, remaining_steps=remaining, score=np.asarray(score, dtype=float), intervals=intervals, start_index=started
    )


# --------------------------------------------------------------------------------------------
# Fallback model and the two-model forecaster
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FallbackConfig:
    """Recent level + damped trend: the level is the median of the last ``median_steps`` values
    (``level="median"``, robust to spikes) or an EWMA (span ``level_span``); the trend is an EWMA
    (span ``trend_span``) of the level's changes, damped by ``phi`` per step.

    Selection (see :func:`forecast_matrix`): for each horizon step the final forecast is the one
    among the two-model forecast, the last value and the rolling medians of the last
    ``select_median_steps`` values whose recent absolute error *at that step* is lowest (EWMA, span
    ``select_error_span`` origins, of errors already known at the origin; the two-model until
    ``select_min_errors`` are known). ``select_median_steps=()`` turns selection off (the plain
    two-model forecaster)."""

    level: Literal["median", "ewm"] = "median"
    level_span: int = 6
    median_steps: int = 12
    trend_span: int = 24
    phi: float = 0.8
    gate_on_fallback_error: bool = True
    error_span: int = 12
    anchor_span: int | None = 12
    select_median_steps: tuple[int, ...] = (12, 48, 144, 288)
    select_error_span: int = 1008
    select_min_errors: int = 12


def _level_trend(y: np.ndarray, cfg: FallbackConfig) -> tuple[np.ndarray, np.ndarray]:
    if cfg.level == "median":
        level = pd.Series(y).rolling(cfg.median_steps, min_periods=1).median()
    else:
        level = pd.Series(y).ewm(span=cfg.level_span, adjust=True).mean()
    trend = level.diff().fillna(0.0).ewm(span=cfg.trend_span, adjust=True).mean()
    return level.to_numpy(), trend.to_numpy()


def fallback_matrix(y: np.ndarray, origins: np.ndarray, horizon: int, config: FallbackConfig | None = None) -> np.ndarray:
    """Fallback forecasts ``level[t] + trend[t] * (phi + ... + phi**k)``, clipped at 0."""
    cfg = config or FallbackConfig()
    level, trend = _level_trend(np.asarray(y, dtype=float), cfg)
    k = np.arange(1, horizon + 1)
    damp = cfg.phi * (1 - cfg.phi**k) / (1 - cfg.phi) if cfg.phi < 1 else k.astype(float)
    origins = np.asarray(origins, dtype=int)
    return np.maximum(level[origins, None] + trend[origins, None] * damp[None, :], 0.0)


def _fallback_better(y: np.ndarray, period: int | None, cfg: FallbackConfig) -> np.ndarray:
    """At each t: was the fallback's recent one-step error below persistence's? (causal)."""
    level, trend = _level_trend(y, cfg)
    f1 = np.empty_like(y)
    f1[0] = y[0]
    f1[1:] = level[:-1] + trend[:-1] * cfg.phi
    lag = 1 if period is None else period
    p1 = np.full_like(y, np.nan)
    p1[lag:] = y[:-lag]
    ef = pd.Series(np.abs(y - f1)).ewm(span=cfg.error_span).mean().to_numpy()
    ep = pd.Series(np.abs(y - p1)).ewm(span=cfg.error_span, ignore_na=True).mean().to_numpy()
    return np.where(np.isnan(ep), True, ef < ep)


def forecast_matrix(
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    period: int | None,
    *,
    detector: DetectorConfig | None = None,
    fallback: FallbackConfig | None = None,
    detection: DetectorResult | None = None,
) -> tuple[np.ndarray, np.ndarray, DetectorResult]:
    """Forecasts ``(len(origins), horizon)``, the anomalous flag per origin, the detector run.

    The two-model forecast: at an anomalous origin with ``r`` predicted remaining steps, steps
    ``k <= r`` use the fallback model and later steps the persistent forecast. With
    ``gate_on_fallback_error`` the fallback is used only while its own recent one-step error is
    below the persistent forecast's.

    Then, per origin and step ``k``, the *selection* stage (``FallbackConfig.select_median_steps``)
    keeps whichever of the two-model forecast, the last value and the rolling medians has had the
    lowest recent absolute error at step ``k``: the errors of forecasts issued at origins
    ``s <= t - k`` (their targets ``s + k <= t`` are known at ``t``), EWMA over ``s``. On
    noise- or spike-dominated series without a period this picks a robust level (a median over
    hours) where the last value chases spikes, and on smooth aggregates the last value at short
    steps where a day-old shape is stale; on clean periodic series the two-model stays (ties keep it).
    Only the ``8 * select_error_span + horizon`` origins before the first origin are replayed
    (older errors weigh less than ``e**-16``).

    >>> import numpy as np
    >>> y = np.full(600, 0.13)
    >>> y[np.arange(5, 600, 7)] = 3.0          # a flat series with a spike every 7 steps
    >>> pred, _, _ = forecast_matrix(y, np.array([599]), 3, None)
    >>> pred.round(2).tolist()                 # the median level, not the last value or a spike
    [[0.13, 0.13, 0.13]]
    """
    picked, _, anomalous, det = _forecast_matrices(y, origins, horizon, period, detector, fallback, detection)
    return picked, anomalous, det


_SELECT_CHUNK_CELLS = 1 << 20
"""Cells (replayed origins x steps) per block of step columns scored at once by the selection:
each block needs a few arrays of this many float64 (8 MiB each), so the selection's working set no
longer grows with the horizon (review 35c M6: it held 6 candidates x origins x steps, ~220 bytes
per cell). Every column is scored independently, so the block size changes no result."""


def _forecast_matrices(
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    period: int | None,
    detector: DetectorConfig | None,
    fallback: FallbackConfig | None,
    detection: DetectorResult | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, DetectorResult]:
    """(selected forecast, two-model forecast, anomalous flags, detector run) at ``origins``.

    The selection is done on blocks of step columns (``_SELECT_CHUNK_CELLS``): a column's choice
    depends only on that column's candidate errors, so memory is O(replayed origins x block) plus
    the two output matrices, with the same result as scoring all steps at once.
    """
    y = np.asarray(y, dtype=float)
    fb_cfg = fallback or FallbackConfig()
    det = detection if detection is not None else detect_anomalies(y, period, detector)
    origins = np.asarray(origins, dtype=int)
    anomalous = det.anomalous[origins]
    if not fb_cfg.select_median_steps or origins.size == 0:
        two = _two_model_matrix(y, origins, horizon, period, det, fb_cfg)
        return two, two, anomalous, det
    first = int(period) if period else 1
    lo = max(min(first, int(origins.min())), int(origins.min()) - 8 * fb_cfg.select_error_span - horizon)
    hist = np.arange(lo, int(origins.max()) + 1)
    two_model_columns = _two_model_columns(y, hist, horizon, period, det, fb_cfg)
    # the other candidates are the same for every step: the last value and the rolling medians
    levels = [y[hist]]
    for w in fb_cfg.select_median_steps:
        levels.append(pd.Series(y).rolling(int(w), min_periods=1).median().to_numpy()[hist])
    rows = origins - lo
    picked = np.empty((len(origins), horizon))
    two = np.empty((len(origins), horizon))
    block = max(1, min(horizon, _SELECT_CHUNK_CELLS // max(len(hist), 1)))
    for j0 in range(0, horizon, block):
        j1 = min(j0 + block, horizon)
        cand0 = two_model_columns(j0, j1)  # (origin in hist, step j0..j1-1)
        choice = _select_by_recent_error(y, hist, rows, cand0, levels, j0, fb_cfg.select_error_span, fb_cfg.select_min_errors)
        out = cand0[rows]
        two[:, j0:j1] = out
        for c, lev in enumerate(levels, start=1):
            out = np.where(choice == c, lev[rows, None], out)
        picked[:, j0:j1] = out
    return picked, two, anomalous, det


def _select_by_recent_error(
    y: np.ndarray,
    hist: np.ndarray,
    rows: np.ndarray,
    cand0: np.ndarray,
    levels: Sequence[np.ndarray],
    j0: int,
    span: int,
    min_errors: int,
) -> np.ndarray:
    """Index of the candidate with the lowest recent error, per (origin ``hist[rows]``, step); causal.

    Candidate 0 is ``cand0`` (the two-model forecast at ``hist`` for steps ``j0 + 1 ..``), candidate
    ``c >= 1`` is ``levels[c - 1]`` (one value per origin in ``hist``, the same for every step).
    The error of the forecast issued at ``s`` for step ``k`` is known from ``s + k`` on, so the score
    at origin ``t`` is the EWMA over ``s <= t - k`` (the column's EWMA shifted down by ``k`` rows).
    Ties keep the lower index (the two-model); so does a two-model without a score yet.
    """
    n = len(y)
    h = cand0.shape[1]
    k = np.arange(j0 + 1, j0 + h + 1)
    target = hist[:, None] + k[None, :]
    actual = np.where(target < n, y[np.minimum(target, n - 1)], np.nan)
    del target
    src = rows[:, None] - k[None, :]  # row of the latest origin whose error is known
    known = src >= 0
    np.clip(src, 0, None, out=src)

    def score(err: np.ndarray) -> np.ndarray:
        ew = pd.DataFrame(err).ewm(span=span, ignore_na=True, min_periods=min_errors).mean().to_numpy()
        s = np.where(known, np.take_along_axis(ew, src, axis=0), np.nan)
        return np.where(np.isnan(s), np.inf, s)

    s0 = score(np.abs(actual - cand0))
    best, choice = s0, np.zeros(s0.shape, dtype=np.intp)
    for c, lev in enumerate(levels, start=1):
        s = score(np.abs(actual - lev[:, None]))
        better = s < best  # strict: ties keep the earlier candidate, as argmin did
        best = np.where(better, s, best)
        choice[better] = c
    return np.where(np.isfinite(s0), choice, 0)


def level_anchor(y: np.ndarray, period: int, span: int) -> np.ndarray:
    """The level anchor at each index: the EWMA (``span``) of the changes ``y[s] - y[s-period]``,
    each first clipped to the median +- 5 scaled MADs (at least 5 % of the mean level) of the
    previous ``period`` changes (causal: one short burst, which the detector ignores by design, is
    not carried into the next hour's forecasts; review 47c M1). 0 for the first period.

    >>> y = np.r_[np.full(288, 10.0), np.full(288, 12.0)]  # a day 20 % above the last
    >>> y[400] = 1000.0  # and one burst in it
    >>> a = level_anchor(y, 288, 12)
    >>> float(a[287]), round(float(a[399]), 3), round(float(a[400]), 1)
    (0.0, 2.0, 2.1)
    """
    offset = np.zeros(len(y))
    offset[period:] = y[period:] - y[:-period]
    so = pd.Series(offset)
    med = so.rolling(period, min_periods=12).median().shift(1)
    mad = (so - med).abs().rolling(period, min_periods=12).median().shift(1) * 1.4826
    # at least 5 % of the level: a steady series (MAD 0) still follows a change of up to 25 % of its level at once
    level = pd.Series(np.abs(y)).rolling(period, min_periods=12).mean().shift(1)
    width = 5 * np.maximum(mad, 0.05 * level)
    lo, hi = (med - width).fillna(-np.inf), (med + width).fillna(np.inf)
    return so.clip(lo, hi).ewm(span=span).mean().to_numpy()


def _two_model_columns(
    y: np.ndarray, origins: np.ndarray, horizon: int, period: int | None, det: DetectorResult, fb_cfg: FallbackConfig
) -> Callable[[int, int], np.ndarray]:
    """``f(j0, j1)`` = columns ``j0:j1`` (steps ``j0 + 1 .. j1``) of :func:`_two_model_matrix`.

    The per-origin parts (anchor, level, trend, gate, predicted remaining steps) are computed once;
    each column is then elementwise, so blocks of columns equal the whole matrix cut into pieces.
    """
    origins = np.asarray(origins, dtype=int)
    off = _step_offsets(period, horizon)
    if origins.size and int(origins.min()) + int(off.min()) < 0:
        raise DataError("an origin lies within the first period; origins need at least one period of history")
    anchor = None
    if period is not None and fb_cfg.anchor_span:
        # level-anchored persistence: add the recent (EWMA) change against one period earlier
        anchor = level_anchor(y, period, fb_cfg.anchor_span)[origins, None]
    # the fallback (as fallback_matrix): level[t] + trend[t] * (phi + ... + phi**k), clipped at 0
    level, trend = _level_trend(y, fb_cfg)
    k = np.arange(1, horizon + 1)
    damp = fb_cfg.phi * (1 - fb_cfg.phi**k) / (1 - fb_cfg.phi) if fb_cfg.phi < 1 else k.astype(float)
    level_o, trend_o = level[origins, None], trend[origins, None]
    use = det.anomalous[origins].copy()
    if fb_cfg.gate_on_fallback_error:
        use &= _fallback_better(y, period, fb_cfg)[origins]
    limit = np.maximum(np.ceil(det.remaining_steps[origins]), 1)[:, None]
    back = None
    if period is None and det.start_index is not None:
        # without a period, "back to normal" after the predicted end is the level before the anomaly
        start = det.start_index[origins]
        back = ((use & (start > 0))[:, None], level[np.clip(start - 1, 0, None)][:, None])
    use_col = use[:, None]

    def columns(j0: int, j1: int) -> np.ndarray:
        pers = y[origins[:, None] + off[None, j0:j1]]
        if anchor is not None:
            pers = pers + anchor
        fb = np.maximum(level_o + trend_o * damp[None, j0:j1], 0.0)
        mask = use_col & (k[None, j0:j1] <= limit)
        if back is not None:
            pers = np.where(back[0], back[1], pers)
        return np.where(mask, fb, pers)

    return columns


def _two_model_matrix(
    y: np.ndarray, origins: np.ndarray, horizon: int, period: int | None, det: DetectorResult, fb_cfg: FallbackConfig
) -> np.ndarray:
    """The two-model forecast (persistent + anomaly fallback) at ``origins``, before selection."""
    return _two_model_columns(y, origins, horizon, period, det, fb_cfg)(0, horizon)


@dataclass(frozen=True)
class UsageForecast:
    """A forecast from the end of the history: ``values[k-1]`` is the usage ``k`` steps ahead."""

    values: np.ndarray
    period_steps: int | None
    anomalous: bool
    remaining_anomaly_steps: float
    step_s: float


MAX_USAGE_VALUE = 1e100
"""Usage values above this are refused (:func:`forecast_usage`, :func:`evaluate_usage` and
``care forecast-usage``'s CSV reader): no usage figure comes near it (a data centre's memory in bytes
is about 1e16), while values near the float maximum (1.8e308) overflow the forecaster's
arithmetic (squares in the period detection, sums in the scores) into inf and NaN (review 39b
M10). Below it, squares and sums over billions of rows stay finite."""


def _usage_values(values: Any, what: str) -> np.ndarray:
    """``values`` as a float array; a :class:`DataError` naming the first bad one when a value is not
    finite, is negative (usage cannot be) or is above :data:`MAX_USAGE_VALUE`, as ``care
    forecast-usage`` says of a CSV.

    >>> _usage_values([1.0, -0.5, 2.0], "usage history")
    Traceback (most recent call last):
    ...
    care_flows.errors.DataError: usage history has 1 negative value(s), first at index 1 (-0.5); usage cannot be negative
    """
    y = np.asarray(values, dtype=float)
    if y.size == 0 or not np.isfinite(y).all():
        raise DataError(f"{what} is empty or has NaN/inf values; give finite values, one per step")
    negative = np.flatnonzero(y < 0)
    if negative.size:
        i = int(negative[0])
        raise DataError(f"{what} has {negative.size} negative value(s), first at index {i} ({y[i]:g}); usage cannot be negative")
    huge = np.flatnonzero(y > MAX_USAGE_VALUE)
    if huge.size:
        i = int(huge[0])
        raise DataError(f"{what} has {huge.size} value(s) above {MAX_USAGE_VALUE:g}, first at index {i} ({y[i]:g}); "
                        "no usage figure is that large: check the values or rescale them (e.g. bytes to GiB)")
    return y


def _series_and_step(history: Any, step_s: float | None, what: str) -> tuple[Any, float]:
    """``history`` and its step in seconds: a pandas Series on a time index gives its own step
    (``step_s``, when given, must agree); anything else is values of ``step_s`` (default 300 s)."""
    if isinstance(history, pd.DataFrame):
        raise DataError(f"{what} is a DataFrame (columns {list(history.columns)[:5]}); pass one column, e.g. df['cpu']")
    if step_s is not None and (isinstance(step_s, bool) or not isinstance(step_s, (int, float, np.integer, np.floating)) or not step_s > 0):
        raise ConfigError(f"step_s {step_s!r} is not a positive number of seconds; give e.g. step_s=300")
    if isinstance(history, pd.Series) and isinstance(history.index, pd.DatetimeIndex) and len(history) >= 2:
        idx = history.index
        if not (idx.is_monotonic_increasing and idx.is_unique):
            raise DataError(f"{what}'s time index is not sorted or repeats a time; .sort_index() and keep one value per time")
        gaps = np.diff(idx.asi8)
        if (gaps != gaps[0]).any():
            raise DataError(f"{what}'s time index is not regular; put it on one step first, e.g. .resample('5min').mean().interpolate()")
        own = float(pd.Timedelta(int(gaps[0]), unit=idx.unit).total_seconds())
        if step_s is not None and abs(float(step_s) - own) > 1e-6:
            raise ConfigError(f"step_s={step_s:g} but {what}'s index steps by {own:g} s; drop step_s or resample the series")
        return history.to_numpy(dtype=float), own
    return history, 300.0 if step_s is None else float(step_s)


def _steps(horizon: Any) -> int:
    """A horizon in steps (a whole number >= 1), else a one-line :class:`ConfigError`."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"horizon {horizon!r} is a number of steps ahead (a whole number >= 1); use e.g. horizon=12")
    return int(horizon)


def forecast_usage(
    history: np.ndarray | Sequence[float] | pd.Series,
    horizon: int,
    *,
    period: int | str | None = "auto",
    step_s: float | None = None,
    detector: DetectorConfig | None = None,
    fallback: FallbackConfig | None = None,
) -> UsageForecast:
    """Forecast the next ``horizon`` steps after the last value of ``history`` (the production call).

    ``history``: values one step apart (``step_s``, default 300 s), or a pandas Series on a regular
    time index, whose step is used (so a daily period is found on 15-minute or hourly data too).

    >>> import numpy as np
    >>> t = np.arange(288 * 3)
    >>> fc = forecast_usage(2 + np.sin(2 * np.pi * t / 288), 3, period="auto")
    >>> fc.period_steps, fc.anomalous, np.round(fc.values, 3).tolist()
    (288, False, [2.0, 2.022, 2.044])
    >>> hourly = pd.Series(2 + np.sin(2 * np.pi * np.arange(72) / 24), index=pd.date_range("2026-01-01", periods=72, freq="h", tz="UTC"))
    >>> forecast_usage(hourly, 3).period_steps, forecast_usage(hourly, 3).step_s
    (24, 3600.0)
    """
    history, step_s = _series_and_step(history, step_s, "usage history")
    y = _usage_values(history, "usage history")
    horizon = _steps(horizon)
    p = resolve_period(y, period, step_s=step_s, horizon=horizon)
    origin = np.array([len(y) - 1])
    pred, anomalous, det = forecast_matrix(y, origin, horizon, p, detector=detector, fallback=fallback)
    return UsageForecast(
        values=pred[0],
        period_steps=p,
        anomalous=bool(anomalous[0]),
        remaining_anomaly_steps=float(det.remaining_steps[-1]),
        step_s=step_s,
    )


def wape_pct(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Weighted absolute percentage error: ``100 * sum|a - p| / sum|a|``; NaN (undefined, JSON
    ``null``) when every actual value is 0, even for a perfect forecast: 0/0 is no score.

    >>> wape_pct(np.array([1.0, 3.0]), np.array([2.0, 3.0]))
    25.0
    >>> wape_pct(np.zeros(3), np.zeros(3))
    nan
    """
    denom = float(np.abs(actual).sum())
    if denom == 0:
        return float("nan")
    err = np.asarray(np.subtract(actual, predicted))  # one temporary, not two: abs in place (same values, same sum)
    return 100.0 * float(np.abs(err, out=err).sum()) / denom


@dataclass
class UsageEvaluation:
    """Rolling-origin evaluation: forecasts at each origin for steps 1..horizon, and scores."""

    period_steps: int | None
    horizon: int
    origins: np.ndarray
    actual: np.ndarray
    prediction: np.ndarray
    persistence: np.ndarray
    anomalous: np.ndarray
    detection: DetectorResult
    wape_pct: float
    persistence_wape_pct: float
    anomalous_fraction: float
    wape_by_step: dict[int, tuple[float, float]] = field(default_factory=dict)
    two_model_prediction: np.ndarray | None = None  # before selection; what capacity_plan sizes from
    last_value_wape_pct: float = float("nan")  # the naive forecast y[t] for every step, same origins and steps

    def to_frame(self) -> pd.DataFrame:
        """One row per (origin, step): origin_index, step, target_index, prediction, anomalous."""
        return self._frame(0, len(self.origins))

    def to_frames(self, rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
        """:meth:`to_frame` in pieces of whole origins, about ``rows`` rows each (at least one piece):
        ``care forecast-usage --out`` writes a year of 5-minute data at h=288 (15 M rows) without
        holding them all as one frame.

        >>> import numpy as np
        >>> ev = evaluate_usage(2 + np.sin(np.arange(288 * 3) * 2 * np.pi / 288), horizon=4, period=288)
        >>> pieces = list(ev.to_frames(rows=10))
        >>> len(pieces) > 1, pd.concat(pieces, ignore_index=True).equals(ev.to_frame())
        (True, True)
        """
        n_o, h = self.prediction.shape
        per = max(1, int(rows) // max(h, 1))
        for i in range(0, max(n_o, 1), per):
            yield self._frame(i, min(i + per, n_o))

    def _frame(self, i0: int, i1: int) -> pd.DataFrame:
        h = self.prediction.shape[1]
        origins = self.origins[i0:i1]
        step = np.tile(np.arange(1, h + 1), len(origins))
        origin = np.repeat(origins, h)
        return pd.DataFrame(
            {
                "origin_index": origin,
                "step": step,
                "target_index": origin + step,
                "prediction": self.prediction[i0:i1].ravel(),
                "anomalous": np.repeat(self.anomalous[i0:i1], h).astype(int),
            },
            index=pd.RangeIndex(i0 * h, i0 * h + len(origin)),
        )

    def summary(self) -> dict[str, Any]:
        """The JSON summary of the CLI (anomalies restricted to those that touch the origins)."""
        first = int(self.origins[0]) if len(self.origins) else 0
        return {
            "wape_pct": _r(self.wape_pct),
            "persistence_wape_pct": _r(self.persistence_wape_pct),
            "last_value_wape_pct": _r(self.last_value_wape_pct),
            "anomalous_fraction": _r(self.anomalous_fraction),
            "period_steps": self.period_steps,
            "horizon_steps": self.horizon,
            "n_origins": int(len(self.origins)),
            "first_origin_index": first,
            "wape_pct_by_step": {str(k): _r(v[0]) for k, v in self.wape_by_step.items()},
            "persistence_wape_pct_by_step": {str(k): _r(v[1]) for k, v in self.wape_by_step.items()},
            "anomalies": [iv.as_dict() for iv in self.detection.intervals if iv.end_index >= first],
        }


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def evaluate_usage(
    y: np.ndarray | pd.Series,
    *,
    horizon: int = 12,
    period: int | str | None = "auto",
    step_s: float | None = None,
    first_origin: int | None = None,
    detector: DetectorConfig | None = None,
    fallback: FallbackConfig | None = None,
) -> UsageEvaluation:
    """Honest rolling-origin evaluation: at each origin ``t`` forecast ``t+1..t+h`` from ``y[:t+1]``.

    Origins run from ``first_origin`` to ``len(y) - 1 - horizon``. By default ``first_origin`` is
    one period (or one day without a period) for a given period; with ``period="auto"`` the period
    is detected on ``y[:first_origin]`` with ``first_origin = max(2 days, n // 2)`` (capped so that
    at least one origin remains), so the choice of period never sees the evaluated data.
    """
    y, step_s = _series_and_step(y, step_s, "usage series")
    y = _usage_values(y, "usage series")
    n = len(y)
    horizon = _steps(horizon)
    if n - 1 - horizon < 1:  # not one origin with history before it and its horizon after it
        if n < 3:  # no horizon fits: even horizon=1 needs a row before the origin and one after it
            raise DataError(f"series has {n} row(s), too few to evaluate any forecast (it needs at least horizon + 2 = {horizon + 2} rows); give more data")
        raise DataError(f"series has {n} rows, not enough for a horizon of {horizon} steps; give horizon=N below {n - 1}, or more data")
    day = max(2, int(round(DAY_S / step_s)))
    if isinstance(period, str) and period.strip().lower() == "auto":
        if n <= day:
            raise DataError(
                f"series has {n} rows, shorter than one daily period ({day} steps of {step_s:g} s); "
                "give more than one day of data or a shorter period=N"
            )
        if first_origin is None:
            first_origin = min(max(2 * day, n // 2), n - 1 - horizon)
        p = detect_period(y[: max(first_origin, 1)], step_s=step_s)
        if p is None:
            log.warning("no daily/weekly period in the first %d steps; persistent forecast = last value", first_origin)
    else:
        p = resolve_period(y, period, step_s=step_s, horizon=horizon)
        if first_origin is None:
            first_origin = p if p is not None else min(day, n - 1 - horizon)
    if p is not None:
        first_origin = max(first_origin, p)
    if first_origin > n - 1 - horizon:
        raise DataError(
            f"series has {n} rows: too short for one period ({p} steps) of history plus a horizon of {horizon}; give more data"
        )
    origins = np.arange(first_origin, n - horizon)
    if len(origins) < day:  # review 47c L1: 289 rows of a 5-minute series scored one forecast, silently
        log.warning("the score rests on %d forecast origin(s) (rows %d to %d), less than a day of them (%d): give more rows "
                    "or a shorter horizon for a steadier score", len(origins), first_origin, n - horizon - 1, day)
    pred, two, anomalous, det = _forecast_matrices(y, origins, horizon, p, detector, fallback, None)
    pers = persistence_matrix(y, origins, horizon, p)
    actual = y[origins[:, None] + np.arange(1, horizon + 1)[None, :]]
    by_step = {k: (wape_pct(actual[:, k - 1], pred[:, k - 1]), wape_pct(actual[:, k - 1], pers[:, k - 1])) for k in range(1, horizon + 1)}
    return UsageEvaluation(
        period_steps=p,
        horizon=horizon,
        origins=origins,
        actual=actual,
        prediction=pred,
        persistence=pers,
        anomalous=anomalous,
        detection=det,
        wape_pct=wape_pct(actual, pred),
        persistence_wape_pct=wape_pct(actual, pers),
        last_value_wape_pct=wape_pct(actual, np.broadcast_to(y[origins, None], actual.shape)),  # no origins x h copy
        anomalous_fraction=float(anomalous.mean()) if len(anomalous) else 0.0,
        wape_by_step=by_step,
        two_model_prediction=two,
    )


def event_precision_recall(
    intervals: Sequence[tuple[int, int]], windows: Sequence[tuple[int, int]], *, after: int = 0
) -> tuple[float, float, int, int]:
    """Event-level precision/recall of detected ``intervals`` against labelled ``windows``.

    Both as inclusive index pairs; only detections starting at or after ``after`` count.
    Precision = detected intervals overlapping any window / detected intervals; recall =
    windows overlapped by any detection / windows. Returns ``(precision, recall, n_det, n_win)``.

    >>> event_precision_recall([(5, 8), (20, 22)], [(0, 6), (30, 40)])
    (0.5, 0.5, 2, 2)
    """
    det = [(s, e) for s, e in intervals if s >= after]
    hit = lambda a, b: a[0] <= b[1] and b[0] <= a[1]  # noqa: E731
    tp_det = sum(any(hit(d, w) for w in windows) for d in det)
    tp_win = sum(any(hit(d, w) for d in det) for w in windows)
    precision = tp_det / len(det) if det else float("nan")
    recall = tp_win / len(windows) if windows else float("nan")
    return precision, recall, len(det), len(windows)


# --------------------------------------------------------------------------------------------
# Sizing from the forecast
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageNeed:
    """What a flow will need over its planned window (vCPU, GiB), with the quantile and headroom used.

    ``peak_*`` = ``quantile`` of the forecast times ``1 + headroom_pct / 100``; ``mean_*`` is the
    plain forecast mean (for energy accounting). Memory fields are ``None`` without a memory forecast.
    """

    peak_vcpu: float
    mean_vcpu: float
    peak_memory_gib: float | None
    mean_memory_gib: float | None
    quantile: float
    headroom_pct: float


def usage_need(
    forecast_values: np.ndarray | Sequence[float],
    *,
    cpu_scale_vcpu: float = 1.0,
    memory_forecast: np.ndarray | Sequence[float] | None = None,
    memory_scale_gib: float = 1.0,
    quantile: float = 0.95,
    headroom_pct: float = 20.0,
    error_margin: float = 0.0,
) -> UsageNeed:
    """Peak and mean vCPU (and memory GiB) from forecast values.

    ``cpu_scale_vcpu`` converts the forecast's unit to vCPU (1.0 when the forecast is already in
    vCPU-equivalents, as recorded by :class:`care_flows.usage_capture.UsageSampler`; 0.04 for a
    CPU-% series of a 4-vCPU machine). The documented defaults: the 95th percentile of the window
    plus 20 % headroom. ``error_margin`` (forecast units, e.g. from :func:`forecast_error_margin`)
    is added to the CPU quantile before headroom: it covers the forecast's own error (CPU only:
    the memory peak gets the quantile and headroom, no error margin).
    """
    cpu = np.asarray(forecast_values, dtype=float)
    if cpu.size == 0 or not np.isfinite(cpu).all():
        raise DataError("forecast values are empty or not finite; forecast at least one step")
    if not 0 < quantile <= 1:
        raise ConfigError(f"quantile {quantile} is outside (0, 1]; use e.g. 0.95")
    if headroom_pct < 0:
        raise ConfigError(f"headroom_pct {headroom_pct} is negative; use e.g. 20")
    grow = 1 + headroom_pct / 100.0
    peak_mem = mean_mem = None
    if memory_forecast is not None:
        mem = np.asarray(memory_forecast, dtype=float) * memory_scale_gib
        if mem.size == 0 or not np.isfinite(mem).all():
            raise DataError("memory forecast values are empty or not finite; forecast at least one step, or pass memory_forecast=None")
        peak_mem = float(np.quantile(mem, quantile)) * grow
        mean_mem = float(mem.mean())
    c = cpu * cpu_scale_vcpu
    return UsageNeed(
        peak_vcpu=(float(np.quantile(c, quantile)) + error_margin * cpu_scale_vcpu) * grow,
        mean_vcpu=float(c.mean()),
        peak_memory_gib=peak_mem,
        mean_memory_gib=mean_mem,
        quantile=quantile,
        headroom_pct=headroom_pct,
    )


def choose_instance(
    need: UsageNeed,
    region: str,
    *,
    prices: Any | None = None,
    default_memory_gib: float = 1.0,
    right_size: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> Any:
    """The instance type for ``need`` via the planning layer's right-sizing (the one call site).

    Calls ``care_flows.planning.sizing.right_size(region, vcpu, memory_gib, *, prices,
    headroom_pct=0, usage=...)``: the headroom is already in ``need.peak_*``, and the mean vCPU is
    passed on (as a ``UsageSummary``) for the expected utilisation. Returns its ``SizingChoice``
    (``.instance_type``). ``prices`` defaults to the embedded price snapshot; ``right_size`` is
    injectable for tests; ``kwargs`` (``families``, ``architecture``...) are passed through.

    >>> from care_flows.pricing import EmbeddedPrices
    >>> need = usage_need([0.1, 0.1, 0.1, 0.1, 1.5], memory_forecast=[3.0, 3.0, 3.0, 3.0, 3.2], quantile=1.0,
    ...                   headroom_pct=20)  # peak 1.8 vCPU, 3.84 GiB; mean 0.38 vCPU, under a t3.medium's baseline
    >>> choose_instance(need, "eu-north-1", prices=EmbeddedPrices()).instance_type
    't3.medium'
    """
    memory = need.peak_memory_gib if need.peak_memory_gib is not None else default_memory_gib
    if right_size is None:
        from care_flows.planning.sizing import UsageSummary, right_size as _right_size

        if prices is None:
            from care_flows.pricing import EmbeddedPrices

            prices = EmbeddedPrices()
        summary = UsageSummary(peak_vcpu=need.peak_vcpu, peak_memory_gib=memory, mean_vcpu=need.mean_vcpu,
                               mean_memory_gib=need.mean_memory_gib)
        return _right_size(region, need.peak_vcpu, memory, prices=prices, headroom_pct=0.0, usage=summary, **kwargs)
    return right_size(region, need.peak_vcpu, memory, prices=prices, headroom_pct=0.0, **kwargs)


def forecast_error_margin(
    ev: UsageEvaluation,
    *,
    quantile: float = 0.95,
    window: int = 2016,
    min_errors: int = 288,
    prediction: np.ndarray | None = None,
) -> np.ndarray:
    """Per origin, the ``quantile`` of past *window* residuals ``max_k(actual[k] - prediction[k])``.

    A capacity of ``max_k prediction[t, k] + margin[t]`` covers every step of the window whenever
    the window's residual is below the margin, so the quantile bounds the share of windows with any
    under-provisioned step (a split-conformal bound, up to the drift of the errors). Causal: at
    origin ``t`` only windows that ended by ``t`` (origins ``<= t - horizon``), the last ``window``
    of them; NaN until ``min_errors`` are known. ``prediction`` (same shape as ``ev.prediction``)
    scores another forecast of the same origins, e.g. ``ev.two_model_prediction``.
    """
    pred = ev.prediction if prediction is None else prediction
    resid = np.max(ev.actual - pred, axis=1)
    q = pd.Series(resid).rolling(window, min_periods=min_errors).quantile(quantile)
    return q.shift(ev.horizon).to_numpy()


def adaptive_capacity(
    base: np.ndarray,
    demand: np.ndarray,
    *,
    target_under_fraction: float = 0.005,
    adaptation_rate: float = 0.005,
    window_blocks: int = 168,
    min_blocks: int = 24,
) -> np.ndarray:
    """Capacities for consecutive blocks by adaptive conformal inference; NaN before ``min_blocks``.

    Block ``b`` is sized at its origin as ``base[b] + margin[b]``, where ``margin[b]`` is the
    ``1 - alpha_b`` quantile of the past blocks' per-step shortfalls ``demand[j, k] - base[j]``
    (the last ``window_blocks`` blocks, all ended before block ``b`` starts). After block ``b``
    the miss level is corrected by what happened (Gibbs & Candes, "Adaptive conformal inference
    under distribution shift", NeurIPS 2021): ``alpha_{b+1} = alpha_b + adaptation_rate x
    (target_under_fraction - share of block b's steps above its capacity)``. A series whose
    errors grow gets wider margins until its under-provisioned share is back at the target; one
    whose errors shrink gets tighter ones. ``alpha <= 0`` sizes for the largest past shortfall.

    ``base`` (n_blocks,): the block's forecast level (e.g. the largest forecast value of the
    block); ``demand`` (n_blocks, h): the actual values, read only for blocks before ``b``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> demand = 10 + rng.normal(0, 1, (2000, 12))
    >>> cap = adaptive_capacity(np.full(2000, 10.0), demand)
    >>> bool(np.isnan(cap[:24]).all()), round(float((demand[24:] > cap[24:, None]).mean()), 3)
    (True, 0.005)
    """
    base = np.asarray(base, dtype=float)
    demand = np.asarray(demand, dtype=float)
    if demand.ndim != 2 or demand.shape[0] != base.shape[0]:
        raise ConfigError(f"demand shape {demand.shape} does not match {base.shape[0]} blocks x horizon steps")
    if not 0.0 < target_under_fraction < 1.0:
        raise ConfigError(f"target_under_fraction {target_under_fraction} is not in (0, 1); 0.005 is 0.5 % of intervals")
    shortfall = demand - base[:, None]
    cap = np.full(base.shape[0], np.nan)
    alpha = target_under_fraction
    for b in range(base.shape[0]):
        lo = max(0, b - window_blocks)
        if b - lo < min_blocks:
            continue
        past = shortfall[lo:b].ravel()
        margin = float(np.max(past)) if alpha <= 0 else float(np.quantile(past, 1.0 - min(alpha, 1.0)))
        cap[b] = max(base[b] + margin, 0.0)
        alpha += adaptation_rate * (target_under_fraction - float((demand[b] > cap[b]).mean()))
    return cap


def capacity_plan(
    ev: UsageEvaluation,
    *,
    margin: Literal["adaptive", "window"] = "adaptive",
    target_under_fraction: float = 0.005,
    adaptation_rate: float = 0.005,
    error_quantile: float = 0.95,
    headroom_pct: float = 0.0,
    window: int = 2016,
    history: np.ndarray | None = None,
    cap_at_peak: bool = False,
    sizing_forecast: Literal["two_model", "selected"] = "two_model",
) -> dict[str, np.ndarray]:
    """Capacity for consecutive blocks of ``horizon`` steps, sized at each block's origin.

    ``forecast``: ``(max_k prediction[k] + margin) * (1 + headroom)`` (the historical peak
    ``max(y[:t+1])`` while the margin is not known yet: 24 blocks for ``"adaptive"``, 288 windows
    for ``"window"``), never above the historical peak when ``cap_at_peak``; ``peak``: the
    historical peak so far. Returns ``demand``, ``forecast`` and ``peak`` capacities per step of
    the blocks (same shape).

    ``margin``: ``"adaptive"`` (default) is :func:`adaptive_capacity`, which steers the share of
    under-provisioned intervals to ``target_under_fraction`` (0.5 %, half the 1 % the sizing
    target allows) on every series; ``"window"`` is the earlier split-conformal margin of
    :func:`forecast_error_margin` at ``error_quantile`` of the per-window largest shortfall, whose
    under-provisioned share depends on the series (1.5 % on the Google 2019 CPU trace, 0.15 % on
    NAB 53ea38, so one trace pays for too much capacity and another is short). Measured by
    ``benchmarks/bench_usage.py`` (docs/USAGE_FORECAST.md): adaptive keeps every trace under 1 %.

    ``sizing_forecast``: the forecast sized from, ``"two_model"`` (default, before selection) or
    ``"selected"`` (``ev.prediction``). The selected forecast has the lower WAPE, but its largest
    shortfall per window is less stable (it switches between candidates): with the adaptive margin
    it under-provisions Alibaba 2018 memory on 1.08 % of intervals (two-model: 0.54 %).

    ``cap_at_peak`` is off by default: a capped plan can never follow growth. On a growing series
    (Azure 2019 memory, whose demand sets new highs: peak sizing under-provisions 2.6 % of
    intervals) capping raises the under-provisioned intervals from 0.86 % to 3.32 %; a "soft" cap
    (only when the point forecast is below the peak) does no better (2.04 %), since noise sets
    the peak above the point forecast. Use it only for a series known not to grow. (Figures:
    ``benchmarks/experiment_sizing_bases.py``.)
    """
    if history is None:
        raise ConfigError("capacity_plan needs history=y (the full series) for the historical peak")
    if sizing_forecast == "selected" or ev.two_model_prediction is None:
        pred = ev.prediction
    elif sizing_forecast == "two_model":
        pred = ev.two_model_prediction
    else:
        raise ConfigError(f"sizing_forecast {sizing_forecast!r} is neither 'two_model' nor 'selected'")
    h = ev.horizon
    blocks = np.arange(0, len(ev.origins), h)
    running_peak = np.maximum.accumulate(np.asarray(history, dtype=float))
    peak = running_peak[ev.origins[blocks]]
    base = np.max(pred[blocks], axis=1)
    if margin == "adaptive":
        sized = adaptive_capacity(base, ev.actual[blocks], target_under_fraction=target_under_fraction, adaptation_rate=adaptation_rate)
    elif margin == "window":
        m = forecast_error_margin(ev, quantile=error_quantile, window=window, prediction=pred)[blocks]
        sized = np.where(np.isnan(m), np.nan, np.maximum(base + np.nan_to_num(m), 0.0))
    else:
        raise ConfigError(f"margin {margin!r} is neither 'adaptive' nor 'window'")
    cap = np.where(np.isnan(sized), peak, sized * (1 + headroom_pct / 100.0))
    if cap_at_peak:
        cap = np.minimum(cap, peak)
    return {
        "demand": ev.actual[blocks],
        "forecast": np.repeat(cap[:, None], h, axis=1),
        "peak": np.repeat(peak[:, None], h, axis=1),
    }
