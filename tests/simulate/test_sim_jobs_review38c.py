"""Review 38c L9 (a folder given as JOBS.csv is called a folder) and L10 (an instance type the
power table lacks is refused when the jobs are made, not only when they are simulated)."""

from __future__ import annotations

import pandas as pd
import pytest

from care_flows.errors import ConfigError, DataError
from care_flows.simulate.jobs import check_instance_type, convert_gaia, poisson_jobs, read_jobs_csv


def test_read_jobs_csv_says_a_folder_is_a_folder(tmp_path):
    with pytest.raises(DataError, match=r"is a folder, not a file; give the path of a CSV file$"):
        read_jobs_csv(tmp_path)
    with pytest.raises(DataError, match=r"does not exist; give the path of a CSV file$"):
        read_jobs_csv(tmp_path / "nope.csv")


def test_convert_gaia_and_poisson_refuse_an_unknown_instance_type():
    frame = pd.DataFrame({"arrival_time": [0.0], "length": [3600.0], "cpus": [1]})
    with pytest.raises(ConfigError, match=r"^instance_type 't9.huge' is not in the power table; use a known EC2 type such as m5.large$"):
        convert_gaia(frame, start="2023-01-02T00:00Z", instance_type="t9.huge")
    with pytest.raises(ConfigError, match=r"instance_type 't9.huge' is not in the power table"):
        poisson_jobs(3, instance_type="t9.huge")
    assert set(convert_gaia(frame, start="2023-01-02T00:00Z", instance_type="c5.large")["instance_type"]) == {"c5.large"}
    check_instance_type("m5.large")


def test_read_carbon_csv_says_a_folder_is_a_folder(tmp_path):
    from care_flows.simulate.engine import read_carbon_csv

    with pytest.raises(DataError, match=r"is a folder, not a file; give a file path or embedded:ZONE"):
        read_carbon_csv(tmp_path)
    with pytest.raises(DataError, match=r"does not exist; give a file path or embedded:ZONE"):
        read_carbon_csv(tmp_path / "nope.csv")


def test_a_trace_of_another_zone_given_for_a_region_is_a_warning(tmp_path, capsys):
    """Review 38c L11: the ES export given as eu-north-1 was simulated on Spain's grid without a word."""
    import json
    import shutil
    from pathlib import Path

    from care_flows.cli import main

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "carbon_intensity"
    es = shutil.copy(data / "electricitymaps_ES_2023_hourly.csv", tmp_path / "es.csv")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nj1,2023-03-01T00:00:00Z,1,6\n")
    assert main(["simulate", "--jobs", str(jobs), "--policy", "now", "--carbon-csv", f"eu-north-1={es}", "--json"]) == 0
    out, err = capsys.readouterr()
    note = (f"carbon CSV {str(es)!r} is zone ES, but it was given for eu-north-1 (zone SE-SE3): eu-north-1 is simulated on ES's grid; "
            "check REGION=PATH")
    assert note in json.loads(out)["warnings"] and f"warning: {note}" in err.splitlines()
    assert main(["simulate", "--jobs", str(jobs), "--policy", "now", "--carbon-csv", f"eu-south-2={es}", "--json"]) == 0
    assert not any("is zone" in w for w in json.loads(capsys.readouterr().out)["warnings"])


@pytest.mark.parametrize("header, cell, region, warned", [
    ("Zone id", "US-CAL-CISO", "us-east-1", True),   # another US grid: the country alone does not match
    ("Zone Id", "ES", "eu-north-1", True),            # the other export schema's header
    ("Zone id", " es ", "eu-south-2", False),          # padded, lower case: the same zone
    ("Zone id", "SE", "eu-north-1", False),            # SE-SE3 is a split of SE
])
def test_the_zone_check_reads_both_headers_and_compares_whole_zones(tmp_path, header, cell, region, warned):
    """Review 38f L6."""
    from care_flows.simulate.engine import _zone_mismatch, read_carbon_csv

    path = tmp_path / "z.csv"
    path.write_text(f"Datetime (UTC),{header},Carbon intensity gCO₂eq/kWh (Life cycle)\n"
                    f"2023-01-01 00:00:00,{cell},100\n2023-01-01 01:00:00,{cell},90\n")
    assert (_zone_mismatch(region, read_carbon_csv(path), str(path)) is not None) == warned
