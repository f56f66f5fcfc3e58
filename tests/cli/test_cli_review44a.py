"""Review 44a (a new user following the docs): the messages that named the wrong thing or no fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from care_flows.cli import main
from tests.cli.test_cli_bad_input_review15 import COMPARE, NOW, REGIONS, usage_error

ES_2023 = Path(__file__).resolve().parents[3] / "shared" / "data" / "carbon_intensity" / "electricitymaps_ES_2023_hourly.csv"
JOBS = "job_id,arrival,duration_h,slack_h\nj1,2023-06-01T08:00:00Z,1,24\n"


@pytest.fixture()
def es_csv(tmp_path):
    if ES_2023.is_file():
        return ES_2023.read_text(encoding="utf-8")
    from care_flows.data import embedded_intensity

    s = embedded_intensity("ES", "lifecycle")["2023-05-30":"2023-06-03"]
    return "Datetime (UTC),Carbon intensity gCO₂eq/kWh (Life cycle)\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{v}\n" for t, v in s.items())


def test_a_tab_separated_jobs_csv_is_named_as_such_not_as_missing_columns(tmp_path, capsys):
    """M1: was "lacks column(s) job_id, arrival, ... (found: job_id\\tarrival\\t...)"."""
    jobs = tmp_path / "tab.csv"
    jobs.write_text(JOBS.replace(",", "\t"))
    line = usage_error(["simulate", "--zone", "ES", "--jobs", str(jobs)], capsys)
    assert "looks tab-separated" in line and "separate the fields with ','" in line and "lacks column" not in line


def test_a_semicolon_or_utf16_carbon_csv_is_named_as_such_in_simulate(tmp_path, es_csv, capsys):
    """M1: simulate --carbon-csv said "needs a time column ... found: <the whole header>", and for UTF-16 printed the codec's words."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    semi = tmp_path / "semi.csv"
    semi.write_text(es_csv.replace(",", ";"), encoding="utf-8")
    line = usage_error(["simulate", "--carbon-csv", str(semi), "--jobs", str(jobs)], capsys)
    assert "looks ';'-separated" in line and "save it comma-separated" in line
    u16 = tmp_path / "u16.csv"
    u16.write_text(es_csv, encoding="utf-16")
    line = usage_error(["simulate", "--carbon-csv", str(u16), "--jobs", str(jobs)], capsys)
    assert "is not UTF-8 text" in line and "codec" not in line


@pytest.mark.parametrize("typed", ["EU-SOUTH-2", "Eu-North-1"])
def test_an_upper_case_region_gets_the_lower_case_name(typed, capsys):
    """M2: was "unknown region 'EU-SOUTH-2'; known regions: ..." with no hint (a typo got one)."""
    line = usage_error(["regions", "--regions", typed, "--at", "2023-06-01T08:00:00Z", "--duration", "1h"], capsys)
    assert f"did you mean {typed.lower()!r}?" in line and "lower case" in line
    line = usage_error(["plan", "--region", typed, *NOW, "--duration", "2h", "--within", "24h"], capsys)
    assert f"did you mean {typed.lower()!r}?" in line


def test_a_report_period_without_a_unit_suggests_days(capsys):
    """L1: was "give e.g. 7h, 7m or 7s" for an option whose unit is days."""
    assert usage_error(["report", "--since", "7"], capsys) == "error: --since '7' has no unit; give e.g. 7d, 7h or 7m"


def test_a_mistyped_home_region_names_the_option(tmp_path, capsys):
    """L2: the other commands say "--region:"; simulate did not name --home-region."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    line = usage_error(["simulate", "--zone", "ES", "--zone", "SE", "--jobs", str(jobs), "--home-region", "eu-nort-1"], capsys)
    assert line.startswith("error: --home-region: unknown region 'eu-nort-1' (did you mean 'eu-north-1'?)")


def test_a_cpu_utilisation_in_percent_is_told_it_is_a_fraction(capsys):
    """L3: was pydantic's "Input should be less than or equal to 1 (got 50.0)"."""
    line = usage_error([*REGIONS, "--duration", "1h", "--cpu-utilisation", "50"], capsys)
    assert line == "error: --cpu-utilisation 50 must be between 0 and 1, e.g. 0.5 for 50%"


def test_compare_json_lists_warnings_as_every_command_does(capsys):
    """L5: README says every JSON lists its warnings in `warnings`; compare's had no such key."""
    assert main([*COMPARE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_a_semicolon_carbon_csv_with_decimal_commas_gets_the_separator_hint(tmp_path, capsys):
    """Review 44d M2: decimal commas made every row look longer than the one-field header, and that error came first."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    semi = tmp_path / "semi.csv"
    semi.write_text("Datetime (UTC);Carbon intensity gCO₂eq/kWh (Life cycle)\n2023-06-01 00:00:00;150,5\n2023-06-01 01:00:00;149,25\n",
                    encoding="utf-8")
    line = usage_error(["simulate", "--carbon-csv", str(semi), "--jobs", str(jobs)], capsys)
    assert "looks ';'-separated" in line and "more fields" not in line


def test_an_upper_case_aws_region_care_does_not_know_is_named_as_such(capsys):
    """Review 44d L6: 'ap-southeast-1' got "an AWS region CaRE has no ... for", 'AP-SOUTHEAST-1' nothing."""
    line = usage_error(["regions", "--regions", "AP-SOUTHEAST-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h"], capsys)
    assert "an AWS region CaRE has no grid zone" in line


def test_regions_defaults_at_to_now_and_says_when_only_now_was_scored(capsys):
    """Review 44a L6: --at was required while care plan's --now defaults to now, and without --within the table
    silently held only "now" options."""
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--duration", "1h", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"] and doc["chosen"]["region"] in ("eu-south-2", "eu-north-1")
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h"]) == 0
    assert "only starting at --at was scored: add --within" in capsys.readouterr().out
    assert main([*REGIONS, "--duration", "1h", "--within", "24h"]) == 0
    assert "only starting at --at" not in capsys.readouterr().out
