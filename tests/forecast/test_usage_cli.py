"""``care forecast-usage``: outputs, timestamp formats and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.forecast.usage_io import load_usage_csv

DAY = 288


def series(n: int = 3 * DAY) -> np.ndarray:
    t = np.arange(n)
    return 10 + 4 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(0).normal(0, 0.2, n)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_and_pred_csv_with_epoch_timestamps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = series()
    csv = tmp_path / "u.csv"
    pd.DataFrame({"timestamp": 1_700_000_000 + 300 * np.arange(len(y)), "cpu": y}).to_csv(csv, index=False)
    out = tmp_path / "pred.csv"
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "timestamp",
                            "--horizon", "12", "--out", str(out), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["period_steps"] == DAY and doc["step_s"] == 300.0
    for key in ("wape_pct", "persistence_wape_pct", "anomalous_fraction", "anomalies"):
        assert key in doc
    assert doc["wape_pct"] <= doc["persistence_wape_pct"] + 1.0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["origin_index", "step", "target_index", "prediction", "anomalous"]
    assert len(pred) == doc["n_origins"] * 12
    assert set(pred.step) == set(range(1, 13))
    assert not list(tmp_path.glob(".pred.csv.*"))  # no temporary file left behind


def test_iso_timestamps_and_given_period(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = series(2 * DAY)
    idx = pd.date_range("2014-02-14 14:30", periods=len(y), freq="5min")
    csv = tmp_path / "nab.csv"
    pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%d %H:%M:%S"), "value": y}).to_csv(csv, index=False)
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "value", "--timestamp-column", "timestamp",
                            "--period", "288", "--horizon", "3", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["period_steps"] == 288 and doc["first_origin_index"] == 288


def test_bitbrains_layout_loads() -> None:
    import io

    text = "Timestamp [ms];\tCPU usage [%]\n" + "".join(f"{1372629804 + 300 * i};\t{i % 7}.5\n" for i in range(5))
    s = load_usage_csv(io.StringIO(text), "CPU usage [%]", timestamp_column="Timestamp [ms]")
    assert s.step_s == 300.0 and s.values[:2].tolist() == [0.5, 1.5]
    assert s.timestamps[0] == pd.Timestamp("2013-06-30T22:03:24Z")


def test_missing_column_lists_available(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "u.csv"
    pd.DataFrame({"cpu": series(), "mem": series()}).to_csv(csv, index=False)
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "gpu")
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and "'gpu'" in err and "'cpu', 'mem'" in err


def test_malformed_csv_and_non_numeric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("cpu,mem\n1,2\n3,4,5,6\n")
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "forecast-usage", "--csv", str(bad), "--column", "cpu", "--out", str(out))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "malformed" in err
    assert not out.exists()
    text = tmp_path / "text.csv"
    text.write_text("cpu\n" + "1.0\n" * 400 + "n/a\n")
    code, _, err = run(capsys, "forecast-usage", "--csv", str(text), "--column", "cpu")
    assert code == 2 and "non-numeric" in err and "'n/a'" in err
    code, _, err = run(capsys, "forecast-usage", "--csv", str(tmp_path / "nope.csv"), "--column", "cpu")
    assert code == 2 and "not found" in err


def test_shorter_than_one_period_is_error_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "short.csv"
    pd.DataFrame({"cpu": series(100)}).to_csv(csv, index=False)
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--out", str(out))
    assert code == 2 and "shorter than one daily period" in err and err.count("\n") == 1
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--period", "288")
    assert code == 2 and "shorter than one period" in err
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--period", "daily")
    assert code == 2 and "--period" in err
    assert not out.exists()


def test_bad_timestamps_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "u.csv"
    pd.DataFrame({"t": ["2014-01-01 00:00:00", "yesterday", "2014-01-01 00:10:00"], "cpu": [1, 2, 3]}).to_csv(csv, index=False)
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "t")
    assert code == 2 and "'yesterday'" in err
    pd.DataFrame({"t": [0, 600, 300], "cpu": [1, 2, 3]}).to_csv(csv, index=False)
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "t")
    assert code == 2 and "increasing" in err


def test_aperiodic_series_falls_back_to_last_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    csv = tmp_path / "noise.csv"
    pd.DataFrame({"cpu": 50 + np.random.default_rng(4).normal(0, 3, 3 * DAY)}).to_csv(csv, index=False)
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--horizon", "2", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["period_steps"] is None and doc["wape_pct"] is not None
    assert "last value" in caplog.text  # the documented fallback is announced (a warning on stderr)


def test_output_into_missing_folder_is_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "u.csv"
    pd.DataFrame({"cpu": series(2 * DAY)}).to_csv(csv, index=False)
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--period", "288",
                       "--out", str(tmp_path / "nope" / "pred.csv"))
    assert code == 2 and "does not exist" in err


def test_anomalies_in_the_json_and_a_given_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An injected level shift shows up in ``anomalies`` with its fields; ``--step`` spaces rows without timestamps."""
    y = series(4 * DAY)
    y[3 * DAY + 50: 3 * DAY + 110] += 12.0  # 60 steps (5 h) far above the daily pattern
    csv = tmp_path / "u.csv"
    pd.DataFrame({"cpu": y}).to_csv(csv, index=False)
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--step", "300s", "--horizon", "6", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["step_s"] == 300.0 and doc["period_steps"] == DAY
    found = [a for a in doc["anomalies"] if a["start_index"] <= 3 * DAY + 60 and a["end_index"] >= 3 * DAY + 50]
    assert found, doc["anomalies"]
    a = found[0]
    assert {"start_index", "end_index", "predicted_duration_steps", "actual_duration_steps", "ongoing"} <= set(a)
    assert a["actual_duration_steps"] == a["end_index"] - a["start_index"] + 1 and a["ongoing"] is False
    # the same rows read as 15-minute steps
    code, stdout, _ = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--step", "900s", "--horizon", "6", "--json")
    assert code == 0 and json.loads(stdout)["step_s"] == 900.0
    code, _, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--step", "-5s", "--horizon", "6")
    assert code == 2 and "--step" in err and err.count("\n") == 1


def test_pred_csv_interrupted_while_written_in_pieces_keeps_the_old_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 38a M2: PRED.csv is written in pieces through a temporary file: Ctrl-C after the first piece leaves the
    old file whole and no temporary file (the earlier keep-old-content tests only fail before any writing)."""
    from care_flows.forecast.usage import UsageEvaluation

    real = UsageEvaluation.to_frames

    def first_piece_then_ctrl_c(self, *a, **k):  # type: ignore[no-untyped-def]
        yield next(iter(real(self, *a, **k)))
        raise KeyboardInterrupt  # while the next piece (of up to 15 M rows) is computed

    monkeypatch.setattr(UsageEvaluation, "to_frames", first_piece_then_ctrl_c)
    csv = tmp_path / "u.csv"
    pd.DataFrame({"cpu": series()}).to_csv(csv, index=False)
    out = tmp_path / "pred.csv"
    out.write_text("OLD CONTENT\n")
    code, stdout, err = run(capsys, "forecast-usage", "--csv", str(csv), "--column", "cpu", "--step", "300s", "--horizon", "12",
                            "--out", str(out))
    assert code == 130, (code, stdout, err)  # exit 130: interrupted
    assert out.read_text() == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv", "u.csv"]
