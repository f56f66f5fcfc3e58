"""Review 15: bad and edge-case input on the ``care`` command line.

Each case was found by trying it: a traceback-free but wrong exit (1 = "internal error" for what is
bad input), nonsense accepted silently (exit 0), or an output file written over the input. The
contract: exit 2, exactly one ``error:`` line on stderr naming the bad value, nothing on stdout
(also with ``--json``), and input files left as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from care_flows.cli import main

NOW = ["--now", "2023-06-01T08:00:00Z"]
REGIONS = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z"]
COMPARE = ["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large"]


def usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``care args``; assert exit 2, empty stdout and one ``error:`` line; return that line."""
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (args, code, err)
    assert out == "", (args, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (args, err)
    return lines[0]


# ------------------------------------------------------------------ care plan / regions / times
@pytest.mark.parametrize(("value", "shown"), [("nan", "--threshold nan"), ("-5", "--threshold -5"), ("inf", "--threshold inf")])
def test_plan_threshold_must_be_a_finite_non_negative_number(value, shown, capsys):
    # was: nan -> a plan with "threshold: nan" (exit 0), or with --json an internal error (exit 1)
    line = usage_error(["plan", "--zone", "ES", *NOW, "--duration", "2h", "--within", "24h", "--threshold", value, "--json"], capsys)
    assert shown in line


def test_plan_percentile_error_names_the_option(capsys):
    line = usage_error(["plan", "--zone", "ES", *NOW, "--duration", "2h", "--within", "24h", "--percentile", "150"], capsys)
    assert "--percentile 150" in line


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--zone", "ES", "--now", "9999-12-31T23:00Z", "--duration", "2h", "--within", "24h", "--json"],
        ["intensity", "--zone", "ES", "--start", "9999-01-01T00:00Z", "--end", "9999-01-02T00:00Z", "--json"],
        ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "9999-01-01T00:00Z", "--json"],
        ["simulate", "poisson", "--n", "2", "--start", "9999-01-01T00:00Z"],
    ],
)
def test_a_year_far_outside_any_data_is_a_usage_error(args, capsys):
    # was: exit 1 "internal error (OutOfBoundsDatetime ...)", or year-9999 jobs written by poisson
    assert "'9999-" in usage_error(args, capsys)


def test_now_as_a_word_is_not_an_iso_time(capsys):
    # was: "--now now has no UTC offset; add Z or +00:00" (pandas reads 'now' as the local clock)
    line = usage_error(["plan", "--zone", "ES", "--now", "now", "--duration", "2h", "--within", "24h"], capsys)
    assert "--now 'now' is not an ISO 8601 time" in line


def test_regions_nan_weight_and_nan_numbers_are_rejected(capsys):
    assert "carbon=nan" in usage_error([*REGIONS, "--weights", "carbon=nan,cost=1"], capsys)  # was: exit 0
    assert "--vcpu nan" in usage_error([*REGIONS, "--vcpu", "nan"], capsys)
    # was: "headroom_pct: Input should be less than or equal to 400"
    assert "--headroom-pct nan" in usage_error([*REGIONS, "--headroom-pct", "nan"], capsys)


def test_regions_priorities_and_weights_contradict(capsys):
    # was: exit 0, the priorities silently ignored
    line = usage_error([*REGIONS, "--weights", "carbon=1", "--priorities", "cost"], capsys)
    assert "--priorities" in line and "--weights" in line


def test_plan_gap_in_carbon_csv_does_not_advise_a_python_argument(tmp_path, capsys):
    rows = [f"2023-06-01T{h:02d}:00:00Z,{100 + h}" for h in range(24) if h not in (10, 11)]
    path = tmp_path / "gap.csv"
    path.write_text("time,g_per_kwh\n" + "\n".join(rows) + "\n")
    line = usage_error(["plan", "--carbon-csv", str(path), "--now", "2023-06-01T20:00Z", "--duration", "1h", "--within", "3h"], capsys)
    assert "gap" in line and "repair=" not in line


# ------------------------------------------------------------------------------ care compare
@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        (["--hours", "1e308"], "--hours 1e+308"),  # was: exit 1 (inf figures are not JSON)
        (["--hours", "inf"], "--hours inf"),  # was: "hours inf must be a non-negative number"
        (["--energy-wh", "inf"], "--energy-wh inf"),  # was: exit 1
        (["--intensity", "ES=inf"], "--intensity ES=inf"),  # was: "carbon intensity inf g/kWh must be a non-negative number"
        (["--intensity", "ES=206,es=100"], "es twice"),  # was: exit 0, the last value silently won
    ],
)
def test_compare_rejects_non_finite_and_contradicting_numbers(extra, shown, capsys):
    assert shown in usage_error([*COMPARE, *extra, "--json"], capsys)


# ------------------------------------------------------------------- --out over the input file
def test_out_that_is_the_input_file_is_refused(tmp_path, capsys):
    usage = tmp_path / "usage.csv"
    usage.write_text("cpu\n" + "\n".join(str(50 + i % 12) for i in range(60)) + "\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\n")
    gaia = tmp_path / "gaia.csv"
    gaia.write_text("arrival_time,length,cpus\n0,3600,2\n")
    before = {p: p.read_bytes() for p in (usage, jobs, gaia)}
    # was: each exited 0 and replaced the input with its output
    assert "--csv" in usage_error(["forecast-usage", "--csv", str(usage), "--column", "cpu", "--period", "12",
                                   "--out", str(tmp_path / "." / "usage.csv")], capsys)
    assert "--jobs" in usage_error(["simulate", "--zone", "ES", "--jobs", str(jobs), "--out", str(jobs)], capsys)
    assert "GAIA trace" in usage_error(["simulate", "convert-gaia", str(gaia), "--start", "2023-01-01T00:00Z", "--out", str(gaia)], capsys)
    assert {p: p.read_bytes() for p in before} == before


# -------------------------------------------------------------------------------- care usage
def test_usage_history_that_is_not_utf8_is_a_data_error(tmp_path, capsys):
    (tmp_path / "etl.csv").write_bytes(b"time,cpu_vcpu,memory_gib,n_processes\n2026-01-01T00:00:00+00:00,1.5,2\xe9,1\n")
    # was: exit 1 "internal error (UnicodeDecodeError ...)"
    line = usage_error(["usage", "etl", "--usage-dir", str(tmp_path), "--json"], capsys)
    assert "etl.csv" in line and "UTF-8" in line


# ----------------------------------------------------------------------- care simulate inputs
@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"", "is empty; give the header arrival_time,length,cpus"),  # was: exit 1; then "EmptyDataError" (review 39b L7)
        (b"arrival_time,length,cpus\n", "no rows"),  # was: exit 1 (zero-size array)
        (b"arrival_time,length,cpus\n0,3600,2\xe9\n", "UTF-8"),  # was: exit 1
        (b"arrival_time,length,cpus\n1e30,3600,2\n", "arrival_time 1e+30"),  # was: exit 1 (OutOfBoundsTimedelta)
        (b"arrival_time,length,cpus\n0,3600,0\n", "cpus 0"),  # was: exit 0, a 0-CPU job
        (b"arrival_time,length,cpus\n0,3600,2.7\n", "cpus 2.7"),  # was: exit 0, silently 2 CPUs
        (b"arrival_time,length,cpus\n0,inf,2\n", "inf"),  # was: exit 0, duration_h inf
        (b"arrival_time,length,cpus\n0,-5,2\n", "length -5"),  # was: exit 0, the job silently dropped
        (b"arrival_time,length,cpus\n0,3600,2,9\n", "more fields"),  # was: exit 0, columns shifted (arrival 1 h)
    ],
)
def test_convert_gaia_rejects_bad_traces(tmp_path, content, shown, capsys):
    src = tmp_path / "gaia.csv"
    src.write_bytes(content)
    assert shown in usage_error(["simulate", "convert-gaia", str(src), "--start", "2023-01-02T00:00Z"], capsys)


def test_convert_gaia_slack_must_be_finite(tmp_path, capsys):
    src = tmp_path / "gaia.csv"
    src.write_text("arrival_time,length,cpus\n0,3600,2\n")
    assert "--slack-h inf" in usage_error(["simulate", "convert-gaia", str(src), "--start", "2023-01-02T00:00Z", "--slack-h", "inf"], capsys)


def _carbon_rows(n: int = 24 * 12) -> list[str]:
    import pandas as pd

    times = pd.date_range("2023-06-01", periods=n, freq="h", tz="UTC")
    return [f"{t.isoformat()},{100 + i % 24}" for i, t in enumerate(times)]


@pytest.mark.parametrize(
    ("mutate", "shown"),
    [
        (lambda rows: rows[:30] + [rows[30].split(",")[0] + ",inf"] + rows[31:], "'inf' is not a finite number"),  # was: exit 1
        (lambda rows: rows[:30] + [rows[30].split(",")[0] + ",nan"] + rows[31:], "'nan'"),  # was: "np.float64(nan)"
        (lambda rows: [r + ",7" for r in rows], "more fields"),  # was: "np.int64(100) is not an ISO 8601 time"
    ],
)
def test_simulate_carbon_csv_non_finite_or_long_rows(tmp_path, mutate, shown, capsys):
    carbon = tmp_path / "es.csv"
    carbon.write_text("time,g_per_kwh\n" + "\n".join(mutate(_carbon_rows())) + "\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-05T10:00:00Z,1,12\n")
    line = usage_error(["simulate", "--carbon-csv", f"eu-south-2={carbon}", "--jobs", str(jobs), "--policy", "now", "--json"], capsys)
    assert shown in line and "np." not in line


def test_forecast_usage_rows_longer_than_the_header_are_an_error(tmp_path, capsys):
    path = tmp_path / "usage.csv"
    path.write_text("timestamp,cpu\n" + "\n".join(f"2023-06-01T00:{i:02d}:00Z,{50 + i % 7},9" for i in range(60)) + "\n")
    # was: exit 0 with "WAPE 0%": pandas made the timestamps the index and 'cpu' the constant 9s
    assert "more ','-separated fields" in usage_error(["forecast-usage", "--csv", str(path), "--column", "cpu", "--period", "12"], capsys)


@pytest.mark.parametrize(("extra", "shown"), [(["--seed", "-1"], "--seed"), (["--window-h", "1e12"], "--window-h 1e+12")])
def test_poisson_bad_seed_or_window_is_a_usage_error(extra, shown, capsys):
    assert shown in usage_error(["simulate", "poisson", "--n", "3", *extra], capsys)  # was: exit 1 for both


# --------------------------------------------------------------------------------- care demo
@pytest.fixture
def no_demo_run(monkeypatch):
    """The demo must never start here: bad options are refused before run_demo."""
    import care_flows.demo.main as demo_main

    def refuse(*args, **kwargs):
        raise AssertionError("run_demo started despite bad options")

    monkeypatch.setattr(demo_main, "run_demo", refuse)


def test_demo_checks_out_and_timeout_before_starting(tmp_path, capsys, no_demo_run):
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder")
    # was: accepted; the report write failed only after the whole demo had run (minutes, a server)
    assert "report.txt is a file" in usage_error(["demo", "--out", str(a_file)], capsys)
    assert "report.txt is a file" in usage_error(["demo", "--out", str(a_file / "sub")], capsys)
    assert "--timeout -5" in usage_error(["demo", "--out", str(tmp_path / "r"), "--timeout", "-5"], capsys)


def test_demo_options_accept_a_new_report_folder(tmp_path):
    from care_flows.demo.main import DemoOptions

    assert DemoOptions(out=tmp_path / "new" / "report", timeout_s=30).validate() == DemoOptions().validate()


def test_good_input_still_works_with_json_only_on_stdout(tmp_path, capsys):
    # review 30 #9: threshold mode needs --interruptible (as CarePolicy)
    assert main(["plan", "--zone", "ES", *NOW, "--duration", "2h", "--within", "24h", "--interruptible", "--threshold", "150", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["threshold_g_per_kwh"] == 150.0
    src = Path(tmp_path / "gaia.csv")
    src.write_text("arrival_time,length,cpus\n0,3600,2\n60,0,1\n")
    assert main(["simulate", "convert-gaia", str(src), "--start", "2023-01-02T00:00Z", "--units", "seconds"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("gaia-000000,2023-01-02T00:00:00+00:00,1.0,24.0,2,")  # the zero-length job is dropped
