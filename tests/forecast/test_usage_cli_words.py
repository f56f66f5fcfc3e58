"""Review 10 #15 and #19: undefined WAPE is null, the text line has no Python reprs, a --step that
contradicts the timestamps is an error, and Python API errors do not name CLI flags."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError, DataError
from care_flows.forecast.usage import evaluate_usage, forecast_usage, wape_pct
from care_flows.forecast.usage_io import load_usage_csv

DAY = 288


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_wape_of_all_zero_actuals_is_undefined():
    assert np.isnan(wape_pct(np.zeros(4), np.zeros(4)))
    ev = evaluate_usage(np.zeros(3 * DAY), horizon=3, period=DAY)
    assert ev.summary()["wape_pct"] is None and ev.summary()["persistence_wape_pct"] is None


def test_all_zero_series_reports_null_and_n_a(tmp_path, capsys):
    csv = tmp_path / "zeros.csv"
    pd.DataFrame({"cpu": np.zeros(3 * DAY)}).to_csv(csv, index=False)
    code, out, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "3", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["wape_pct"] is None and set(doc["wape_pct_by_step"].values()) == {None}
    code, out, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "3")
    assert code == 0, err
    assert "WAPE n/a vs persistence n/a" in out
    assert "None" not in out and "nan" not in out


def test_text_line_names_a_missing_period_in_words(tmp_path, capsys):
    csv = tmp_path / "noise.csv"
    pd.DataFrame({"cpu": 50 + np.random.default_rng(4).normal(0, 3, 3 * DAY)}).to_csv(csv, index=False)
    code, out, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "2")
    assert code == 0, err
    assert "period none (last-value forecast)" in out and "None" not in out


def test_text_line_says_from_which_row_auto_and_a_given_period_are_scored(tmp_path, capsys):
    """Review 47c L2: `auto` and the same `--period` score different origin sets; the line says so."""
    csv = tmp_path / "daily.csv"
    t = np.arange(5 * DAY)
    pd.DataFrame({"cpu": 50 + 20 * np.sin(2 * np.pi * t / DAY)}).to_csv(csv, index=False)
    code, auto, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "2")
    assert code == 0, err
    code, given, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "2", "--period", str(DAY))
    assert code == 0, err
    assert f"period {DAY} steps, horizon 2 steps, {5 * DAY // 2 - 2} origins from origin_index {5 * DAY // 2}" in auto
    assert f"period {DAY} steps, horizon 2 steps, {4 * DAY - 2} origins from origin_index {DAY}" in given


def test_step_contradicting_the_timestamps_is_a_one_line_error(tmp_path, capsys):
    csv = tmp_path / "epoch_s.csv"
    pd.DataFrame({"t": 1_700_000_000 + 300 * np.arange(4 * DAY), "cpu": np.ones(4 * DAY)}).to_csv(csv, index=False)
    code, _, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "t", "--step", "60s")
    assert code == 2 and err.count("\n") == 1
    assert "error: --step 60s contradicts the 300 s spacing of the 't' timestamps; omit --step" in err
    code, out, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "t",
                          "--step", "5m", "--horizon", "2", "--json")
    assert code == 0, err  # an agreeing step is fine
    assert json.loads(out)["step_s"] == 300.0
    with pytest.raises(ConfigError, match="a step of 60 s contradicts the 300 s spacing"):
        load_usage_csv(csv, "cpu", timestamp_column="t", step_s=60)


def test_python_errors_name_arguments_and_the_cli_names_flags(tmp_path, capsys):
    with pytest.raises(DataError) as info:
        forecast_usage([1.0] * 100, 5)
    assert "--" not in str(info.value) and "period=N" in str(info.value)
    with pytest.raises(ConfigError) as info:
        evaluate_usage(np.ones(10), horizon=0)
    assert "--" not in str(info.value)
    csv = tmp_path / "short.csv"
    pd.DataFrame({"cpu": np.ones(100)}).to_csv(csv, index=False)
    code, _, err = _run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu")
    assert code == 2 and "a shorter --period N" in err
