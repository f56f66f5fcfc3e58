"""Review 39b: bad input to ``care simulate`` (H2 JOBS.csv header near misses, H3 poisson --n bound,
M8/L6/L8 GAIA converter messages and edge rows, L9 the "No such option" suggestion)."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.simulate.jobs import MAX_JOBS, convert_gaia, jobs_from_frame, poisson_jobs, read_jobs_csv

ROWS = [
    "j1,2023-06-01T08:00:00+00:00,1.0,24.0,96,False,c5.24xlarge",
    "j2,2023-06-01T09:00:00+00:00,2.0,12.0,2,True,m5.large",
]


def _error_line(capsys: pytest.CaptureFixture[str], args: list[str], *, json_out: bool = False) -> str:
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    if json_out:
        assert captured.out == ""
    return err


# ------------------------------------------------------------------ H2: JOBS.csv optional headers
@pytest.mark.parametrize(
    ("header", "shown"),
    [
        ("job_id,arrival,duration_h,slack_h,cpu,interruptible,instance_type", "'cpu' is not a JOBS.csv column (did you mean cpus?)"),
        ("job_id,arrival,duration_h,slack_h,cpus,interruptible,instance-type", "'instance-type' is not a JOBS.csv column (did you mean instance_type?)"),
        ("job_id,arrival,duration_h,slack_h,cpus,Interruptible,Instance Type", "'Interruptible' (did you mean interruptible?) and 'Instance Type' (did you mean instance_type?)"),
        ("job_id,arrival,duration_h,slack_h,cpus,interruptable,instance_type", "did you mean interruptible?"),
        ("job_id,arival,duration_h,slack_h,cpus,interruptible,instance_type", "'arival' is not a JOBS.csv column (did you mean arrival?)"),
    ],
)
def test_a_near_miss_of_a_jobs_column_is_an_error_naming_it(tmp_path, capsys, header, shown):
    # was: exit 0, every job silently 1 CPU on m5.large (4.65 g instead of 137.87 g)
    path = tmp_path / "jobs.csv"
    path.write_text("\n".join([header, *ROWS]) + "\n")
    err = _error_line(capsys, ["simulate", "--jobs", str(path), "--zone", "ES", "--zone", "SE", "--policy", "now", "--json"], json_out=True)
    assert shown in err and "jobs.csv" in err


def test_both_near_misses_of_the_review_are_named_in_one_line(tmp_path, capsys):
    path = tmp_path / "j_typocol.csv"
    path.write_text("job_id,arrival,duration_h,slack_h,cpu,interruptible,instance-type\n" + "\n".join(ROWS) + "\n")
    err = _error_line(capsys, ["simulate", "--jobs", str(path), "--zone", "ES", "--zone", "SE", "--policy", "now", "--json"], json_out=True)
    assert "'cpu' (did you mean cpus?)" in err and "'instance-type' (did you mean instance_type?)" in err


def test_the_spelt_right_file_still_counts_every_cpu(tmp_path, capsys):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,arrival,duration_h,slack_h,cpus,interruptible,instance_type\n" + "\n".join(ROWS) + "\n")
    assert main(["simulate", "--jobs", str(path), "--zone", "ES", "--zone", "SE", "--policy", "now", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["warnings"] == [] and captured.err == ""


def test_other_extra_columns_are_one_warning_and_listed_in_the_json(tmp_path, capsys):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,arrival,duration_h,slack_h,team,owner\nj1,2023-06-01T08:00:00+00:00,1.0,24.0,etl,ann\n")
    assert main(["simulate", "--jobs", str(path), "--zone", "ES", "--policy", "now", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "'team', 'owner'" in warnings[0] and "ignored" in warnings[0]
    assert any("'team', 'owner'" in w for w in doc["warnings"])
    assert doc["jobs"] == 1


def test_a_known_column_given_twice_is_an_error(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("job_id,arrival,duration_h,slack_h,cpus,cpus\nj1,2023-06-01T08:00:00+00:00,1.0,24.0,2,4\n")
    with pytest.raises(DataError, match="names column cpus twice"):
        read_jobs_csv(path)


def test_a_near_miss_next_to_the_real_column_is_only_ignored():
    # 'cpu' beside 'cpus' is not a typo of it: the job keeps its cpus, and the extra column is noted
    js = jobs_from_frame(pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T10:00:00Z"], "duration_h": ["1"], "slack_h": ["2"],
                                       "cpus": ["4"], "cpu": ["x"]}))
    assert js.frame["cpus"].tolist() == [4.0] and len(js.notes) == 1 and "'cpu'" in js.notes[0]
    plain = jobs_from_frame(pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T10:00:00Z"], "duration_h": ["1"], "slack_h": ["2"]}))
    assert plain.notes == ()


# ------------------------------------------------------------------ H3: poisson --n bound
@pytest.mark.parametrize("n", ["100000000000", str(MAX_JOBS + 1), "99999999999999999999999"])
def test_poisson_n_has_an_upper_bound(capsys, n):
    # was: exit 1 "internal error (MemoryError: Unable to allocate 745. GiB ...)"
    err = _error_line(capsys, ["simulate", "poisson", "--n", n])
    assert f"--n {n}" in err and f"at most {MAX_JOBS}" in err
    assert capsys.readouterr().out == ""


def test_poisson_jobs_refuses_more_than_max_jobs():
    with pytest.raises(DataError, match=f"n <= {MAX_JOBS}"):
        poisson_jobs(MAX_JOBS + 1)


def test_poisson_help_states_the_bound(capsys):
    assert main(["simulate", "poisson", "--help"]) == 0
    assert f"1 to {MAX_JOBS}" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ M8, L6, L8: the GAIA converter
GAIA_OK = ["0.0,6302.0,1", "68.0,1000.0,1", "463.0,1570.0,3", "838.0,23549.0,1", "1986.0,666.0,1"]


def _gaia(tmp_path, rows: list[str], header: str = "arrival_time,length,cpus"):
    path = tmp_path / "g.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _convert(path) -> list[str]:
    return ["simulate", "convert-gaia", str(path), "--start", "2023-06-01T00:00:00Z"]


@pytest.mark.parametrize(
    ("rows", "shown"),
    [
        (GAIA_OK[:3] + ["abc,23549.0,1"] + GAIA_OK[4:], "line 5: arrival_time 'abc' is not a number"),
        (GAIA_OK[:3] + ["838.0,12x,1"] + GAIA_OK[4:], "line 5: length '12x' is not a number"),
        (GAIA_OK[:3] + ["838.0,23549.0,two"] + GAIA_OK[4:], "line 5: cpus 'two' is not a number"),
        (["arrival_time,length,cpus"] + GAIA_OK, "line 2 repeats the header arrival_time,length,cpus"),
        (GAIA_OK[:3] + ["838.0,,1"] + GAIA_OK[4:], "line 5: length is empty"),
        (GAIA_OK[:3] + ["838.0,inf,1"] + GAIA_OK[4:], "line 5: length 'inf' is not a finite number"),
    ],
)
def test_gaia_bad_value_shows_the_text_in_the_file(tmp_path, capsys, rows, shown):
    # was: "... line 5 has a value that is not a finite number (nan,23549,1)"
    path = _gaia(tmp_path, rows)
    err = _error_line(capsys, _convert(path))
    assert shown in err and f"GAIA trace {str(path)!r}" in err and "nan" not in err.replace("'nan'", "")


def test_gaia_bad_value_in_a_dataframe_names_row_and_column():
    frame = pd.DataFrame({"arrival_time": [0.0, "x"], "length": [1.0, 2.0], "cpus": [1, 1]})
    with pytest.raises(DataError, match=r"^GAIA trace line 3: arrival_time 'x' is not a number"):
        convert_gaia(frame, start="2023-01-01T00:00Z", units="hours")
    frame = pd.DataFrame({"arrival_time": [0.0, 1.0], "length": [1.0, float("nan")], "cpus": [1, 1]})
    with pytest.raises(DataError, match=r"^GAIA trace line 3: length is empty"):
        convert_gaia(frame, start="2023-01-01T00:00Z", units="hours")


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        ("arrival_time,length,cpus\n", "has a header but no rows"),
        ("arrival,len,cpu\n0,1,1\n", "lacks column(s) arrival_time, length, cpus (found: arrival, len, cpu)"),
        ("arrival_time;length;cpus\n0;1;1\n", "looks ';'-separated"),
    ],
)
def test_gaia_file_errors_name_the_file(tmp_path, capsys, content, shown):
    path = tmp_path / "trace.csv"
    path.write_text(content)
    err = _error_line(capsys, _convert(path))
    assert shown in err and "trace.csv" in err


def test_gaia_units_error_names_the_option(tmp_path, capsys):
    err = _error_line(capsys, [*_convert(_gaia(tmp_path, GAIA_OK)), "--units", "hour"])
    assert "--units 'hour'" in err


def test_gaia_negative_arrival_is_refused_naming_the_line(tmp_path, capsys):
    # was: exit 0, an arrival 100 s before --start
    path = _gaia(tmp_path, GAIA_OK[:3] + ["-100,23549.0,1"] + GAIA_OK[4:])
    err = _error_line(capsys, _convert(path))
    assert "line 5: arrival_time -100 is negative" in err and "g.csv" in err


def test_gaia_zero_length_jobs_keep_ids_and_are_counted_in_a_warning(tmp_path, capsys):
    # was: dropped without a word, and the jobs after them renumbered (gaia-000003 was line 6's job)
    path = _gaia(tmp_path, GAIA_OK[:3] + ["838.0,0,1"] + GAIA_OK[4:])
    assert main(_convert(path)) == 0
    captured = capsys.readouterr()
    ids = [line.split(",")[0] for line in captured.out.splitlines()[1:]]
    assert ids == ["gaia-000000", "gaia-000001", "gaia-000002", "gaia-000004"]
    err = [line for line in captured.err.splitlines() if not line.startswith("note: ")]  # --units auto says what it chose
    assert len(err) == 1 and err[0].startswith("warning: ") and "dropped 1 zero-length job(s) (line 5)" in err[0] and "g.csv" in err[0]


def test_gaia_zero_length_warning_goes_to_the_module_logger(tmp_path, caplog):
    path = _gaia(tmp_path, ["0,0,1", "60,600,1", "120,0,2"])
    with caplog.at_level(logging.WARNING, logger="care_flows.simulate.jobs"):
        out = convert_gaia(path, start="2023-01-01T00:00Z", units="seconds")
    assert out["job_id"].tolist() == ["gaia-000001"]
    assert ["dropped 2 zero-length job(s) (lines 2, 4)" in r.getMessage() for r in caplog.records] == [True]


def test_gaia_without_zero_length_jobs_is_unchanged_and_silent(tmp_path, caplog):
    path = _gaia(tmp_path, GAIA_OK)
    with caplog.at_level(logging.WARNING, logger="care_flows.simulate.jobs"):
        out = convert_gaia(path, start="2023-01-01T00:00Z", units="seconds")
    assert out["job_id"].tolist() == [f"gaia-{i:06d}" for i in range(5)] and not caplog.records


def test_gaia_only_zero_length_jobs_is_an_error(tmp_path, capsys):
    err = _error_line(capsys, _convert(_gaia(tmp_path, ["0,0,1", "60,0,1"])))
    assert "length 0" in err and "g.csv" in err


# ------------------------------------------------------------------ L9: "No such option" suggestions
@pytest.mark.parametrize("sub", ["poisson", "convert-gaia"])
def test_json_on_a_jobs_csv_subcommand_says_what_it_writes(capsys, sub):
    # was: "No such option: --json (Possible options: --n)"
    err = _error_line(capsys, ["simulate", sub, "--json"])
    assert "No such option: --json" in err and "writes JOBS.csv" in err and "--n" not in err.replace("--help", "")


def test_an_unknown_option_still_gets_a_real_suggestion(capsys):
    assert "did you mean --seed?" in _error_line(capsys, ["simulate", "poisson", "--see", "3"])
    assert "did you mean --policy?" in _error_line(capsys, ["simulate", "--polcy", "now"])
    assert "did you mean" not in _error_line(capsys, ["simulate", "poisson", "--xyz", "3"])


@pytest.mark.parametrize("extra", ["deadline_h", "deadline_utc", "region_id", "regionid", "Deadline"])
def test_plausible_own_columns_next_to_slack_h_are_ignored_not_refused(extra):
    """Review 39d M4: with slack_h given, 'deadline_h' was refused as 'did you mean deadline?' (and the advice
    then failed: deadline is an ISO time), as were region_id and Deadline; they are a user's own columns."""
    frame = pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T00:00:00Z"], "duration_h": [1.0], "slack_h": [2.0], extra: ["7"]})
    jobs = jobs_from_frame(frame)
    assert len(jobs) == 1 and jobs.notes and repr(extra) in jobs.notes[0]


def test_slack_next_to_a_deadline_is_ignored_and_a_misspelt_required_column_names_what_is_needed():
    frame = pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T00:00:00Z"], "duration_h": [1.0], "deadline": ["2023-06-01T05:00:00Z"],
                          "slack": [4.0]})
    assert "'slack'" in jobs_from_frame(frame).notes[0]
    bad = pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T00:00:00Z"], "duration_h": [1.0], "Slack_H": [4.0]})
    with pytest.raises(DataError, match=r"column 'Slack_H' is not a JOBS.csv column \(did you mean slack_h\?\); rename the header to "
                                        r"slack_h \(JOBS.csv needs deadline or slack_h\)$"):
        jobs_from_frame(bad)


@pytest.mark.parametrize("columns, known", [({"dedline": ["2023-06-01T05:00:00Z"]}, "deadline"), ({"slak_h": [4.0]}, "slack_h"),
                                            ({"slack_h": [4.0], "regin": ["eu-north-1"]}, "region")])
def test_a_misspelt_deadline_slack_or_region_still_gets_its_did_you_mean(columns, known):
    """Review 39e L2: after 63d28c7, 'dedline' and 'slak_h' (neither column given) lost their hint, and 'regin'
    next to slack_h only warned, every job silently running in the default region."""
    frame = pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-01T00:00:00Z"], "duration_h": [1.0], **columns})
    with pytest.raises(DataError, match=rf"\(did you mean {known}\?\); rename the header to {known}"):
        jobs_from_frame(frame)
