"""Review 39b M10: usage values near the float maximum are one clear error, not a numpy RuntimeWarning.

``care forecast-usage`` on a CSV with two values of 1e308 printed a multi-line ``RuntimeWarning:
overflow encountered in divide`` (with the source line) on stderr and went on. Values above
``MAX_USAGE_VALUE`` (1e100) are now refused with one ``error:`` line naming the line and value; and
the scaled error, whose ratio can still overflow after a level near the smallest float, is kept at
the largest float instead of warning (and of inf, which the rolling windows skip as missing).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.forecast.usage import MAX_USAGE_VALUE, detect_anomalies, evaluate_usage, forecast_usage, scaled_errors
from care_flows.forecast.usage_io import load_usage_csv

DAY = 288


def _csv(path: Path, values: np.ndarray) -> Path:
    ts = pd.Timestamp("2014-02-14 14:30:00") + pd.to_timedelta(300 * np.arange(len(values)), unit="s")
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(path, index=False)
    return path


def test_a_value_near_the_float_maximum_is_one_error_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = 0.13 + 0.01 * np.sin(np.arange(400))
    y[10:12] = 1e308  # lines 12 and 13 of the file
    csv = _csv(tmp_path / "u_huge.csv", y)
    code = main(["forecast-usage", "--csv", str(csv), "--column", "value", "--timestamp-column", "timestamp", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "RuntimeWarning" not in err, err
    assert err.startswith(f"error: usage CSV {csv}: column 'value' has 2 value(s) above 1e+100, first at line 12 ('1e+308');"), err


def test_the_reader_and_the_api_refuse_values_above_the_bound() -> None:
    import io

    with pytest.raises(DataError, match=r"has 1 value\(s\) above 1e\+100, first at line 3 \('2e\+200'\)"):
        load_usage_csv(io.StringIO("value\n1\n2e200\n3\n"), "value")
    y = np.ones(3 * DAY)
    y[5] = 1e150
    with pytest.raises(DataError, match=r"usage history has 1 value\(s\) above 1e\+100, first at index 5 \(1e\+150\)"):
        forecast_usage(y, 12)
    with pytest.raises(DataError, match=r"usage series has 1 value\(s\) above 1e\+100"):
        evaluate_usage(y, horizon=12)
    assert MAX_USAGE_VALUE == 1e100
    assert load_usage_csv(io.StringIO("value\n1e100\n"), "value").values.tolist() == [1e100]  # the bound itself is accepted


def test_values_up_to_the_bound_run_without_any_runtime_warning() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(5 * DAY)
    y = MAX_USAGE_VALUE * (0.5 + 0.4 * np.sin(2 * np.pi * t / DAY) + 0.05 * rng.random(len(t)))
    y[700:720] = MAX_USAGE_VALUE
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ev = evaluate_usage(y, horizon=12)  # period detection (squares), scores (sums), detector
        fc = forecast_usage(y, 12)
    assert ev.period_steps == DAY and np.isfinite(ev.wape_pct) and np.isfinite(ev.prediction).all()
    assert np.isfinite(fc.values).all()


def test_a_jump_from_a_level_near_the_smallest_float_is_the_largest_error_not_a_warning() -> None:
    y = np.r_[np.full(600, 5e-324), np.full(10, 1e10), np.full(600, 5e-324)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        a = scaled_errors(y, None)
        det = detect_anomalies(y, None)
    assert a[600] == np.finfo(float).max  # not inf (which rolling windows skip as missing), not a warning
    assert not np.isinf(a).any()
    assert det.score[600] > 1e300  # the detector's EWMA sees the jump (an inf it would have skipped)
