"""Review 38c (a new user's side), the command line: L1 a date-only time, L2 a missing option
argument, L3 a too-short usage series, L4 --source next to --carbon-csv, L5 --source gb off the GB
grid, L9 a folder as --jobs, L10 an unknown --instance-type at conversion, L12 `care demo --day`,
L16 a --min-segment longer than the job.

The contract: bad input is exit 2, one ``error:`` line on stderr naming the bad value and the fix,
nothing on stdout; a warning is a ``warning:`` line and in the JSON's ``warnings``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from care_flows.cli import main

from test_cli_bad_input_review15 import usage_error  # noqa: E402 - exit 2, nothing on stdout, one error: line

ROOT = Path(__file__).resolve().parents[2]
NOW = ["--now", "2023-06-01T08:00:00Z"]
ES_CSV = ROOT.parent / "shared" / "data" / "carbon_intensity" / "electricitymaps_ES_2023_hourly.csv"
GAIA = ROOT.parent / "shared" / "data" / "workload_jobs" / "gaia_pai_1k_jobs.csv"


# ------------------------------------------------------------------ L1
@pytest.mark.parametrize(("args", "shown"), [
    (["plan", "--zone", "ES", "--now", "2023-06-01", "--duration", "2h", "--within", "24h"], "--now 2023-06-01 has no UTC offset and no time of day"),
    (["plan", "--zone", "ES", "--now", "2023-06-01Z", "--duration", "2h", "--within", "24h"], "--now '2023-06-01Z' has no time of day"),
    (["plan", "--zone", "ES", "--now", "2023-06-01+00:00", "--duration", "2h", "--within", "24h"], "--now '2023-06-01+00:00' has no time of day"),
    (["intensity", "--zone", "ES", "--start", "2023-06-01", "--end", "2023-06-02T00:00:00Z"], "--start 2023-06-01 has no UTC offset"),
])
def test_a_date_alone_is_told_the_full_time_to_give(args, shown, capsys):
    # was: "--now 2023-06-01 has no UTC offset; add Z or +00:00", and 2023-06-01Z then "is not an ISO 8601 time"
    line = usage_error(args, capsys)
    assert shown in line and line.endswith("give a time with an offset, e.g. 2023-06-01T00:00:00Z")


def test_following_the_date_only_advice_works(capsys):
    assert main(["plan", "--zone", "ES", "--now", "2023-06-01T00:00:00Z", "--duration", "2h", "--within", "24h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["now"] == "2023-06-01T00:00:00+00:00"


# ------------------------------------------------------------------ L2
@pytest.mark.parametrize(("args", "where"), [
    (["regions", "--at", "2023-06-01T08:00:00Z", "--regions"], "care regions"),
    (["plan", "--zone"], "care plan"),
    (["simulate", "poisson", "--n"], "care simulate poisson"),
    (["aws", "preflight", "--region"], "care aws preflight"),
])
def test_an_option_missing_its_argument_points_to_the_subcommands_help(args, where, capsys):
    # was: "error: Option '--regions' requires an argument. (see 'care --help')"
    line = usage_error(args, capsys)
    assert f"Option '{args[-1]}' requires an argument" in line and line.endswith(f"(see '{where} --help')")


def test_an_unknown_top_level_option_still_points_to_care_help(capsys):
    assert usage_error(["--bogus"], capsys).endswith("(see 'care --help')")


# ------------------------------------------------------------------ L3
@pytest.mark.parametrize("rows", [1, 2])
def test_forecast_usage_on_too_few_rows_asks_for_more_data_not_a_horizon_below_1(rows, tmp_path, capsys):
    # was: "series has 1 rows, not enough for a horizon of 12 steps; give --horizon N below 1, or more data"
    csv = tmp_path / "fu.csv"
    csv.write_text("timestamp,value\n" + "".join(f"2023-06-01T00:0{5 * i}:00Z,{i}\n" for i in range(rows)))
    line = usage_error(["forecast-usage", "--csv", str(csv), "--column", "value", "--timestamp-column", "timestamp", "--horizon", "1"], capsys)
    assert f"series has {rows} row(s), too few to evaluate any forecast (it needs at least horizon + 2 = 3 rows); give more data" in line
    assert "below 1" not in line and "--horizon N" not in line


# ------------------------------------------------------------------ L4
@pytest.mark.parametrize("source", ["watttime", "embedded"])
def test_plan_refuses_source_next_to_carbon_csv(source, capsys):
    # was: rc 0, planned on the CSV, the --source silently ignored
    line = usage_error(["plan", "--duration", "2h", "--within", "24h", "--carbon-csv", str(ES_CSV), *NOW, "--source", source], capsys)
    assert line.startswith("error: give --carbon-csv or --source, not both") and f"--source {source}" in line


def test_plan_on_carbon_csv_alone_still_works(capsys):
    assert main(["plan", "--duration", "2h", "--within", "24h", "--carbon-csv", str(ES_CSV), *NOW, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data_source"] == "csv"


# ------------------------------------------------------------------ L5
@pytest.mark.parametrize(("args", "shown"), [
    (["intensity", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T03:00:00Z", "--zone", "ES", "--source", "gb"], "not --zone ES"),
    (["intensity", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T03:00:00Z", "--region", "eu-south-2", "--source", "gb"], "not --region eu-south-2"),
    (["plan", "--zone", "ES", "--source", "gb", *NOW, "--duration", "2h", "--within", "24h"], "not --zone ES"),
    (["plan", "--region", "eu-north-1", "--source", "gb", *NOW, "--duration", "2h", "--within", "24h"], "not --region eu-north-1"),
])
def test_source_gb_off_the_gb_grid_is_a_usage_error_not_an_outage(args, shown, capsys):
    # was: rc 0 and "warning: gb failed for ES (no data for this zone); using embedded (direct)"
    line = usage_error(args, capsys)
    assert line.startswith("error: --source gb covers the GB grid only") and shown in line and "use --source embedded" in line


# ------------------------------------------------------------------ L9
def test_simulate_jobs_folder_is_called_a_folder(tmp_path, capsys):
    # was: "jobs CSV 'adir' does not exist; give the path of a CSV file"
    line = usage_error(["simulate", "--zone", "ES", "--policy", "care", "--jobs", str(tmp_path)], capsys)
    # review 46c L2: named as the option typed
    assert line == f"error: --jobs {str(tmp_path)!r} is a folder, not a file; give the path of a CSV file (make one with 'care simulate poisson')"


# ------------------------------------------------------------------ L10
def test_convert_gaia_refuses_an_instance_type_simulate_cannot_use(tmp_path, capsys):
    # was: rc 0, t9.huge rows written; only `care simulate` refused them later
    out = tmp_path / "jobs.csv"
    line = usage_error(["simulate", "convert-gaia", str(GAIA), "--start", "2023-01-02T00:00Z", "--instance-type", "t9.huge",
                        "--limit", "2", "--out", str(out)], capsys)
    assert line.startswith("error: --instance-type 't9.huge' is not in the power table") and "m5.large" in line
    assert not out.exists()
    assert "did you mean 'm5.large'" in usage_error(["simulate", "convert-gaia", str(GAIA), "--start", "2023-01-02T00:00Z",
                                                     "--instance-type", "m5.lrage"], capsys)


# ------------------------------------------------------------------ L12
@pytest.mark.parametrize("day", ["banana", "2023-02-30", "2023-06-01T00:00"])
def test_demo_day_errors_ask_for_a_date_and_echo_what_was_typed(day, tmp_path, capsys):
    # was: "--day '2023-02-30T00:00:00Z' is not an ISO 8601 time; use e.g. 2023-06-01T12:00:00Z"
    line = usage_error(["demo", "--day", day, "--out", str(tmp_path / "r")], capsys)
    assert line == f"error: --day {day!r} is not a date; use e.g. 2023-06-01 (a day from 2023-01-02 to 2023-12-29)"


# ------------------------------------------------------------------ L16
def test_min_segment_longer_than_the_job_is_a_warning(capsys):
    # was: rc 0 and a 1-segment plan, not a word
    args = ["plan", "--zone", "ES", *NOW, "--duration", "3h", "--within", "24h", "--interruptible", "--min-segment", "5h", "--json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    note = "--min-segment 5h is longer than --duration 3h: planned as one segment"
    assert note in doc["warnings"] and f"warning: {note}" in err.splitlines() and len(doc["segments"]) == 1
    assert main([("3h" if a == "5h" else a) for a in args]) == 0  # as long as the job: no warning
    assert "min-segment" not in capsys.readouterr().err
