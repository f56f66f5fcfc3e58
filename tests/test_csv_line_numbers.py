"""Review 38c L13: every CSV reader names a bad row by its line in the file, as an editor numbers it.

The header is line 1, so the first data row is line 2; blank lines count (pandas skips them, the
editor does not). Before, ``care plan --carbon-csv`` counted file lines (``row 3`` for the 2nd data
row) while ``care forecast-usage`` and ``care simulate`` counted data rows (``data row 2``,
``row 2``). Each test below puts the bad value on a known line of a small hand-made file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from care_flows.cli import main
from care_flows.errors import DataError
from care_flows.forecast.usage_io import csv_data_lines, load_usage_csv
from care_flows.signals.trace import read_electricitymaps_csv
from care_flows.simulate.engine import read_carbon_csv
from care_flows.simulate.jobs import convert_gaia, jobs_from_frame, read_jobs_csv


def _error_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, (code, err)
    return err


def test_csv_data_lines_counts_blank_lines_and_multiline_fields() -> None:
    assert csv_data_lines("a,b\n1,2\n3,4\n") == [2, 3]
    assert csv_data_lines("\na,b\n1,2\n   \n\n3,4\n") == [3, 6]  # blank and whitespace-only lines are skipped but counted
    assert csv_data_lines('a,b\n1,"x\ny"\n3,4\n') == [2, 4]  # a quoted field over two lines
    assert csv_data_lines("a,b\r\n1,2\r\n\r\n3,4\r\n") == [2, 4]


def test_plan_carbon_csv_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``care plan --carbon-csv`` (signals/trace.py): the bad value on line 3 is ``line 3``."""
    path = tmp_path / "badvals.csv"
    path.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\n2023-06-01T01:00:00Z,x\n2023-06-01T02:00:00Z,100\n")
    args = ["plan", "--carbon-csv", str(path), "--now", "2023-06-01T01:00Z", "--duration", "1h", "--within", "3h"]
    err = _error_line(args, capsys)
    assert "badvals.csv line 3: value 'x'" in err and "row" not in err.split(":")[1], err
    path.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\n\n2023-06-01T01:00:00Z,-4\n")  # a blank line 3
    with pytest.raises(DataError, match=r"^badvals\.csv line 4: value -4 "):
        read_electricitymaps_csv(path)


def test_simulate_carbon_csv_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``care simulate --carbon-csv`` (simulate/engine.py read_carbon_csv)."""
    path = tmp_path / "es.csv"
    path.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\n2023-06-01T01:00:00Z,x\n")
    with pytest.raises(DataError, match=r"^carbon CSV '.*es\.csv' line 3: g_per_kwh 'x' is not a finite number"):
        read_carbon_csv(path)
    path.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\n\n\n2023-06-01T01:00:00Z,-1\n")
    with pytest.raises(DataError, match=r"' line 5: negative intensity -1;"):
        read_carbon_csv(path)
    path.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\nsoon,100\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T00:00:00Z,1,2\n")
    err = _error_line(["simulate", "--carbon-csv", f"eu-south-2={path}", "--jobs", str(jobs), "--policy", "now"], capsys)
    assert "es.csv' line 3: 'soon' is not an ISO 8601 time" in err


def test_simulate_jobs_csv_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``care simulate --jobs`` (simulate/jobs.py read_jobs_csv, and the engine's checks of a job)."""
    path = tmp_path / "jobs_dup.csv"
    path.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\na,2023-06-01T11:00:00Z,1,24\n")
    err = _error_line(["simulate", "--zone", "ES", "--jobs", str(path), "--policy", "now"], capsys)
    assert err == f"error: {path} line 3 (job 'a'): job_id repeats line 2; job ids must be unique", err
    path.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\n\nb,2023-06-01T10:00:00Z,x,24\n")
    with pytest.raises(DataError, match=r"jobs_dup\.csv line 4 \(job 'b'\): duration_h 'x' is not a number"):
        read_jobs_csv(path)
    # checked by the engine after reading (the trace ends in 2023): the line is still the file's
    path.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\n\nlate,2030-05-05T20:00:00Z,1,24\n")
    err = _error_line(["simulate", "--zone", "ES", "--jobs", str(path), "--policy", "now"], capsys)
    assert err.startswith(f"error: {path} line 4 (job 'late'): deadline "), err
    # a table given as a DataFrame is numbered as the CSV it would be
    import pandas as pd

    frame = pd.DataFrame({"job_id": ["a", "b"], "arrival": ["2023-06-01T10:00:00Z"] * 2, "duration_h": ["1", "y"], "slack_h": ["2", "2"]})
    with pytest.raises(DataError, match=r"^JOBS\.csv line 3 \(job 'b'\): duration_h 'y'"):
        jobs_from_frame(frame)


def test_gaia_trace_names_the_line(tmp_path: Path) -> None:
    """``care simulate convert-gaia`` (simulate/jobs.py convert_gaia)."""
    path = tmp_path / "gaia.csv"
    path.write_text("arrival_time,length,cpus\n0,600,1\n60,-5,1\n")
    with pytest.raises(DataError, match=r"^GAIA trace '.*gaia\.csv' line 3: length -5 is negative"):
        convert_gaia(path, start="2023-01-01T00:00Z")
    path.write_text("arrival_time,length,cpus\n0,600,1\n\n60,600,0.5\n")
    with pytest.raises(DataError, match=r"' line 4: cpus 0.5 is not a whole number"):
        convert_gaia(path, start="2023-01-01T00:00Z")


def test_forecast_usage_csv_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``care forecast-usage`` (forecast/usage_io.py load_usage_csv)."""
    path = tmp_path / "usage.csv"
    path.write_text("t,cpu\n0,1.0\n300,x\n600,1.0\n")
    err = _error_line(["forecast-usage", "--csv", str(path), "--column", "cpu"], capsys)
    assert "column 'cpu' has 1 non-numeric or missing value(s), first at line 3 ('x')" in err, err
    path.write_text("t,cpu\n0,1.0\n\n300,1.0\n300,2.0\n")
    with pytest.raises(DataError, match=r"not strictly increasing at line 5 \('300' is not after line 4, '300'\)"):
        load_usage_csv(path, "cpu", timestamp_column="t")
    path.write_text("t,cpu\n0,1\n300,1\nn/a,1\n900,1\n")
    with pytest.raises(DataError, match=r"not epoch numbers, first at line 4 \('n/a'\)"):
        load_usage_csv(path, "cpu", timestamp_column="t")


def test_the_three_commands_of_the_review_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 2nd data row, the case of the review, is line 3 in plan, forecast-usage and simulate alike."""
    carbon = tmp_path / "badvals.csv"
    carbon.write_text("time,g_per_kwh\n2023-06-01T00:00:00Z,100\n2023-06-01T01:00:00Z,-5\n")
    usage = tmp_path / "usage.csv"
    usage.write_text("cpu\n1.0\n-5\n1.0\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\na,2023-06-01T10:00:00Z,1,24\nb,2023-06-01T10:00:00Z,-5,24\n")
    errors = [
        _error_line(["plan", "--carbon-csv", str(carbon), "--now", "2023-06-01T01:00Z", "--duration", "1h", "--within", "3h"], capsys),
        _error_line(["forecast-usage", "--csv", str(usage), "--column", "cpu"], capsys),
        _error_line(["simulate", "--zone", "ES", "--jobs", str(jobs), "--policy", "now"], capsys),
    ]
    assert all("line 3" in e and "row 2" not in e and "row 3" not in e for e in errors), errors


# ---- review 38f: the line lookup reads the file again only if it is still the regular file read first


def test_a_fifo_is_read_once_and_its_error_still_comes(tmp_path: Path) -> None:
    """M1: re-reading a FIFO to number the line blocked forever; the error now comes with the row's position."""
    import os
    import threading

    fifo = tmp_path / "carbon.csv"
    os.mkfifo(fifo)
    text = "Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)\n2023-01-01 00:00:00,ES,100\n2023-01-01 01:00:00,ES,-5\n"
    writer = threading.Thread(target=lambda: fifo.write_text(text), daemon=True)
    writer.start()
    with pytest.raises(DataError, match=r"line 3: "):
        read_electricitymaps_csv(fifo)
    writer.join(timeout=5)


def test_a_jobs_file_gone_before_a_later_error_keeps_the_data_error_and_a_jobset_pickles(tmp_path: Path) -> None:
    """M1: the engine's later error re-read a deleted file (FileNotFoundError); a JobSet did not pickle (a closure)."""
    import pickle

    from care_flows.forecast.usage_io import FileText

    path = tmp_path / "jobs.csv"
    path.write_text("job_id,arrival,duration_h,slack_h\na,2023-01-01T00:00:00Z,1,2\n\nb,2023-01-01T00:00:00Z,1,2\n")
    js = read_jobs_csv(path)
    assert js.at(1) == f"{path} line 4"  # the blank line counted
    again = pickle.loads(pickle.dumps(js))
    assert again.at(1) == f"{path} line 4"
    fresh = read_jobs_csv(path)
    path.unlink()
    assert fresh.at(1) == f"{path} line 3"  # the file is gone: the row's position, no exception
    assert FileText.of(tmp_path / "nope.csv") is None


def test_a_line_holding_only_an_empty_quoted_field_is_a_row() -> None:
    """L2: '""' was skipped as blank, so the counts differed and the whole file fell back to positions."""
    assert csv_data_lines('a,b\n1,2\n""\n\n3,4\n') == [2, 3, 5]


def test_another_file_copied_over_with_the_same_size_and_time_is_not_read_as_the_first(tmp_path: Path) -> None:
    """Review 38g L1: cp -p keeps the size and mtime; the inode tells the files apart."""
    import os
    import shutil

    from care_flows.forecast.usage_io import FileText

    first, other = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("a\n1\n")
    other.write_text("b\n2\n")
    again = FileText.of(first)
    shutil.copy2(other, tmp_path / "c.csv")
    os.replace(tmp_path / "c.csv", first)  # same size; copy2 keeps b's mtime, so set a's back
    os.utime(first, ns=(again.mtime_ns, again.mtime_ns))
    assert again() == ""
