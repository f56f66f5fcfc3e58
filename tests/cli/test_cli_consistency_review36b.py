"""Review 36b (leftover 35a L8): the ``care`` commands made consistent with one another.

1. A deadline that cannot be met: ``care plan`` ran now with a warning (exit 0, the specification:
   "A job whose deadline cannot be met runs now, with a warning, never later") while ``care regions``
   refused it (exit 2). Both now run now and warn; a deadline *before* the start stays bad input
   (exit 2, one ``error:`` line naming the value and the fix).
2. Warnings: ``care plan`` and ``care regions`` printed theirs on stdout (and, with ``--json``, only
   in the JSON); ``care intensity``, ``care simulate``, ``care aws reap`` and ``care forecast-usage``
   printed them on stderr (the last as log lines) but their JSON had no ``warnings``. Every command
   now prints each warning as one ``warning: `` line on stderr, in text and ``--json`` mode alike, and
   its JSON carries the same lines in ``warnings``.
3. Error messages that named an option by its Python name (``start``, ``utilisation``,
   ``kind='lifecycle'``, ``path=``, ``weights.foo.[key]``) or not at all (``unknown region``) now
   name the flag the user typed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
AT = "2023-06-01T00:00:00Z"
PLAN_TOO_CLOSE = ["plan", "--zone", "ES", "--now", AT, "--duration", "3h", "--within", "2h"]
REGIONS = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", AT]
REGIONS_TOO_CLOSE = [*REGIONS, "--duration", "3h", "--within", "2h"]
CANNOT_BE_MET = ("deadline 2023-06-01T02:00:00+00:00 cannot be met: the job needs 3h but only 2h remain from "
                 "2023-06-01T00:00:00+00:00; running now")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Exit 2, nothing on stdout, exactly one ``error:`` line on stderr; returns that line."""
    code, out, err = run(args, capsys)
    assert code == 2, (args, code, err)
    assert out == "", (args, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    return lines[0]


def warning_lines(err: str) -> list[str]:
    return [line[len("warning: "):] for line in err.splitlines() if line.startswith("warning: ")]


# ------------------------------------------------------------------ 1. a deadline that cannot be met
def test_regions_runs_now_with_a_warning_when_the_deadline_cannot_be_met(capsys):
    # was: exit 2, "error: --within 2h is shorter than --duration 3h; the run cannot finish in time"
    code, out, err = run([*REGIONS_TOO_CLOSE, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert CANNOT_BE_MET in doc["warnings"]
    assert not any("eu-south-2: deadline" in w or "eu-north-1: deadline" in w for w in doc["warnings"])  # said once, not per region
    assert warning_lines(err) == doc["warnings"]
    # every option is still scored; each says it misses the deadline; the best one runs now
    assert {o["region"] for o in doc["options"]} == {"eu-south-2", "eu-north-1"}
    for o in doc["options"]:
        assert o["feasible"] is False and "misses the deadline 2023-06-01T02:00:00+00:00 by 1h" in o["reason"], o
        assert o["start"] == "2023-06-01T00:00:00+00:00" and o["expected_g"] is not None
    best = min(doc["options"], key=lambda o: o["rank"])
    assert doc["chosen"]["region"] == best["region"] == "eu-north-1"  # the greener grid, now
    assert doc["chosen"]["start"] == "2023-06-01T00:00:00+00:00" and doc["chosen"]["end"] == "2023-06-01T03:00:00+00:00"
    assert doc["deadline"] == "2023-06-01T02:00:00+00:00" and doc["feasible"] is False


def test_regions_and_plan_warn_the_same_way_for_a_deadline_too_close(capsys):
    code, out, err = run([*PLAN_TOO_CLOSE, "--json"], capsys)
    assert code == 0 and json.loads(out)["warnings"] == [CANNOT_BE_MET]
    assert warning_lines(err) == [CANNOT_BE_MET]
    code, out, err = run(REGIONS_TOO_CLOSE, capsys)  # text mode
    assert code == 0, err
    assert CANNOT_BE_MET in warning_lines(err) and "warning" not in out
    assert "misses the deadline" in out and "chosen: eu-north-1" in out
    # a deadline at the start itself is not before it: run now, warn (as care plan does)
    code, out, err = run([*REGIONS, "--duration", "1h", "--within", "0h", "--json"], capsys)
    assert code == 0 and json.loads(out)["chosen"]["start"] == "2023-06-01T00:00:00+00:00", err
    assert any("cannot be met" in w for w in warning_lines(err))
    # a deadline before the start stays bad input, in both commands
    line = usage_error([*REGIONS, "--within", "-1h"], capsys)
    assert "--within '-1h'" in line and "give a positive duration" in line
    line = usage_error(["plan", "--zone", "ES", "--now", AT, "--duration", "3h", "--deadline", "2023-05-31T23:00:00Z"], capsys)
    assert line == ("error: --deadline 2023-05-31T23:00:00+00:00 is before --now 2023-06-01T00:00:00+00:00; "
                    "give a later deadline")


# ------------------------------------------------------------------ 2. warnings: stderr, and in the JSON
@pytest.mark.parametrize("command", [PLAN_TOO_CLOSE, REGIONS_TOO_CLOSE], ids=["plan", "regions"])
def test_plan_and_regions_print_warnings_on_stderr_in_text_mode(command, capsys):
    # was: "warning: deadline ... cannot be met ..." on stdout, mixed into the plan / table
    code, out, err = run(command, capsys)
    assert code == 0, err
    assert "warning" not in out
    assert any("cannot be met" in w for w in warning_lines(err))


@pytest.mark.parametrize("command", [PLAN_TOO_CLOSE, REGIONS_TOO_CLOSE], ids=["plan", "regions"])
def test_plan_and_regions_print_warnings_on_stderr_with_json_too(command, capsys):
    # was: with --json the warnings were in the JSON only; stderr was empty
    code, out, err = run([*command, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)  # stdout is the JSON document only
    assert doc["warnings"] and warning_lines(err) == doc["warnings"]


def test_intensity_json_carries_its_warnings(capsys):
    # was: the replay warning on stderr only; the JSON had no warnings key
    code, out, err = run(["intensity", "--zone", "ES", "--start", "2025-06-01T00:00:00Z", "--end", "2025-06-01T03:00:00Z", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["replayed_from"] and len(doc["warnings"]) == 1 and "replayed from" in doc["warnings"][0]
    assert warning_lines(err) == doc["warnings"]
    code, out, err = run(["intensity", "--zone", "ES", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T03:00:00Z", "--json"], capsys)
    assert code == 0 and json.loads(out)["warnings"] == [] and err == ""


def test_simulate_json_carries_its_warnings(tmp_path, capsys):
    # was: the trace-alignment note on stderr only; the JSON had no warnings key
    idx = pd.date_range("2023-06-01", periods=24 * 10, freq="h", tz="UTC")
    se = tmp_path / "se.csv"
    pd.DataFrame({"time": [t.isoformat() for t in idx], "g_per_kwh": 100 + 50 * np.sin(np.arange(len(idx)) / 4)}).to_csv(se, index=False)
    jobs = tmp_path / "jobs.csv"
    assert main(["simulate", "poisson", "--n", "3", "--window-h", "1", "--start", "2023-06-03T08:00:00Z", "--slack-h", "6",
                 "--out", str(jobs)]) == 0
    capsys.readouterr()
    code, out, err = run(["simulate", "--carbon-csv", f"eu-north-1={se}", "--zone", "ES", "--home-region", "eu-south-2",
                          "--jobs", str(jobs), "--policy", "now", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["warnings"]) == 1 and "aligned on their common time range" in doc["warnings"][0]
    assert warning_lines(err) == doc["warnings"]


def test_aws_reap_json_carries_its_warning(monkeypatch, capsys):
    # was: "warning: PREFECT_API_URL is not set ..." on stderr only; the JSON had no warnings key
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import care_flows.aws.reaper as reaper

    monkeypatch.setattr(reaper, "reap", lambda regions, clients, **kw: reaper.ReapReport(dry_run=True))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        code, out, err = run(["aws", "reap", "--dry-run", "-r", "eu-north-1", "--endpoint-url", "http://127.0.0.1:9", "--json"], capsys)
        assert code == 0, err
        doc = json.loads(out)
        assert len(doc["warnings"]) == 1 and "PREFECT_API_URL is not set" in doc["warnings"][0]
        assert warning_lines(err) == doc["warnings"]
        code, out, err = run(["aws", "reap", "--dry-run", "--no-prefect", "-r", "eu-north-1", "--endpoint-url", "http://127.0.0.1:9",
                              "--json"], capsys)
        assert code == 0 and json.loads(out)["warnings"] == [] and "warning:" not in err


def _gappy_usage_csv(path: Path) -> Path:
    t = pd.date_range("2023-01-01", periods=3000, freq="5min", tz="UTC").delete(range(1000, 1010))
    v = 10 + np.random.default_rng(0).random(len(t))
    pd.DataFrame({"timestamp": [x.isoformat() for x in t], "cpu": v}).to_csv(path, index=False)
    return path


def test_forecast_usage_warnings_are_warning_lines_and_in_its_json(tmp_path, capsys):
    # was: logged ("WARNING care_flows.forecast.usage_io: 1 gap(s) ..."), and not in the JSON
    csv = _gappy_usage_csv(tmp_path / "gap.csv")
    code, out, err = run(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--timestamp-column", "timestamp", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert any(w.startswith("1 gap(s) longer than 1.5 steps in 'cpu'") for w in doc["warnings"]), doc["warnings"]
    assert any("persistent forecast = last value" in w for w in doc["warnings"]), doc["warnings"]
    assert warning_lines(err) == doc["warnings"]


def test_forecast_usage_warnings_are_said_once_by_the_console_script(tmp_path):
    # the log line is not printed as well (was: "WARNING care_flows.forecast.usage_io: ..." only)
    csv = _gappy_usage_csv(tmp_path / "gap.csv")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", "from care_flows.cli import main; main()", "forecast-usage", "--csv", str(csv),
                           "--column", "cpu", "--timestamp-column", "timestamp", "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if line.startswith("WARNING ")], proc.stderr
    assert sum("1 gap(s) longer than 1.5 steps" in line for line in lines) == 1, proc.stderr
    assert json.loads(proc.stdout)["warnings"] == warning_lines(proc.stderr)


# ------------------------------------------------------------------ 3. errors name the flag typed
def test_intensity_start_and_end_errors_name_the_options(capsys):
    # was: "end 2023-06-01T00:00:00+00:00 is not after start ...; give start < end", "start 'foo' is not an ISO 8601 time"
    line = usage_error(["intensity", "--zone", "ES", "--start", "2023-06-02T00:00:00Z", "--end", "2023-06-01T00:00:00Z"], capsys)
    assert line.startswith("error: --end 2023-06-01T00:00:00+00:00 is not after --start 2023-06-02T00:00:00+00:00; give an --end later")
    assert "give start < end" not in line
    line = usage_error(["intensity", "--zone", "ES", "--start", "foo", "--end", "2023-06-01T00:00:00Z"], capsys)
    assert line.startswith("error: --start 'foo' is not an ISO 8601 time")
    line = usage_error(["intensity", "--zone", "ES", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-02T00:00"], capsys)
    assert line.startswith("error: --end 2023-06-02T00:00 has no UTC offset")


@pytest.mark.parametrize("args, expected", [
    # was: "the embedded data has no marginal signal; use kind='lifecycle' or 'direct' (on the command line ...)"
    (["intensity", "--zone", "ES", "--kind", "marginal", "--start", AT, "--end", "2023-06-01T03:00:00Z"],
     "error: --source embedded does not serve --kind marginal (it serves lifecycle and direct); use --kind lifecycle or leave --kind out"),
    (["plan", "--zone", "ES", "--now", AT, "--duration", "1h", "--within", "3h", "--kind", "marginal"],
     "error: --source embedded does not serve --kind marginal (it serves lifecycle and direct); use --kind lifecycle or leave --kind out"),
    # was: "WattTime serves the marginal signal, not 'direct'; use kind='marginal' (on the command line --kind marginal), ..."
    (["intensity", "--zone", "ES", "--source", "watttime", "--kind", "direct", "--start", AT, "--end", "2023-06-01T03:00:00Z"],
     "error: --source watttime does not serve --kind direct (it serves marginal); use --kind marginal or leave --kind out"),
    # was: "carbon source 'csv' needs path=<Electricity Maps CSV> (or {zone: path})"
    (["intensity", "--zone", "ES", "--source", "csv", "--start", AT, "--end", "2023-06-01T03:00:00Z"],
     "error: --source 'csv' needs a CSV file, which care intensity cannot take; use one of electricitymaps, embedded, gb, watttime"),
])
def test_source_and_kind_errors_name_the_options(args, expected, capsys):
    assert usage_error(args, capsys) == expected


def test_plan_csv_kind_error_names_the_options(tmp_path, capsys):
    # was: "CSV traces hold 'lifecycle' or 'direct' intensity, not 'marginal'"
    csv = tmp_path / "es.csv"
    csv.write_text("time,g_per_kwh\n" + "".join(f"2023-06-01T{h:02d}:00:00Z,{100 + h}\n" for h in range(24)))
    line = usage_error(["plan", "--carbon-csv", str(csv), "--now", AT, "--duration", "1h", "--within", "3h", "--kind", "marginal"], capsys)
    assert line == "error: --carbon-csv holds lifecycle or direct intensity, not --kind marginal; use --kind lifecycle or leave --kind out"


def test_intensity_unknown_source_names_the_option(capsys):
    # was: "unknown carbon source 'nope'; known sources: csv, electricitymaps, ..." (offering csv, which it cannot take)
    line = usage_error(["intensity", "--zone", "ES", "--source", "nope", "--start", AT, "--end", "2023-06-01T03:00:00Z"], capsys)
    assert line == "error: --source: unknown carbon source 'nope' (known sources: electricitymaps, embedded, gb, watttime)"


def test_compare_errors_name_the_options(capsys):
    compare = ["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large"]
    # was: "utilisation 2.0 must be between 0 and 1 (e.g. 0.5 for 50%)"
    assert usage_error([*compare, "--utilisation", "2"], capsys) == "error: --utilisation 2 must be between 0 and 1, e.g. 0.5 for 50%"
    assert usage_error([*compare, "--utilisation", "nan"], capsys).startswith("error: --utilisation nan must be between 0 and 1")
    # was: "instance type 'foo' has no price in eu-south-2; ..."
    line = usage_error(["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "foo"], capsys)
    assert line.startswith("error: --instance-type 'foo' has no price in eu-south-2; ")


def test_regions_policy_errors_name_the_options(capsys):
    # was: "error: weights.foo.[key]: Input should be 'carbon', ..."
    line = usage_error([*REGIONS, "--weights", "foo=1"], capsys)
    assert line.startswith("error: --weights (key 'foo'): Input should be 'carbon', 'cost', 'latency' or 'resource'"), line
    # was: "--origin-region: unknown region 'eu-moon-1'; known --regions: ..." (the field mapping hit "known regions:")
    line = usage_error([*REGIONS, "--origin-region", "eu-moon-1"], capsys)
    assert line.startswith("error: --origin-region: unknown region 'eu-moon-1'; known regions: ") and "known --regions" not in line


@pytest.mark.parametrize("args, flag", [
    ([*REGIONS[:1], "--regions", "eu-south-2,eu-moon-1", "--at", AT], "--regions"),
    (["plan", "--region", "eu-moon-1", "--now", AT, "--duration", "1h", "--within", "3h"], "--region"),
    (["compare", "--regions", "eu-south-2,eu-moon-1", "--instance-type", "t3.large"], "--regions"),
    (["intensity", "--region", "eu-moon-1", "--start", AT, "--end", "2023-06-01T03:00:00Z"], "--region"),
    (["usage", "etl", "--region", "eu-moon-1"], "--region"),
])
def test_unknown_region_errors_name_the_option(args, flag, capsys):
    # was: "unknown region 'eu-moon-1'; known regions: ..." (as care aws and care regions --home-region already say it)
    assert usage_error(args, capsys).startswith(f"error: {flag}: unknown region 'eu-moon-1'; known regions: ")


@pytest.mark.parametrize("command", [
    ["plan", "--now", AT, "--duration", "1h", "--within", "3h"],
    ["intensity", "--start", AT, "--end", "2023-06-01T03:00:00Z"],
])
def test_zone_without_data_names_the_option(command, capsys):
    # was: "zone 'XX' has no embedded data; embedded zones are ES, SE, DE, FR, GB (use a CSV or a live source for others)"
    line = usage_error([*command, "--zone", "XX"], capsys)
    assert line.startswith("error: --zone 'XX' has no embedded data; embedded zones are ES, SE, DE, FR, GB")
    assert "--source" in line


def test_intensity_region_without_embedded_data_names_the_region_typed(capsys):
    # was: "zone 'US-MIDA-PJM' has no embedded data; ..." (a zone the user never typed), as care plan said before review 35a
    line = usage_error(["intensity", "--region", "us-east-1", "--start", AT, "--end", "2023-06-01T03:00:00Z"], capsys)
    assert line.startswith("error: region us-east-1 (grid zone US-MIDA-PJM) has no embedded data; embedded regions: ")
    assert "--source electricitymaps or watttime" in line and "--carbon-csv" not in line  # care intensity has no --carbon-csv


def test_usage_json_carries_its_warnings(tmp_path, capsys):
    # was: "WARNING care_flows.usage: usage store file ...: skipped 1 malformed row(s) ..." (a log line); no warnings in the JSON
    from care_flows.usage_capture import UsageStore

    store = UsageStore(tmp_path)
    t = pd.date_range("2026-01-01", periods=60, freq="10s", tz="UTC")
    store.append("etl", pd.DataFrame({"time": t, "cpu_vcpu": 1.0, "memory_gib": 2.0, "n_processes": 3}))
    with store.path("etl").open("a") as fh:
        fh.write("yesterday,1,2,3,\n")
    code, out, err = run(["usage", "etl", "--usage-dir", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["warnings"]) == 1 and "skipped 1 malformed row(s)" in doc["warnings"][0]
    assert warning_lines(err) == doc["warnings"]
    code, out, err = run(["usage", "etl", "--usage-dir", str(tmp_path)], capsys)  # text mode: the same line, on stderr
    assert code == 0 and warning_lines(err) == doc["warnings"] and "warning" not in out


@pytest.mark.parametrize(("args", "expected"), [
    (["--zone", "XS", "--jobs", "J"], "error: --zone 'XS' has no embedded data; embedded zones are ES, SE, DE, FR, GB "
                                       "(for another grid give --carbon-csv REGION=PATH)"),
    (["--carbon-csv", "eu-north-1=embedded:QQ", "--jobs", "J"],
     "error: --carbon-csv 'eu-north-1=embedded:QQ': zone 'QQ' has no embedded data; embedded zones are ES, SE, DE, FR, GB (or give a CSV path)"),
    (["--carbon-csv", "missing.csv", "--jobs", "J"], "error: --carbon-csv 'missing.csv' does not exist; give an Electricity Maps export or embedded:ZONE"),
    (["--carbon-csv", "eu-north-1=missing.csv", "--jobs", "J"],
     "error: --carbon-csv 'eu-north-1=missing.csv': 'missing.csv' does not exist; give an Electricity Maps export or embedded:ZONE"),
    (["--zone", "ES", "--jobs", "missing.csv"], "error: --jobs 'missing.csv' does not exist; give the path of a CSV file (make one with 'care simulate poisson')"),
])
def test_simulate_names_the_option_of_a_missing_file_or_zone(args, expected, tmp_path, monkeypatch, capsys):
    """Review 46c L2: "zone 'XS' has no embedded data" and "jobs CSV ... does not exist" did not name --zone or --jobs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "J").write_text("job_id,arrival,duration_h,slack_h\na,2023-05-02T03:00:00Z,1,6\n")
    assert usage_error(["simulate", *args], capsys) == expected


def test_simulate_says_a_path_holding_an_equals_sign_reads_as_region_path(tmp_path, monkeypatch, capsys):
    """Review 46d L3: `date=2023/es.csv` (a Hive-style folder) was reported as a missing '2023/es.csv'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "date=2023").mkdir()
    (tmp_path / "date=2023" / "es.csv").write_text("time,g_per_kwh\n2023-05-01T00:00:00Z,100\n")
    (tmp_path / "J").write_text("job_id,arrival,duration_h,slack_h\na,2023-05-02T03:00:00Z,1,6\n")
    assert usage_error(["simulate", "--carbon-csv", "date=2023/es.csv", "--jobs", "J"], capsys) == (
        "error: --carbon-csv 'date=2023/es.csv' reads as REGION=PATH, but 'date' is not a region; for a file whose path holds '=' "
        "write the region first, e.g. --carbon-csv eu-south-2=date=2023/es.csv")
    assert usage_error(["simulate", "--carbon-csv", "date=2023/none.csv", "--jobs", "J"], capsys).startswith("error: unknown region 'date'")
