"""Review 6 #6 and #7: ';'-separated JOBS.csv, errors naming the file given, deadline and slack_h together."""

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.simulate.jobs import jobs_from_frame, read_jobs_csv

HEADER = "job_id,arrival,duration_h,deadline,slack_h"


def test_a_semicolon_separated_jobs_file_reads_like_the_comma_one(tmp_path) -> None:
    comma = tmp_path / "jobs.csv"
    comma.write_text(HEADER + "\na,2023-06-01T08:00:00+00:00,1,,24\nb,2023-06-01T09:00:00Z,2,2023-06-01T15:00:00Z,\n")
    semi = tmp_path / "jobs_semi.csv"
    semi.write_text(comma.read_text().replace(",", ";"))
    spaced = tmp_path / "jobs_spaced.csv"
    spaced.write_text(comma.read_text().replace(",", "; "))
    expected = read_jobs_csv(comma).frame
    pd.testing.assert_frame_equal(read_jobs_csv(semi).frame, expected)
    pd.testing.assert_frame_equal(read_jobs_csv(spaced).frame, expected)


def test_a_semicolon_file_may_write_decimals_with_a_comma(tmp_path) -> None:
    comma = tmp_path / "jobs.csv"
    comma.write_text("job_id,arrival,duration_h,slack_h,cpus\na,2023-06-01T08:00:00Z,1.5,12.25,0.5\nb,2023-06-01T09:00:00Z,2,24,4\n")
    semi = tmp_path / "jobs_semi.csv"
    semi.write_text("job_id;arrival;duration_h;slack_h;cpus\na;2023-06-01T08:00:00Z;1,5;12,25;0,5\nb;2023-06-01T09:00:00Z;2;24;4\n")
    pd.testing.assert_frame_equal(read_jobs_csv(semi).frame, read_jobs_csv(comma).frame)
    # in a ','-separated file a comma is a separator, so "1,5" there stays an error (a column too many)
    with pytest.raises(DataError):
        read_jobs_csv("job_id,arrival,duration_h,slack_h\na,2023-06-01T08:00:00Z,1;5,24\n")


def test_cli_simulate_takes_a_semicolon_file(tmp_path, capsys) -> None:
    semi = tmp_path / "jobs_semi.csv"
    semi.write_text("job_id;arrival;duration_h;deadline;slack_h\na;2023-06-01T08:00:00+00:00;1;;24\n")
    assert main(["simulate", "--zone", "ES", "--jobs", str(semi), "--policy", "now", "--json"]) == 0
    assert '"jobs": 1' in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("job_id,arrival,slack_h\na,2023-06-01T10:00:00Z,24\n", "lacks column(s) duration_h"),
        (HEADER + "\n", "has no rows"),
        (HEADER + "\na,2023-06-01T10:00:00Z,nan?,,24\n", "line 2 (job 'a'): duration_h 'nan?' is not a number"),
        (HEADER + "\na,2023-06-01T10:00:00Z,1,,-2\n", "line 2 (job 'a'): slack_h -2 is negative"),
    ],
)
def test_every_jobs_error_names_the_path_the_user_gave(tmp_path, capsys, text, fragment) -> None:
    path = tmp_path / "jobs_nan.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_jobs_csv(path)
    assert str(err.value).startswith(f"{path} ") and fragment in str(err.value) and "JOBS.csv" not in str(err.value)
    assert main(["simulate", "--zone", "ES", "--jobs", str(path)]) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith(f"error: {path} ") and fragment in msg and "\n" not in msg


def test_engine_errors_name_the_path_too(tmp_path, capsys) -> None:
    late = tmp_path / "late_jobs.csv"
    late.write_text("job_id,arrival,duration_h,slack_h\nz,2030-05-05T20:00:00Z,1,24\n")
    assert main(["simulate", "--zone", "ES", "--jobs", str(late), "--policy", "now"]) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith(f"error: {late} line 2 (job 'z'): ") and "JOBS.csv" not in msg


def test_missing_and_unparsable_files_name_the_path(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.csv"
    assert main(["simulate", "--zone", "ES", "--jobs", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00job_id\n\x00\x81")
    with pytest.raises(DataError, match=str(binary)):
        read_jobs_csv(binary)


def test_deadline_and_slack_that_agree_are_accepted(tmp_path) -> None:
    # 08:00 + 1 h + 24 h = next day 09:00; half a second of rounding is still agreement
    text = HEADER + "\na,2023-06-01T08:00:00+00:00,1,2023-06-02T09:00:00+00:00,24\nb,2023-06-01T08:00:00Z,1,2023-06-02T09:00:00.5Z,24\n"
    f = read_jobs_csv(text).frame
    assert f["deadline"].tolist() == [pd.Timestamp("2023-06-02T09:00Z"), pd.Timestamp("2023-06-02T09:00:00.5Z")]
    assert f["slack_h"].round(3).tolist() == [24.0, 24.0]  # the deadline is kept
    # a validated frame (which holds both, consistent) validates again unchanged
    pd.testing.assert_frame_equal(jobs_from_frame(f).frame, f)


def test_deadline_and_slack_that_disagree_are_one_line_error_naming_both(tmp_path, capsys) -> None:
    path = tmp_path / "both.csv"
    path.write_text(HEADER + "\nok,2023-06-01T08:00:00+00:00,1,,24\na,2023-06-01T08:00:00+00:00,1,2023-06-01T10:00:00+00:00,24\n")
    with pytest.raises(DataError) as err:
        read_jobs_csv(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} line 3 (job 'a'): deadline 2023-06-01T10:00:00+00:00 and slack_h 24 disagree")
    assert "2023-06-02T09:00:00+00:00" in msg and "give deadline or slack_h, not both, or make them agree" in msg
    assert main(["simulate", "--zone", "ES", "--jobs", str(path), "--policy", "now"]) == 2
    err_line = capsys.readouterr().err.strip()
    assert "disagree" in err_line and "\n" not in err_line
    # two seconds off is a disagreement too
    with pytest.raises(DataError, match="disagree"):
        read_jobs_csv(HEADER + "\na,2023-06-01T08:00:00Z,1,2023-06-02T09:00:02Z,24\n")


def test_rows_with_only_one_of_deadline_or_slack_keep_their_meaning() -> None:
    text = HEADER + "\na,2023-06-01T08:00:00Z,1,2023-06-01T10:00:00Z,\nb,2023-06-01T08:00:00Z,1,,24\n"
    f = read_jobs_csv(text).frame
    assert f["slack_h"].tolist() == [1.0, 24.0]


def test_a_parsed_table_written_back_reads_again_even_with_zero_slack() -> None:
    import io

    from care_flows.simulate.jobs import read_jobs_csv

    text = "job_id,arrival,duration_h,slack_h\na,2023-06-01T10:07:00Z,0.3333333333333333,0\nb,2023-06-01T11:00:00Z,1,2\n"
    first = read_jobs_csv(text).frame
    buf = io.StringIO()
    first.to_csv(buf, index=False)
    again = read_jobs_csv(buf.getvalue()).frame
    assert again["slack_h"].tolist() == [0.0, 2.0]


def test_a_trailing_separator_on_every_row_is_dropped(tmp_path, recwarn) -> None:
    """Review 35a M3: spreadsheet exports end rows with a ','; pandas made the job id the index and the
    error called the arrival time the job id and the duration the arrival."""
    path = tmp_path / "trailing.csv"
    path.write_text("job_id,arrival,duration_h,slack_h\nj1,2023-06-01T08:00:00Z,1,24,\nj2,2023-06-01T09:00:00Z,1,24,\n")
    plain = tmp_path / "plain.csv"
    plain.write_text("job_id,arrival,duration_h,slack_h\nj1,2023-06-01T08:00:00Z,1,24\nj2,2023-06-01T09:00:00Z,1,24\n")
    pd.testing.assert_frame_equal(read_jobs_csv(path).frame, read_jobs_csv(plain).frame)
    assert not [w for w in recwarn if issubclass(w.category, pd.errors.ParserWarning)]


def test_an_extra_field_with_a_value_is_a_one_line_error_naming_row_and_value(tmp_path, capsys) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("job_id,arrival,duration_h,slack_h\nj1,2023-06-01T08:00:00Z,1,24,\nj2,2023-06-01T09:00:00Z,1,24,x\n")
    assert main(["simulate", "--zone", "ES", "--jobs", str(path), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err and "'x'" in err and "4 columns" in err, err
