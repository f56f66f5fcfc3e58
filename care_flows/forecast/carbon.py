"""Carbon-intensity forecasts for sources that have none (embedded traces, CSVs, free API tiers).

Contract (used by the signals, planning and simulation layers)::

    forecast_carbon(history, issued_at, horizon, model="default") -> pd.Series
    forecast_matrix(values, issue_idx, horizon_steps, steps_per_day=24, model="default") -> np.ndarray

- a forecast issued at ``issued_at`` uses only the rows of ``history`` strictly before
  ``issued_at`` (no peeking); ``forecast_matrix`` row ``i`` uses only ``values[:issue_idx[i]]``;
- ``forecast_carbon`` returns gCO2eq/kWh on the history's step, from the first step at or after
  ``issued_at`` over ``horizon``, named ``g_per_kwh``, with ``attrs["forecast_model"]`` (the model
  actually used, see the fallbacks below) and ``attrs["issued_at"]``.

Models (``model=``):

- ``"default"`` = ``"ridge"``: a per-lead-hour linear model without intercept (hence scale-free:
  it works for any zone or unit) on 19 features of the past: the last 6 hourly means, the same
  slot 1..7 days before the target and their mean, the issue slot's value 1 and 2 days earlier
  and its 7-day mean, the last-24 h and last-7-day means. Its coefficients ``RIDGE_COEF`` were
  fitted once by :func:`fit_ridge` (ridge, ``lam=100``, every hourly issue time of 2021-2022,
  targets before 2023-01-01, the five embedded zones pooled, each sample divided by its last-24 h
  mean) and are stored as constants; no 2023 data was used. Leads of more than 24 h reuse the
  23 h coefficients with the daily lags moved to the latest known day.
- ``"seasonal_naive"``: the same slot one day earlier (the last known day, repeated).
- ``"mean_7d"``: the mean of the same slot over the last 7 known days.
- ``"persistence"``: the last value.

Short histories degrade instead of failing: with fewer than ``7 * steps_per_day + 1`` past
values the ridge model falls back to ``"profile_persistence"`` (the hour-of-day profile of the
available whole days, shifted by the latest level offset, offset decaying by ``0.8`` per lead
hour); with under a day of history (fewer than ``steps_per_day`` past values, ``+ 1`` for
the ridge model) every model falls back to ``"persistence"``. Missing values (NaN/inf) in the past are forward-filled (a causal operation).

>>> import pandas as pd
>>> idx = pd.date_range("2023-01-01", periods=72, freq="h", tz="UTC")
>>> hist = pd.Series(range(72), index=idx, dtype=float)
>>> fc = forecast_carbon(hist, pd.Timestamp("2023-01-03T00:00Z"), pd.Timedelta("3h"), model="seasonal_naive")
>>> fc.tolist()
[24.0, 25.0, 26.0]
>>> values = np.tile(np.r_[np.full(12, 300.0), np.full(12, 100.0)], 30)  # 30 days, hourly
>>> forecast_matrix(values, np.array([24 * 10, 24 * 20 + 6]), 24).shape
(2, 24)
>>> fc = forecast_matrix(values, np.array([24 * 10]), 24)[0]
>>> bool(fc[2:12].min() > 250 and fc[12:].max() < 150)  # the daily shape is kept
True
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError
from care_flows.timeutil import duration_arg

__all__ = [
    "forecast_carbon",
    "forecast_matrix",
    "fit_ridge",
    "ridge_features",
    "model_used",
    "FORECAST_MODELS",
    "DEFAULT_MODEL",
    "RIDGE_COEF",
]

FORECAST_MODELS = ("ridge", "seasonal_naive", "mean_7d", "persistence")
DEFAULT_MODEL = "ridge"
PROFILE_DECAY_PER_HOUR = 0.8
N_FEATURES = 19
_CHUNK_CELLS = 1 << 20  # rows x horizon steps computed at once (bounds memory)

# Fitted by fit_ridge([embedded_intensity(z)[:"2022"] for z in ES SE DE FR GB], lam=100):
# one row per lead hour 0..23, one column per feature of ridge_features (see tests).
RIDGE_COEF = np.array(
    [
        [0.96049, 0.04558, -0.04467, -0.03200, -0.01652, 0.00381, 0.15873, 0.11834, 0.04084, 0.03630, 0.03743, 0.04193, 0.04169, 0.06789, -0.14366, -0.07895, -0.28464, 0.07476, -0.02712],
        [0.94086, 0.03063, -0.05283, -0.03332, -0.01701, 0.01787, 0.21122, 0.12485, 0.05954, 0.05188, 0.05504, 0.06234, 0.06678, 0.09023, -0.17944, -0.06281, -0.41037, 0.07246, -0.02730],
        [0.90640, 0.02290, -0.05189, -0.03356, -0.01498, 0.03254, 0.23428, 0.11909, 0.06774, 0.05635, 0.06303, 0.07236, 0.08157, 0.09920, -0.18983, -0.04437, -0.45321, 0.05968, -0.02629],
        [0.86529, 0.02167, -0.05109, -0.03175, -0.00309, 0.03765, 0.25003, 0.11334, 0.07187, 0.05642, 0.06732, 0.07812, 0.09160, 0.10410, -0.19341, -0.03003, -0.46343, 0.04266, -0.02585],
        [0.82468, 0.01955, -0.04882, -0.01952, 0.00490, 0.03610, 0.26157, 0.10901, 0.07367, 0.05566, 0.06963, 0.08180, 0.09939, 0.10725, -0.19195, -0.01926, -0.46122, 0.02366, -0.02426],
        [0.78369, 0.01822, -0.03622, -0.01117, 0.00588, 0.03360, 0.26793, 0.10463, 0.07519, 0.05501, 0.07069, 0.08528, 0.10615, 0.10927, -0.18742, -0.00945, -0.45504, 0.00877, -0.02282],
        [0.74245, 0.02734, -0.02764, -0.00947, 0.01105, 0.02526, 0.26817, 0.10165, 0.07696, 0.05420, 0.07127, 0.08845, 0.11226, 0.11042, -0.18010, -0.00212, -0.44739, 0.00054, -0.02079],
        [0.71075, 0.03272, -0.02517, -0.00309, 0.01091, 0.01566, 0.26355, 0.10076, 0.07828, 0.05303, 0.07164, 0.09081, 0.11761, 0.11081, -0.17378, 0.00261, -0.43640, 0.00068, -0.01855],
        [0.68448, 0.03199, -0.01877, -0.00191, 0.01660, -0.00268, 0.25426, 0.10078, 0.07902, 0.05197, 0.07165, 0.09250, 0.12237, 0.11036, -0.16974, 0.00622, -0.42349, 0.01283, -0.01536],
        [0.65896, 0.03611, -0.01735, 0.00445, 0.00745, -0.01332, 0.24318, 0.10093, 0.07978, 0.05085, 0.07127, 0.09388, 0.12687, 0.10954, -0.16708, 0.00910, -0.40984, 0.03014, -0.01157],
        [0.64121, 0.03545, -0.01030, -0.00470, -0.00682, -0.00680, 0.23597, 0.10123, 0.08091, 0.04974, 0.07045, 0.09529, 0.13096, 0.10922, -0.16442, 0.01116, -0.39364, 0.03934, -0.01067],
        [0.62704, 0.04026, -0.01885, -0.01923, -0.01304, 0.00976, 0.23394, 0.10167, 0.08252, 0.04844, 0.06934, 0.09699, 0.13466, 0.10965, -0.15992, 0.01260, -0.37513, 0.03626, -0.01313],
        [0.62132, 0.03027, -0.03258, -0.02563, -0.01479, 0.02880, 0.23325, 0.10264, 0.08341, 0.04733, 0.06786, 0.09914, 0.13811, 0.11025, -0.15573, 0.01469, -0.35676, 0.02865, -0.01613],
        [0.60944, 0.01513, -0.03896, -0.02837, -0.01184, 0.04433, 0.23314, 0.10329, 0.08448, 0.04564, 0.06554, 0.10107, 0.14098, 0.11059, -0.15183, 0.01581, -0.33908, 0.01969, -0.01471],
        [0.58584, 0.00734, -0.04174, -0.02633, -0.01002, 0.05917, 0.23047, 0.10378, 0.08551, 0.04385, 0.06306, 0.10248, 0.14369, 0.11041, -0.14769, 0.01659, -0.32392, 0.01115, -0.00905],
        [0.55626, 0.00265, -0.03940, -0.02451, 0.00255, 0.06413, 0.22506, 0.10393, 0.08630, 0.04193, 0.06018, 0.10330, 0.14575, 0.10949, -0.14361, 0.01696, -0.31130, 0.00290, 0.00224],
        [0.52228, 0.00310, -0.03702, -0.01161, 0.01166, 0.06708, 0.21304, 0.10488, 0.08665, 0.03963, 0.05689, 0.10318, 0.14716, 0.10735, -0.14163, 0.01724, -0.29966, -0.00358, 0.01841],
        [0.48805, 0.00378, -0.02315, -0.00157, 0.02361, 0.07759, 0.18258, 0.10748, 0.08725, 0.03741, 0.05357, 0.10295, 0.14797, 0.10275, -0.14130, 0.01722, -0.28753, -0.00922, 0.03581],
        [0.45274, 0.01632, -0.01071, 0.01435, 0.05494, 0.10625, 0.10625, 0.11080, 0.08938, 0.03565, 0.05102, 0.10276, 0.14899, 0.09212, -0.13943, 0.01602, -0.27182, -0.02139, 0.05122],
        [0.42878, 0.02774, 0.00950, 0.05381, 0.07501, 0.06840, 0.07501, 0.11176, 0.09115, 0.03289, 0.04784, 0.10098, 0.14843, 0.08687, -0.13162, 0.01376, -0.24962, -0.04620, 0.06118],
        [0.41526, 0.04304, 0.04707, 0.07183, 0.06072, 0.01511, 0.07183, 0.11181, 0.09288, 0.02884, 0.04396, 0.09775, 0.14619, 0.08475, -0.12642, 0.01070, -0.22018, -0.05683, 0.06755],
        [0.41340, 0.07883, 0.06924, 0.05778, 0.02058, -0.00017, 0.06924, 0.10683, 0.09359, 0.02180, 0.03754, 0.09167, 0.13934, 0.08000, -0.11941, 0.00610, -0.17176, -0.06424, 0.07561],
        [0.44194, 0.09057, 0.04961, 0.01467, 0.01029, -0.00718, 0.09057, 0.07846, 0.08526, 0.00937, 0.02545, 0.08019, 0.12343, 0.07039, -0.09447, 0.00564, -0.08683, -0.06916, 0.08787],
        [0.32967, 0.01847, -0.00933, -0.00298, -0.00396, -0.00747, 0.32967, -0.01570, 0.03848, -0.00761, 0.00837, 0.06378, 0.10095, 0.07399, -0.01570, 0.03848, 0.01640, -0.04835, 0.09890],
    ]
)


def _ffill(values: np.ndarray) -> np.ndarray:
    """Causal forward fill of non-finite values (a position only depends on earlier ones)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if ok.all():
        return v
    pos = np.where(ok, np.arange(len(v)), 0)
    np.maximum.accumulate(pos, out=pos)
    out = v[pos]
    out[~np.isfinite(out)] = np.nan  # leading non-finite values stay missing
    return out


def _lead_geometry(horizon_steps: int, steps_per_day: int):
    h = np.arange(horizon_steps)
    sph = max(1, steps_per_day // 24)  # steps per hour (1 for hourly and coarser data)
    lead_hour = np.minimum(h // sph, 23)
    d0 = h // steps_per_day + 1  # first whole day back whose same slot is known
    return h, sph, lead_hour, d0


# Feature order (columns of RIDGE_COEF): 0-5 the last 6 hourly means (most recent first);
# 6-12 the target's slot 1..7 known days back; 13 their mean; 14-15 the slot before the issue
# 1 and 2 days back; 16 its 7-day mean; 17 the last-24 h mean (the fit's scale); 18 the last-7-day mean.
_ROW_FEATURES = [0, 1, 2, 3, 4, 5, 14, 15, 16, 17, 18]  # features constant over the leads of a row


def _row_features(y: np.ndarray, t: np.ndarray, spd: int) -> np.ndarray:
    """The 11 per-row features (``_ROW_FEATURES`` order), shape ``(len(t), 11)``."""
    sph = max(1, spd // 24)
    csum = np.concatenate([[0.0], np.cumsum(y[: int(t.max())])])
    cols = [(csum[t - (k - 1) * sph] - csum[t - k * sph]) / sph for k in range(1, 7)]
    now_lags = [y[t - 1 - d * spd] for d in range(1, 8)]
    cols += [now_lags[0], now_lags[1], np.mean(now_lags, axis=0)]
    cols += [(csum[t] - csum[t - spd]) / spd, (csum[t] - csum[t - 7 * spd]) / (7 * spd)]
    return np.stack(cols, axis=1)


def _day_lag_index(t: np.ndarray, horizon_steps: int, spd: int, d: int) -> np.ndarray:
    """Index of each target's slot ``d`` known days back (days shift for leads beyond a day)."""
    h, _, _, d0 = _lead_geometry(horizon_steps, spd)
    return t[:, None] + h - (d0 - 1 + d) * spd


def ridge_features(values: np.ndarray, issue_idx: np.ndarray, horizon_steps: int, steps_per_day: int = 24) -> np.ndarray:
    """Feature tensor ``(len(issue_idx), horizon_steps, 19)`` of the ridge model (fitting and tests).

    Every row needs ``issue_idx >= 7 * steps_per_day + 1`` and reads only ``values[:issue_idx]``.
    """
    y = np.asarray(values, dtype=float)
    t = np.asarray(issue_idx, dtype=np.int64)
    out = np.empty((len(t), horizon_steps, N_FEATURES))
    out[:, :, _ROW_FEATURES] = _row_features(y, t, steps_per_day)[:, None, :]
    for d in range(1, 8):
        out[:, :, 5 + d] = y[_day_lag_index(t, horizon_steps, steps_per_day, d)]
    out[:, :, 13] = out[:, :, 6:13].mean(axis=2)
    return out


def _ridge_fast(y: np.ndarray, t: np.ndarray, horizon_steps: int, spd: int) -> np.ndarray:
    """``ridge_features(...) . RIDGE_COEF[lead]`` computed without building the feature tensor."""
    _, _, lead_hour, _ = _lead_geometry(horizon_steps, spd)
    coef = RIDGE_COEF[lead_hour]  # (horizon_steps, 19)
    # Element-wise sums only (no BLAS): a row's result must not depend on the batch around it.
    row = _row_features(y, t, spd)
    per_hour = np.zeros((len(t), 24))
    for f, col in enumerate(_ROW_FEATURES):
        per_hour += row[:, f : f + 1] * RIDGE_COEF[:, col]
    acc = per_hour[:, lead_hour]
    # Target slot h, d known days back, is y[t - d * spd + (h mod spd)]: a contiguous window.
    width = min(spd, horizon_steps)
    windows = np.lib.stride_tricks.sliding_window_view(y, width)
    wrap = np.arange(horizon_steps) % spd
    for d in range(1, 8):  # the 7-day mean's weight is spread over the 7 daily lags
        lag = windows[t - d * spd]
        if horizon_steps > width:
            lag = lag[:, wrap]
        acc += lag * (coef[:, 5 + d] + coef[:, 13] / 7)
    return acc


def fit_ridge(series: list[np.ndarray], lam: float = 100.0, steps_per_day: int = 24) -> np.ndarray:
    """Fit the ridge coefficients ``(24, 19)`` on whole past series (pooled, scale-normalised).

    Every issue time with a full feature window and all 24 targets inside the series is used;
    pass only training data (e.g. ``embedded_intensity(z)[:"2022"]``) to keep a test year out.
    """
    xs, ys = [], []
    for s in series:
        y = _ffill(np.asarray(s, dtype=float))
        issues = np.arange(7 * steps_per_day + 1, len(y) - 24 + 1)
        x = ridge_features(y, issues, 24, steps_per_day)
        target = y[issues[:, None] + np.arange(24)]
        scale = x[:, :, 17:18]
        xs.append(x / scale)
        ys.append(target / scale[:, :, 0])
    x = np.concatenate(xs)
    target = np.concatenate(ys)
    coef = np.empty((24, N_FEATURES))
    for lead in range(24):
        a = x[:, lead, :]
        coef[lead] = np.linalg.solve(a.T @ a + lam * np.eye(N_FEATURES), a.T @ target[:, lead])
    return coef


def model_used(model: str, n_past: Any, steps_per_day: int = 24) -> Any:
    """Name of the model actually applied to a row with ``n_past`` past values (after fallbacks);
    an array of counts gives an array of names (one call for every issue slot of a simulation).

    >>> model_used("default", 200), model_used("default", np.array([10, 30, 200])).tolist()
    ('ridge', ['persistence', 'profile_persistence', 'ridge'])
    """
    name = _resolve(model)
    n = np.asarray(n_past)
    used = np.where(n < _min_day(name, steps_per_day), "persistence",
                    np.where((name == "ridge") & (n < 7 * steps_per_day + 1), "profile_persistence", name))
    return str(used) if used.ndim == 0 else used


def _min_day(name: str, steps_per_day: int) -> int:
    """Fewest past values for a daily model (the ridge profile also needs the slot before the issue)."""
    return steps_per_day + 1 if name == "ridge" else steps_per_day


def _resolve(model: str) -> str:
    name = DEFAULT_MODEL if model == "default" else model
    if name not in FORECAST_MODELS:
        raise ConfigError(f"unknown forecast model {model!r}; use one of {sorted(FORECAST_MODELS)} or 'default'")
    return name


def _same_slot_mean(y, t, h, d0, spd, n_days):
    """Mean of the same slot over up to ``n_days`` known days (only indices >= 0 count)."""
    total = np.zeros((t.shape[0], len(h)))
    count = np.zeros_like(total)
    for d in range(1, n_days + 1):
        idx = t + h - (d0 - 1 + d) * spd
        ok = idx >= 0
        total += np.where(ok, y[np.maximum(idx, 0)], 0.0)
        count += ok
    return total / np.maximum(count, 1)


def _forecast_chunk(y: np.ndarray, t: np.ndarray, horizon_steps: int, spd: int, name: str) -> np.ndarray:
    h, sph, lead_hour, d0 = _lead_geometry(horizon_steps, spd)
    if name == "ridge" and t.min() >= 7 * spd + 1:
        return _ridge_fast(y, t, horizon_steps, spd)
    tt = t[:, None]
    out = np.broadcast_to(y[tt - 1], (len(t), horizon_steps)).copy()  # persistence (also the fallback)
    day = t >= _min_day(name, spd)
    if name == "persistence" or not day.any():
        return out
    td = tt[day]
    if name == "seasonal_naive":
        out[day] = y[td - spd + (h % spd)]
        return out
    if name == "mean_7d":
        out[day] = _same_slot_mean(y, td, h, d0, spd, 7)
        return out
    # ridge: the linear model with a full week of history, else profile + decaying level offset
    full = t >= 7 * spd + 1
    if full.any():
        out[full] = _ridge_fast(y, t[full], horizon_steps, spd)
    short = day & ~full
    if short.any():
        ts = tt[short]
        profile = _same_slot_mean(y, ts, h, d0, spd, 7)
        now_profile = _same_slot_mean(y, ts - 1, np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), spd, 7)
        offset = y[ts - 1] - now_profile
        out[short] = profile + offset * PROFILE_DECAY_PER_HOUR ** (h / sph)
    return out


def forecast_matrix(
    values: np.ndarray,
    issue_idx: np.ndarray,
    horizon_steps: int,
    steps_per_day: int = 24,
    model: str = "default",
) -> np.ndarray:
    """Forecasts for many issue times at once, shape ``(len(issue_idx), horizon_steps)``.

    Row ``i`` is issued at the start of slot ``issue_idx[i]`` and uses only
    ``values[:issue_idx[i]]``; column ``k`` forecasts slot ``issue_idx[i] + k``. Values may
    extend beyond the issue times (they are never read). ``steps_per_day`` is 24 for hourly,
    96 for 15-minute and 288 for 5-minute data.

    >>> v = np.arange(48, dtype=float)
    >>> forecast_matrix(v, np.array([24, 30]), 2, model="seasonal_naive").tolist()
    [[0.0, 1.0], [6.0, 7.0]]
    >>> forecast_matrix(v, np.array([5]), 2).tolist()  # under a day of history: persistence
    [[4.0, 4.0]]

    A history that is never negative (an intensity) gets a forecast that is never negative.
    """
    name = _resolve(model)
    if steps_per_day < 1 or horizon_steps < 1:
        raise ConfigError(f"steps_per_day={steps_per_day} and horizon_steps={horizon_steps} must both be >= 1")
    issue = np.asarray(issue_idx, dtype=np.int64).reshape(-1)
    if issue.size == 0:
        return np.empty((0, horizon_steps))
    y = _ffill(np.asarray(values, dtype=float))
    finite = np.flatnonzero(np.isfinite(y))
    first = int(finite[0]) if finite.size else len(y)
    if issue.min() <= first or issue.max() > len(y):
        bad = int(issue.min()) if issue.min() <= first else int(issue.max())
        raise DataError(
            f"issue index {bad} has no finite carbon value before it or lies beyond the {len(y)} values; "
            "give at least one past value before every issue time"
        )
    y = y.copy()
    y[:first] = y[first]  # only reached by rows whose past contains `first`
    uniq, inverse = np.unique(issue, return_inverse=True)
    distinct = len(uniq) == len(issue)
    todo = issue if distinct else uniq  # rows are independent: order does not matter
    out = np.empty((len(todo), horizon_steps))
    rows = max(1, _CHUNK_CELLS // horizon_steps)
    for lo in range(0, len(todo), rows):
        out[lo : lo + rows] = _forecast_chunk(y, todo[lo : lo + rows], horizon_steps, steps_per_day, name)
    # an intensity is never negative; the ridge's lead and level terms can dip below 0 near 0 (review 42c H1): a row
    # whose past was never negative is clipped at 0, judged on that past alone (not the whole array: review 55d M1)
    never_negative = np.minimum.accumulate(y)[todo - 1] >= 0
    out[never_negative] = np.maximum(out[never_negative], 0.0)
    return out if distinct else out[inverse]


def _step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise DataError("carbon history has fewer than 2 points; give at least one day of data before the issue time")
    diffs = pd.TimedeltaIndex(index[1:] - index[:-1])
    diffs = diffs[diffs > pd.Timedelta(0)]
    if len(diffs) == 0:
        raise DataError("carbon history index is not increasing; sort it and drop duplicate times")
    return pd.Timedelta(diffs.median())


def forecast_carbon(
    history: pd.Series,
    issued_at: pd.Timestamp,
    horizon: timedelta | pd.Timedelta,
    model: str = "default",
) -> pd.Series:
    """Forecast gCO2eq/kWh from ``issued_at`` over ``horizon`` using only history before ``issued_at``.
    Both carry a time zone (a naive one is a :class:`DataError`, as in the planners: local times
    read as UTC would plan hours off).

    The history is put on a regular grid of its (median) step, at the phase most of its rows
    have, from its first row up to the forecast start; a row off that grid counts in the slot it
    lies in (the last of a slot wins); missing slots are forward-filled. Same code path as
    :func:`forecast_matrix`.

    >>> idx = pd.date_range("2023-01-01", periods=24 * 9, freq="15min", tz="UTC")
    >>> hist = pd.Series(200.0, index=idx)
    >>> fc = forecast_carbon(hist, idx[-1] + pd.Timedelta("15min"), pd.Timedelta("1h"))
    >>> fc.round(6).tolist(), fc.attrs["forecast_model"]
    ([200.0, 200.0, 200.0, 200.0], 'profile_persistence')
    """
    name = _resolve(model)
    issued_at = pd.Timestamp(issued_at)
    if issued_at.tzinfo is None:  # as the planners: a naive local time read as UTC planned 2 h off (review 45e M4)
        raise DataError(f"issued_at {issued_at.isoformat()} has no time zone; give it with an offset, e.g. "
                        f"pd.Timestamp('{issued_at.isoformat()}', tz='UTC') for UTC")
    try:
        index = pd.DatetimeIndex(history.index)
    except (TypeError, ValueError) as exc:  # mixed UTC offsets and no utc=True: pandas refuses (review 55d L2)
        raise DataError(f"carbon history index is not one time zone ({' '.join(str(exc).split())[:120]}); convert it to UTC first, "
                        "e.g. history.index = pd.to_datetime(history.index, utc=True)") from None
    if index.tz is None:
        from care_flows.planning.windows import naive_index_error

        raise naive_index_error(index) if len(index) else DataError("no carbon history; the forecast needs past data")
    past_mask = index < issued_at
    past_index = index[past_mask]
    if len(past_index) == 0:
        raise DataError(f"no carbon history before {issued_at.isoformat()}; the forecast needs past data")
    past = pd.Series(np.asarray(history, dtype=float)[past_mask], index=past_index).sort_index(kind="stable")
    past_index = past.index
    step = _step(past_index if len(past_index) >= 2 else index.sort_values())  # the past's own step (review 55d L1)
    steps_per_day = int(round(pd.Timedelta("1D") / step))
    if steps_per_day < 1 or abs(pd.Timedelta("1D") / step - steps_per_day) > 1e-9:
        raise DataError(f"carbon history step {step} does not divide one day; resample it to 5 min, 15 min or 1 h")
    # the grid: the step, at the phase most rows have; a row off it (a stray :30 row, a stamp 1 s late) falls in
    # the slot it lies in (the last one there wins), not dropped for an exact-match reindex (review 55d M2)
    ns, step_ns = past_index.as_unit("ns").asi8, int(step.value)
    phases, counts = np.unique(ns % step_ns, return_counts=True)
    phase = int(phases[np.argmax(counts)])
    origin_ns = int(ns[0]) - (int(ns[0]) - phase) % step_ns
    origin = pd.Timestamp(origin_ns, tz="UTC").tz_convert(past_index.tz)
    n_past = int(np.ceil((issued_at - origin) / step))  # slots from origin up to the forecast start
    start = origin + n_past * step
    values = np.full(n_past, np.nan)
    values[(ns - origin_ns) // step_ns] = past.to_numpy(dtype=float)
    span = duration_arg(horizon, name="forecast horizon")  # a bare number is seconds, not pandas' nanoseconds
    n_out = max(1, int(np.ceil(span / step)))  # a window shorter than a step (a 40-minute deadline on hourly data): one step
    fc = forecast_matrix(values, np.array([n_past]), n_out, steps_per_day, name)[0]
    out = pd.Series(fc, index=pd.date_range(start, periods=n_out, freq=step), name="g_per_kwh")
    out.attrs.update({"forecast_model": model_used(name, n_past, steps_per_day), "issued_at": issued_at})
    return out
