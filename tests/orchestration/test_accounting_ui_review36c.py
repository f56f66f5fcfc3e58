"""Review 36c: the accounting that reaches the Prefect UI.

- H1: the baseline USD, the USD saved and the abatement cost that ``decide`` computes were dropped by
  ``Plan``: the ``care-decision`` artifact showed a baseline without USD and no abatement,
  ``care-realized`` had no at-home USD, and ``care report`` no baseline or saved USD;
- M1: "run now (cannot dispatch)" ran the body at home with no plan, so its realized kWh, gCO2eq and
  USD were n/a;
- M2: a dispatched run that a capacity fallback moved to another region (``CARE_REGION`` /
  ``CARE_INSTANCE_TYPE``) published no realized kWh, gCO2eq or USD: its plan, rebuilt from the
  ``care`` marker, has no options table for that region;
- L4: the decision markdown rounded gCO2eq to one decimal (a 5-minute job read 0.0 expected).

Hand-computed figures (the accounting's tables, checked by hand in review 36c): t3.large is 2 vCPU,
8 GiB; at 50 % (the policy's cpu_utilisation of 2 vCPU) it draws 14.1 W (Teads), x PUE 1.135 =
0.0160035 kWh per hour. List prices per hour: eu-south-2 0.0912, eu-north-1 0.0864, eu-central-1
0.096; CPU credits (0.5 - 0.3 baseline) x 2 vCPU x 0.05 = 0.02 USD/h. m5.large at 50 %: 14.1 W too,
0.115 USD/h in eu-central-1, no credits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.cli.report import build_report, parse_realized, report_markdown, summarize
from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key
from care_flows.orchestration.plan import Plan, plan_run
from care_flows.policy import CarePolicy
from tests.prefect_queries import runs_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

H = pd.Timedelta(hours=1)
KWH = 14.1 * 1.135 / 1000  # t3.large (and m5.large) at 50 % for one hour: 0.0160035
USD_ES, USD_SE, USD_DE = 0.0912 + 0.02, 0.0864 + 0.02, 0.096 + 0.02  # t3.large + credits: 0.1112, 0.1064, 0.116


def _series(start: pd.Timestamp, values: list[float]) -> pd.Series:
    s = pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1h"), dtype=float, name="g_per_kwh")
    s.attrs["source"] = "synthetic"
    return s


def _policy(**kw) -> dict:
    return {"home_region": "eu-south-2", "expected_duration": "1h", "deadline_within": "8h", "instance_type": "t3.large",
            "vcpu": 2, "memory_gib": 8, **kw}


def _artifacts(flow_run_id, key: str) -> list[str]:
    """The run's ``key`` artifacts (``care-decision``, ...), keyed per flow (``care-decision-<flow>``)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        flow_name = client.read_flow(client.read_flow_run(flow_run_id).flow_id).name
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                   key=ArtifactFilterKey(any_=[artifact_key(key, flow_name)])))
    return [str(a.data) for a in arts]


def _one(flow_run_id, key: str) -> str:
    found = _artifacts(flow_run_id, key)
    assert len(found) == 1, (key, found)
    return found[0]


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process (what a worker does), from now."""
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _pools(*names: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        for name in names:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=True)


# -- H1 ------------------------------------------------------------------------------------------------------------


def test_h1_the_plan_carries_baseline_usd_savings_and_abatement_and_an_older_marker_still_loads():
    """decide's figures for t3.large, ES 206 / SE 20, 1 h (review 36c H1): baseline 0.1112 USD, saved
    0.0048 USD, abatement (0.1064 - 0.1112) / ((3.296721 - 0.32007) / 1e6) = -1,612.55 USD/tCO2eq."""
    t0 = pd.Timestamp("2023-06-01T00:00Z")
    fc = {"eu-south-2": _series(t0, [206.0] * 24), "eu-north-1": _series(t0, [20.0] * 24)}
    plan = plan_run(CarePolicy(**_policy(regions=["eu-north-1"], deadline_within="4h")), t0, signal=fc, planner="decide")
    assert (plan.region, plan.instance_type, plan.baseline_instance_type) == ("eu-north-1", "t3.large", "t3.large")
    assert plan.expected_g == pytest.approx(KWH * 20) and plan.baseline_g == pytest.approx(KWH * 206)  # 0.32007, 3.296721
    assert plan.expected_usd == pytest.approx(USD_SE) and plan.baseline_usd == pytest.approx(USD_ES)
    assert plan.savings_usd == pytest.approx(0.0048)
    assert plan.abatement_usd_per_tco2 == pytest.approx(-0.0048 / ((3.296721 - 0.32007) / 1e6))  # -1,612.55
    assert plan.abatement_usd_per_tco2 == pytest.approx(-1612.55, abs=0.01)
    doc = plan.to_dict()
    assert doc["baseline_usd"] == pytest.approx(0.1112) and doc["savings_usd"] == pytest.approx(0.0048)
    assert doc["abatement_usd_per_tco2"] == pytest.approx(-1612.55, abs=0.01)
    again = Plan.from_dict(doc)  # a marker written by this version
    assert again.baseline_usd == pytest.approx(0.1112) and again.abatement_usd_per_tco2 == pytest.approx(-1612.55, abs=0.01)
    # a marker written before these fields existed (a run an older CaRE scheduled) still loads
    old = {k: v for k, v in doc.items() if k not in ("baseline_usd", "baseline_instance_type", "savings_usd", "abatement_usd_per_tco2")}
    legacy = Plan.from_dict(old)
    assert legacy.baseline_usd is None and legacy.baseline_instance_type is None and legacy.baseline_g == pytest.approx(3.296721)
    assert legacy.savings_usd is None and legacy.abatement_usd_per_tco2 is None
    assert legacy.abatement_note == "no price: the planner priced nothing"
    # run now at home: expected = baseline, nothing avoided, so no abatement (with the reason)
    home = plan.as_run_now_at_home()
    assert home.expected_usd == pytest.approx(0.1112) and home.savings_usd == pytest.approx(0.0)
    assert home.abatement_usd_per_tco2 is None and home.abatement_note == "no carbon avoided against the baseline"


def test_h1_a_moved_run_shows_baseline_usd_savings_and_abatement_in_the_decision_realized_and_report():
    """t3.large, ES 300 / SE 20, 1 h, moved to eu-north-1 and run there. Expected 0.32007 g and 0.1064 USD
    against 4.80105 g and 0.1112 USD at home: saved 4.48098 g (93.3 %) and 0.0048 USD; abatement
    -0.0048 / (4.48098 / 1e6) = -1,071.19 USD/tCO2eq. The run ran the planned hour at 20 g/kWh: the same figures realized."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": _series(now, [300.0] * 10), "eu-north-1": _series(now, [20.0] * 10)}
    clock = [now]

    @care(policy=_policy(regions=["eu-south-2", "eu-north-1"], targets={"eu-north-1": {"work_pool": "care-r36c-h1-north"}}),
          signal=fc, clock=lambda: clock[0], sample_usage=False)
    @flow(name="r36c-h1-moved")
    def moved(n: int = 1) -> int:
        clock[0] = clock[0] + H
        return n

    _pools("care-r36c-h1-south", "care-r36c-h1-north")
    home = moved.to_deployment(name="home", work_pool_name="care-r36c-h1-south").apply()
    north = moved.to_deployment(name="north", work_pool_name="care-r36c-h1-north").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(home)
    begin = pd.Timestamp.now(tz="UTC")
    assert _run_existing(moved, trigger.id).is_completed()
    decision = _one(trigger.id, "care-decision")
    assert decision.startswith("# CaRE decision: moved to eu-north-1, starting now"), decision[:200]
    assert "- **Expected**: 0.320 gCO2eq at 20.0 g/kWh, cost 0.1064 USD\n" in decision, decision
    assert "- **Baseline (now, home)**: 4.80 gCO2eq at 300.0 g/kWh, cost 0.1112 USD on `t3.large`\n" in decision, decision
    assert "- **Expected savings**: 4.48 gCO2eq (93.3 %), 0.00480 USD\n" in decision, decision
    assert "- **Abatement cost**: -1,071 USD/tCO2eq avoided (negative: greener and cheaper)\n" in decision, decision

    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, north) if r.deployment_id == north]
    assert child.job_variables["care"]["plan"]["baseline_usd"] == pytest.approx(0.1112)
    assert _run_existing(moved, child.id).is_completed()
    figures = parse_realized(_one(child.id, "care-realized"))
    assert figures["region"] == "eu-north-1" and figures["realized_g_per_kwh"] == pytest.approx(20.0)
    assert figures["realized_kwh"] == pytest.approx(KWH) and figures["realized_g"] == pytest.approx(0.32007)
    assert figures["realized_usd"] == pytest.approx(0.1064)
    assert figures["baseline_usd"] == pytest.approx(0.1112)  # the plan's, for the whole job
    assert figures["baseline_realized_g_per_kwh"] == pytest.approx(300.0)
    assert figures["baseline_realized_kwh"] == pytest.approx(KWH) and figures["baseline_realized_usd"] == pytest.approx(0.1112)
    assert figures["realized_savings_usd"] == pytest.approx(0.0048)
    assert figures["realized_abatement_usd_per_tco2"] == pytest.approx(-0.0048 / ((KWH * 300 - KWH * 20) / 1e6), rel=1e-5)
    assert figures["realized_abatement_usd_per_tco2"] == pytest.approx(-1071.19, abs=0.01)

    with get_client(sync_client=True) as client:
        doc = build_report(begin - pd.Timedelta(minutes=1), pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=1),
                           flows=["r36c-h1-moved"], client=client)
    [row] = doc["flows"]
    assert row["jobs"] == 1 and row["realized_usd"] == {"value": pytest.approx(0.1064), "jobs": 1}
    assert row["baseline_usd"] == {"value": pytest.approx(0.1112), "jobs": 1}
    assert row["saved_usd"] == {"value": pytest.approx(0.0048), "jobs": 1}
    assert row["baseline_g"]["value"] == pytest.approx(4.80105) and row["saved_g"]["value"] == pytest.approx(4.48098)
    md = report_markdown(doc)
    assert "| baseline g | baseline USD | saved g | saved % | saved USD |" in md
    assert "| 4.80 | 0.1112 | 4.48 | 93.3 | 0.00480 |" in md, md  # 3 significant digits (review 48c M1)
    assert "baseline (now, home) 4.80 gCO2eq, 0.1112 USD; saved 4.48 gCO2eq (93.3%), 0.00480 USD" in md, md


def test_h1_report_sums_baseline_and_saved_usd_over_the_jobs_that_know_them():
    """Per job: baseline USD = its segments' baseline_realized_usd, saved = baseline - realized; a failed
    segment saves nothing, an artifact written before the figure existed is left out ([n/m])."""
    seg = {"flow": "f", "outcome": "completed", "realized_kwh": 0.5, "realized_g": 10.0, "realized_g_per_kwh": 20.0,
           "realized_usd": 0.10, "baseline_realized_g_per_kwh": 300.0, "baseline_realized_usd": 0.12}
    segments = [{**seg, "job": "a"}, {**seg, "job": "a", "outcome": "continued"},  # one job of two segments
                {**seg, "job": "b", "outcome": "failed"}, {**{k: v for k, v in seg.items() if k != "baseline_realized_usd"}, "job": "c"}]
    row = summarize(segments)["flows"][0]
    assert row["baseline_usd"] == {"value": pytest.approx(0.24), "jobs": 1}
    assert row["saved_usd"] == {"value": pytest.approx(0.04), "jobs": 1}
    assert row["realized_usd"] == {"value": pytest.approx(0.40), "jobs": 3}


# -- M1 ------------------------------------------------------------------------------------------------------------


def test_m1_a_run_that_cannot_dispatch_is_accounted_as_run_now_at_home():
    """t3.large, ES 300 / SE 20: planned to move to eu-north-1, whose pool has no deployment, so it runs
    now at home: realized 0.0160035 kWh, 0.0160035 x 300 = 4.80105 g, 0.0912 + 0.02 = 0.1112 USD; expected =
    baseline = 4.80105 g and 0.1112 USD, nothing saved (review 36c M1: all n/a)."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": _series(now, [300.0] * 10), "eu-north-1": _series(now, [20.0] * 10)}
    clock = [now]

    @care(policy=_policy(regions=["eu-south-2", "eu-north-1"], targets={"eu-north-1": {"work_pool": "care-r36c-m1-north"}}),
          signal=fc, clock=lambda: clock[0], sample_usage=False)
    @flow(name="r36c-m1-nodispatch")
    def nodispatch(n: int = 1) -> int:
        clock[0] = clock[0] + H
        return n

    _pools("care-r36c-m1-south")
    home = nodispatch.to_deployment(name="home", work_pool_name="care-r36c-m1-south").apply()  # none in care-r36c-m1-north
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(home)
    state = _run_existing(nodispatch, trigger.id)
    assert state.is_completed() and state.result() == 1
    note = _one(trigger.id, "care-decision")
    assert note.startswith("# CaRE decision: run now (cannot dispatch)"), note
    figures = parse_realized(_one(trigger.id, "care-realized"))
    assert figures["region"] == "eu-south-2" and figures["realized_g_per_kwh"] == pytest.approx(300.0)
    assert figures["realized_kwh"] == pytest.approx(0.0160035) and figures["realized_g"] == pytest.approx(4.80105)
    assert figures["realized_usd"] == pytest.approx(0.1112)
    assert figures["expected_g"] == pytest.approx(4.80105) and figures["baseline_g"] == pytest.approx(4.80105)
    assert figures["expected_usd"] == pytest.approx(0.1112) and figures["baseline_usd"] == pytest.approx(0.1112)
    assert figures["baseline_realized_usd"] == pytest.approx(0.1112) and figures["realized_savings_usd"] == pytest.approx(0.0, abs=1e-12)
    assert figures["realized_abatement_usd_per_tco2"] is None  # nothing avoided
    row = summarize([{**figures, "flow": "f", "job": "j"}])["flows"][0]
    assert row["saved_g"]["value"] == pytest.approx(0.0, abs=1e-6) and row["saved_usd"]["value"] == pytest.approx(0.0, abs=1e-6)


# -- M2 ------------------------------------------------------------------------------------------------------------


def test_m2_a_dispatched_run_a_capacity_fallback_moved_is_priced_where_it_ran(monkeypatch):
    """Planned at home in a green window later (t3.large, plan rebuilt from the marker: no options); the
    worker launched t3.large in eu-central-1 (367 g/kWh) instead. No CPU samples: the plan's kW holds
    (0.0160035 kWh), x 367 = 5.8732845 g, priced in eu-central-1: 0.096 + 0.02 credits = 0.116 USD
    (review 36c M2: n/a). At home it would have cost 0.1112 USD (saved -0.0048) and emitted 0.0160035 x
    300 = 4.80105 g: nothing avoided, so no abatement."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    traces = {"eu-south-2": _series(now, [300.0, 300.0, 20.0, 20.0] + [300.0] * 20), "eu-central-1": _series(now, [367.0] * 24)}
    clock = [now]

    def signal(region: str, start: pd.Timestamp, horizon: pd.Timedelta) -> pd.Series:  # a source without observed history
        return traces[region].copy()

    @care(policy=_policy(regions=["eu-south-2"]), signal=signal, clock=lambda: clock[0], sample_usage=False)
    @flow(name="r36c-m2-fallback")
    def fell_back(n: int = 1) -> int:
        clock[0] = clock[0] + H
        return n

    dep = fell_back.to_deployment(name="r36c-m2").apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep)
    assert _run_existing(fell_back, trigger.id).is_completed()
    with get_client(sync_client=True) as client:
        [child] = [r for r in runs_of(client, dep) if r.deployment_id == dep and r.id != trigger.id]
    assert child.job_variables["region"] == "eu-south-2" and child.job_variables["care"]["plan"]["instance_type"] == "t3.large"
    monkeypatch.setenv("CARE_REGION", "eu-central-1")  # what the fallback instance's user data exports
    monkeypatch.setenv("CARE_INSTANCE_TYPE", "t3.large")
    assert _run_existing(fell_back, child.id).is_completed()
    figures = parse_realized(_one(child.id, "care-realized"))
    assert figures["region"] == "eu-central-1" and figures["realized_g_per_kwh"] == pytest.approx(367.0)
    assert figures["realized_from"] == "synthetic forecast"
    assert figures["realized_kwh"] == pytest.approx(0.0160035) and figures["realized_g"] == pytest.approx(5.8732845)
    assert figures["realized_usd"] == pytest.approx(0.116)
    assert figures["realized_rates_from"] == "plan, t3.large priced in eu-central-1"
    assert figures["expected_g"] == pytest.approx(0.32007) and figures["baseline_realized_g_per_kwh"] == pytest.approx(300.0)
    assert figures["baseline_realized_usd"] == pytest.approx(0.1112) and figures["realized_savings_usd"] == pytest.approx(-0.0048)
    assert figures["realized_abatement_usd_per_tco2"] is None  # 5.87 g emitted against 4.80 at home: nothing avoided


@pytest.mark.parametrize("ran_on, usd", [("t3.large", 0.116), ("m5.large", 0.115)])
def test_m2_a_fallback_region_with_measured_cpu_prices_the_type_that_ran_there(ran_on, usd):
    """The review's reproduction, through a real artifact: plan eu-north-1 / t3.large rebuilt from its
    marker; ran in eu-central-1 with 60 CPU samples at 1.0 vCPU (50 % of either type: 14.1 W, 0.0160035
    kWh, 5.8732845 g at 367). USD: t3.large 0.096 + 0.02 credits = 0.116; a type fallback to m5.large
    0.115 (no credits). At home the t3.large at the same CPU use: 0.1112 USD."""
    from care_flows.orchestration.artifacts import publish_realized

    t0 = pd.Timestamp("2023-06-01T00:00Z")
    fc = {"eu-south-2": _series(t0, [206.0] * 24), "eu-north-1": _series(t0, [20.0] * 24), "eu-central-1": _series(t0, [367.0] * 24)}
    plan = plan_run(CarePolicy(**_policy(regions=["eu-north-1", "eu-central-1"], deadline_within="4h")), t0, signal=fc, planner="decide")
    marker = Plan.from_dict(plan.to_dict())  # what a dispatched run rebuilds from its `care` job variable
    assert marker.options is None and (marker.region, marker.instance_type) == ("eu-north-1", "t3.large")
    usage = pd.DataFrame({"time": pd.date_range(t0, periods=61, freq="60s"), "cpu_vcpu": [0.0] + [1.0] * 60, "memory_gib": 1.0})

    @flow(name=f"r36c-m2-measured-{ran_on.replace('.', '-')}")
    def account() -> dict:
        return publish_realized(marker, started=t0, finished=t0 + H, region="eu-central-1", intensity=fc["eu-central-1"],
                                usage=usage, instance_type=ran_on, baseline_realized_g_per_kwh=206.0)

    state = account(return_state=True)
    figures = parse_realized(_one(state.state_details.flow_run_id, "care-realized"))
    assert figures["realized_kwh"] == pytest.approx(0.0160035) and figures["realized_g"] == pytest.approx(5.8732845)
    assert figures["realized_usd"] == pytest.approx(usd) and figures["realized_utilisation"] == 0.5
    assert figures["realized_rates_from"] == ("measured CPU" if ran_on == "t3.large" else "measured CPU on m5.large (planned t3.large)")
    assert figures["baseline_realized_kwh"] == pytest.approx(0.0160035) and figures["baseline_realized_usd"] == pytest.approx(0.1112)
    assert figures["realized_savings_usd"] == pytest.approx(0.1112 - usd)
    # the Artifacts list tells this run's care-realized apart from every other flow's under the shared key
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert art.description == f"CaRE realized (completed) in eu-central-1 on {ran_on}: 5.87 gCO2eq, {usd:.4f} USD"


# -- L4 ------------------------------------------------------------------------------------------------------------


def test_l4_a_five_minute_job_shows_its_grams_with_three_significant_digits():
    """t3.large, ES 206 / SE 20, 5 min: expected 0.0160035 x 20 / 12 = 0.0266725 g, baseline x 206 / 12 =
    0.27472675 g, saved 0.24805425 g; the decision read 0.0, 0.3 and 0.2 (review 36c L4)."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": _series(now, [206.0] * 10), "eu-north-1": _series(now, [20.0] * 10)}
    assert np.isclose(KWH * 20 / 12, 0.0266725) and np.isclose(KWH * 206 / 12, 0.27472675)

    @care(policy=_policy(regions=["eu-north-1"], expected_duration="5min", deadline_within="4h"), signal=fc, clock=lambda: now,
          sample_usage=False)
    @flow(name="r36c-l4-short")
    def short() -> str:
        return "ran"

    state = short(return_state=True)
    decision = _one(state.state_details.flow_run_id, "care-decision")
    assert "- **Expected**: 0.0267 gCO2eq at 20.0 g/kWh, cost 0.00887 USD\n" in decision, decision
    assert "- **Baseline (now, home)**: 0.275 gCO2eq at 206.0 g/kWh, cost 0.00927 USD on `t3.large`\n" in decision, decision
    assert "- **Expected savings**: 0.248 gCO2eq (90.3 %), 0.000400 USD\n" in decision, decision
