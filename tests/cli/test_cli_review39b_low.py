"""Review 39b low findings: one-line errors that name the problem (exit 2)."""

from __future__ import annotations

import pytest

from care_flows.cli import main

REGIONS = ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z"]
PLAN = ["plan", "--now", "2023-01-01T05:00:00Z", "--duration", "1h", "--within", "4h"]
HEADER = "Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)\n"


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("argv, said", [
    ([*REGIONS, "--tie-break", "none,home"], "'none' means no tie-break keys and cannot be combined with others (none, home)"),  # L2
    ([*REGIONS, "--vcpu", "inf"], "--vcpu inf is not a finite number; give e.g. --vcpu 2"),  # L3
    ([*REGIONS, "--memory-gib", "1e400"], "--memory-gib inf is not a finite number"),
    (["compare", "--regions", "eu-south-2,eu-south-2", "--instance-type", "t3.large"],  # L4
     "--regions 'eu-south-2,eu-south-2' gives eu-south-2 twice; name each region once"),
])
def test_bad_options(capsys, argv, said):
    assert said in _error(capsys, argv)


def test_a_gap_names_its_step_as_a_duration_and_empty_files_are_called_empty(tmp_path, capsys):
    """L5 ("2 missing 0 days 01:00:00 steps") and L7 ("EmptyDataError", "No columns to parse from file")."""
    gap = tmp_path / "gap.csv"
    gap.write_text(HEADER + "".join(f"2023-01-01 {h:02d}:00:00,ES,100\n" for h in (0, 1, 2, 5, 6)), encoding="utf-8")
    assert "(2 missing 1h steps)" in _error(capsys, [*PLAN, "--carbon-csv", str(gap)])
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert _error(capsys, [*PLAN, "--carbon-csv", str(empty)]) == "error: empty.csv is empty; give an Electricity Maps CSV export"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nj,2023-01-01T00:00:00Z,1,2\n", encoding="utf-8")
    assert "is empty; give a header (job_id,arrival,duration_h,slack_h)" in _error(
        capsys, ["simulate", "--jobs", str(empty), "--carbon-csv", "embedded:ES", "--policy", "now"])
    assert "is empty; give an Electricity Maps export or embedded:ZONE" in _error(
        capsys, ["simulate", "--jobs", str(jobs), "--carbon-csv", str(empty), "--policy", "now"])
    assert "is empty; give the header arrival_time,length,cpus" in _error(
        capsys, ["simulate", "convert-gaia", str(empty), "--start", "2023-06-01T00:00:00Z"])


@pytest.mark.parametrize("argv, said", [
    (["aws", "iam-policy", "--regions", ""], "--regions is empty; give e.g. eu-north-1,eu-south-2, or leave it out for the default"),
    (["aws", "reap", "--regions", ","], "--regions is empty; give e.g. eu-north-1,eu-south-2, or leave it out for the default"),
    (["aws", "reap", "--regions", "eu-north-1", "--endpoint-url", " "], "--endpoint-url is empty; give http(s)://host[:port]"),
])
def test_an_empty_aws_region_list_or_endpoint_is_refused_not_the_default(capsys, argv, said):
    """L10: `--regions ""` restricted iam-policy to the registry's 17 regions (neither the default '*' nor an
    error), and reap fell back to its default regions or endpoint without a word."""
    assert said in _error(capsys, argv)
