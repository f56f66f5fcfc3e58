"""Review 45e: forecasts are issued at the start of the slot `now` falls in, the same in `care plan`, `care regions`
and `@care` / the controller (`fetch_forecasts`): the hour, or a sub-hourly trace's step."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from care_flows.cli import main
from care_flows.orchestration.plan import fetch_forecasts
from care_flows.policy import CarePolicy
from care_flows.signals import TraceSignal


def _quarter_hour_trace() -> pd.Series:
    """15-minute data with a drop to 50 g at 08:15 on 2023-06-01 (a wind front)."""
    idx = pd.date_range("2023-05-20", "2023-06-02", freq="15min", tz="UTC", inclusive="left")
    rng = np.random.default_rng(0)
    values = np.asarray(300 + 100 * np.sin(2 * np.pi * (idx.hour * 4 + idx.minute / 15) / 96) + rng.normal(0, 5, len(idx)), dtype=float)
    values[idx >= pd.Timestamp("2023-06-01T08:15Z")] = 50.0
    return pd.Series(values, index=idx)


def test_at_care_reads_the_rows_of_a_sub_hourly_trace_since_the_hour() -> None:
    """At 08:50 the rows 08:15 and 08:30 are known: issued at 08:00 (the hour) the forecast ignored them (374 g at
    09:00 against 50 measured); issued at 08:45 it is `care plan`'s forecast."""
    signal = TraceSignal({"ES": _quarter_hour_trace()}, source="csv")
    now = pd.Timestamp("2023-06-01T08:50Z")
    policy = CarePolicy(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="4h")
    got = fetch_forecasts(policy, now, pd.Timedelta("4h"), signal=signal)["eu-south-2"]
    issue = pd.Timestamp("2023-06-01T08:45Z")
    expected = signal.forecast("ES", issue, now + pd.Timedelta("4h") - issue)
    assert got.index[0] == issue
    pd.testing.assert_series_equal(got, expected, check_names=False)
    assert got[pd.Timestamp("2023-06-01T09:00Z")] < 250  # 215 g; issued at the hour, 374


def test_care_regions_issues_at_the_hour_like_care_plan(capsys) -> None:
    """At 08:30 `care regions` forecast from 09:00: it warned, estimated run-now from later hours (157.6 vs 170.9 g)
    and, with the deadline at --at + duration, just ran now."""
    args = ["--at", "2023-06-01T08:30Z", "--within", "3h", "--duration", "1h", "--json"]
    assert main(["regions", "--regions", "eu-south-2", *args]) == 0
    captured = capsys.readouterr()
    regions = json.loads(captured.out)
    assert "forecast starts" not in captured.err
    assert main(["plan", "--zone", "ES", "--now", "2023-06-01T08:30Z", "--within", "3h", "--duration", "1h", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert round(regions["baseline"]["expected_g_per_kwh"], 1) == round(plan["run_now_g_per_kwh"], 1) == 170.9
    assert regions["chosen"]["start"] == plan["start"]
    assert main(["regions", "--regions", "eu-south-2", "--at", "2023-06-01T08:30Z", "--within", "1h", "--duration", "1h"]) == 0
    assert "forecast starts" not in capsys.readouterr().err


def test_forecast_carbon_refuses_naive_times() -> None:
    """A Madrid-local history with its offsets dropped came back labelled UTC and planned 2 h off (review 45e M4)."""
    import pytest

    from care_flows.errors import DataError
    from care_flows.forecast.carbon import forecast_carbon

    aware = _quarter_hour_trace()
    naive = aware.tz_localize(None)
    with pytest.raises(DataError, match="the carbon forecast index has no time zone"):
        forecast_carbon(naive, pd.Timestamp("2023-06-01T08:00Z"), pd.Timedelta("4h"))
    with pytest.raises(DataError, match="issued_at 2023-06-01T08:00:00 has no time zone"):
        forecast_carbon(aware, pd.Timestamp("2023-06-01T08:00"), pd.Timedelta("4h"))


def _csv(tmp_path, rows: list[str], name: str = "es.csv") -> str:
    path = tmp_path / name
    path.write_text("Datetime (UTC),Carbon Intensity gCO2eq/kWh (LCA)\n" + "\n".join(rows) + "\n")
    return str(path)


def test_short_offsets_in_a_carbon_csv_are_read_or_refused_in_one_line(tmp_path, capsys) -> None:
    """psql writes +00 / +01: it was an internal TypeError / ValueError, exit 1 (review 45e L1)."""
    times = pd.date_range("2023-05-20", "2023-06-02", freq="1h", tz="UTC", inclusive="left")
    utc = _csv(tmp_path, [f"{t:%Y-%m-%d %H:%M:%S}+00,{200 + 50 * (t.hour % 7)}" for t in times], "utc.csv")
    args = ["--now", "2023-06-01T08:00Z", "--duration", "2h", "--within", "12h", "--json"]
    assert main(["plan", "--carbon-csv", utc, *args]) == 0
    assert json.loads(capsys.readouterr().out)["forecast_model"] == "ridge"
    local = _csv(tmp_path, [f"{t.tz_convert('Europe/Madrid'):%Y-%m-%dT%H:%M:%S}+02,200" for t in times], "local.csv")
    assert main(["plan", "--carbon-csv", local, *args]) == 2
    err = capsys.readouterr().err
    assert "is not UTC; convert the column 'Datetime (UTC)' to UTC" in err and "Traceback" not in err


def test_a_gap_on_a_dst_change_asks_whether_the_times_are_local(tmp_path, capsys) -> None:
    """Madrid-local times without offsets skip 02:00 on 2023-03-26; 15-minute duplicates are 'one row per time' (L1, L3)."""
    local = pd.date_range("2023-03-20", "2023-03-28", freq="1h", tz="Europe/Madrid", inclusive="left").tz_localize(None)
    path = _csv(tmp_path, [f"{t:%Y-%m-%d %H:%M:%S},200" for t in local])
    assert main(["plan", "--carbon-csv", path, "--now", "2023-03-27T08:00Z", "--duration", "1h", "--within", "6h"]) == 2
    err = capsys.readouterr().err
    assert "has a gap at 2023-03-26T02:00:00+00:00" in err and "are these local times? the time column must be UTC" in err
    quarter = pd.date_range("2023-06-01", "2023-06-03", freq="15min", inclusive="left")
    rows = [f"{t:%Y-%m-%d %H:%M:%S},200" for t in quarter] + [f"{quarter[5]:%Y-%m-%d %H:%M:%S},999"]
    assert main(["plan", "--carbon-csv", _csv(tmp_path, rows, "q.csv"), "--now", "2023-06-02T08:00Z", "--duration", "1h",
                 "--within", "6h"]) == 2
    assert "keep one row per time" in capsys.readouterr().err


def test_care_intensity_keeps_the_measured_rows_of_a_window_past_the_data(capsys) -> None:
    """One hour past the end of 2023: the measured 126.63 and 129.01 g were shown as 86.55 and 99.5, copied from
    2023-01-01, and the warning said the data ended before the window (review 45e M1)."""
    assert main(["intensity", "--zone", "ES", "--start", "2023-12-31T22:00Z", "--end", "2024-01-01T01:00Z", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["g_per_kwh"] for p in doc["points"]][:2] == [126.63, 129.01]
    assert doc["first_replayed"] == "2024-01-01T00:00:00+00:00" and doc["replayed_from"] == "2023-01-02T00:00:00+00:00"
    assert doc["warnings"] == ["the embedded data end at 2024-01-01T00:00:00+00:00; the rows from then on are replayed from "
                               "2023-01-02T00:00:00+00:00 (1 x 52 weeks earlier), not measured"]
    assert main(["intensity", "--zone", "ES", "--start", "2023-12-31T22:00Z", "--end", "2024-01-01T00:00Z", "--json"]) == 0
    inside = json.loads(capsys.readouterr().out)
    assert [p["g_per_kwh"] for p in inside["points"]] == [126.63, 129.01] and inside["warnings"] == []


def test_care_plan_reads_consecutive_exports_and_names_a_fallback_forecast(capsys) -> None:
    """On 1 January the 2023 export alone forecasts by persistence (0 % saving, no word); given twice, --carbon-csv
    kept only the last file. Now both are read (19.3 %, ridge) and a fallback forecast is a warning (review 45e M3)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon_intensity"
    y2022, y2023 = str(data / "electricitymaps_ES_2022_hourly.csv"), str(data / "electricitymaps_ES_2023_hourly.csv")
    args = ["--now", "2023-01-01T02:00Z", "--duration", "2h", "--within", "12h", "--json"]
    assert main(["plan", "--carbon-csv", y2022, "--carbon-csv", y2023, *args]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["forecast_model"] == "ridge" and round(both["expected_savings_pct"], 1) == 19.3 and both["warnings"] == []
    assert main(["plan", "--carbon-csv", y2023, *args]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["forecast_model"] == "persistence"
    assert alone["warnings"] == ["the forecast is the 'persistence' fallback: the data hold under 7 days before --now, the ridge "
                                 "model needs them (give the export before it too: repeat --carbon-csv)"]


def test_exports_that_do_not_follow_on_are_refused(capsys) -> None:
    """2021 + 2023 was joined over a 365-day hole filled with one repeated value, still labelled ridge (review 45f L3)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon_intensity"
    files = [str(data / f"electricitymaps_ES_{year}_hourly.csv") for year in (2021, 2023)]
    assert main(["plan", "--carbon-csv", files[0], "--carbon-csv", files[1], "--now", "2023-01-01T02:00Z", "--duration", "2h",
                 "--within", "12h"]) == 2
    assert "does not follow on from another file: the rows 2022-01-01T00:00:00+00:00 to 2022-12-31T23:00:00+00:00 are missing" in capsys.readouterr().err


def test_care_intensity_over_a_window_wider_than_the_data_names_the_data(capsys) -> None:
    """A window from before the data to after them gave the data layer's message (review 45f L4)."""
    assert main(["intensity", "--zone", "ES", "--start", "2020-12-31T00:00Z", "--end", "2024-01-01T01:00Z"]) == 2
    assert "is outside the embedded data for ES" in capsys.readouterr().err


def test_consecutive_exports_in_any_order_are_joined_and_a_hole_between_them_is_refused(tmp_path, capsys) -> None:
    """2023, 2021, 2022 was refused as '2021 to 2023 missing'; a 2-hour hole between two files was joined and
    never filled (review 45g L4, L5)."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon_intensity"
    files = [str(data / f"electricitymaps_ES_{year}_hourly.csv") for year in (2023, 2021, 2022)]
    args = ["--now", "2023-01-01T02:00Z", "--duration", "2h", "--within", "12h", "--json"]
    assert main(["plan", *sum((["--carbon-csv", f] for f in files), []), *args]) == 0
    assert json.loads(capsys.readouterr().out)["forecast_model"] == "ridge"
    times = pd.date_range("2023-05-01", "2023-06-02", freq="1h", tz="UTC", inclusive="left")
    a = _csv(tmp_path, [f"{t:%Y-%m-%d %H:%M:%S},200" for t in times[:400]], "a.csv")
    b = _csv(tmp_path, [f"{t:%Y-%m-%d %H:%M:%S},200" for t in times[402:]], "b.csv")
    assert main(["plan", "--carbon-csv", a, "--carbon-csv", b, *args[:1], "2023-06-01T08:00Z", *args[2:]]) == 2
    assert "does not follow on from another file" in capsys.readouterr().err


def test_files_off_the_grid_or_inside_another_are_named_so(tmp_path) -> None:
    """They were refused as 'X to Y is missing', with Y before X for a row inside another file (review 45h L3)."""
    import pytest

    from care_flows.errors import DataError

    hours = pd.date_range("2023-06-01", periods=48, freq="1h")
    base = _csv(tmp_path, [f"{t:%Y-%m-%d %H:%M:%S},200" for t in hours], "base.csv")
    half = _csv(tmp_path, [f"{t + pd.Timedelta('30min'):%Y-%m-%d %H:%M:%S},200" for t in hours + pd.Timedelta("2D")], "half.csv")
    inside = _csv(tmp_path, ["2023-06-01 10:30:00,200"], "inside.csv")
    with pytest.raises(DataError, match="is not on the 1h grid of another file"):
        TraceSignal.from_csv({"ES": [base, half]})
    with pytest.raises(DataError, match="inside another file's span"):
        TraceSignal.from_csv({"ES": [base, inside]})
    one, two = _csv(tmp_path, ["2023-06-01 00:00:00,200"], "one.csv"), _csv(tmp_path, ["2023-06-01 00:15:00,210"], "two.csv")
    assert len(TraceSignal.from_csv({"ES": [one, two]}).trace("ES")) == 2
