"""Review 31 fixes: periods of drifting series, last-value baseline, epoch timestamp errors, gaps,
``usage_need`` memory checks, a horizon as long as the series, and the benchmark's real instance sizes."""

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
from care_flows.forecast.usage import detect_period, evaluate_usage, usage_need, wape_pct
from care_flows.forecast.usage_io import load_usage_csv, parse_timestamps
from tests.repo_scripts import load_script

DAY = 288
def _bench():  # type: ignore[no-untyped-def]
    return load_script("benchmarks/bench_usage.py", "bench_usage_r31")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def daily(days: int, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    t = np.arange(DAY * days)
    return 10 + 4 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(seed).normal(0, noise, len(t))


# --- #5 period detection on drifting series, and the last-value baseline ----------------------------


def test_a_random_walk_gets_no_period() -> None:
    # before: 16 of these 20 eight-day random walks got period 288 (their level drift, not a period)
    found = [detect_period(50 + np.cumsum(np.random.default_rng(s).normal(0, 0.3, DAY * 8)), step_s=300) for s in range(20)]
    assert found == [None] * 20


def test_a_daily_period_on_a_drifting_level_is_still_found() -> None:
    t = np.arange(DAY * 8)
    for seed in range(3):
        walk = np.cumsum(np.random.default_rng(seed).normal(0, 0.3, len(t)))
        assert detect_period(10 + 5 * np.sin(2 * np.pi * t / DAY) + walk, step_s=300) == DAY
    assert detect_period(daily(5, noise=1.0), step_s=300) == DAY


@pytest.mark.parametrize("every_h", [1, 2, 3, 6, 12])
def test_a_job_every_few_hours_has_a_daily_period(every_h: int) -> None:
    """Review 35c H1: a 30-minute job every 1-12 h (a cron schedule) repeats at P/2, 3P/4 and 5P/4 as
    well, so the autocorrelation "local peak" test rejected the daily period: no period, and the
    forecast's WAPE went from 5-15 % (period 288) to 46-65 %."""
    t = np.arange(DAY * 8)
    y = 5 + 40 * ((t % (12 * every_h)) < 6) + np.random.default_rng(1).normal(0, 1, t.size)
    assert detect_period(y, step_s=300) == DAY
    auto, given = evaluate_usage(y, horizon=12, period="auto"), evaluate_usage(y, horizon=12, period=DAY)
    # detected at each origin from its past only, so not to the digit what a given period scores
    assert auto.period_steps == DAY and auto.wape_pct < min(given.wape_pct + 1, 30), (auto.wape_pct, given.wape_pct)


def test_a_job_every_6_hours_whose_load_differs_by_day_has_a_daily_period() -> None:
    """Review 35g M2: with a load +-10 % from day to day, values half a day apart are closer than a day
    apart, so the drift test alone called 17 of 40 such series drifts (no period, WAPE 46-62 %); a drift
    must also keep growing at 2P."""
    t = np.arange(DAY * 14)
    found = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        level = 1 + rng.normal(0, 0.10, 14)[t // DAY]
        found.append(detect_period(np.maximum(5 + 40 * level * ((t % 72) < 6) + rng.normal(0, 1.0, t.size), 0), step_s=300))
    assert found == [DAY] * 10, found


def test_json_has_the_last_value_wape_on_the_same_origins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = 50 + np.cumsum(np.random.default_rng(3).normal(0, 0.3, DAY * 8))
    csv = tmp_path / "rw.csv"
    pd.DataFrame({"mem": y}).to_csv(csv, index=False)
    code, out, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "mem", "--horizon", "12", "--json")
    assert code == 0, err
    doc = json.loads(out)
    ev = evaluate_usage(y, horizon=12)
    naive = np.repeat(y[ev.origins, None], 12, axis=1)
    assert doc["last_value_wape_pct"] == pytest.approx(wape_pct(ev.actual, naive), abs=1e-4)
    # no invented daily period: the persistence baseline is the last value, not a 7x worse day-old copy
    assert doc["period_steps"] is None and doc["persistence_wape_pct"] == doc["last_value_wape_pct"]
    code, out, _ = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "mem", "--horizon", "12")
    assert code == 0 and "last value" in out


# --- #6 / #7 epoch timestamps -------------------------------------------------------------------------


def _epoch_csv(tmp_path: Path, cells: list[str]) -> Path:
    csv = tmp_path / "e.csv"
    y = daily(3)[: len(cells)]
    csv.write_text("timestamp,value\n" + "".join(f"{c},{v}\n" for c, v in zip(cells, y)), encoding="utf-8")
    return csv


def _one_line_error(capsys: pytest.CaptureFixture[str], csv: Path) -> str:
    code, out, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "value", "--timestamp-column", "timestamp", "--json")
    assert code == 2 and out == "", err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("big", ["1000000000000000000", "99000000000"])
def test_epoch_out_of_range_is_a_one_line_error_naming_row_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str], big: str) -> None:
    cells = [str(1_700_000_000 + 300 * i) for i in range(700)]
    cells[9] = big  # data row 10: line 11 (the header is line 1)
    line = _one_line_error(capsys, _epoch_csv(tmp_path, cells))
    assert "line 11" in line and big in line and "1677-2262" in line


@pytest.mark.parametrize("bad,row", [("inf", 6), ("nan", 6), ("n/a", 501), ("", 42), ("-inf", 3)])
def test_a_bad_epoch_cell_is_named_with_its_row(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, row: int) -> None:
    cells = [str(1_700_000_000 + 300 * i) for i in range(700)]
    cells[row - 1] = bad
    line = _one_line_error(capsys, _epoch_csv(tmp_path, cells))
    assert f"line {row + 1} ({bad!r})" in line
    assert "1700000000" not in line  # never a valid value as the "bad" one


def test_epoch_unit_is_chosen_from_finite_values_only() -> None:
    # one inf used to switch a column of seconds to milliseconds; now it is an error of its own
    with pytest.raises(DataError, match=r"line 3 \('inf'\)"):
        parse_timestamps(pd.Series([1_700_000_000.0, float("inf"), 1_700_000_600.0]), column="t")
    idx = parse_timestamps(pd.Series([1_700_000_000.0, 1_700_000_300.0]), column="t")
    assert idx[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")


def test_a_bad_iso_cell_is_named_with_its_row() -> None:
    raw = pd.Series(["2024-01-01 00:00", "2024-01-01 00:05", "2024-13-45 00:00", "2024-01-01 00:15"])
    with pytest.raises(DataError, match=r"'2024-13-45 00:00' that is neither ISO 8601 nor Unix epoch seconds \(line 4\)"):
        parse_timestamps(raw, column="t")
    with pytest.raises(DataError, match=r"'1700000000' that is an epoch number among ISO 8601 times \(line 3\)"):
        parse_timestamps(pd.Series(["2024-01-01", "1700000000", "2024-01-02"]), column="t")


# --- #9 gaps, usage_need checks, horizon as long as the series -------------------------------------------


def _gap_csv(tmp_path: Path, *, gap: bool) -> Path:
    t = pd.date_range("2026-01-01", periods=DAY * 6, freq="5min", tz="UTC")
    y = 10 + 5 * np.sin(2 * np.pi * np.arange(len(t)) / DAY)
    keep = np.ones(len(t), bool)
    if gap:
        keep[DAY * 3 + 100: DAY * 3 + 172] = False  # 6 h of rows missing on day 4
    csv = tmp_path / ("gap.csv" if gap else "nogap.csv")
    pd.DataFrame({"timestamp": t[keep].strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": y[keep]}).to_csv(csv, index=False)
    return csv


def test_gaps_and_the_origins_they_touch_are_in_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--column", "cpu", "--timestamp-column", "timestamp", "--period", "288", "--horizon", "12", "--json")
    code, out, err = run(capsys, "forecast-usage", "--csv", str(_gap_csv(tmp_path, gap=True)), *args)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gaps"] == [{"row_index": DAY * 3 + 100, "gap_s": 73 * 300.0}]
    # origins from 12 steps before the gap to one period after it copy a value from the other side
    first = doc["first_origin_index"]
    lo, hi = DAY * 3 + 100 - 12, DAY * 3 + 100 + DAY - 2
    assert doc["origins_across_gaps"] == max(0, hi - max(lo, first) + 1)
    code, out, err = run(capsys, "forecast-usage", "--csv", str(_gap_csv(tmp_path, gap=False)), *args)
    doc = json.loads(out)
    assert doc["gaps"] == [] and doc["origins_across_gaps"] == 0
    code, out, _ = run(capsys, "forecast-usage", "--csv", str(_gap_csv(tmp_path, gap=True)), *args[:-1])
    assert "1 timestamp gap(s) used as consecutive rows" in out


@pytest.mark.parametrize("mem", [[], [np.nan], [1.0, np.inf]])
def test_usage_need_rejects_an_empty_or_non_finite_memory_forecast(mem: list[float]) -> None:
    with pytest.raises(DataError, match="memory forecast"):
        usage_need([1.0, 2.0], memory_forecast=mem)


def test_a_horizon_as_long_as_the_series_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    y = daily(2)[:300]
    with caplog.at_level(logging.WARNING), pytest.raises(DataError, match="series has 300 rows, not enough for a horizon of 300 steps"):
        evaluate_usage(y, horizon=300)
    assert "-1 steps" not in caplog.text
    csv = tmp_path / "r300.csv"
    pd.DataFrame({"value": y}).to_csv(csv, index=False)
    code, out, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "value", "--horizon", "300")
    assert code == 2 and "--horizon N below 299" in err and "first -1" not in err and "within the first period" not in err
    assert evaluate_usage(y, horizon=298).origins.size >= 1  # the largest horizon that still has an origin


# --- #3 the benchmark on real instance sizes -------------------------------------------------------------


def test_family_sizes_come_from_the_price_table_and_capacity_rounds_up() -> None:
    b = _bench()
    assert b.family_vcpu_sizes("m5").tolist() == [2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0, 96.0]
    sizes = b.family_vcpu_sizes("m5")
    assert b.round_up_to_sizes(np.array([0.1, 2.0, 2.01, 47.9, 96.0, 97.0]), sizes).tolist() == [2.0, 2.0, 4.0, 48.0, 96.0, 192.0]
    assert b.meets_target(40.0, 0.99) and not b.meets_target(39.9, 0.1) and not b.meets_target(60.0, 1.0)


def test_bench_row_scores_real_sizes_at_two_scales(tmp_path: Path) -> None:
    b = _bench()
    csv = tmp_path / "trace.csv"
    pd.DataFrame({"cpu": daily(6, noise=0.3, seed=1)}).to_csv(csv, index=False)
    row = b._row("synthetic", "aggregate", csv, "cpu", None)
    for v in ("16", "6"):
        assert np.isfinite(row[f"overprov_cut_m5_{v}_pct"]) and 0 <= row[f"under_forecast_m5_{v}_pct"] <= 100
        # rounding capacity up never adds under-provisioned intervals
        assert row[f"under_forecast_m5_{v}_pct"] <= row["under_forecast_pct"] + 1e-9
    # the fractional cut does not depend on the scale, the cut on real sizes does
    assert row["overprov_cut_m5_16_pct"] != pytest.approx(row["overprov_cut_m5_6_pct"], abs=0.5)
    assert row["overprov_cut_m5_16_pct"] != pytest.approx(row["overprov_cut_pct"], abs=0.5)


def test_load_usage_csv_reports_gaps_with_row_and_seconds() -> None:
    text = "timestamp,v\n0,1\n300,2\n600,3\n2400,4\n2700,5\n"
    s = load_usage_csv(io.StringIO(text), "v", timestamp_column="timestamp")
    assert s.gaps == [(3, 1800.0)]
