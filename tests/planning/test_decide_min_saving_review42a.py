"""The minimum saving (``min_savings_pct``) against hard constraints and the ranking (review 42a H1, H2).

H2: when the top-ranked option saved less than the minimum, ``decide`` jumped to run-now-at-home and
skipped the next option, even one that was cheaper *and* cleaner than home. H1: that jump ignored the
hard constraints, so a run went over its latency SLA, per-hour budget or carbon cap while an option
meeting them existed. The simulator's ``care`` policy applies the same rule (checked against decide)."""

import numpy as np
import pandas as pd
import pytest

from care_flows.planning.decide import decide
from care_flows.policy import CarePolicy
from care_flows.simulate.engine import CarbonTrace, SimContext
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import run_policy

IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")


def flat(g_per_kwh):
    return pd.Series(float(g_per_kwh), index=IDX)


def small(**kw):
    return CarePolicy(deadline_within="1h", vcpu=1.5, memory_gib=6, **kw)


def test_the_next_option_that_saves_enough_wins_not_home_at_once():
    # cost first: us-east-1 is cheapest but dirtier than home; eu-north-1 is cheaper and 5x cleaner than home
    policy = small(home_region="eu-south-2", regions=["us-east-1", "eu-north-1"], priorities=["cost", "carbon"])
    d = decide(policy, {"eu-south-2": flat(150), "us-east-1": flat(400), "eu-north-1": flat(30)}, IDX[0])
    assert d.chosen.region == "eu-north-1"
    assert d.chosen.expected_usd < d.baseline.expected_usd and d.savings_pct == pytest.approx(80, abs=1)
    assert d.warnings == (
        "best option (us-east-1 at 2023-06-01T00:00:00+00:00) emits 118.3% more carbon than now at home, short of min_savings_pct 1%; "
        "chose the best option that saves enough: eu-north-1 at 2023-06-01T00:00:00+00:00",
    )
    row = d.options.set_index("region").loc["us-east-1"]
    assert not row["feasible"] and row["reason"] == "below the minimum saving (min_savings_pct 1%): emits 118.3% more carbon than now at home"


def test_without_a_better_option_the_run_stays_at_home_as_before():
    policy = small(home_region="eu-south-2", regions=["eu-north-1"], priorities=["cost", "carbon"], instance_type="t3.large")
    d = decide(policy, {"eu-south-2": flat(100), "eu-north-1": flat(300)}, IDX[0])
    assert (d.chosen.region, d.is_now_here, d.savings_pct) == ("eu-south-2", True, 0.0)
    assert d.warnings[-1].endswith("short of min_savings_pct 1%; running now in the home region")


@pytest.mark.parametrize(
    "limits, forecasts, broken",
    [
        # data in Paris, 15 ms SLA: home eu-north-1 is 31.8 ms away; eu-west-3 emits more but meets it
        (dict(home_region="eu-north-1", regions=["eu-west-3"], origin_region="eu-west-3", max_latency_ms=15),
         {"eu-north-1": flat(20), "eu-west-3": flat(31)}, "latency 31.8 ms > max 15 ms"),
        (dict(home_region="eu-south-2", regions=["eu-north-1"], budget_usd_per_hour=0.095),
         {"eu-south-2": flat(100), "eu-north-1": flat(99.5)}, "price 0.0987 USD/h > budget 0.095"),
        # the type pinned: unpinned, a dearer home type meets the cap and wins on carbon (review 50b M1)
        (dict(home_region="eu-south-2", regions=["eu-north-1"], max_g_per_run=1.345, instance_type="t3.large"),
         {"eu-south-2": flat(100), "eu-north-1": flat(99.5)}, "carbon 1.35 g/run > max 1.345"),
    ],
)
def test_a_hard_constraint_outweighs_the_minimum_saving(limits, forecasts, broken):
    d = decide(small(**limits), forecasts, IDX[0])
    other = limits["regions"][0]
    assert d.chosen.region == other and not d.is_now_here
    home = d.options.set_index(["region", "kind"]).loc[(limits["home_region"], "now")]
    assert not home["feasible"] and home["reason"] == broken
    assert d.options.set_index(["region", "kind"]).loc[(other, "now"), "feasible"]
    assert f"running now in the home region breaks a hard constraint ({broken}), so the minimum is lowered" in d.warnings[-1]


def test_a_higher_minimum_never_picks_a_dirtier_option():
    """Review 42f H1: with home out of the latency SLA and no option saving the minimum, the minimum was
    dropped altogether, and latency first then took a region dirtier than home (-14.7 %) at 90 % while 50 %
    took one 85 % cleaner. The minimum is now lowered to the most a feasible option saves."""
    forecasts = {"eu-south-2": flat(179), "eu-central-1": flat(250), "eu-west-3": flat(25)}
    chosen = {}
    for minimum in (1, 50, 90, 99):
        policy = small(home_region="eu-south-2", regions=["eu-central-1", "eu-west-3"], origin_region="eu-central-1",
                       max_latency_ms=20, priorities=["latency", "carbon"], min_savings_pct=minimum)
        d = decide(policy, forecasts, IDX[0])
        chosen[minimum] = (d.chosen.region, d.savings_pct > 0)
    assert set(chosen.values()) == {("eu-west-3", True)}, chosen


def test_the_simulator_applies_the_same_rule_as_decide():
    # home eu-west-3 (FR) at 100; eu-north-1 cheapest but saves only 0.5%; eu-south-2 cheaper than home and saves 3%
    idx = pd.date_range("2023-06-01", periods=24 * 4, freq="h", tz="UTC")
    values = {"eu-west-3": 100.0, "eu-north-1": 99.5, "eu-south-2": 97.0}
    trace = CarbonTrace.from_series({r: pd.Series(v, index=idx) for r, v in values.items()})
    jobs = jobs_from_frame(pd.DataFrame({"job_id": ["a"], "arrival": ["2023-06-03T00:00Z"], "duration_h": [1.0], "slack_h": [0.0], "cpus": [2]}))
    ctx = SimContext.build(trace, jobs, home_region="eu-west-3", forecast_model="persistence")
    sim = run_policy(ctx, "care-once", priorities=("cost", "carbon", "latency"), tolerance_pct=0.0)
    policy = CarePolicy(home_region="eu-west-3", regions=list(values), instance_type="m5.large", vcpu=2, memory_gib=8,
                        priorities=["cost", "carbon", "latency"], tolerance_pct=0.0)
    d = decide(policy, {r: pd.Series(v, index=idx[48:]) for r, v in values.items()}, "2023-06-03T00:00Z", duration="1h",
               deadline="2023-06-03T01:00Z")
    prices = d.options.set_index("region")["usd_per_hour"]
    assert prices["eu-north-1"] < prices["eu-south-2"] < prices["eu-west-3"]  # the case the test is about
    assert d.chosen.region == "eu-south-2"
    assert trace.regions[int(sim.region[0])] == "eu-south-2"
    assert np.isclose(sim.seg_start[0], ctx.a[0])


def _levels(levels, regions):
    return {r: pd.Series(levels[r], index=IDX) for r in regions}


def test_an_option_short_of_the_minimum_does_not_move_the_band_and_decide_agrees_with_the_simulator():
    """Review 42c H2: excluded only when it ranked first, a short option still anchored the cost band:
    adding a cheaper, dirtier eu-north-1 (never choosable) kept the run at home instead of eu-west-3."""
    levels = {"eu-south-2": 200.0, "eu-north-1": 300.0, "eu-west-3": 50.0}
    now = pd.Timestamp("2023-06-01T08:00Z")
    chosen = []
    for regions in (["eu-west-3"], ["eu-north-1", "eu-west-3"]):
        policy = CarePolicy(home_region="eu-south-2", regions=regions, instance_type="m5.large", vcpu=2, memory_gib=8,
                            priorities=["cost", "carbon", "latency"], deadline_within="6h")
        chosen.append(decide(policy, _levels(levels, ["eu-south-2", *regions]), now, duration="1h").chosen.region)
    assert chosen == ["eu-west-3", "eu-west-3"]
    big = pd.date_range("2023-05-01", periods=24 * 60, freq="h", tz="UTC")
    trace = CarbonTrace.from_series({r: pd.Series(v, index=big) for r, v in levels.items()})
    jobs = jobs_from_frame(pd.DataFrame([{"job_id": "j0", "arrival": now, "duration_h": 1.0, "slack_h": 5.0, "cpus": 2}]))
    ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive_local")
    sim = run_policy(ctx, "care-once", priorities=("cost", "carbon", "latency"))
    assert trace.regions[int(sim.region[0])] == "eu-west-3"


def test_an_option_short_of_the_minimum_does_not_set_a_weights_scale():
    levels = {"eu-south-2": 200.0, "eu-north-1": 190.0, "eu-west-3": 150.0, "us-east-1": 2000.0}
    ranks = []
    for regions in (["eu-north-1", "eu-west-3"], ["eu-north-1", "eu-west-3", "us-east-1"]):
        policy = CarePolicy(home_region="eu-south-2", regions=regions, instance_type="m5.large", vcpu=2, memory_gib=8,
                            weights={"carbon": 0.5, "cost": 0.5}, deadline_within="6h")
        d = decide(policy, _levels(levels, ["eu-south-2", *regions]), IDX[8], duration="1h")
        ranks.append(d.options.dropna(subset=["rank"]).set_index("region")["score"].round(6).to_dict())
    assert ranks[0] == ranks[1]  # us-east-1, 10x dirtier than home, is excluded before the scores are scaled


def test_an_option_without_carbon_data_gets_no_second_reason():
    policy = small(home_region="eu-south-2", regions=["us-east-1", "eu-north-1"], priorities=["cost", "carbon"])
    d = decide(policy, {"eu-south-2": flat(150), "eu-north-1": flat(300)}, IDX[0])
    reasons = d.options.set_index("region")["reason"]
    assert reasons["us-east-1"] == "no carbon data for zone US-MIDA-PJM"
    assert reasons["eu-north-1"] == "below the minimum saving (min_savings_pct 1%): emits 100.0% more carbon than now at home"


def test_the_options_artifact_marks_the_row_that_runs():
    """Review 42f M2: decide()'s options carried no 'chosen' column; with nothing feasible every row was
    unranked and nothing said which one ran (now, at home)."""
    from care_flows.orchestration.artifacts import decision_table
    from care_flows.orchestration.plan import plan_from_decision

    for limits, forecasts in [
        (dict(home_region="eu-south-2", regions=["eu-north-1"]), {"eu-south-2": flat(200), "eu-north-1": flat(20)}),
        (dict(home_region="eu-south-2", regions=["eu-north-1"], max_g_per_run=0.001), {"eu-south-2": flat(200), "eu-north-1": flat(20)}),
    ]:
        policy = small(**limits)
        d = decide(policy, forecasts, IDX[0])
        plan = plan_from_decision(d, policy=policy, now=IDX[0], deadline=IDX[0] + pd.Timedelta("1h"), forecasts=forecasts)
        rows = decision_table(plan)
        [chosen] = [r for r in rows if r["chosen"]]
        assert (chosen["region"], chosen["instance_type"]) == (d.chosen.region, d.chosen.instance_type)


def test_a_row_short_of_the_minimum_says_so_apart_from_a_hard_constraint():
    """Review 42f M1, L1: a row excluded only by the minimum saving read exactly like one breaking a hard
    constraint (``feasible`` false, ``saves -14.7% carbon < ...``); ``below_min_saving`` tells them apart."""
    policy = small(home_region="eu-south-2", regions=["us-east-1", "eu-north-1"], budget_usd_per_hour=0.1)
    d = decide(policy, {"eu-south-2": flat(150), "us-east-1": flat(400), "eu-north-1": flat(30)}, IDX[0])
    rows = d.options[d.options["kind"] == "now"].set_index("region")
    assert rows.loc["us-east-1", "below_min_saving"] and not rows.loc["us-east-1", "feasible"]
    assert rows.loc["us-east-1", "reason"] == "below the minimum saving (min_savings_pct 1%): emits 118.3% more carbon than now at home"
    assert not rows.loc["eu-north-1", "below_min_saving"] and not rows.loc["eu-south-2", "below_min_saving"]
    assert d.options["below_min_saving"].dtype == bool
    unconstrained = decide(small(home_region="eu-south-2", regions=["eu-north-1"]), {"eu-south-2": flat(150), "eu-north-1": flat(30)}, IDX[0])
    assert not unconstrained.options["below_min_saving"].any()  # the column is there when nothing was short
    assert all("below_min_saving" in row for row in d.to_dict()["options"])


def test_care_regions_names_its_flag_and_keeps_the_column(capsys):
    """Review 42f L2: ``care regions`` warned about ``min_savings_pct`` (the policy field) while the user typed
    ``--min-savings-pct``; ``care plan`` named the flag."""
    import json

    from care_flows.cli import main

    args = ["regions", "--regions", "eu-south-2,eu-north-1,eu-west-3,eu-central-1", "--at", "2023-06-01T08:00:00Z", "--vcpu", "1.5",
            "--memory-gib", "6", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    short = [o for o in doc["options"] if o["below_min_saving"]]
    assert short and all(o["reason"].startswith("below the minimum saving (--min-savings-pct 1%): ") for o in short)
    assert "min_savings_pct" not in json.dumps(doc)
    assert main([*args, "--min-savings-pct", "99"]) == 0
    captured = capsys.readouterr()
    assert "short of --min-savings-pct 99%" in captured.err and "min_savings_pct" not in captured.err


def test_segment_limits_without_interruptible_are_said_to_be_ignored():
    """Review 41e L5: min_segment / max_segments without interruptible were accepted and silently ignored."""
    forecasts = {"eu-south-2": flat(150), "eu-north-1": flat(30)}
    d = decide(small(home_region="eu-south-2", regions=["eu-north-1"], min_segment="30m", max_segments=2), forecasts, IDX[0])
    assert "min_segment, max_segments ignored: the policy is not interruptible (set interruptible: true to run in segments)" in d.warnings
    quiet = decide(small(home_region="eu-south-2", regions=["eu-north-1"], interruptible=True, min_segment="30m"), forecasts, IDX[0])
    assert not any("ignored" in w for w in quiet.warnings)


def test_waiting_in_a_greener_region_must_save_the_minimum_there_too():
    """Review 43d M2: a move to a greener region passed the minimum saving against home, and the carbon
    tie-break then waited 20 h there for a 0.05% gain over starting now in that region; decide() and the
    simulator now both start now there (and still wait for a real gain)."""
    idx = pd.date_range("2023-06-01", periods=24 * 4, freq="h", tz="UTC")
    chosen = {}
    for later in (19.99, 15.0):  # 0.05% and 25% below starting now in eu-north-1
        se = pd.Series(20.0, index=idx)
        se.iloc[[48 - 4, 48 + 20]] = later  # also a day before: the simulator's seasonal-naive forecast sees it
        series = {"eu-south-2": pd.Series(200.0, index=idx), "eu-north-1": se}
        d = decide(CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="24h", instance_type="m5.large", vcpu=2, memory_gib=8),
                   {r: s[48:] for r, s in series.items()}, idx[48])
        trace = CarbonTrace.from_series(series)
        jobs = jobs_from_frame(pd.DataFrame({"job_id": ["a"], "arrival": [idx[48]], "duration_h": [1.0], "slack_h": [23.0], "cpus": [2]}))
        ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive")
        sim = run_policy(ctx, "care-once")
        chosen[later] = (d.chosen.region, d.chosen.start - idx[48], trace.regions[int(sim.region[0])], float(sim.seg_start[0] - ctx.a[0]))
    assert chosen[19.99] == ("eu-north-1", pd.Timedelta(0), "eu-north-1", 0.0)
    assert chosen[15.0] == ("eu-north-1", pd.Timedelta("20h"), "eu-north-1", 20.0)


def test_a_lowered_minimum_is_taken_over_options_that_may_still_win():
    """Review 43e H1: home broke a hard constraint, and the most a feasible option saved came from a wait that
    saves under the minimum against starting now in its own region: every option was excluded, KeyError None."""
    idx = pd.date_range("2026-03-02", periods=24, freq="h", tz="UTC")
    se = pd.Series(100.5, index=idx)
    se.iloc[6:] = 99.6  # 0.4% below home, 0.9% below starting now in eu-north-1
    policy = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], origin_region="eu-north-1", max_latency_ms=20,
                        deadline_within="12h", instance_type="m5.large", vcpu=2, memory_gib=8)
    d = decide(policy, {"eu-south-2": pd.Series(100.0, index=idx), "eu-north-1": se}, idx[0])
    # the minimum is lowered for waiting too (review 43f M1): the greenest feasible option, as before the in-region rule
    assert (d.chosen.region, d.chosen.start) == ("eu-north-1", idx[6])
    assert any("so the minimum is lowered" in w for w in d.warnings)


def test_a_higher_minimum_never_picks_a_dirtier_option_with_waits_in_another_region():
    """Review 43f M1: with home breaking a hard constraint, minimums 0 and 2 chose a wait saving 4%, 3 and 5 the
    start now there saving 2%: the wait, excluded against the unlowered in-region minimum, left the lowered bar."""
    idx = pd.date_range("2026-03-02", periods=24, freq="h", tz="UTC")
    se = pd.Series(98.0, index=idx)
    se.iloc[6:] = 96.0  # 2% (now) and 4% (from 06:00) below home; the wait is 2.04% below starting now there
    chosen = []
    for minimum in (0, 2, 3, 5):
        policy = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], origin_region="eu-north-1", max_latency_ms=20,
                            deadline_within="12h", instance_type="m5.large", vcpu=2, memory_gib=8, min_savings_pct=minimum)
        d = decide(policy, {"eu-south-2": pd.Series(100.0, index=idx), "eu-north-1": se}, idx[0])
        chosen.append((d.chosen.region, d.chosen.start, round(d.savings_pct, 1)))
    assert chosen == [("eu-north-1", idx[6], 4.0)] * 4


def test_a_wait_is_not_weighed_against_a_start_now_the_minimum_excludes():
    """Review 54a M1: at min_savings_pct 50 the wait in eu-north-1 (65% below home) was judged against starting
    now there (40% below home, itself excluded by the minimum), fell short, and the run stayed home at 0%.
    decide() and the simulator's care policy now both take the wait; at 30% (start now there eligible) too."""
    idx = pd.date_range("2023-06-01", periods=48, freq="h", tz="UTC")
    se = pd.Series(120.0, index=idx)
    se.iloc[[3, 27]] = 70.0  # also a day before the arrival: the simulator's seasonal-naive forecast sees it
    se.iloc[4:24] = 120.0
    series = {"eu-south-2": pd.Series(200.0, index=idx), "eu-north-1": se}
    chosen = {}
    for minimum in (30.0, 50.0):
        policy = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], instance_type="m5.large", vcpu=2, memory_gib=8,
                            deadline_within="12h", min_savings_pct=minimum)
        d = decide(policy, {r: s[24:] for r, s in series.items()}, idx[24])
        trace = CarbonTrace.from_series(series)
        jobs = jobs_from_frame(pd.DataFrame({"job_id": ["a"], "arrival": [idx[24]], "duration_h": [1.0], "slack_h": [11.0], "cpus": [2]}))
        ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive")
        sim = run_policy(ctx, "care-once", min_savings_pct=minimum)
        chosen[minimum] = (d.chosen.region, d.chosen.start - idx[24], round(d.savings_pct),
                           trace.regions[int(sim.region[0])], float(sim.seg_start[0] - ctx.a[0]))
    assert chosen[30.0] == chosen[50.0] == ("eu-north-1", pd.Timedelta("3h"), 65, "eu-north-1", 3.0), chosen
