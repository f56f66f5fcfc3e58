"""Review 35c M1-M4, L1-L3: the CSV layer of ``care forecast-usage`` refuses negative usage, mixed
naive/offset times and millisecond-looking epochs, reports one missing row as a gap and uneven rows,
uses an agreeing --step, sniffs ';' outside quotes, hints at decimal commas and names both cells of
an out-of-order pair."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.forecast.usage_io import load_usage_csv, parse_timestamps, sniff_separator

DAY = 288
N = 3 * DAY
ROOT = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], csv: Path, column: str, *args: str) -> tuple[int, str, str]:
    code = main(["forecast-usage", "--csv", str(csv), "--column", column, "--horizon", "12", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def _sine(n: int = N) -> np.ndarray:
    return 10 + 5 * np.sin(2 * np.pi * np.arange(n) / DAY)


def _times(n: int = N) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC")


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


# --- M1 negative usage ---------------------------------------------------------------------------------


def test_a_negative_usage_value_is_a_one_line_error_naming_count_row_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = _sine()
    y[500] = -3.0
    y[700] = -0.5
    csv = _write(tmp_path / "negative.csv", "timestamp,cpu", [f"{t:%Y-%m-%d %H:%M:%S},{v}" for t, v in zip(_times(), y)])
    code, _, err = _run(capsys, csv, "cpu", "--timestamp-column", "timestamp")
    _one_line_error(code, err)
    assert "column 'cpu' has 2 negative value(s), first at line 502 ('-3.0'); usage cannot be negative: fix or drop the row" in err
    with pytest.raises(DataError, match=r"1 negative value\(s\), first at line 3 \('-1'\)"):
        load_usage_csv(io.StringIO("cpu\n1\n-1\n2\n"), "cpu")
    assert load_usage_csv(io.StringIO("cpu\n0\n-0.0\n2\n"), "cpu").values.tolist() == [0.0, 0.0, 2.0]  # zero is usage


# --- M2 naive and offset-bearing times -----------------------------------------------------------------


def test_times_mixing_naive_and_utc_offsets_are_a_one_line_error_naming_the_rarer_kind(tmp_path: Path,
                                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cells = [t.strftime("%Y-%m-%d %H:%M:%S") if i < 500 else t.tz_convert("Europe/Paris").strftime("%Y-%m-%dT%H:%M:%S%z")
             for i, t in enumerate(_times())]
    csv = _write(tmp_path / "mixed.csv", "timestamp,cpu", [f"{c},{v}" for c, v in zip(cells, _sine())])
    code, _, err = _run(capsys, csv, "cpu", "--timestamp-column", "timestamp")
    _one_line_error(code, err)
    assert ("timestamp column 'timestamp' mixes times with and without a UTC offset (364 with, 500 without), "
            "first with one at line 502 ('2024-01-02T18:40:00+0100'); give every time an offset, or none (read as UTC)") in err
    # the naive cells are the rarer kind: the first of them is named; 'Z' counts as an offset
    raw = pd.Series(["2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z", "2024-01-01 00:10:00", "2024-01-01T00:15:00Z"])
    with pytest.raises(DataError, match=r"\(3 with, 1 without\), first without one at line 4 \('2024-01-01 00:10:00'\)"):
        parse_timestamps(raw, column="t")


def test_different_offsets_across_a_dst_change_and_date_only_cells_stay_valid() -> None:
    t = pd.date_range("2024-03-09 12:00", periods=DAY, freq="5min", tz="UTC").tz_convert("America/New_York")
    cells = [c[:-2] + ":" + c[-2:] for c in t.strftime("%Y-%m-%dT%H:%M:%S%z")]
    assert {c[-6:] for c in cells} == {"-05:00", "-04:00"}
    text = "timestamp,cpu\n" + "".join(f"{c},1\n" for c in cells)
    s = load_usage_csv(io.StringIO(text), "cpu", timestamp_column="timestamp")
    assert s.step_s == 300.0 and s.gaps == [] and s.timestamps[0].isoformat() == "2024-03-09T12:00:00+00:00"
    days = load_usage_csv(io.StringIO("day,cpu\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n"), "cpu", timestamp_column="day")
    assert days.step_s == 86400.0  # '-01' at the end of a date is not an offset


# --- M3 one missing row, uneven rows, documented choice ----------------------------------------------


def test_one_missing_row_is_a_gap_in_the_json_and_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    keep = np.ones(N, bool)
    keep[400] = False
    csv = _write(tmp_path / "one_missing.csv", "timestamp,cpu",
                 [f"{t:%Y-%m-%d %H:%M:%S},{v}" for t, v in zip(_times()[keep], _sine()[keep])])
    with caplog.at_level(logging.WARNING):
        code, out, err = _run(capsys, csv, "cpu", "--timestamp-column", "timestamp", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gaps"] == [{"row_index": 400, "gap_s": 600.0}] and doc["origins_across_gaps"] > 0
    assert "1 gap(s) longer than 1.5 steps in 'cpu' (largest 600 s, first before line 402)" in caplog.text
    t = [0, 300, 600, 900, 1349, 1649, 1949, 2400, 2700]
    s = load_usage_csv(io.StringIO("t,v\n" + "".join(f"{a},1\n" for a in t)), "v", timestamp_column="t")
    assert s.step_s == 300.0 and s.gaps == [(7, 451.0)]  # 449 s is 1.497 steps: jitter, not a missing row


def test_rows_closer_than_half_a_step_are_a_warning_naming_the_row(caplog: pytest.LogCaptureFixture) -> None:
    t = [60 * i for i in range(300)] + [60 * 299 + 300 * (i + 1) for i in range(600)]
    text = "t,v\n" + "".join(f"{a},1\n" for a in t)
    with caplog.at_level(logging.WARNING):
        s = load_usage_csv(io.StringIO(text), "v", timestamp_column="t")
    assert s.step_s == 300.0 and s.gaps == []
    assert ("299 row(s) in 'v' less than half a step (300 s) after the previous one: line 3 is only 60 s after line 2; "
            "the rows are not evenly spaced") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_usage_csv(io.StringIO("t,v\n0,1\n300,2\n451,3\n751,4\n1051,5\n1351,6\n"), "v", timestamp_column="t")
    assert "less than half a step" not in caplog.text  # 151 s is just over half a step


def test_the_docs_state_that_gaps_are_reported_and_forecast_across_not_refused() -> None:
    doc = " ".join((ROOT / "docs" / "USAGE_FORECAST.md").read_text(encoding="utf-8").split())
    assert "longer than 1.5 steps" in doc and "reported and forecast across, not refused" in doc
    assert "less than half a step" in doc


# --- M4 milliseconds read as seconds -------------------------------------------------------------------


def test_relative_milliseconds_are_an_error_unless_the_given_step_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _write(tmp_path / "relative_ms.csv", "t,cpu", [f"{i * 300000},{v}" for i, v in enumerate(_sine())])
    code, _, err = _run(capsys, csv, "cpu", "--timestamp-column", "t")
    _one_line_error(code, err)
    assert ("timestamp column 't' looks like milliseconds: read as epoch seconds its rows are 300000 s (3.47 days) apart; "
            "give Unix epoch seconds (the column divided by 1000: a 300 s step), or --step 300000s") in err
    code, _, err = _run(capsys, csv, "cpu", "--timestamp-column", "t", "--step", "5m")  # the ms step given: still the unit error
    _one_line_error(code, err)
    assert "looks like milliseconds" in err
    code, out, err = _run(capsys, csv, "cpu", "--timestamp-column", "t", "--step", "300000s", "--json")
    assert code == 0, err
    assert json.loads(out)["step_s"] == 300000.0


@pytest.mark.parametrize("step", [3600, 7200, 86400, 604800])
def test_hourly_daily_and_weekly_epoch_seconds_stay_valid(step: int) -> None:
    text = "t,v\n" + "".join(f"{1_700_000_000 + step * i},1\n" for i in range(10))
    assert load_usage_csv(io.StringIO(text), "v", timestamp_column="t").step_s == float(step)


# --- L1 an agreeing --step is the step -----------------------------------------------------------------


def test_an_agreeing_step_is_used_instead_of_the_median_spacing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    t = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.cumsum(rng.integers(290, 311, N)), unit="s")
    csv = _write(tmp_path / "jitter.csv", "timestamp,cpu", [f"{a.isoformat()},{v}" for a, v in zip(t, _sine())])
    assert load_usage_csv(csv, "cpu", timestamp_column="timestamp").step_s == 301.0  # the median spacing
    code, out, err = _run(capsys, csv, "cpu", "--timestamp-column", "timestamp", "--step", "5m", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["step_s"] == 300.0 and doc["period_steps"] == DAY


# --- L2 separators in quotes, decimal commas -----------------------------------------------------------


def test_a_semicolon_file_with_commas_in_quoted_header_names_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = 'time;"cpu (%, avg)";"mem (%, avg)"'
    assert sniff_separator(header) == ";" and sniff_separator('a,"b;c;d",e') == ","
    csv = _write(tmp_path / "semi.csv", header, [f"{t:%Y-%m-%d %H:%M:%S};{v};{v}" for t, v in zip(_times(), _sine())])
    code, out, err = _run(capsys, csv, "cpu (%, avg)", "--timestamp-column", "time", "--json")
    assert code == 0, err
    assert json.loads(out)["n_rows"] == N


def test_a_decimal_comma_gets_a_hint_in_the_non_numeric_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _write(tmp_path / "comma.csv", "timestamp;cpu",
                 [f"{t:%Y-%m-%d %H:%M:%S};{str(round(v, 3)).replace('.', ',')}" for t, v in zip(_times(), _sine())])
    code, _, err = _run(capsys, csv, "cpu", "--timestamp-column", "timestamp")
    _one_line_error(code, err)
    assert "first at line 2 ('10,0'); clean the CSV so every value is a number (decimal comma? use '.' as the decimal mark)" in err
    with pytest.raises(DataError) as info:
        load_usage_csv(io.StringIO("cpu\n1\nabc\n"), "cpu")
    assert "decimal comma" not in str(info.value)


# --- L3 both cells of an out-of-order pair -------------------------------------------------------------


def test_the_not_increasing_error_names_both_cells_and_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{t:%Y-%m-%d %H:%M:%S},{v}" for t, v in zip(_times(), _sine())]
    rows[300], rows[301] = rows[301], rows[300]
    code, _, err = _run(capsys, _write(tmp_path / "unsorted.csv", "timestamp,cpu", rows), "cpu", "--timestamp-column", "timestamp")
    _one_line_error(code, err)
    assert ("is not strictly increasing at line 303 ('2024-01-02 01:00:00' is not after line 302, "
            "'2024-01-02 01:05:00'); sort the rows and drop duplicates") in err
    with pytest.raises(DataError, match=r"at line 4 \('300' is not after line 3, '300'\)"):
        load_usage_csv(io.StringIO("t,v\n0,1\n300,2\n300,3\n"), "v", timestamp_column="t")
