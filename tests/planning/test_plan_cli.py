"""CLI tests for `care plan`."""

import json

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main

HEADER = "Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO₂eq/kWh (direct),Carbon intensity gCO₂eq/kWh (Life cycle),Data estimated\n"


def write_csv(path, values, start="2023-03-01 00:00:00", freq="h"):
    idx = pd.date_range(start, periods=len(values), freq=freq)
    lines = [f"{t:%Y-%m-%d %H:%M:%S},Spain,Spain,ES,{v * 0.8:.2f},{v:.2f},false\n" for t, v in zip(idx, values)]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return str(path)


def run_json(capsys, *args):
    code = main(["plan", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def daily_profile(days=5):
    # a clear daily shape: green at 12:00-15:00, dirty at night
    hours = np.arange(24 * days) % 24
    return np.where((hours >= 12) & (hours < 15), 50.0, 300.0) + hours


def test_plan_json_embedded_zone_has_the_documented_keys(capsys):
    doc = run_json(capsys, "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "24h")
    for key in ("start", "end", "segments", "expected_g_per_kwh", "run_now_g_per_kwh", "expected_savings_pct",
                "latest_start", "forecast_model", "data_source", "mode", "feasible", "warnings"):
        assert key in doc
    for key in ("start", "end", "latest_start"):
        assert doc[key].endswith("+00:00")
    assert all(s["start"].endswith("+00:00") and s["end"].endswith("+00:00") for s in doc["segments"])
    assert doc["data_source"] == "embedded" and doc["forecast_model"] not in (None, "oracle")
    assert doc["end"] <= "2023-06-02T08:00:00+00:00" and doc["latest_start"] == "2023-06-02T06:00:00+00:00"
    assert doc["expected_g_per_kwh"] <= doc["run_now_g_per_kwh"]


def test_plan_region_maps_to_zone(capsys):
    doc = run_json(capsys, "--region", "eu-north-1", "--now", "2023-06-01T08:00:00Z", "--duration", "1h",
                   "--deadline", "2023-06-01T20:00:00+00:00", "--interruptible", "--max-segments", "1")
    assert doc["region"] == "eu-north-1" and doc["zone"].startswith("SE") and len(doc["segments"]) == 1


def test_plan_csv_oracle_is_hand_computable(tmp_path, capsys):
    csv = write_csv(tmp_path / "es.csv", daily_profile())
    doc = run_json(capsys, "--carbon-csv", csv, "--now", "2023-03-03T06:00:00Z", "--duration", "2h", "--within", "12h", "--oracle")
    assert doc["forecast_model"] == "oracle" and doc["data_source"] == "csv"
    assert doc["start"] == "2023-03-03T12:00:00+00:00" and doc["end"] == "2023-03-03T14:00:00+00:00"
    assert doc["expected_g_per_kwh"] == pytest.approx(50 + 12.5)
    assert doc["run_now_g_per_kwh"] == pytest.approx(300 + 6.5)


def test_plan_csv_forecast_uses_only_rows_before_now(tmp_path, capsys):
    values = daily_profile()
    a = write_csv(tmp_path / "a.csv", values)
    changed = values.copy()
    changed[24 * 2 + 6 :] = 999.0  # everything from --now on is different
    b = write_csv(tmp_path / "b.csv", changed)
    args = ["--now", "2023-03-03T06:00:00Z", "--duration", "2h", "--within", "12h"]
    doc_a = run_json(capsys, "--carbon-csv", a, *args)
    doc_b = run_json(capsys, "--carbon-csv", b, *args)
    assert doc_a == doc_b
    assert doc_a["forecast_model"] != "oracle"
    oracle_b = run_json(capsys, "--carbon-csv", b, *args, "--oracle")
    assert oracle_b["expected_g_per_kwh"] == 999.0


def test_plan_interruptible_and_threshold_modes(tmp_path, capsys):
    csv = write_csv(tmp_path / "es.csv", daily_profile())
    base = ["--carbon-csv", csv, "--now", "2023-03-03T06:00:00Z", "--duration", "4h", "--within", "30h", "--oracle"]
    doc = run_json(capsys, *base, "--interruptible", "--min-segment", "1h", "--max-segments", "2")
    assert doc["mode"] == "interruptible" and len(doc["segments"]) == 2
    assert doc["segments"][0] == {"start": "2023-03-03T12:00:00+00:00", "end": "2023-03-03T15:00:00+00:00"}
    doc = run_json(capsys, *base, "--interruptible", "--threshold", "100")  # review 30 #9: threshold mode needs --interruptible
    assert doc["mode"] == "threshold" and doc["threshold_g_per_kwh"] == 100.0
    assert doc["segments"][0]["start"] == "2023-03-03T12:00:00+00:00"


def test_plan_infeasible_deadline_runs_now_with_warning(capsys):
    doc = run_json(capsys, "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "3h", "--within", "1h")
    assert doc["mode"] == "now" and doc["feasible"] is False and doc["start"] == "2023-06-01T08:00:00+00:00"
    assert any("cannot be met" in w for w in doc["warnings"])


def test_plan_human_summary(capsys):
    assert main(["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "24h"]) == 0
    out = capsys.readouterr().out
    assert "g/kWh" in out and "run 2023-06-01T" in out


def test_plan_help_documents_every_option(capsys):
    assert main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--zone", "--region", "--carbon-csv", "--now", "--duration", "--deadline", "--within", "--interruptible",
                "--min-segment", "--max-segments", "--threshold", "--percentile", "--source", "--kind", "--oracle", "--json"):
        assert opt in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--zone", "XX", "--duration", "1h", "--within", "24h"], "XX"),
        (["--region", "mars-1", "--duration", "1h", "--within", "24h"], "mars-1"),
        (["--zone", "ES", "--duration", "1h", "--deadline", "2023-06-01T07:00:00Z"], "before"),
        (["--zone", "ES", "--duration", "-1h", "--within", "24h"], "-1h"),
        (["--zone", "ES", "--duration", "0h", "--within", "24h"], "positive"),
        (["--zone", "ES", "--duration", "soon", "--within", "24h"], "soon"),
        (["--zone", "ES", "--duration", "1h", "--deadline", "tomorrow"], "tomorrow"),
        (["--zone", "ES", "--duration", "1h"], "--deadline"),
        (["--zone", "ES", "--region", "eu-south-2", "--duration", "1h", "--within", "2h"], "exactly one"),
        (["--zone", "ES", "--duration", "1h", "--within", "2h", "--source", "nope"], "nope"),
        (["--zone", "ES", "--duration", "1h", "--within", "2h", "--max-segments", "2"], "--interruptible"),
        (["--zone", "ES", "--duration", "1h", "--within", "2h", "--threshold", "100", "--percentile", "5"], "not both"),
        (["--carbon-csv", "/nonexistent/x.csv", "--duration", "1h", "--within", "2h"], "not found"),
    ],
)
def test_plan_bad_input_is_one_line_exit_2(capsys, args, needle):
    argv = ["plan", "--now", "2023-06-01T08:00:00Z", *args]
    if args[-2:] == ["--deadline", "tomorrow"]:
        argv = ["plan", *args, "--now", "2023-06-01T08:00:00Z"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    err = err.strip()
    assert out == "" and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert needle in err


def test_plan_unparseable_now(capsys):
    assert main(["plan", "--zone", "ES", "--now", "yesterday-ish", "--duration", "1h", "--within", "2h"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "yesterday-ish" in err and "\n" not in err


def test_plan_after_the_embedded_data_warns_that_it_extrapolates(capsys):
    doc = run_json(capsys, "--zone", "ES", "--now", "2030-01-01T00:00:00Z", "--duration", "1h", "--within", "2h")
    assert any("extrapolates" in w for w in doc["warnings"])


def test_plan_csv_oracle_outside_the_data_is_exit_2(tmp_path, capsys):
    csv = write_csv(tmp_path / "es.csv", daily_profile())
    assert main(["plan", "--carbon-csv", csv, "--now", "2030-01-01T00:00:00Z", "--duration", "1h", "--within", "2h", "--oracle"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_plan_live_source_without_credentials_is_exit_2(monkeypatch, capsys):
    monkeypatch.delenv("ELECTRICITYMAPS_API_TOKEN", raising=False)
    code = main(["plan", "--zone", "ES", "--source", "electricitymaps", "--now", "2023-06-01T08:00:00Z",
                 "--duration", "1h", "--within", "4h", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "ELECTRICITYMAPS_API_TOKEN" in err and "\n" not in err.strip()


def test_plan_fifteen_minute_csv_with_fractional_duration(tmp_path, capsys):
    values = np.full(4 * 24 * 3, 300.0)
    values[4 * 24 * 2 + 40 : 4 * 24 * 2 + 43] = 20.0  # 10:00-10:45 on day 3 is green
    csv = write_csv(tmp_path / "q.csv", values, freq="15min")
    doc = run_json(capsys, "--carbon-csv", csv, "--now", "2023-03-03T06:00:00Z", "--duration", "40m", "--within", "12h", "--oracle")
    assert doc["start"] == "2023-03-03T10:00:00+00:00" and doc["end"] == "2023-03-03T10:40:00+00:00"
    assert doc["expected_g_per_kwh"] == pytest.approx(20.0)


def test_unmeetable_deadline_runs_now_without_a_latest_start_before_now(capsys):
    # review 4 #8: the latest start was printed as 2023-06-01T02:00 (before --now) and the warning said "1 days 06:00:00"
    args = ["--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "30h", "--within", "24h"]
    doc = run_json(capsys, *args)
    assert doc["mode"] == "now" and doc["feasible"] is False and doc["start"] == "2023-06-01T08:00:00+00:00"
    assert doc["latest_start"] is None
    assert any("needs 30h but only 24h remain" in w for w in doc["warnings"])
    assert main(["plan", *args]) == 0
    out, err = capsys.readouterr()
    assert "latest start meeting the deadline: none" in out and "days" not in out
    # one line, not wrapped; on stderr since review 36b (was on stdout, in the plan)
    assert "needs 30h but only 24h remain from 2023-06-01T08:00:00+00:00; running now\n" in err and "days" not in err


def test_default_now_is_whole_seconds(capsys, monkeypatch):
    import care_flows.cli.plan as plan_cli

    monkeypatch.setattr(plan_cli, "utcnow", lambda: pd.Timestamp("2023-06-01T08:00:00.324856Z"))
    doc = run_json(capsys, "--zone", "ES", "--duration", "2h", "--within", "24h")
    assert doc["now"] == "2023-06-01T08:00:00+00:00" and doc["latest_start"] == "2023-06-02T06:00:00+00:00"


@pytest.mark.parametrize("command", [
    ["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2", "--within", "24h"],
    ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "24"],
])
def test_a_duration_option_without_a_unit_is_a_usage_error(command, capsys):
    """Review 14: '--duration 2' was planned as a 2-second job."""
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no unit; give e.g." in err


def test_plan_oracle_never_replays_another_year_for_a_window_past_the_data(capsys):
    """Review 30 #5: a window running past the embedded data's end replaced the whole window, rows
    that exist included, by 2022's and still said "oracle" (run now 229.5 instead of 2023's 169.565)."""
    inside = run_json(capsys, "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "5h", "--oracle")
    assert inside["forecast_model"] == "oracle" and inside["run_now_g_per_kwh"] == pytest.approx(169.565)
    code = main(["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "300d", "--oracle", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "\n" not in err.strip()
    assert "--oracle" in err and "2024-01-01T00:00:00+00:00" in err and "drop --oracle" in err


def test_an_oracle_forecast_of_a_replaying_trace_is_the_windows_own_rows_or_an_error():
    from care_flows.errors import DataError
    from care_flows.signals import TraceSignal

    sig = TraceSignal.embedded(replay=True)
    rows = sig.forecast("ES", "2023-12-31T20:00Z", "4h", oracle=True)
    assert rows.attrs["forecast_model"] == "oracle" and rows.index[0] == pd.Timestamp("2023-12-31T20:00Z")
    assert rows.tolist() == sig.history("ES", "2023-12-31T20:00Z", "2024-01-01T00:00Z").tolist()
    with pytest.raises(DataError, match="outside"):
        sig.forecast("ES", "2023-12-31T20:00Z", "6h", oracle=True)


def test_min_savings_pct_runs_now_when_waiting_saves_less_and_keeps_a_plan_that_saves_enough(tmp_path, capsys):
    """Review 38c L17: `care plan` deferred for any gain, however small; --min-savings-pct is the policy's
    min_savings_pct (default 0: the issue's rule, any gain)."""
    # 300 now, 297 at 10:00 (a 1 % gain), 150 at 14:00 (50 %) on the oracle rows
    values = [300.0] * 48
    values[34], values[38] = 297.0, 150.0
    csv = write_csv(tmp_path / "es.csv", values)
    base = ("--carbon-csv", csv, "--now", "2023-03-02T08:00:00Z", "--duration", "1h", "--oracle")
    small = ("--deadline", "2023-03-02T12:00:00Z")  # only the 1 % gain is in the window
    doc = run_json(capsys, *base, *small)
    assert doc["start"] == "2023-03-02T10:00:00+00:00" and doc["expected_savings_pct"] == pytest.approx(1.0)
    for interruptible in ((), ("--interruptible",)):
        doc = run_json(capsys, *base, *small, *interruptible, "--min-savings-pct", "2")
        assert doc["mode"] == "now" and doc["segments"] == [{"start": "2023-03-02T08:00:00+00:00", "end": "2023-03-02T09:00:00+00:00"}]
        assert doc["expected_g_per_kwh"] == doc["run_now_g_per_kwh"] == 300.0 and doc["expected_savings_pct"] == 0.0
        assert doc["latest_start"] == "2023-03-02T11:00:00+00:00" and doc["deadline"] == "2023-03-02T12:00:00+00:00"
        assert "waiting saves 1.0% of carbon, below --min-savings-pct 2%" in doc["warnings"][-1]
    doc = run_json(capsys, *base, "--within", "12h", "--min-savings-pct", "2")
    assert doc["mode"] == "contiguous" and doc["start"] == "2023-03-02T14:00:00+00:00" and doc["expected_savings_pct"] == pytest.approx(50.0)


@pytest.mark.parametrize("bad", ["-1", "101", "nan"])
def test_min_savings_pct_out_of_range_is_a_usage_error(capsys, bad):
    code = main(["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "4h", "--min-savings-pct", bad])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and f"--min-savings-pct {bad}" in err and "between 0 and 100" in err
