"""Carbon forecast: no peeking, batch == single, sub-hourly steps, short histories, beats seasonal naive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from care_flows.data import EMBEDDED_ZONES, embedded_intensity
from care_flows.errors import ConfigError, DataError
from care_flows.forecast.carbon import (
    RIDGE_COEF,
    fit_ridge,
    forecast_carbon,
    forecast_matrix,
    model_used,
    ridge_features,
)

MODELS = ["default", "ridge", "seasonal_naive", "mean_7d", "persistence"]


def _hourly(days: int = 20, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-03-01", periods=days * 24, freq="h", tz="UTC")
    hours = np.arange(len(idx))
    values = 200 + 80 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 15, len(idx))
    return pd.Series(values, index=idx, name="g_per_kwh")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("poison", [np.nan, 1e12, -1e12, np.inf])
@pytest.mark.parametrize("offset", ["20min", "0min"])
def test_forecast_carbon_never_reads_the_future(model: str, poison: float, offset: str) -> None:
    hist = _hourly()
    # mid-hour: the 12-day row (its interval started before the issue) is past; on the hour: the row
    # stamped exactly at the issue time is not (its interval has not happened yet)
    issued = hist.index[24 * 12] + pd.Timedelta(offset)
    base = forecast_carbon(hist, issued, pd.Timedelta("24h"), model=model)
    changed = hist.copy()
    changed[changed.index >= issued] = poison
    again = forecast_carbon(changed, issued, pd.Timedelta("24h"), model=model)
    pd.testing.assert_series_equal(base, again)
    # and the rows after the issue time are not even needed
    cut = forecast_carbon(hist[hist.index < issued], issued, pd.Timedelta("24h"), model=model)
    pd.testing.assert_series_equal(base, cut)
    assert np.isfinite(base.to_numpy()).all()
    # given only the rows from the issue time on (on the hour: the row stamped at it) there is no past
    with pytest.raises(DataError, match="no carbon history before"):
        forecast_carbon(hist[hist.index >= issued], issued, pd.Timedelta("24h"), model=model)


@pytest.mark.parametrize("model", MODELS)
def test_forecast_matrix_never_reads_the_future(model: str) -> None:
    y = _hourly(30).to_numpy()
    issues = np.array([3, 24, 25, 100, 24 * 7, 24 * 7 + 1, 24 * 20, 24 * 29])
    base = forecast_matrix(y, issues, 36, 24, model)
    for i, t in enumerate(issues):
        for poison in (np.nan, 1e15, -1e15):
            z = y.copy()
            z[t:] = poison
            np.testing.assert_array_equal(forecast_matrix(z, issues[i : i + 1], 36, 24, model)[0], base[i])
            np.testing.assert_array_equal(forecast_matrix(y[:t], np.array([t]), 36, 24, model)[0], base[i])


def test_batch_equals_single_on_real_data() -> None:
    series = embedded_intensity("DE")["2022-12-01":"2023-01-10"]
    y = series.to_numpy()
    issues = np.arange(24 * 8, len(y) - 24, 7)
    batch = forecast_matrix(y, issues, 24)
    for k, t in enumerate(issues):
        if k % 5:
            continue
        single = forecast_carbon(series, series.index[t], pd.Timedelta("24h"))
        np.testing.assert_allclose(single.to_numpy(), batch[k], rtol=0, atol=1e-9)
        assert single.index[0] == series.index[t]
        assert single.attrs["forecast_model"] == "ridge"
        assert single.attrs["issued_at"] == series.index[t]
        assert single.name == "g_per_kwh"


def test_duplicate_and_unsorted_issue_indices_are_fine() -> None:
    y = _hourly(20).to_numpy()
    issues = np.array([300, 200, 300, 24 * 8])
    out = forecast_matrix(y, issues, 24)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], forecast_matrix(y, np.array([200]), 24)[0])


@pytest.mark.parametrize("freq,steps_per_day", [("15min", 96), ("5min", 288)])
def test_sub_hourly_history(freq: str, steps_per_day: int) -> None:
    hourly = _hourly(10)
    fine = hourly.resample(freq).ffill().reindex(
        pd.date_range(hourly.index[0], hourly.index[-1] + pd.Timedelta("1h"), freq=freq, inclusive="left")
    ).ffill()
    issued = fine.index[-1] + pd.Timedelta(freq)
    fc = forecast_carbon(fine, issued, pd.Timedelta("6h"))
    assert len(fc) == 6 * steps_per_day // 24
    assert fc.index[0] == issued and fc.index.freq == pd.tseries.frequencies.to_offset(freq)
    assert fc.attrs["forecast_model"] == "ridge"
    # same code as the batch API with the step inferred from the index
    mat = forecast_matrix(fine.to_numpy(), np.array([len(fine)]), len(fc), steps_per_day)
    np.testing.assert_allclose(fc.to_numpy(), mat[0], atol=1e-9)
    # a sub-hourly copy of hourly data gives nearly the hourly forecast
    hourly_fc = forecast_carbon(hourly, issued, pd.Timedelta("6h"))
    per_hour = fc.to_numpy().reshape(6, -1).mean(axis=1)
    assert np.abs(per_hour - hourly_fc.to_numpy()).max() < 0.1 * hourly.mean()


@pytest.mark.parametrize(
    "hours,expected",
    [(5, "persistence"), (24, "persistence"), (30, "profile_persistence"), (24 * 7, "profile_persistence"), (24 * 7 + 1, "ridge")],
)
def test_short_history_degrades_to_a_simpler_model(hours: int, expected: str) -> None:
    hist = _hourly(10)[:hours]
    issued = hist.index[-1] + pd.Timedelta("1h")
    fc = forecast_carbon(hist, issued, pd.Timedelta("48h"))
    assert fc.attrs["forecast_model"] == expected == model_used("default", hours)
    assert len(fc) == 48 and np.isfinite(fc.to_numpy()).all()
    if expected == "persistence":
        assert (fc == hist.iloc[-1]).all()
    if expected == "profile_persistence":
        # far leads follow the daily profile of the past days, not the last value
        assert abs(fc.iloc[-1] - hist.iloc[-24]) < 3 * 15 + 1


def test_single_point_and_gaps() -> None:
    idx = pd.date_range("2023-01-01", periods=3, freq="h", tz="UTC")
    hist = pd.Series([100.0, np.nan, 120.0], index=idx)
    fc = forecast_carbon(hist, idx[-1] + pd.Timedelta("3h"), pd.Timedelta("2h"))  # stale: 2 missing hours
    assert fc.index[0] == idx[-1] + pd.Timedelta("3h")
    assert fc.tolist() == [120.0, 120.0]
    with pytest.raises(DataError, match="no carbon history before"):
        forecast_carbon(hist, idx[0], pd.Timedelta("2h"))
    with pytest.raises(DataError):
        forecast_matrix(np.array([np.nan, np.nan, 1.0]), np.array([2]), 3)
    with pytest.raises(ConfigError, match="unknown forecast model"):
        forecast_carbon(hist, idx[-1], pd.Timedelta("2h"), model="prophet")


def test_coefficients_were_fitted_on_2021_2022_only() -> None:
    refit = fit_ridge([embedded_intensity(z)[:"2022"].to_numpy() for z in EMBEDDED_ZONES], lam=100)
    np.testing.assert_allclose(refit, RIDGE_COEF, atol=1e-4)


def _wape(actual: np.ndarray, fc: np.ndarray) -> float:
    return float(np.abs(fc - actual).sum() / np.abs(actual).sum())


@pytest.mark.parametrize("zone", ["ES", "DE"])
def test_beats_seasonal_naive_on_a_2023_sample(zone: str) -> None:
    series = embedded_intensity(zone)
    y = series.to_numpy()
    first = int(np.searchsorted(series.index, pd.Timestamp("2023-03-01", tz="UTC")))
    issues = np.arange(first, first + 21 * 24)
    actual = y[issues[:, None] + np.arange(24)]
    model = _wape(actual, forecast_matrix(y, issues, 24))
    naive = _wape(actual, forecast_matrix(y, issues, 24, model="seasonal_naive"))
    assert model < 0.9 * naive


def test_fast_path_equals_the_feature_tensor_model() -> None:
    y = embedded_intensity("GB")["2022-06"].to_numpy()
    issues = np.array([24 * 7 + 1, 300, 500, 650])
    for horizon in (24, 60):
        x = ridge_features(y, issues, horizon)
        lead_hour = np.minimum(np.arange(horizon), 23)
        expected = np.einsum("nhf,hf->nh", x, RIDGE_COEF[lead_hour])
        np.testing.assert_allclose(forecast_matrix(y, issues, horizon), expected, rtol=1e-12, atol=1e-9)
