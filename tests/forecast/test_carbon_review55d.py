"""Review 55d: the carbon forecast reads only the past. M1: whether to clip at 0 was judged on the whole
array, so one negative value years after the issue changed an earlier row. M2: rows off the first row's
grid were dropped (an exact-match reindex) and the first value carried over the whole history, labelled
ridge. L1: the step came from future timestamps too. L2: mixed UTC offsets gave a raw pandas error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from care_flows.data import embedded_intensity
from care_flows.errors import DataError
from care_flows.forecast.carbon import forecast_carbon, forecast_matrix


def test_m1_a_negative_value_after_the_issue_does_not_change_the_clip_of_an_earlier_row():
    v = embedded_intensity("SE", "direct").to_numpy(dtype=float)  # the ridge dips below 0 here (review 42c H1)
    issues = np.arange(24 * 8, 24 * 60)
    honest = forecast_matrix(v, issues, 24)
    t = int(issues[np.flatnonzero((honest == 0).any(axis=1))[0]])  # a row whose forecast the clip holds at 0
    base = forecast_matrix(v, np.array([t]), 24)[0]
    for poison in (-1.0, -1e15):
        z = v.copy()
        z[t:] = poison
        assert np.array_equal(forecast_matrix(z, np.array([t]), 24)[0], base), poison
    z = v.copy()
    z[-1] = -0.001  # one value three years later
    assert np.array_equal(forecast_matrix(z, np.array([t]), 24)[0], base)  # was negative again (min -1.96)
    # a past that was negative is not clipped: that row's forecast may go below 0
    z = v.copy()
    z[t - 5] = -1.0
    assert forecast_matrix(z, np.array([t]), 24)[0].min() < 0


def _hourly() -> tuple[pd.Series, pd.Timestamp]:
    rng = np.random.default_rng(1)
    idx = pd.date_range("2023-03-01", periods=24 * 10, freq="h", tz="UTC")
    vals = 200 + 80 * np.sin(2 * np.pi * np.arange(len(idx)) / 24) + rng.normal(0, 5, len(idx))
    return pd.Series(vals, index=idx), idx[-1] + pd.Timedelta("1h")


def test_m2_a_row_off_the_grid_counts_in_its_slot_instead_of_erasing_the_history():
    hist, issued = _hourly()
    clean = forecast_carbon(hist, issued, pd.Timedelta("6h"))
    stray = pd.concat([pd.Series([999.0], index=[hist.index[0] - pd.Timedelta("30min")]), hist])
    fc = forecast_carbon(stray, issued, pd.Timedelta("6h"))
    assert fc.index.equals(clean.index) and np.allclose(fc, clean, rtol=1e-3)  # was ~1000 g/kWh on a :30 grid
    late = hist.copy()
    late.index = hist.index + pd.to_timedelta(np.r_[0, np.ones(len(hist) - 1)], unit="s")  # a logger 1 s late
    fc = forecast_carbon(late, issued + pd.Timedelta("1s"), pd.Timedelta("6h"))
    assert np.allclose(fc.to_numpy(), clean.to_numpy(), rtol=1e-3)  # was a flat forecast of the first value


def test_l1_the_step_is_the_pasts_and_an_unsorted_history_is_sorted():
    hist, issued = _hourly()
    clean = forecast_carbon(hist, issued, pd.Timedelta("6h"))
    future = pd.Series(np.nan, index=pd.date_range(issued, periods=500, freq="5min"))
    assert forecast_carbon(pd.concat([hist, future]), issued, pd.Timedelta("6h")).round(9).equals(clean.round(9))
    assert forecast_carbon(hist.iloc[::-1], issued, pd.Timedelta("6h")).round(9).equals(clean.round(9))


def test_l2_mixed_offsets_are_a_one_line_data_error():
    hist, issued = _hourly()
    mixed = pd.Series(hist.to_numpy(), index=pd.Index([t.tz_convert("Europe/Madrid") if i % 2 else t for i, t in enumerate(hist.index)],
                                                       dtype=object))
    with pytest.raises(DataError, match=r"not one time zone .*convert it to UTC first"):
        forecast_carbon(mixed, issued, pd.Timedelta("6h"))
