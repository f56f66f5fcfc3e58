from pathlib import Path
"""JOBS.csv validation, the GAIA converter and the Poisson generator."""

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.simulate.jobs import convert_gaia, poisson_jobs, read_jobs_csv

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the repo

GOOD = "job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\n"


def test_good_row_with_defaults():
    f = read_jobs_csv(GOOD).frame
    row = f.iloc[0]
    assert row["cpus"] == 1 and not row["interruptible"] and row["instance_type"] == "m5.large"
    assert row["deadline"] == pd.Timestamp("2023-06-02T11:00Z")


def test_deadline_column_and_mixed_rows():
    text = (
        "job_id,arrival,duration_h,deadline,slack_h,interruptible\n"
        "a,2023-06-01T10:00:00Z,2,2023-06-01T20:00:00+02:00,,true\n"
        "b,2023-06-01T10:00:00Z,1,,3,no\n"
    )
    f = read_jobs_csv(text).frame
    assert f["slack_h"].tolist() == [6.0, 3.0]
    assert f["interruptible"].tolist() == [True, False]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("job_id,arrival,slack_h\na,2023-06-01T10:00:00Z,24\n", "lacks column(s) duration_h"),
        ("job_id,arrival,duration_h\na,2023-06-01T10:00:00Z,1\n", "deadline or slack_h"),
        (GOOD + "b,2023-06-01T10:00:00Z,1,x\n", "line 3 (job 'b'): slack_h 'x' is not a number"),
        (GOOD + "b,2023-06-01T10:00:00Z,-1,2\n", "line 3 (job 'b'): duration_h"),
        (GOOD + "b,2023-06-01 10:00,1,2\n", "line 3 (job 'b'): arrival '2023-06-01 10:00' has no UTC offset"),
        (GOOD + "b,yesterday,1,2\n", "line 3 (job 'b'): arrival 'yesterday' is not an ISO 8601 time"),
        (GOOD + "a,2023-06-01T10:00:00Z,1,2\n", "line 3 (job 'a'): job_id repeats"),
        (
            "job_id,arrival,duration_h,deadline\na,2023-06-01T10:00:00Z,1,2023-06-01T09:00:00Z\n",
            "line 2 (job 'a'): deadline 2023-06-01T09:00:00+00:00 is before the arrival",
        ),
        (
            "job_id,arrival,duration_h,deadline\na,2023-06-01T10:00:00Z,2,2023-06-01T11:00:00Z\n",
            "line 2 (job 'a'): deadline 2023-06-01T11:00:00+00:00 is before arrival + duration_h",
        ),
        ("job_id,arrival,duration_h,slack_h,region\na,2023-06-01T10:00:00Z,1,2,mars-1\n", "line 2 (job 'a'): unknown region 'mars-1'"),
        ("job_id,arrival,duration_h,slack_h,interruptible\na,2023-06-01T10:00:00Z,1,2,maybe\n", "interruptible 'maybe'"),
        # review 54d L1: inf was accepted, and --json ended in an internal error
        ("job_id,arrival,duration_h,slack_h,cpus\na,2023-06-01T10:00:00Z,1,2,inf\n",
         "line 2 (job 'a'): cpus inf must be a positive number of CPUs (at most 1e+06)"),
        ("job_id,arrival,duration_h,slack_h,cpus\na,2023-06-01T10:00:00Z,1,2,0\n", "line 2 (job 'a'): cpus 0 must be a positive"),
    ],
)
def test_bad_rows_name_the_row(text, fragment):
    with pytest.raises(DataError) as err:
        read_jobs_csv(text)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_region_without_trace_is_named():
    text = "job_id,arrival,duration_h,slack_h,region\na,2023-06-01T10:00:00Z,1,2,eu-west-3\n"
    with pytest.raises(DataError, match=r"line 2 .*'eu-west-3' has no carbon trace"):
        read_jobs_csv(text, known_regions=["eu-south-2"])


@pytest.mark.parametrize(
    "row, fragment",
    [
        ("a,2023-06-01T10:00:00Z,1,24,", "lacks column"),
        ("a,2023-06-01T10:00:00Z,1,x,eu-south-2", "line 2 (job 'a'): slack_h 'x'"),
        ("a,2023-06-01T10:00:00Z,1,24,mars-1", "line 2 (job 'a'): unknown region 'mars-1'"),
        ("a,2023-06-01T10:00:00Z,1,24,eu-south-2,1e308", "line 2 (job 'a'): cpus 1e+308 must be a positive number"),
    ],
)
def test_cli_bad_jobs_exit_2_one_line(tmp_path, capsys, row, fragment):
    header = "job_id,arrival,duration_h,slack_h,region" if "lacks" not in fragment else "job_id,arrival,slack_h"
    header += ",cpus" if "cpus" in fragment else ""
    if "lacks" in fragment:
        row = "a,2023-06-01T10:00:00Z,24"
    path = tmp_path / "jobs.csv"
    path.write_text(f"{header}\n{row}\n")
    code = main(["simulate", "--zone", "ES", "--jobs", str(path), "--policy", "now", "--json"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and fragment in err


def test_gaia_units():
    pai = convert_gaia(SHARED_DATA / "workload_jobs" / "gaia_pai_1k_jobs.csv", start="2023-03-01T00:00Z", slack_h=12, limit=2)
    assert pai["duration_h"].tolist() == pytest.approx([6302 / 3600, 1000 / 3600])
    assert pai["arrival"].iloc[1] == pd.Timestamp("2023-03-01T00:01:08Z")
    az = convert_gaia(SHARED_DATA / "workload_jobs" / "gaia_azure-100k_jobs.csv", start="2023-01-01T00:00Z", limit=3)
    assert az["duration_h"].tolist() == pytest.approx([0.75, 19.0833333, 6.0])
    full = read_jobs_csv_frame(pai)
    assert full["slack_h"].tolist() == pytest.approx([12.0, 12.0])


def read_jobs_csv_frame(frame):
    from care_flows.simulate.jobs import jobs_from_frame

    return jobs_from_frame(frame).frame


def test_poisson_rate_and_cli(tmp_path, capsys):
    df = poisson_jobs(1000, seed=3)
    gaps = df["arrival"].diff().dt.total_seconds().dropna()
    assert gaps.mean() == pytest.approx(0.6, rel=0.15)  # 10 min / 1000 = 0.6 s
    # exponential gaps (a Poisson process), not just any gaps with that mean: the coefficient of
    # variation of an exponential is 1 (uniform gaps on [0, 1.2 s]: 1/sqrt(3) = 0.58), and
    # P(gap < mean) = 1 - 1/e = 0.632 (uniform: 0.5)
    assert 0.85 < gaps.std() / gaps.mean() < 1.15
    assert (gaps < 0.6).mean() == pytest.approx(0.632, abs=0.05)
    out = tmp_path / "j.csv"
    assert main(["simulate", "poisson", "--n", "20", "--seed", "1", "--out", str(out)]) == 0
    assert len(read_jobs_csv(out)) == 20


def test_poisson_jobs_rejects_durations_the_reader_would_reject():
    from care_flows.errors import DataError

    for kw in ({"duration_h": -1.0}, {"duration_h": 0.0}, {"slack_h": -2.0}, {"cpus": 0}):
        with pytest.raises(DataError, match="poisson_jobs needs"):
            poisson_jobs(5, **kw)


def test_cli_convert_gaia_writes_a_jobs_csv_the_simulator_reads(tmp_path, capsys):
    src = tmp_path / "gaia.csv"
    src.write_text("arrival_time,length,cpus\n0.0,3600.0,1\n1800.0,7200.0,2\n")
    out = tmp_path / "jobs.csv"
    args = ["simulate", "convert-gaia", str(src), "--start", "2023-01-02T00:00Z", "--units", "seconds", "--slack-h", "6",
            "--instance-type", "t3.large", "--out", str(out)]
    assert main(args) == 0
    js = read_jobs_csv(out).frame
    assert js["arrival"].tolist() == [pd.Timestamp("2023-01-02T00:00Z"), pd.Timestamp("2023-01-02T00:30Z")]
    assert js["duration_h"].tolist() == [1.0, 2.0] and js["slack_h"].tolist() == [6.0, 6.0]
    assert js["cpus"].tolist() == [1, 2] and set(js["instance_type"]) == {"t3.large"}
    capsys.readouterr()
    assert main(["simulate", "convert-gaia", str(tmp_path / "missing.csv"), "--start", "2023-01-02T00:00Z"]) == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and err.count("\n") == 1
