"""Review 43a L1-L5: convert-gaia's unit guess, hour-only offsets, bare carbon PATHs of another zone,
jobs past the trace end, and the Poisson defaults of the API and the CLI."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError, DataError
from care_flows.simulate import simulate
from care_flows.simulate.jobs import convert_gaia, poisson_jobs, read_jobs_csv

IDX = pd.date_range("2023-05-01", periods=24 * 5, freq="h", tz="UTC")
JOBS = "job_id,arrival,duration_h,slack_h\na,2023-05-02T03:00:00Z,1,6\nb,2023-05-03T10:00:00Z,2,4\n"


def _export(path, zone, level):
    """An Electricity Maps export (with its Zone id) over IDX."""
    hours = np.arange(len(IDX))
    values = level + 0.3 * level * np.sin(hours / 24 * 2 * np.pi)
    pd.DataFrame({"Datetime (UTC)": IDX.strftime("%Y-%m-%d %H:%M:%S"), "Zone id": zone,
                  "Carbon intensity gCO₂eq/kWh (Life cycle)": values}).to_csv(path, index=False)
    return str(path)


def _plain(path, level):
    pd.DataFrame({"time": IDX.strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": float(level)}).to_csv(path, index=False)
    return str(path)


# ------------------------------------------------------------------------------------------- L1
def test_convert_gaia_auto_says_it_read_a_whole_hour_trace_as_seconds_and_warns(tmp_path, capsys):
    src = tmp_path / "g_hours.csv"
    src.write_text("arrival_time,length,cpus\n0,2,4\n3,5,2\n10,1,1\n")
    assert main(["simulate", "convert-gaia", str(src), "--start", "2023-03-01T00:00Z"]) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if line.startswith("note: ")]
    assert notes == ["note: --units auto read arrival_time and length as seconds: every value is a whole number "
                     "(a trace in hours has some fractional value such as 0.5); give --units hours if they are hours"]
    warned = [line for line in err if line.startswith("warning: ")]
    assert len(warned) == 1 and "3 of the 3 jobs are then shorter than 300 s" in warned[0] and "--units hours" in warned[0]


def test_convert_gaia_auto_names_hours_and_explicit_units_print_no_note(tmp_path, capsys):
    src = tmp_path / "g.csv"
    src.write_text("arrival_time,length,cpus\n0,2.5,4\n3.25,5,2\n")
    assert main(["simulate", "convert-gaia", str(src), "--start", "2023-03-01T00:00Z"]) == 0
    err = capsys.readouterr().err
    assert "note: --units auto read arrival_time and length as hours: the largest arrival_time is 3.25" in err
    assert "warning:" not in err
    assert main(["simulate", "convert-gaia", str(src), "--start", "2023-03-01T00:00Z", "--units", "hours"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert convert_gaia(src, start="2023-03-01T00:00Z").attrs["units"] == "hours"


def test_convert_gaia_seconds_with_long_jobs_is_not_warned(tmp_path, capsys):
    src = tmp_path / "pai.csv"
    src.write_text("arrival_time,length,cpus\n0,3600,1\n1800,7200,2\n")
    assert main(["simulate", "convert-gaia", str(src), "--start", "2023-03-01T00:00Z"]) == 0
    err = capsys.readouterr().err
    assert "note: --units auto read arrival_time and length as seconds" in err and "warning:" not in err


def test_convert_gaia_help_states_the_auto_rule(capsys):
    assert main(["simulate", "convert-gaia", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "see docs" not in text
    assert "auto: hours when the largest arrival_time is at most 8784" in text and "multiple of 1/12" in text


# ------------------------------------------------------------------------------------------- L2
@pytest.mark.parametrize("text, utc", [
    ("2023-06-02T02:00:00+02", "2023-06-02 00:00:00+00:00"),
    ("2023-06-02T02:00:00+0200", "2023-06-02 00:00:00+00:00"),
    ("2023-06-02T02:00:00+02:00", "2023-06-02 00:00:00+00:00"),
    ("2023-06-02 02:00-03", "2023-06-02 05:00:00+00:00"),
    ("2023-06-02T02:00:00.5+02", "2023-06-02 00:00:00.500000+00:00"),
])
def test_an_hour_only_offset_after_a_time_is_an_offset(text, utc):
    frame = read_jobs_csv(f"job_id,arrival,duration_h,slack_h\na,{text},1,2\n").frame
    assert str(frame["arrival"].iloc[0]) == utc


def test_an_hour_only_offset_in_a_deadline_is_an_offset():
    frame = read_jobs_csv("job_id,arrival,duration_h,deadline\na,2023-06-02T00:00:00Z,1,2023-06-02T05:00:00+02\n").frame
    assert str(frame["deadline"].iloc[0]) == "2023-06-02 03:00:00+00:00"


@pytest.mark.parametrize("text", ["2023-06-01", "2023-06-01T10:00:00", "2023-06-01 10:00"])
def test_a_date_or_a_time_without_offset_still_has_no_offset(text):
    with pytest.raises(DataError, match=rf"^JOBS.csv line 2 \(job 'a'\): arrival '{re.escape(text)}' has no UTC offset; add Z or \+00:00$"):
        read_jobs_csv(f"job_id,arrival,duration_h,slack_h\na,{text},1,2\n")


# ------------------------------------------------------------------------------------------- L3
def test_two_bare_exports_of_two_zones_go_to_their_regions(tmp_path):
    es, se = _export(tmp_path / "es.csv", "ES", 200), _export(tmp_path / "se.csv", "SE", 30)
    for specs in ([es, se], [se, es]):
        out = simulate(JOBS, specs, "oracle", home_region="eu-south-2")
        assert sorted(out.summary()["regions"]) == ["eu-north-1", "eu-south-2"]
        assert out.summary()["jobs_per_region"] == {"eu-south-2": 0, "eu-north-1": 2}
        assert [n for n in out.notes if "taken for eu-north-1" in n] == [
            f"carbon CSV {se!r} is zone SE, not the grid of the home region eu-south-2: taken for eu-north-1 "
            "(a PATH without REGION= is taken for the home region, which has another trace); write REGION=PATH to choose"]
    # the first spec names the home region when none is given (eu-south-2 for a PATH): the same result
    assert simulate(JOBS, [es, se], "oracle").summary()["jobs_per_region"] == {"eu-south-2": 0, "eu-north-1": 2}


def test_a_bare_export_next_to_an_embedded_home_zone_goes_to_its_region(tmp_path, capsys):
    se = _export(tmp_path / "se.csv", "SE", 30)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--zone", "ES", "--carbon-csv", se, "--jobs", str(jobs), "--policy", "oracle", "--json"]) == 0
    out, err = capsys.readouterr()
    assert '"eu-north-1": 2' in out
    assert f"warning: carbon CSV {se!r} is zone SE, not the grid of the home region eu-south-2: taken for eu-north-1" in err


def test_a_lone_bare_export_of_another_zone_stays_the_home_regions_trace(tmp_path):
    se = _export(tmp_path / "se.csv", "SE", 30)
    out = simulate(JOBS, [se], "now")
    assert out.summary()["regions"] == ["eu-south-2"]
    assert any("is zone SE, but it was given for eu-south-2" in n for n in out.notes)


def test_two_bare_paths_for_the_home_region_say_a_path_is_for_the_home_region(tmp_path, capsys):
    a, b = _plain(tmp_path / "a.csv", 100), _plain(tmp_path / "b.csv", 50)
    # files of one region are joined as consecutive pieces (tests/simulate/test_sim_joined_traces.py): these overlap
    with pytest.raises(DataError) as info:
        simulate(JOBS, [a, b], "now")
    assert str(info.value) == (f"region eu-south-2 has carbon CSVs {a!r} and {b!r}, joined as one trace in time order: {b!r} "
                               "overlaps another file at 2023-05-01T00:00:00+00:00; give non-overlapping files; a PATH without "
                               f"REGION= is taken for the home region eu-south-2: for another region's trace write REGION=PATH, "
                               f"e.g. REGION={b}")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", a, "--carbon-csv", b, "--jobs", str(jobs), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: region eu-south-2 has carbon CSVs")
    assert "a PATH without REGION= is taken for the home region eu-south-2: for another region's trace write REGION=PATH" in err
    assert "Traceback" not in err


def test_a_bare_export_colliding_with_the_home_zone_suggests_its_own_region(tmp_path):
    se = _export(tmp_path / "se.csv", "SE", 30)
    with pytest.raises(ConfigError, match=r"a PATH without REGION= is taken for the home region eu-north-1: "
                                          rf"write REGION=PATH, e.g. REGION={re.escape(se)}$"):
        simulate(JOBS, [se, "eu-north-1=embedded:SE"], "now", home_region="eu-north-1")
    es = _export(tmp_path / "es.csv", "ES", 200)
    # the export of the other zone, given for the home region with REGION=: both are the user's explicit choice
    with pytest.raises(ConfigError, match=r"^region eu-south-2 has two carbon traces \(embedded:ES and '.*es.csv'\); give one --carbon-csv per region$"):
        simulate(JOBS, ["embedded:ES", f"eu-south-2={es}"], "now")


# ------------------------------------------------------------------------------------------- L4
def test_jobs_past_the_trace_end_are_counted_and_the_first_named(tmp_path, capsys):
    es = _plain(tmp_path / "es.csv", 100)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nok,2023-05-02T00:00:00Z,1,2\n"
                    "x,2023-05-05T20:00:00Z,0.4166666666666667,4\ny,2023-05-05T21:00:00Z,1,24\nz,2023-05-05T22:00:00Z,1,24\n")
    assert main(["simulate", "--carbon-csv", es, "--jobs", str(jobs), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {jobs}: 3 jobs have a deadline after the carbon trace ends (2023-05-06T00:00:00+00:00), the first "
                   "line 3 (job 'x', deadline 2023-05-06T00:25:00+00:00); give a longer trace or drop those jobs\n")


def test_one_job_past_the_trace_end_is_still_named_alone(tmp_path, capsys):
    es = _plain(tmp_path / "es.csv", 100)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nok,2023-05-02T00:00:00Z,1,2\nx,2023-05-05T20:00:00Z,1,24\n")
    assert main(["simulate", "--carbon-csv", es, "--jobs", str(jobs), "--policy", "now"]) == 2
    assert capsys.readouterr().err == (f"error: {jobs} line 3 (job 'x'): deadline 2023-05-06T21:00:00+00:00 is after the carbon "
                                       "trace ends (2023-05-06T00:00:00+00:00); give a longer trace or drop the job\n")


def test_a_deadline_from_slack_is_printed_without_float_noise(tmp_path, capsys):
    """arrival + 0.41666... h + slack_h is 25 min + 1 ns: printed as 00:25:00, as PLAN.csv rounds times."""
    es = _plain(tmp_path / "es.csv", 100)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nok,2023-05-02T00:00:00Z,1,2\nx,2023-05-05T20:00:00Z,0.4166666666666667,4\n")
    assert read_jobs_csv(jobs).frame["deadline"].iloc[1] != pd.Timestamp("2023-05-06T00:25Z")  # the noise this is about
    assert main(["simulate", "--carbon-csv", es, "--jobs", str(jobs), "--policy", "now"]) == 2
    assert capsys.readouterr().err == (f"error: {jobs} line 3 (job 'x'): deadline 2023-05-06T00:25:00+00:00 is after the carbon "
                                       "trace ends (2023-05-06T00:00:00+00:00); give a longer trace or drop the job\n")
    with pytest.raises(DataError, match=r"\(arrival \+ duration_h \+ slack_h = 2023-06-02T00:25:00\+00:00\)"):
        read_jobs_csv("job_id,arrival,duration_h,slack_h,deadline\nd,2023-06-01T00:00:00Z,0.4166666666666667,24,2023-06-01T00:25:00Z\n")


# ------------------------------------------------------------------------------------------- L5
def test_poisson_jobs_starts_where_the_cli_does(capsys):
    assert main(["simulate", "poisson", "--n", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[1].split(",")[1]
    assert first == "2023-06-01T08:00:00+00:00"
    assert poisson_jobs(5)["arrival"].iloc[0].isoformat() == first
    assert poisson_jobs(5).equals(poisson_jobs(5, start="2023-06-01T08:00:00Z"))


def test_poisson_cli_takes_an_instance_type(tmp_path, capsys):
    out = tmp_path / "j.csv"
    assert main(["simulate", "poisson", "--n", "3", "--instance-type", "c5.large", "--out", str(out)]) == 0
    assert read_jobs_csv(out).frame["instance_type"].tolist() == ["c5.large"] * 3
    capsys.readouterr()
    assert main(["simulate", "poisson", "--n", "3", "--instance-type", "c5.lrage"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: --instance-type 'c5.lrage' is not in the power table (did you mean 'c5.large'?); "
                            "use a known EC2 type such as m5.large\n")


def test_a_deadline_met_to_the_nanosecond_of_a_float_duration_is_feasible(tmp_path, capsys):
    """duration_h 0.4166666666666667 is 25 min + 1 ns: a deadline 25 min after the arrival was refused as
    'cannot finish in time', and every policy meets it."""
    jobs = tmp_path / "j25.csv"
    jobs.write_text("job_id,arrival,duration_h,deadline\na,2023-06-01T08:00:00Z,0.4166666666666667,2023-06-01T08:25:00Z\n")
    for policy in ("oracle", "care", "lets-wait-awhile"):
        assert main(["simulate", "--zone", "ES", "--jobs", str(jobs), "--policy", policy, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert (doc["jobs"], doc["deadline_misses"]) == (1, 0)


# ------------------------------------------------------------------------------------------- review 43c M6
def test_two_bare_exports_of_other_grids_without_a_home_trace_are_an_error_in_either_order(tmp_path, capsys):
    """Review 43c M6: two bare exports, neither of the home region's grid, made whichever came first the home
    region's trace (eu-south-2 simulated on SE's or DE's grid, by argument order)."""
    se, de = _export(tmp_path / "se.csv", "SE", 30), _export(tmp_path / "de.csv", "DE", 300)
    for first, second, zones in ((se, de, ("SE", "DE")), (de, se, ("DE", "SE"))):
        with pytest.raises(ConfigError) as info:
            simulate(JOBS, [first, second], "now")
        assert str(info.value).startswith(f"carbon CSVs {first!r} (zone {zones[0]}) and {second!r} (zone {zones[1]}) have no REGION= "
                                          "and neither is the grid of the home region eu-south-2 (zone ES)")
        assert "write REGION=PATH" in str(info.value) and "--home-region" in str(info.value)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", se, "--carbon-csv", de, "--jobs", str(jobs), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: carbon CSVs") and "Traceback" not in err
    # a home region of one of their grids places both; a lone bare export still stands for the home region
    assert sorted(simulate(JOBS, [se, de], "now", home_region="eu-north-1").summary()["regions"]) == ["eu-central-1", "eu-north-1"]
    assert simulate(JOBS, [de], "now").summary()["regions"] == ["eu-south-2"]
