"""Review 36f L1-L3: plans and artifacts written by an older CaRE, read by this one.

- L1: a controller re-plan of a run whose marker an older CaRE wrote (no ``baseline_usd`` nor
  ``baseline_instance_type``) copied those None over the fresh plan's figures;
- L2: for such a run with a measured CPU, ``baseline_realized_kwh`` was at the planned CPU while
  ``realized_kwh`` was at the measured one;
- L3: ``care report`` summed two baseline definitions across the upgrade without saying so.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.cli import main
from care_flows.cli.report import parse_realized, render_report, summarize
from care_flows.orchestration.artifacts import publish_realized
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.plan import Plan, plan_run
from care_flows.policy import CarePolicy
from tests.orchestration.test_orch_controller import H, nightly

pytestmark = pytest.mark.usefixtures("prefect_harness")

ENERGY_USED_JOBS = "baseline_g_from_energy_used_jobs"  # care report's count of the jobs whose baseline fell back
NEW_KEYS = ("baseline_usd", "baseline_instance_type", "savings_usd", "abatement_usd_per_tco2")  # added by 2470a8d


# ------------------------------------------------------------------ L1. a re-plan keeps what it knows
def test_a_replan_of_a_marker_an_older_care_wrote_keeps_the_fresh_baseline_usd_and_type(forecast):
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "replan_every": "1h"}).save("r36f-fix-policy", overwrite=True)
    dep = nightly.to_deployment(name="r36f-fix-replan", tags=["care", "care-policy:r36f-fix-policy"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    first = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    fresh = {"eu-south-2": forecast(t_run, [300, 300, 200, 300, 300, 10, 300, 300, 300, 300])}  # a greener slot appeared
    with get_client(sync_client=True) as client:
        old = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        kept = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        control_once(client, signal=first, clock=lambda: now)
        planned = client.read_flow_run(old.id).job_variables["care"]["plan"]
        assert planned["baseline_usd"] is not None and planned["baseline_instance_type"]
        # one marker as an older CaRE wrote it (none of the new keys), one with its own recorded figures
        for run, edit in ((old, lambda p: {k: v for k, v in p.items() if k not in NEW_KEYS}),
                          (kept, lambda p: {**p, "baseline_usd": 9.99, "baseline_instance_type": "m5.large"})):
            jv = dict(client.read_flow_run(run.id).job_variables)
            jv["care"] = {**jv["care"], "plan": edit(dict(jv["care"]["plan"]))}
            client.update_flow_run(run.id, job_variables=jv)
        acts = {a.flow_run_id: a for a in control_once(client, signal=fresh, clock=lambda: now + H)}
        assert acts[str(old.id)].action == acts[str(kept.id)].action == "replanned"
        replanned = client.read_flow_run(old.id).job_variables["care"]["plan"]
        recorded = client.read_flow_run(kept.id).job_variables["care"]["plan"]
    # was: baseline_usd None, type None, savings_usd None (the fresh plan's figures overwritten by the marker's None)
    assert replanned["baseline_usd"] == pytest.approx(planned["baseline_usd"])  # running now at home costs the same
    assert replanned["baseline_instance_type"] == planned["baseline_instance_type"]
    assert replanned["savings_usd"] is not None and replanned["baseline_g"] == pytest.approx(planned["baseline_g"])
    assert Plan.from_dict(replanned).abatement_note is None or "no price" not in Plan.from_dict(replanned).abatement_note
    # a marker that knows them keeps its own, as before
    assert recorded["baseline_usd"] == 9.99 and recorded["baseline_instance_type"] == "m5.large"


# ------------------------------------------------------------------ L2. the same CPU use on both sides, or no baseline energy
T0 = pd.Timestamp("2023-06-01T00:00Z")


def _series(values: list[float]) -> pd.Series:
    s = pd.Series(values, index=pd.date_range(T0, periods=len(values), freq="1h"), dtype=float)
    s.attrs["source"] = "synthetic"
    return s


@pytest.fixture
def moved_plan() -> Plan:
    """ES 300 / SE 20 g/kWh, 2 vCPU / 4 GiB: decide moves the run to c5a.xlarge in eu-north-1,
    against t3.xlarge now at home."""
    fc = {"eu-south-2": _series([300.0] * 24), "eu-north-1": _series([20.0] * 24)}
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="4h", vcpu=2, memory_gib=4)
    plan = plan_run(pol, T0, signal=fc, planner="decide")
    assert (plan.region, plan.instance_type, plan.baseline_instance_type) == ("eu-north-1", "c5a.xlarge", "t3.xlarge")
    return plan


def _realized(plan: Plan, *, cpu: float | None) -> dict:
    started, finished = plan.start, plan.start + H
    usage = None if cpu is None else pd.DataFrame({"time": pd.date_range(started, periods=61, freq="1min"),
                                                   "cpu_vcpu": [0.0] + [cpu] * 60, "memory_gib": 1.0})
    return publish_realized(plan, started=started, finished=finished, region="eu-north-1", intensity=_series([20.0] * 24),
                            usage=usage, baseline_realized_g_per_kwh=300.0, instance_type=plan.instance_type, root="r36f-l2")


def test_an_older_marker_with_a_measured_cpu_has_no_baseline_energy_at_the_planned_cpu(moved_plan, monkeypatch):
    import prefect.artifacts

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda **kw: None)  # the figures only
    marker = Plan.from_dict(moved_plan.to_dict())  # a dispatched run: its plan rebuilt from the marker (no options)
    older = Plan.from_dict({k: v for k, v in moved_plan.to_dict().items() if k not in NEW_KEYS})
    assert marker.options is None and older.baseline_instance_type is None
    new = _realized(marker, cpu=3.0)
    old = _realized(older, cpu=3.0)
    assert new["realized_rates_from"] == old["realized_rates_from"] == "measured CPU"
    assert old["realized_kwh"] == new["realized_kwh"] == pytest.approx(0.01889775)  # c5a.xlarge at 75 %
    assert new["baseline_realized_kwh"] == pytest.approx(0.03864675)  # t3.xlarge at 75 %: the same CPU use
    # was 0.021933875: t3.xlarge at the planned 25 % against a realized energy at 75 %
    assert old["baseline_realized_kwh"] is None and old["baseline_realized_usd"] is None
    assert old["realized_savings_usd"] is None and old["realized_abatement_usd_per_tco2"] is None
    # care report then takes the energy the run used, and says so
    row = summarize([{**old, "flow": "f", "job": "j"}])["flows"][0]
    assert row["baseline_g"]["value"] == pytest.approx(0.01889775 * 300.0, rel=1e-6) and row[ENERGY_USED_JOBS] == 1
    # without a measured CPU both sides stay at the planned utilisation, as before
    planned = _realized(older, cpu=None)
    assert planned["realized_rates_from"] == "plan" and planned["baseline_realized_kwh"] == pytest.approx(0.021933875)
    assert summarize([{**planned, "flow": "f", "job": "j"}])["flows"][0][ENERGY_USED_JOBS] == 0


# ------------------------------------------------------------------ L3. care report says which baseline it summed
# the same run (moved to eu-north-1 on c5a.xlarge, home t3.xlarge, 1 h, 300 vs 20 g/kWh) written before and after 2470a8d
_COMMON = ("- **region**: eu-north-1\n- **started**: 2023-06-01T00:00:00+00:00\n- **finished**: 2023-06-01T01:00:00+00:00\n"
           "- **duration_s**: 3600.0\n- **outcome**: completed\n- **realized_g_per_kwh**: 20.0\n- **realized_from**: synthetic history\n"
           "- **realized_kwh**: 0.0120451875\n- **realized_g**: 0.24090375\n- **realized_usd**: 0.164\n- **realized_rates_from**: plan\n"
           "- **expected_g_per_kwh**: 20.0\n- **expected_g**: 0.24090375\n- **expected_usd**: 0.164\n- **baseline_g**: 6.5801625\n"
           "- **baseline_g_per_kwh**: 300.0\n")
OLD_ART = "# CaRE realized figures (completed)\n\n" + _COMMON + "- **root**: job-old\n- **baseline_realized_g_per_kwh**: 300.0\n"
NEW_ART = ("# CaRE realized figures (completed)\n\n" + _COMMON + "- **baseline_usd**: 0.1824\n- **root**: job-new\n"
           "- **baseline_realized_g_per_kwh**: 300.0\n- **baseline_realized_kwh**: 0.021933875\n- **baseline_realized_usd**: 0.1824\n"
           "- **realized_savings_usd**: 0.0184\n")


def _seg(markdown: str, flow: str) -> dict:
    s = parse_realized(markdown)
    return {**s, "flow": flow, "job": s["root"]}


def test_report_counts_the_jobs_whose_baseline_is_the_energy_used():
    old, new = _seg(OLD_ART, "etl"), _seg(NEW_ART, "etl")
    doc = {"skipped": 0, **summarize([old, new, {**old, "flow": "train", "job": "job-old-2"}])}
    rows = {r["flow"]: r for r in doc["flows"]}
    assert rows["etl"][ENERGY_USED_JOBS] == 1 and rows["train"][ENERGY_USED_JOBS] == 1 and doc["total"][ENERGY_USED_JOBS] == 2
    assert doc["total"]["baseline_g"]["jobs"] == 3
    lines = render_report(doc)
    [note] = [line for line in lines if "energy of the instance that ran" in line]
    assert note.startswith("baseline gCO2eq of 2 of 3 jobs (etl: 1, train: 1) is on the energy of the instance that ran, "
                           "not the home-sized instance") and "baseline_realized_kwh" in note
    # all on the home-sized instance: 0, no footnote
    only_new = {"skipped": 0, **summarize([new])}
    assert only_new["total"][ENERGY_USED_JOBS] == 0 and not [line for line in render_report(only_new) if "instance that ran" in line]
    # a job left out of the baseline (a failed segment) is not counted as falling back either
    failed = {"skipped": 0, **summarize([{**old, "outcome": "failed"}, new])}
    assert failed["total"]["baseline_g"]["jobs"] == 1 and failed["total"][ENERGY_USED_JOBS] == 0
    # a job of two segments, one of each kind: it falls back (in part)
    mixed = summarize([{**old, "job": "j"}, {**new, "job": "j"}])
    assert mixed["total"][ENERGY_USED_JOBS] == 1


@flow(name="r36f-report-upgrade")
def _across_the_upgrade() -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=OLD_ART, key="care-realized", _sync=True)  # an older CaRE: the key every flow shared
    create_markdown_artifact(markdown=NEW_ART, key="care-realized-r36f-report-upgrade", _sync=True)  # this one: per flow


def test_care_report_json_and_text_name_the_fallback(capsys):
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)
    _across_the_upgrade()
    end = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)
    period = ["--start", start.isoformat(), "--end", end.isoformat(), "--flow", "r36f-report-upgrade"]
    assert main(["report", *period, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["jobs"] == 2 and doc["total"][ENERGY_USED_JOBS] == 1 and doc["flows"][0][ENERGY_USED_JOBS] == 1
    assert main(["report", *period]) == 0
    out = capsys.readouterr().out
    assert "baseline gCO2eq of 1 of 2 jobs (r36f-report-upgrade: 1) is on the energy of the instance that ran" in " ".join(out.split())
