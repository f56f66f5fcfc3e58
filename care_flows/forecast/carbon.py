"""Carbon-intensity forecasts for sources that have none (embedded traces, CSVs, free API tiers).

Contract (used by the signals, planning and simulation layers)::

    forecast_carbon(history, issued_at, horizon, model="default") -> pd.Series

- uses only the rows of ``history`` strictly before ``issued_at`` (no peeking);
- returns gCO2eq/kWh on the history's step, from ``issued_at`` (floored to the step) over
  ``horizon``, named ``g_per_kwh``, with ``attrs["forecast_model"]`` and ``attrs["issued_at"]``.

>>> import pandas as pd
>>> idx = pd.date_range("2023-01-01", periods=72, freq="h", tz="UTC")
>>> hist = pd.Series(range(72), index=idx, dtype=float)
>>> fc = forecast_carbon(hist, pd.Timestamp("2023-01-03T00:00Z"), pd.Timedelta("3h"), model="seasonal_naive")
>>> fc.tolist()
[24.0, 25.0, 26.0]
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from care_flows.errors import ConfigError, DataError

__all__ = ["forecast_carbon", "FORECAST_MODELS"]


def _step(history: pd.Series) -> pd.Timedelta:
    if len(history) < 2:
        raise DataError("carbon history has fewer than 2 points; give at least one day of data before the issue time")
    return pd.Timedelta(history.index[1] - history.index[0])


def _seasonal_naive(past: np.ndarray, n_day: int, n_out: int) -> np.ndarray:
    """Same slot one day earlier, repeated."""
    if len(past) < n_day:
        return np.full(n_out, past[-1])
    day = past[-n_day:]
    return np.resize(day, n_out)


FORECAST_MODELS = {"seasonal_naive": _seasonal_naive}
DEFAULT_MODEL = "seasonal_naive"


def forecast_carbon(
    history: pd.Series,
    issued_at: pd.Timestamp,
    horizon: timedelta | pd.Timedelta,
    model: str = "default",
) -> pd.Series:
    """Forecast gCO2eq/kWh from ``issued_at`` over ``horizon`` using only history before ``issued_at``."""
    name = DEFAULT_MODEL if model == "default" else model
    if name not in FORECAST_MODELS:
        raise ConfigError(f"unknown forecast model {model!r}; use one of {sorted(FORECAST_MODELS)} or 'default'")
    step = _step(history)
    issued_at = pd.Timestamp(issued_at)
    start = issued_at.floor(step) if issued_at.floor(step) == issued_at else issued_at.ceil(step)
    past = history[history.index < issued_at].to_numpy(dtype=float)
    if len(past) == 0:
        raise DataError(f"no carbon history before {issued_at.isoformat()}; the forecast needs past data")
    n_day = int(pd.Timedelta("1D") / step)
    n_out = int(np.ceil(pd.Timedelta(horizon) / step))
    values = FORECAST_MODELS[name](past, n_day, n_out)
    out = pd.Series(values, index=pd.date_range(start, periods=n_out, freq=step), name="g_per_kwh")
    out.attrs.update({"forecast_model": name, "issued_at": issued_at})
    return out
