"""Review 33 #10: the realized kWh and USD were the plan's power and price rates, at the planned
utilisation, although the run's measured CPU is known: a t3.large planned at 0.375 of its vCPU and
measured at 0.8 showed the plan's 0.0075 USD/h of CPU credits instead of 0.05, and its power at
the planned load.

When at least 3 CPU samples span at least half of the run and the plan names the instance type
that ran (its vCPU known), the instance runs at u = min(1, measured mean vCPU / its vCPU): kWh from
the power model at u, USD = its list price + the CPU credits at u. Otherwise the plan's rates, as
before. Hand-computed figures: t3.large is 2 vCPU, 8 GiB, 0.0864 USD/h in eu-north-1 and 0.0912 in
eu-south-2, Teads watts 4.4 / 7.0 / 14.1 / 20.0 at 0 / 10 / 50 / 100 %, burstable baseline 0.3 per
vCPU, credits 0.05 USD per vCPU-hour above it, PUE 1.135."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from care_flows.cli.report import parse_realized, summarize
from care_flows.orchestration import artifacts
from care_flows.orchestration.plan import Plan, plan_run
from care_flows.policy import CarePolicy

T0 = pd.Timestamp("2026-03-02T00:00:00Z")
H = pd.Timedelta(hours=1)
PUE = 1.135
PLANNED_KWH_PER_H = 11.88125 * PUE / 1000  # t3.large at 0.375 (0.75 of 1.5 vCPU over 2): 10 % + 0.275/0.4 x 7.1 W
PLANNED_USD_PER_H = 0.0864 + (0.375 - 0.3) * 2 * 0.05  # eu-north-1 list + 0.0075 of credits


def _fc(value: float) -> pd.Series:
    s = pd.Series(value, index=pd.date_range(T0, periods=12, freq="h"), name="g_per_kwh")
    s.attrs["source"] = "synthetic"
    return s


def _policy(**kw) -> CarePolicy:
    return CarePolicy(**{"home_region": "eu-south-2", "regions": ["eu-north-1"], "expected_duration": "1h", "deadline_within": "8h",
                         "vcpu": 1.5, "memory_gib": 6, "cpu_utilisation": 0.5, **kw})


@pytest.fixture(scope="module")
def plan() -> Plan:
    p = plan_run(_policy(), T0, signal={"eu-south-2": _fc(300.0), "eu-north-1": _fc(20.0)}, planner="decide")
    assert (p.region, p.instance_type, p.planner) == ("eu-north-1", "t3.large", "decide")
    assert p.expected_usd == pytest.approx(PLANNED_USD_PER_H)  # 1 h planned
    return p


def _usage(start: pd.Timestamp, end: pd.Timestamp, vcpu: float, step_s: float = 10.0) -> pd.DataFrame:
    """In-run samples every ``step_s`` from ``start`` to ``end``: the first is the sampler's 0-vCPU baseline."""
    t = pd.date_range(start, end, freq=pd.Timedelta(seconds=step_s))
    cpu = np.full(len(t), vcpu)
    cpu[0] = 0.0
    return pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": 1.0, "n_processes": 1})


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    out: list[str] = []
    import prefect.artifacts

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda markdown, **kw: out.append(markdown))
    return out


# -- the measured path ---------------------------------------------------------------------------------------------


def test_a_burstable_type_above_its_baseline_pays_the_measured_credits_and_power(plan, written):
    """Planned at 0.75 vCPU (0.375 of t3.large), measured at 1.6 (0.8): 0.05 USD/h of credits, not 0.0075."""
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + 2 * H, region="eu-north-1", intensity=_fc(20.0),
                                   usage=_usage(T0, T0 + 2 * H, 1.6), intensity_label="history")
    assert f["realized_rates_from"] == "measured CPU" and f["realized_utilisation"] == 0.8
    watts = 14.1 + 0.6 * (20.0 - 14.1)  # 17.64 W, between the 50 % and 100 % points
    assert f["realized_kwh"] == pytest.approx(watts * 2 * PUE / 1000, rel=1e-8)  # 0.0400428
    assert f["realized_usd"] == pytest.approx(2 * (0.0864 + (0.8 - 0.3) * 2 * 0.05), rel=1e-8)  # 0.2728
    assert f["realized_g"] == pytest.approx(0.0400428 * 20.0, rel=1e-8)
    old_usd = 2 * PLANNED_USD_PER_H  # what the plan's rate gave
    assert f["realized_usd"] - old_usd == pytest.approx(2 * (0.05 - 0.0075), rel=1e-8)


def test_a_run_below_the_baseline_pays_no_credits_and_less_power(plan, written):
    """The review's case the other way round: credits the plan counted were never incurred."""
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 0.4))
    assert f["realized_rates_from"] == "measured CPU" and f["realized_utilisation"] == 0.2
    watts = 7.0 + (0.2 - 0.1) / 0.4 * (14.1 - 7.0)  # 8.775 W
    assert f["realized_kwh"] == pytest.approx(watts * PUE / 1000, rel=1e-8)
    assert f["realized_usd"] == pytest.approx(0.0864, rel=1e-8)  # list price only (the plan: 0.0939)


def test_a_local_run_uses_the_home_sized_instance_and_home_price(plan, written):
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + H, region="eu-south-2", usage=_usage(T0, T0 + H, 1.6))
    assert f["realized_rates_from"] == "measured CPU"
    assert f["realized_usd"] == pytest.approx(0.0912 + 0.05, rel=1e-8)


def test_the_measured_mean_equal_to_the_planned_one_gives_the_plans_rates(plan, written):
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 0.75))
    assert f["realized_rates_from"] == "measured CPU" and f["realized_utilisation"] == 0.375
    assert f["realized_kwh"] == pytest.approx(PLANNED_KWH_PER_H, rel=1e-8)
    assert f["realized_usd"] == pytest.approx(PLANNED_USD_PER_H, rel=1e-8)


def test_a_plan_rebuilt_from_its_marker_prices_the_type_from_the_embedded_table(plan, written):
    """A dispatched run's plan has no options: the type and region are the plan's, the list price the table's."""
    bare = Plan.from_dict(plan.to_dict())
    assert bare.options is None and bare.instance_type == "t3.large"
    f = artifacts.publish_realized(bare, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 1.6))
    assert f["realized_rates_from"] == "measured CPU"
    assert f["realized_usd"] == pytest.approx(0.0864 + 0.05, rel=1e-8)


def test_more_than_the_instance_has_is_the_whole_instance(plan, written):
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 3.0))
    assert f["realized_utilisation"] == 1.0
    assert f["realized_kwh"] == pytest.approx(20.0 * PUE / 1000, rel=1e-8)
    assert f["realized_usd"] == pytest.approx(0.0864 + 0.7 * 2 * 0.05, rel=1e-8)


def test_the_mean_is_weighted_by_each_samples_interval():
    """Each sample's CPU is over the interval since the one before; the first sample covers nothing."""
    t = T0 + pd.to_timedelta([0, 600, 3600], unit="s")
    usage = pd.DataFrame({"time": t, "cpu_vcpu": [0.0, 2.0, 1.0], "memory_gib": 1.0, "n_processes": 1})
    assert artifacts.measured_vcpu(usage, 3600.0) == pytest.approx((2.0 * 600 + 1.0 * 3000) / 3600)
    assert artifacts.measured_vcpu(usage.iloc[::-1], 3600.0) == pytest.approx((2.0 * 600 + 1.0 * 3000) / 3600)  # order of rows


# -- the fallback: the plan's rates, as before ---------------------------------------------------------------------


@pytest.mark.parametrize("usage", [
    None,
    _usage(T0, T0 + 10 * pd.Timedelta(seconds=1), 1.6, step_s=10.0),  # 2 samples
    _usage(T0, T0 + pd.Timedelta(minutes=50), 1.6),  # 50 min of a 2 h run (an injected clock, a sampler that stopped)
], ids=["no-usage", "two-samples", "short-coverage"])
def test_without_samples_covering_the_run_the_plans_rates_stand(plan, written, usage):
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + 2 * H, region="eu-north-1", usage=usage)
    assert f["realized_rates_from"] == "plan" and f["realized_utilisation"] is None
    assert f["realized_kwh"] == pytest.approx(2 * PLANNED_KWH_PER_H, rel=1e-6)
    assert f["realized_usd"] == pytest.approx(2 * PLANNED_USD_PER_H, rel=1e-6)
    assert "- **realized_rates_from**: plan" in written[-1] and "- **realized_utilisation**: n/a" in written[-1]


def test_an_unknown_instance_type_keeps_the_plans_rates(written):
    p = Plan("eu-north-1", T0, T0 + H, T0, T0 + 8 * H, "eu-north-1", True, instance_type="x9.unpriced", expected_g=1.0,
             expected_g_per_kwh=50.0, expected_usd=0.5, planner="decide")
    f = artifacts.publish_realized(p, started=T0, finished=T0 + 2 * H, region="eu-north-1", usage=_usage(T0, T0 + 2 * H, 1.0))
    assert f["realized_rates_from"] == "plan" and f["realized_utilisation"] is None
    assert (f["realized_kwh"], f["realized_usd"]) == (pytest.approx(2 * 1.0 / 50.0), pytest.approx(1.0))


def test_the_window_planner_without_a_type_keeps_its_power_and_prices_nothing(written):
    p = plan_run(_policy(), T0, signal={"eu-south-2": _fc(300.0), "eu-north-1": _fc(20.0)}, planner="window")
    assert p.instance_type is None and p.expected_usd is None
    old = artifacts.publish_realized(p, started=T0, finished=T0 + H, region="eu-north-1")
    f = artifacts.publish_realized(p, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 1.6))
    assert f["realized_rates_from"] == "plan" and f["realized_usd"] is None
    assert f["realized_kwh"] == old["realized_kwh"] and f["realized_kwh"] > 0


def test_the_window_planner_with_a_pinned_type_measures_its_power_and_still_prices_nothing(written):
    p = plan_run(_policy(instance_type="t3.large"), T0, signal={"eu-south-2": _fc(300.0), "eu-north-1": _fc(20.0)}, planner="window")
    f = artifacts.publish_realized(p, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 1.6))
    assert f["realized_rates_from"] == "measured CPU" and f["realized_utilisation"] == 0.8
    assert f["realized_kwh"] == pytest.approx(17.64 * PUE / 1000, rel=1e-8) and f["realized_usd"] is None


def test_no_plan_no_rates(written):
    f = artifacts.publish_realized(None, started=T0, finished=T0 + H, region="eu-north-1", usage=_usage(T0, T0 + H, 1.6))
    assert f["realized_rates_from"] is None and f["realized_kwh"] is None and f["realized_usd"] is None


# -- the artifact and care report ----------------------------------------------------------------------------------


def test_the_artifact_shows_the_measured_utilisation_and_care_report_sums_it(plan, written):
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + 2 * H, region="eu-north-1", intensity=_fc(20.0),
                                   usage=_usage(T0, T0 + 2 * H, 1.6), intensity_label="history", root="job-1",
                                   baseline_realized_g_per_kwh=300.0)
    md = written[-1]
    assert "- **realized_utilisation**: 0.8" in md and "- **realized_rates_from**: measured CPU" in md
    assert "at the CPU use named in realized_rates_from (measured CPU: the run's sampled mean" in md
    assert "planned instance's power and price" not in md
    parsed = parse_realized(md)
    assert parsed["realized_utilisation"] == 0.8 and parsed["realized_rates_from"] == "measured CPU"
    assert (parsed["realized_kwh"], parsed["realized_usd"]) == (f["realized_kwh"], f["realized_usd"])
    second = artifacts.publish_realized(plan, started=T0 + 2 * H, finished=T0 + 3 * H, region="eu-north-1", intensity=_fc(20.0),
                                        intensity_label="history", root="job-2", baseline_realized_g_per_kwh=300.0)  # no samples
    assert second["realized_rates_from"] == "plan"
    rows = [{**parse_realized(m), "flow": "etl", "job": j} for m, j in ((md, "job-1"), (written[-1], "job-2"))]
    row = summarize(rows)["flows"][0]
    kwh = 17.64 * 2 * PUE / 1000 + PLANNED_KWH_PER_H
    assert row["realized_kwh"] == {"value": pytest.approx(kwh, abs=1e-6), "jobs": 2}
    assert row["realized_usd"] == {"value": pytest.approx(0.2728 + PLANNED_USD_PER_H, abs=1e-6), "jobs": 2}
    assert row["realized_g"]["value"] == pytest.approx(kwh * 20.0, abs=1e-6)
    # at home: the energy the runs really used (the measured one for the first) at the home intensity
    assert row["baseline_g"] == {"value": pytest.approx(kwh * 300.0, abs=1e-6), "jobs": 2}
    assert row["saved_g"]["value"] == pytest.approx(kwh * 280.0, abs=1e-6)


@pytest.mark.usefixtures("prefect_harness")
def test_a_real_care_run_is_accounted_at_its_sampled_cpu_and_care_report_sums_it(capsys):
    """Through @care with the real clock and sampler: the decorator hands its samples to the artifact."""
    from prefect import flow

    from care_flows.accounting import energy_kwh, instance_watts
    from care_flows.cli import main
    from care_flows.orchestration import care

    now = pd.Timestamp.now(tz="UTC")
    begin = now - pd.Timedelta(seconds=1)
    start = now.floor("h")
    home = pd.Series(300.0, index=pd.date_range(start, periods=12, freq="h"), name="g_per_kwh")
    home.attrs["source"] = "synthetic"
    signal = {"eu-south-2": home}

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h",
                      vcpu=1.5, memory_gib=6, cpu_utilisation=0.5), signal=signal, planner="decide")
    @flow(name="realized-measured-review33")
    def busy() -> int:
        end, n = time.monotonic() + 3.5, 0
        while time.monotonic() < end:  # one busy thread for 3.5 s: up to 1 vCPU of t3.large's 2
            n += 1
        return n

    state = busy(return_state=True)
    assert state.is_completed()
    assert main(["report", "--start", begin.isoformat(), "--flow", "realized-measured-review33", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            key=ArtifactFilterKey(any_=[artifacts.artifact_key("care-realized", "realized-measured-review33")])))
    f = parse_realized(art.data)
    assert f["usage_samples"] >= 3 and f["duration_s"] >= 3.5
    assert f["realized_rates_from"] == "measured CPU" and 0 < f["realized_utilisation"] <= 1
    hours = f["duration_s"] / 3600
    watts, _ = instance_watts("t3.large", f["realized_utilisation"])
    assert f["realized_kwh"] == pytest.approx(energy_kwh(watts, hours), rel=1e-3)  # the utilisation is rounded to 4 digits
    credits = max(0.0, f["realized_utilisation"] - 0.3) * 2 * 0.05
    assert f["realized_usd"] == pytest.approx((0.0912 + credits) * hours, rel=1e-3)
    [row] = doc["flows"]
    assert row["realized_kwh"]["value"] == pytest.approx(f["realized_kwh"], abs=1e-6)
    assert row["realized_usd"]["value"] == pytest.approx(f["realized_usd"], abs=1e-6)
    assert row["baseline_g"]["value"] == pytest.approx(f["realized_g"] / f["realized_g_per_kwh"] * f["baseline_realized_g_per_kwh"], abs=1e-6)
