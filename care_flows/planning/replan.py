"""Receding-horizon re-planning (model-predictive control) of a deferred contiguous job's start.

CaRE defers a run by leaving it a Prefect *Scheduled* run; ``care controller`` looks at it again
every ``replan_every`` with a fresh forecast and plans it anew with the full planner
(``decide``), keeping its window and baseline. This module is that rule for one contiguous job in
one region, pure and vectorised, as the simulator (``care simulate --policy care``) and the
forecast benchmark apply it to a year of jobs:

- at a decision time ``t`` (the arrival, then every slot boundary before the latest start ``L``)
  the forecast is issued at slot ``floor(t)``: it reads only the data **before** that slot;
- options: start now (at ``t``), or start later at a slot boundary in ``(t, L]``, at a start in it whose
  end is a slot boundary, or at ``L`` (the candidates of ``plan_contiguous``, which the controller calls);
- start now iff ``forecast carbon(now) <= (1 - threshold) x min forecast carbon(later)``
  (ties -> now, as the planners' "ties -> earliest"); otherwise wait for the next pass;
- a greenest later start before the next slot boundary (one whose end is a boundary) is where the job
  starts: the controller moves the run there, and its next look comes a pass later;
- at ``L`` the job starts whatever the forecast says, so the deadline is always met.

Times are floats in *steps* (slots of the carbon series); a job over ``[s, s + d)`` emits the
integral of the (step-function) intensity, partial slots pro rata, as in the simulator.

``threshold`` (default :data:`REPLAN_THRESHOLD` = 0; :func:`policy_threshold` gives a policy's, which is
``-tolerance_pct / 100`` when its ``tie_break`` ranks ``earliest`` before ``carbon``, a user's choice, not a fit). 0 was chosen on 2021-2022 only
(``benchmarks/bench_carbon_forecast.py``, ``tune_threshold``): a positive value (wait unless
now is clearly better) and a negative one (start unless later is clearly better) both lost
there, and a threshold fitted per remaining hour by backward induction stayed within 1.5% of 0.

>>> import numpy as np
>>> fc = np.array([300.0, 200.0, 100.0, 400.0])          # issued now, slot 0 is the current one
>>> should_start_now(fc, now=0.0, duration=1.0, latest_start=3.0)   # slot 2 is lower: wait
False
>>> should_start_now(fc, now=0.0, duration=1.0, latest_start=1.0)   # only slot 1 left: 300 > 200
False
>>> should_start_now(fc[2:], now=0.0, duration=1.0, latest_start=1.0)  # now 100 <= 400: go
True
>>> values = np.tile([300.0, 250.0, 100.0, 400.0] + [350.0] * 20, 5)   # five identical days
>>> replan_start_decisions(values, np.array([72.0]), np.array([77.0]), np.array([1.0]), model="seasonal_naive").tolist()
[74.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import pandas as pd

from care_flows.errors import PlanningError

__all__ = [
    "REPLAN_THRESHOLD",
    "policy_threshold",
    "replan_starts",
    "replan_start_decisions",
    "should_start_now",
    "should_start_now_at",
    "forecast_rows_for_slots",
]

REPLAN_THRESHOLD = 0.0
"""Relative margin by which starting now must beat the best later start (chosen on 2021-2022)."""


def policy_threshold(tie_break: Any = None, tolerance_pct: float = 5.0, weights: Mapping[Any, float] | None = None) -> float:
    """The re-planning ``threshold`` that keeps a policy's tie-break within one region, as ``decide()``.

    Within one region every start costs the same and is as far away, so ``decide()`` (lexicographic)
    ties starting now with the greenest later start when now's forecast carbon is within
    ``tolerance_pct`` of it; the tie then goes to now iff ``tie_break`` ranks ``earliest`` before
    ``carbon`` (e.g. ``["home", "earliest"]``: "run now whenever now is within the tolerance of the
    best window"). Then starting now needs ``now <= (1 + tolerance) x best later``, the
    threshold ``-tolerance_pct / 100``; otherwise the greenest start wins, :data:`REPLAN_THRESHOLD`.
    With ``weights`` only equal scores tie: the greenest start wins unless carbon weighs 0 (every
    start then scores the same, so ``earliest`` first starts now whatever the forecast: ``-inf``).
    ``tie_break=None`` is the default ``["home", "carbon", "earliest"]``.

    >>> policy_threshold(), policy_threshold(["home", "earliest"]), policy_threshold(["earliest"], tolerance_pct=2.0)
    (0.0, -0.05, -0.02)
    >>> policy_threshold(["home", "earliest"], weights={"carbon": 1.0}), policy_threshold(["earliest"], weights={"cost": 1.0})
    (0.0, -inf)
    """
    from care_flows.planning.spatial import _tie_names

    ties = _tie_names(tie_break)
    earliest_first = "earliest" in ties and ("carbon" not in ties or ties.index("earliest") < ties.index("carbon"))
    if not earliest_first:
        return REPLAN_THRESHOLD
    if weights:
        carbon_w = sum(float(v) for k, v in weights.items() if str(getattr(k, "value", k)) == "carbon")
        return REPLAN_THRESHOLD if carbon_w > 0 else -math.inf
    return min(REPLAN_THRESHOLD, -float(tolerance_pct) / 100.0)

_EPS = 1e-9

Forecaster = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


def _integral(fcum: np.ndarray, fc: np.ndarray, row: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Integral of forecast row(s) ``row`` over ``[0, k)`` steps after the issue slot (pro rata)."""
    H = fc.shape[1]
    i = np.clip(np.floor(k + _EPS), 0, H - 1).astype(np.int64)
    return fcum[row, i] + (k - i) * fc[row, i]


def _check(arrival: np.ndarray, latest_start: np.ndarray, duration: np.ndarray) -> None:
    if arrival.shape != latest_start.shape or arrival.shape != duration.shape:
        raise PlanningError(f"arrival, latest_start and duration must have one shape; got {arrival.shape}, {latest_start.shape}, {duration.shape}")
    if (duration <= 0).any() or not np.isfinite(duration).all():
        raise PlanningError(f"every duration must be a positive number of steps; got {duration[~(duration > 0)][:1].tolist() or duration[~np.isfinite(duration)][:1].tolist()}")
    bad = np.nonzero(~(latest_start >= arrival - _EPS))[0]
    if len(bad):
        i = int(bad[0])
        raise PlanningError(f"job {i}: latest start {latest_start[i]} is before its arrival {arrival[i]}; give a deadline of at least arrival + duration")


def _go_now(fc, fcum, row, q, t, L, d, factor) -> tuple[np.ndarray, np.ndarray]:
    """One pass for jobs decided at times ``t`` (forecast row ``row``, issued at slot ``q``): start now?
    And the greenest later start (ties: the earliest; ``inf`` when there is none)."""
    now = _integral(fcum, fc, row, t + d - q) - _integral(fcum, fc, row, t - q)
    # later starts: slot boundaries in (t, L], starts that end on a slot boundary, then L itself (the candidates of
    # plan_contiguous, which the controller's re-plan calls: the mean is piecewise linear between them; review 44c L4)
    M = int(np.max(np.floor(L + _EPS) - q)) + 1
    k = np.arange(max(M, 0) + 1)[None, :]
    grid = (q + 1)[:, None] + k[:, :-1]
    ends = np.ceil(t + d - _EPS)[:, None] + k - d[:, None]
    cand = np.concatenate([grid, ends, L[:, None]], axis=1).astype(float)
    ok = (cand <= L[:, None] + _EPS) & (cand > t[:, None] + _EPS)
    cand = np.minimum(cand, L[:, None])
    rel = cand - q[:, None]
    r2 = row[:, None]
    later = _integral(fcum, fc, r2, rel + d[:, None]) - _integral(fcum, fc, r2, rel)
    masked = np.where(ok, later, np.inf)
    best_later = masked.min(axis=1)
    tied = masked <= best_later[:, None] + 1e-9 * np.maximum(np.abs(best_later), 1.0)[:, None]
    best_start = np.where(tied & ok, cand, np.inf).min(axis=1)
    if factor == np.inf:  # threshold -inf: now always wins (policy_threshold)
        return np.ones(len(t), dtype=bool), best_start
    return (now <= factor * best_later + 1e-12 * np.maximum(np.abs(best_later), 1.0)) | (t >= L - _EPS), best_start


def replan_starts(
    fc: np.ndarray,
    row_offset: int,
    arrival: np.ndarray,
    latest_start: np.ndarray,
    duration: np.ndarray,
    *,
    threshold: float = REPLAN_THRESHOLD,
    first_decision: np.ndarray | None = None,
) -> np.ndarray:
    """Start time (steps) of every job under receding-horizon re-planning, on given forecast rows.

    ``fc[i]`` is the forecast issued at slot ``row_offset + i`` (it must use only the data before
    that slot), ``fc[i, k]`` its value for slot ``row_offset + i + k``; it must cover every slot
    from ``floor(first decision)`` to ``floor(latest_start)`` and ``max(latest_start + duration -
    floor(decision time))`` steps ahead. ``first_decision`` (default: the arrival) is the first
    time a job decides; earlier passes are the caller's (e.g. CaRE's plan at arrival deferred the
    job, so its re-planning starts at the next slot boundary). All jobs pending at step ``k`` of
    their lives decide in one numpy step; each reads one row, the one issued at its decision slot.

    >>> fc = np.array([[5.0, 1.0, 9.0], [1.0, 9.0, 9.0], [9.0, 9.0, 9.0]])  # rows issued at 10, 11, 12
    >>> replan_starts(fc, 10, np.array([10.0, 10.5]), np.array([12.0, 10.5]), np.array([1.0, 1.0])).tolist()
    [11.0, 10.5]
    """
    fc = np.asarray(fc, dtype=float)
    a = np.asarray(arrival, dtype=float)
    L = np.asarray(latest_start, dtype=float)
    d = np.asarray(duration, dtype=float)
    _check(a, L, d)
    t = a.copy() if first_decision is None else np.maximum(np.asarray(first_decision, dtype=float), a)
    n = len(a)
    start = np.full(n, np.nan)
    if n == 0:
        return start
    fcum = np.concatenate([np.zeros((fc.shape[0], 1)), np.cumsum(fc, axis=1)], axis=1)
    pending = np.arange(n)
    factor = 1.0 - float(threshold)
    while len(pending):
        tp, Lp, dp = t[pending], L[pending], d[pending]
        forced = tp >= Lp - _EPS
        start[pending[forced]] = Lp[forced]
        keep = ~forced
        pending, tp, Lp, dp = pending[keep], tp[keep], Lp[keep], dp[keep]
        if not len(pending):
            break
        q = np.floor(tp + _EPS).astype(np.int64)
        row = q - row_offset
        if (row < 0).any() or (row >= fc.shape[0]).any():
            raise PlanningError(f"forecast rows cover slots {row_offset}..{row_offset + fc.shape[0] - 1}; a decision needs slot {int(q[(row < 0) | (row >= fc.shape[0])][0])}")
        go, best = _go_now(fc, fcum, row, q, tp, Lp, dp, factor)
        nxt = np.floor(tp + _EPS) + 1.0  # the next pass: the next slot boundary
        # a later start before the next pass (one that ends on a slot boundary) is where the run is moved, and it starts
        # there: the controller's next look is a pass later (review 44c L4)
        go_there = ~go & (best < nxt - _EPS)
        start[pending[go]] = tp[go]
        start[pending[go_there]] = best[go_there]
        wait = ~go & ~go_there
        pending = pending[wait]
        t[pending] = nxt[wait]
    return start


def forecast_rows_for_slots(values: np.ndarray, first_slot: int, last_slot: int, horizon_steps: int, *, steps_per_day: int = 24, model: str = "default", forecaster: Forecaster | None = None) -> np.ndarray:
    """One forecast row per slot ``first_slot..last_slot`` (row ``i`` reads ``values[:first_slot + i]``).

    ``forecaster(values, issue_idx, horizon_steps, steps_per_day)`` replaces
    :func:`care_flows.forecast.carbon.forecast_matrix` (tests inject hand-made forecasts).
    """
    issues = np.arange(int(first_slot), int(last_slot) + 1)
    if forecaster is not None:
        return np.asarray(forecaster(np.asarray(values, dtype=float), issues, int(horizon_steps), int(steps_per_day)), dtype=float)
    from care_flows.forecast.carbon import forecast_matrix

    return forecast_matrix(np.asarray(values, dtype=float), issues, int(horizon_steps), steps_per_day=steps_per_day, model=model)


def replan_start_decisions(
    values: np.ndarray,
    arrival: np.ndarray,
    latest_start: np.ndarray,
    duration: np.ndarray,
    *,
    steps_per_day: int = 24,
    model: str = "default",
    forecaster: Forecaster | None = None,
    threshold: float = REPLAN_THRESHOLD,
) -> np.ndarray:
    """Re-planned start (steps since ``values[0]``) of each job, forecasts re-issued at every slot.

    ``values`` is the real series (gCO2eq/kWh per slot); the decision at time ``t`` sees only
    ``values[:floor(t)]``. Arrivals, latest starts and durations are in steps (floats allowed);
    the start is in ``[arrival, latest_start]``, so a job that finishes by ``latest_start +
    duration`` always does. Arrivals need at least one slot of history (``arrival >= 1``).
    """
    a = np.asarray(arrival, dtype=float)
    L = np.asarray(latest_start, dtype=float)
    d = np.asarray(duration, dtype=float)
    _check(a, L, d)
    if len(a) == 0:
        return np.zeros(0)
    if (a < 1 - _EPS).any():
        raise PlanningError(f"arrival {float(a.min())} leaves no history before it; arrivals must be at step 1 or later")
    first = int(np.floor(a.min() + _EPS))
    last = int(np.floor(L.max() + _EPS))
    H = int(np.ceil(np.max(L + d - np.floor(a + _EPS)) + _EPS)) + 1
    fc = forecast_rows_for_slots(values, first, last, H, steps_per_day=steps_per_day, model=model, forecaster=forecaster)
    return replan_starts(fc, first, a, L, d, threshold=threshold)


def should_start_now(forecast: np.ndarray, *, now: float, duration: float, latest_start: float, threshold: float = REPLAN_THRESHOLD) -> bool:
    """The controller's rule for one deferred run: start it at ``now``, or leave it scheduled?

    ``forecast[k]`` is the forecast (issued at the current slot, from past data only) of slot
    ``k``; ``now``, ``duration`` and ``latest_start`` are in steps from the start of slot 0.
    Same rule as :func:`replan_starts` (tested to agree): True when ``now >= latest_start``.
    """
    fc = np.asarray(forecast, dtype=float)[None, :]
    if not 0 <= now < 1:
        raise PlanningError(f"now={now} must lie in the forecast's first slot [0, 1); re-issue the forecast at the current slot")
    if not duration > 0:
        raise PlanningError(f"duration must be a positive number of steps; got {duration}")
    L = max(float(latest_start), float(now))
    if L + duration > fc.shape[1] + _EPS:
        raise PlanningError(f"the forecast has {fc.shape[1]} slots, fewer than latest start + duration = {L + duration}; give a longer horizon")
    fcum = np.concatenate([np.zeros((1, 1)), np.cumsum(fc, axis=1)], axis=1)
    z = np.zeros(1, dtype=np.int64)
    go, _ = _go_now(fc, fcum, z, z, np.array([float(now)]), np.array([L]), np.array([float(duration)]), 1.0 - float(threshold))
    return bool(go[0])


def should_start_now_at(forecast: pd.Series, now: pd.Timestamp, duration: pd.Timedelta, latest_start: pd.Timestamp, *, threshold: float = REPLAN_THRESHOLD) -> bool:
    """:func:`should_start_now` on a forecast Series (regular UTC index starting at the slot holding ``now``).

    A forecast that starts at the next slot boundary instead (``forecast_carbon(history, now,
    ...)`` starts at the first step at or after ``now``) is accepted too: the rest of the current
    slot is taken at the first forecast value.

    >>> idx = pd.date_range("2023-01-01T10:00Z", periods=4, freq="h")
    >>> fc = pd.Series([300.0, 200.0, 100.0, 400.0], index=idx)
    >>> should_start_now_at(fc, pd.Timestamp("2023-01-01T10:20Z"), pd.Timedelta("1h"), pd.Timestamp("2023-01-01T12:30Z"))
    False
    >>> should_start_now_at(fc, pd.Timestamp("2023-01-01T10:20Z"), pd.Timedelta("1h"), pd.Timestamp("2023-01-01T10:20Z"))
    True
    """
    if len(forecast) < 2:
        raise PlanningError("the forecast needs at least two slots to know its step; give a longer forecast")
    step = forecast.index[1] - forecast.index[0]
    t0 = forecast.index[0]
    if t0 - step <= now < t0:
        t0 = t0 - step
        forecast = pd.Series(np.r_[forecast.iloc[0], forecast.to_numpy(dtype=float)], index=pd.DatetimeIndex([t0]).append(forecast.index))
    rel = lambda x: float((x - t0) / step)  # noqa: E731
    n = rel(now)
    if not 0 <= n < 1:
        raise PlanningError(f"now {now.isoformat()} is not in the forecast's first slot starting {t0.isoformat()}; re-issue the forecast at now")
    need = rel(latest_start) + float(duration / step)
    if need > len(forecast) + _EPS:
        raise PlanningError(f"the forecast ends {(t0 + len(forecast) * step).isoformat()}, before latest start + duration; give a longer horizon")
    return should_start_now(forecast.to_numpy(dtype=float), now=n, duration=float(duration / step), latest_start=rel(latest_start), threshold=threshold)
