"""Review 48a M1: jobs that arrive with under 7 days of carbon history are planned on a fallback forecast; `care
simulate` said nothing (and named the default model) while `care plan` warns in the same case."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from care_flows.cli import main
from care_flows.simulate import simulate

IDX = pd.date_range("2023-01-01", periods=24 * 12, freq="h", tz="UTC")
VALUES = 200 + 60 * np.sin(np.arange(len(IDX)) / 24 * 2 * np.pi)
JOBS = ("job_id,arrival,duration_h,slack_h\n"
        "early,2023-01-03T05:00:00Z,1,12\n"   # 2 days of history: profile persistence
        "late,2023-01-10T05:00:00Z,1,12\n")   # 9 days: ridge


def _trace(tmp_path):
    path = tmp_path / "es.csv"
    pd.DataFrame({"time": IDX.strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": VALUES}).to_csv(path, index=False)
    return f"eu-south-2={path}"


NOTE = ("1 of 2 jobs arrive with under 7 days of carbon history in eu-south-2: their forecasts are the fallback "
        "profile_persistence, not ridge")


def test_jobs_planned_on_a_fallback_forecast_are_counted_in_a_note(tmp_path):
    spec = _trace(tmp_path)
    care = simulate(JOBS, [spec], "care")
    assert any(n.startswith(NOTE) for n in care.notes), care.notes
    assert not any("carbon history" in n for n in simulate(JOBS, [spec], "oracle").notes)  # the oracle reads no forecast
    late_only = simulate(JOBS.split("early")[0] + JOBS.split("\n", 2)[2], [spec], "care")
    assert not any("carbon history" in n for n in late_only.notes)


def test_the_cli_prints_the_note_as_a_warning_and_lists_it(tmp_path, capsys):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(JOBS)
    assert main(["simulate", "--carbon-csv", _trace(tmp_path), "--jobs", str(jobs), "--policy", "care", "--json"]) == 0
    out, err = capsys.readouterr()
    assert any(w.startswith(NOTE) for w in json.loads(out)["warnings"])
    assert f"warning: {NOTE}" in err


def test_only_the_regions_a_policy_reads_count(tmp_path):
    """Review 48b M2: the deferring policies read only the home region's forecast; a later second region's short
    history was blamed for their jobs. ``care`` and ``carbonaware-prefect`` also move jobs, so they read (and are
    told about) both (review 54d L4: carbonaware-prefect was counted with the deferring ones)."""
    home = _trace(tmp_path)
    late = tmp_path / "se.csv"
    pd.DataFrame({"time": IDX[24 * 6:].strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": VALUES[24 * 6:] / 10}).to_csv(late, index=False)
    late_jobs = JOBS.split("early")[0] + JOBS.split("\n", 2)[2]  # the one job after the home trace's first week
    for policy in ("lets-wait-awhile", "threshold", "gaia-carbon-time"):
        assert not any("carbon history" in n for n in simulate(late_jobs, [home, f"eu-north-1={late}"], policy).notes), policy
    for policy in ("care", "carbonaware-prefect"):
        notes = simulate(late_jobs, [home, f"eu-north-1={late}"], policy).notes
        assert any(n.startswith("1 of 1 jobs arrive with under 7 days of carbon history in eu-north-1:") for n in notes), (policy, notes)
