"""``care_flows.simulate.simulate``: ``care simulate`` in one Python call (review 41e L1).

The same jobs and traces, given as a path, CSV text, a DataFrame, a JobSet, specs, a
``{region: Series}`` dict or a CarbonTrace, give the CLI's JSON document to the digit."""

import json

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.data import embedded_intensity
from care_flows.errors import ConfigError, DataError, UnknownRegionError
from care_flows.simulate import simulate
from care_flows.simulate.engine import CarbonTrace
from care_flows.simulate.jobs import jobs_from_frame, poisson_jobs, read_jobs_csv, write_jobs_csv

JOBS = poisson_jobs(40, window_h=36, start=pd.Timestamp("2023-03-01T06:00Z"), slack_h=12, cpus=2, seed=3)


@pytest.fixture()
def jobs_csv(tmp_path):
    path = tmp_path / "jobs.csv"
    write_jobs_csv(JOBS, path)
    return path


def _cli_json(capsys, *args):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("policy", ["care", "lets-wait-awhile", "oracle"])
def test_simulate_gives_the_cli_document(capsys, jobs_csv, policy):
    doc = _cli_json(capsys, "simulate", "--zone", "ES", "--zone", "SE", "--jobs", str(jobs_csv), "--policy", policy)
    out = simulate(jobs_csv, ["embedded:ES", "embedded:SE"], policy)
    assert {**out.summary(), "warnings": []} == doc
    assert doc["jobs"] == 40 and doc["deadline_misses"] == 0


def test_every_form_of_the_inputs_gives_the_same_outcome(jobs_csv):
    es, se = embedded_intensity("ES"), embedded_intensity("SE")
    want = simulate(str(jobs_csv), ["embedded:ES", "embedded:SE"]).summary()
    forms = [
        (jobs_csv.read_text(), ["eu-south-2=embedded:ES", "eu-north-1=embedded:SE"]),
        (JOBS, {"eu-south-2": es, "eu-north-1": se}),
        (read_jobs_csv(jobs_csv), CarbonTrace.from_series({"eu-south-2": es, "eu-north-1": se})),
        (jobs_from_frame(JOBS), ("embedded:ES", "embedded:SE")),
    ]
    for jobs, carbon in forms:
        assert simulate(jobs, carbon).summary() == want


def test_home_region_sets_the_baseline_and_defaults_to_the_first_trace(jobs_csv):
    es_home = simulate(jobs_csv, ["embedded:ES", "embedded:SE"], "now")
    se_home = simulate(jobs_csv, ["embedded:ES", "embedded:SE"], "now", home_region="eu-north-1")
    assert es_home.summary()["jobs_per_region"] == {"eu-south-2": 40, "eu-north-1": 0}
    assert se_home.summary()["jobs_per_region"] == {"eu-south-2": 0, "eu-north-1": 40}
    assert es_home.baseline_carbon_g.sum() > 5 * se_home.baseline_carbon_g.sum()  # Spain vs Sweden
    # a CSV path without REGION= stands for the home region
    path = jobs_csv.parent / "se.csv"
    se = embedded_intensity("SE")
    pd.DataFrame({"time": se.index.strftime("%Y-%m-%dT%H:%M:%SZ"), "g_per_kwh": se.to_numpy()}).to_csv(path, index=False)
    out = simulate(jobs_csv, path, "now", home_region="eu-north-1")
    assert out.summary()["carbon_g"] == se_home.summary()["carbon_g"]


def test_notes_carry_the_input_warnings():
    extra = JOBS.assign(owner="team-a")
    out = simulate(extra, "embedded:ES", "now")
    assert any("owner" in note for note in out.notes), out.notes


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(policy="care-now"), ConfigError, r"unknown policy 'care-now'; use one of now, oracle, care"),
        (dict(home_region="eu-nort-1"), UnknownRegionError, r"unknown region 'eu-nort-1' \(did you mean 'eu-north-1'\?\)"),
        (dict(home_region="eu-north-1"), ConfigError, r"home region eu-north-1 has no carbon trace \(simulated: eu-south-2\)"),
        (dict(forecast_model="prophet"), ConfigError, r"unknown forecast_model 'prophet'"),
        (dict(carbon=42), ConfigError, r"carbon 42 is not a trace: give specs such as 'embedded:ES'"),
        (dict(carbon=[]), ConfigError, r"carbon \[\] is not a trace"),
        (dict(carbon={"eu-sout-2": None}), UnknownRegionError, r"did you mean 'eu-south-2'"),
        (dict(carbon={"eu-south-2": embedded_intensity("ES").to_numpy()}), ConfigError,
         r"carbon trace for eu-south-2 is a ndarray without a time index; give a pandas Series"),
        (dict(carbon={"eu-south-2": embedded_intensity("ES") - 1000}), DataError,
         r"carbon trace for eu-south-2 has a negative intensity -\d+.* at 2021-01-01T00:00:00\+00:00; intensities are >= 0"),
        (dict(carbon={"eu-south-2": embedded_intensity("ES").tz_localize(None)}), DataError,
         r"carbon trace for eu-south-2 has times without a time zone"),
        (dict(jobs=42), ConfigError, r"jobs of type int cannot be read; give a JOBS.csv path"),
        (dict(jobs="missing.csv"), DataError, r"jobs CSV 'missing.csv' does not exist"),
        (dict(jobs=JOBS.assign(region="eu-west-3")), DataError, r"jobs line 2 .*'eu-west-3' has no carbon trace"),
    ],
)
def test_bad_input_is_one_line_naming_it(kwargs, error, match):
    args = {"jobs": JOBS, "carbon": "embedded:ES", "policy": "care", **kwargs}
    with pytest.raises(error, match=match) as info:
        simulate(args.pop("jobs"), args.pop("carbon"), args.pop("policy"), **args)
    assert "\n" not in str(info.value)


def test_outcome_segments_are_inside_the_windows():
    jobs = jobs_from_frame(JOBS.assign(interruptible=True)).frame
    out = simulate(jobs, ["embedded:ES", "embedded:SE"], "care")
    seg = out.segments.merge(jobs[["job_id", "arrival", "deadline"]], on="job_id")
    assert (seg["start"] >= seg["arrival"]).all() and (seg["end"] <= seg["deadline"]).all()
    ran_h = (seg["end"] - seg["start"]).dt.total_seconds().groupby(seg["job_id"]).sum() / 3600
    assert np.allclose(ran_h.sort_index(), jobs.set_index("job_id")["duration_h"].sort_index())
    assert out.segments.groupby("job_id").size().max() > 1  # some job was split: the test covers interruptions


def test_an_empty_naive_trace_is_a_data_error():
    """Review 42d L6: an IndexError before."""
    with pytest.raises(DataError, match="carbon trace for eu-south-2 has fewer than 2 rows"):
        simulate(JOBS, {"eu-south-2": pd.Series([], dtype=float, index=pd.DatetimeIndex([]))})


def test_the_window_planner_refuses_a_naive_forecast_as_the_planners_do():
    """Review 42d L5: planner='window' still read a naive forecast as UTC."""
    from care_flows.orchestration.plan import _clean

    naive = pd.Series(1.0, index=pd.date_range("2023-06-01", periods=3, freq="h"))
    with pytest.raises(DataError, match="the carbon forecast index has no time zone"):
        _clean(naive)
    assert str(_clean(naive.tz_localize("Europe/Madrid")).index.tz) == "UTC"
