"""``care simulate`` end to end: CSV traces (both Electricity Maps schemas), JSON keys, PLAN.csv, errors."""

import json

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.simulate.engine import CarbonTrace, SimContext
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import POLICIES, run_policy

IDX = pd.date_range("2023-05-01", periods=24 * 5, freq="h", tz="UTC")


@pytest.fixture()
def files(tmp_path):
    hours = np.arange(len(IDX))
    es = 200 + 80 * np.sin(hours / 24 * 2 * np.pi)
    se = 30 + 10 * np.cos(hours / 24 * 2 * np.pi)
    em = pd.DataFrame({"Datetime (UTC)": IDX.strftime("%Y-%m-%d %H:%M:%S"), "Zone id": "ES", "Carbon intensity gCO₂eq/kWh (Life cycle)": es})
    em.to_csv(tmp_path / "es.csv", index=False)
    alt = pd.DataFrame({"Datetime (UTC)": IDX.strftime("%Y-%m-%dT%H:%M:%SZ"), "Carbon Intensity gCO₂eq/kWh (LCA)": se})
    alt.to_csv(tmp_path / "se.csv", index=False)
    jobs = pd.DataFrame(
        {
            "job_id": ["a", "b", "c", "d"],
            "arrival": ["2023-05-02T03:20:00Z", "2023-05-02T10:00:00Z", "2023-05-03T00:00:00+02:00", "2023-05-03T05:00:00Z"],
            "duration_h": [1, 2.5, 0.5, 3],
            "slack_h": [12, 6, 0, 20],
            "interruptible": ["false", "true", "false", "true"],
            "cpus": [2, 4, 1, 2],
        }
    )
    jobs.to_csv(tmp_path / "jobs.csv", index=False)
    return tmp_path


REQUIRED = {"policy", "jobs", "carbon_g", "baseline_carbon_g", "savings_pct", "cost_usd", "baseline_cost_usd", "deadline_misses", "mean_delay_h", "p95_delay_h"}


@pytest.mark.parametrize("policy", list(POLICIES))
def test_json_and_plan(files, capsys, policy):
    plan = files / "plan.csv"
    code = main(
        ["simulate", "--carbon-csv", f"eu-south-2={files / 'es.csv'}", "--carbon-csv", f"eu-north-1={files / 'se.csv'}",
         "--jobs", str(files / "jobs.csv"), "--policy", policy, "--out", str(plan), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert REQUIRED <= set(doc) and doc["policy"] == policy and doc["jobs"] == 4
    assert doc["deadline_misses"] == 0
    assert sum(doc["jobs_per_region"].values()) == 4
    if policy == "now":
        assert doc["savings_pct"] == 0 and doc["carbon_g"] == doc["baseline_carbon_g"]
    text = plan.read_text()
    assert text.splitlines()[0] == "job_id,region,start,end"
    seg = pd.read_csv(plan)
    assert seg["start"].str.endswith("+00:00").all() and seg["end"].str.endswith("+00:00").all()
    jobs = pd.read_csv(files / "jobs.csv")
    seg = seg.merge(jobs, on="job_id")
    start, end = pd.to_datetime(seg["start"], utc=True), pd.to_datetime(seg["end"], utc=True)
    arrival = pd.to_datetime(seg["arrival"], utc=True, format="ISO8601")
    deadline = arrival + pd.to_timedelta(seg["duration_h"] + seg["slack_h"], unit="h")
    assert (start >= arrival).all() and (end <= deadline + pd.Timedelta("1ms")).all()
    hours = ((end - start).dt.total_seconds() / 3600).groupby(seg["job_id"]).sum()
    assert hours.to_dict() == pytest.approx(jobs.set_index("job_id")["duration_h"].to_dict())
    # delays recomputed from PLAN.csv: last end - (arrival + duration); p95 by linear interpolation
    by_job = seg.assign(end_t=end, arrival_t=arrival).groupby("job_id").agg(end_t=("end_t", "max"), arrival_t=("arrival_t", "first"), duration_h=("duration_h", "first"))
    delays = np.sort(((by_job["end_t"] - by_job["arrival_t"]).dt.total_seconds() / 3600 - by_job["duration_h"]).to_numpy())
    assert len(delays) == 4 and (delays > -1e-6).all()
    pos = 0.95 * (len(delays) - 1)  # 2.85: between the 3rd and 4th smallest
    p95 = delays[2] + (pos - 2) * (delays[3] - delays[2])
    assert doc["mean_delay_h"] == pytest.approx(delays.sum() / 4, abs=2e-4)
    assert doc["p95_delay_h"] == pytest.approx(p95, abs=2e-4)
    # cost: cpus x m5.large USD/h / 2 vCPU x hours (embedded on-demand prices: eu-south-2 0.107,
    # eu-north-1 0.102); the baseline runs every job now at home (eu-south-2): 18.5 vCPU-hours
    usd_per_vcpu_h = {"eu-south-2": 0.107 / 2, "eu-north-1": 0.102 / 2}
    vcpu_h = (end - start).dt.total_seconds() / 3600 * seg["cpus"]
    assert doc["baseline_cost_usd"] == pytest.approx(18.5 * 0.107 / 2, abs=2e-6)
    assert doc["cost_usd"] == pytest.approx(float((vcpu_h * seg["region"].map(usd_per_vcpu_h)).sum()), abs=2e-6)
    moved = float(vcpu_h[seg["region"] == "eu-north-1"].sum())
    if policy == "now":
        assert doc["cost_usd"] == doc["baseline_cost_usd"] and doc["mean_delay_h"] == doc["p95_delay_h"] == 0
    elif moved > 0:  # the cheaper region
        assert doc["cost_usd"] < doc["baseline_cost_usd"]


def test_human_output_and_embedded(files, capsys):
    jobs = files / "j2.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nx,2023-06-01T10:00:00Z,1,24\n")
    assert main(["simulate", "--zone", "ES", "--zone", "SE", "--jobs", str(jobs), "--policy", "care"]) == 0
    out = capsys.readouterr().out
    assert "savings_pct" in out and "jobs_per_region" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--zone", "XX"], "zone 'XX' has no embedded data"),
        (["--carbon-csv", "missing.csv"], "does not exist"),
        ([], "no carbon trace"),
        (["--zone", "ES", "--home-region", "mars-1"], "unknown region 'mars-1'"),
        (["--zone", "ES", "--home-region", "eu-north-1"], "home region eu-north-1 has no carbon trace"),
    ],
)
def test_cli_input_errors(files, capsys, args, fragment):
    code = main(["simulate", *args, "--jobs", str(files / "jobs.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and fragment in err


def test_jobs_outside_the_trace(files, capsys):
    code = main(["simulate", "--carbon-csv", f"eu-south-2={files / 'es.csv'}", "--jobs", str(files / "jobs.csv"), "--policy", "now"])
    assert code == 0
    late = files / "late.csv"
    late.write_text("job_id,arrival,duration_h,slack_h\nz,2023-05-05T20:00:00Z,1,24\n")
    code = main(["simulate", "--carbon-csv", f"eu-south-2={files / 'es.csv'}", "--jobs", str(late)])
    err = capsys.readouterr().err
    assert code == 2 and "line 2 (job 'z'): deadline" in err and "after the carbon trace ends" in err


def test_forecast_driven_policies_do_not_peek():
    """Changing the trace after the arrivals' issue slot changes nothing a plan-once forecast-driven policy decides."""
    rng = np.random.default_rng(3)
    base = rng.uniform(50, 300, size=len(IDX))
    changed = base.copy()
    changed[48:] = rng.uniform(50, 300, size=len(IDX) - 48)
    frame = pd.DataFrame(
        {"job_id": ["a", "b", "c"], "arrival": [IDX[48] + pd.Timedelta(minutes=m) for m in (0, 20, 59)], "duration_h": [1.0, 2.0, 0.5],
         "slack_h": [10.0, 20.0, 5.0], "interruptible": [False, True, False]}
    )
    decisions = []
    for values in (base, changed):
        trace = CarbonTrace.from_series({"eu-south-2": pd.Series(values, index=IDX)})
        ctx = SimContext.build(trace, jobs_from_frame(frame), home_region="eu-south-2", forecast_model="seasonal_naive_local")
        # care re-plans with the data of later hours by design; its no-peeking test is in test_sim_replan.py
        decisions.append({n: run_policy(ctx, n).seg_start.round(9).tolist() for n in POLICIES if n not in ("oracle", "care")})
    assert decisions[0] == decisions[1]


def _one_line_error(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    err = captured.err
    assert captured.out == "" and err.startswith("error: ") and err.count("\n") == 1
    return err


def test_bad_job_duration_is_a_plain_number(files, capsys):
    # review 4 #10: "duration_h np.float64(-1.0) must be ..."
    bad = files / "neg.csv"
    bad.write_text("job_id,arrival,duration_h,slack_h\nx,2023-06-01T10:00:00Z,-1,24\n")
    err = _one_line_error(capsys, ["simulate", "--zone", "ES", "--jobs", str(bad)])
    assert "duration_h -1 must be a positive number of hours" in err and "np." not in err


def test_unknown_forecast_model_lists_every_accepted_name(files, capsys):
    # review 4 #10: a Python list that left out seasonal_naive_local, which --help advertises
    err = _one_line_error(capsys, ["simulate", "--zone", "ES", "--jobs", str(files / "jobs.csv"), "--forecast-model", "magic"])
    assert "unknown --forecast-model 'magic'; use one of default, ridge, seasonal_naive, mean_7d, persistence, seasonal_naive_local" in err
    assert "[" not in err


def test_help_lists_care_once_and_forecast_models(capsys):
    assert main(["simulate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "care-once" in out and "seasonal_naive_local" in out and "mean_7d" in out


@pytest.mark.parametrize("args, fragment", [
    (["--duration-h", "-1"], "--duration-h -1 must be a positive number of hours"),
    (["--duration-h", "0"], "--duration-h 0 must be a positive"),
    (["--window-h", "0"], "--window-h 0 must be a positive number of hours"),
])
def test_poisson_rejects_bad_numbers_naming_the_option(capsys, args, fragment):
    # review 4 #11: --duration-h -1 exited 0 with negative durations; --window-h 0 named the Python function
    err = _one_line_error(capsys, ["simulate", "poisson", "--n", "5", *args])
    assert fragment in err and "poisson_jobs" not in err


def test_poisson_help_shows_a_clean_window_default(capsys):
    assert main(["simulate", "poisson", "--help"]) == 0
    out = capsys.readouterr().out
    assert "10 minutes" in out and "0.16666" not in out


def test_a_jobs_instance_type_sets_its_power_and_price(files, capsys):
    """The optional ``instance_type`` column sets the per-vCPU price and power (a job's size is its ``cpus``);
    an unknown type names the row."""
    import io

    jobs = pd.read_csv(files / "jobs.csv")
    docs = {}
    for itype in ("t3.large", "m5.4xlarge"):
        jobs.assign(instance_type=itype).to_csv(files / f"jobs-{itype}.csv", index=False)
        assert main(["simulate", "--carbon-csv", f"eu-south-2={files / 'es.csv'}", "--jobs", str(files / f"jobs-{itype}.csv"),
                     "--policy", "now", "--json"]) == 0
        docs[itype] = json.loads(capsys.readouterr().out)
    from care_flows.pricing import EmbeddedPrices

    cat = EmbeddedPrices().catalog("eu-south-2").set_index("instance_type")
    # a t3.large at the model's 50 % CPU also pays its credits above the 30 % baseline: 0.2 x 2 x 0.05 USD/h
    credit = {"t3.large": 0.02, "m5.4xlarge": 0.0}
    per_vcpu = {t: (cat.loc[t, "usd_per_hour"] + credit[t]) / cat.loc[t, "vcpu"] for t in docs}
    ratio = docs["m5.4xlarge"]["cost_usd"] / docs["t3.large"]["cost_usd"]
    assert ratio == pytest.approx(per_vcpu["m5.4xlarge"] / per_vcpu["t3.large"], rel=1e-3) and ratio != pytest.approx(1.0)
    assert docs["m5.4xlarge"]["carbon_g"] != pytest.approx(docs["t3.large"]["carbon_g"])
    buf = io.StringIO()
    jobs.assign(instance_type=["t3.large", "t3.large", "x9.huge", "t3.large"]).to_csv(buf, index=False)
    (files / "bad.csv").write_text(buf.getvalue())
    assert main(["simulate", "--carbon-csv", f"eu-south-2={files / 'es.csv'}", "--jobs", str(files / "bad.csv"), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert "x9.huge" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_region_whose_trace_starts_later_is_named_when_it_cuts_the_others(tmp_path, capsys):
    """Review 35f M1: a second trace starting later silently cut the home trace's history (and every
    policy's forecasts); the run now says so, and the no-history error names the region that cut it."""
    from care_flows.data import embedded_intensity

    es = embedded_intensity("ES", "lifecycle")["2022-12-01":"2023-01-31"]
    se = embedded_intensity("SE", "lifecycle")["2023-01-10":"2023-01-31"]
    for name, s in (("es.csv", es), ("se.csv", se)):
        pd.DataFrame({"time": s.index, "g_per_kwh": s.values}).to_csv(tmp_path / name, index=False)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,arrival,duration_h,slack_h\nj1,2023-01-12T00:20:00Z,1,12\n")
    traces = ["--carbon-csv", f"eu-south-2={tmp_path / 'es.csv'}", "--carbon-csv", f"eu-north-1={tmp_path / 'se.csv'}"]
    assert main(["simulate", *traces, "--jobs", str(jobs), "--policy", "lets-wait-awhile", "--json"]) == 0
    out = capsys.readouterr()
    json.loads(out.out)  # stdout: the document only
    assert "warning: the traces are aligned on their common time range: eu-south-2 loses 960 row(s) before 2023-01-10" in out.err
    assert "where eu-north-1's trace starts" in out.err
    early = tmp_path / "early.csv"
    early.write_text("job_id,arrival,duration_h,slack_h\ne,2023-01-05T10:00:00Z,1,12\n")
    assert main(["simulate", *traces, "--jobs", str(early), "--policy", "now"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "where the eu-north-1 trace starts" in err, err
