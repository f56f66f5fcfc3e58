"""Review 54d: carbonaware-prefect breaks a tie between two other regions by the earlier start, not by the
order of the traces (L3), and warns of short carbon history in every region, since it moves jobs (L4)."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from care_flows.errors import DataError
from care_flows.simulate import simulate
from care_flows.simulate.engine import CarbonTrace, SimContext, evaluate
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import run_policy

IDX = pd.date_range("2023-03-01T00:00Z", periods=48, freq="h")


def _perfect(values, issue_idx, horizon, _steps_per_day):  # the forecast is the trace, read from the issue slot on
    return np.array([values[np.clip(q + np.arange(horizon), 0, len(values) - 1)] for q in issue_idx])


def test_carbonaware_prefect_ties_between_other_regions_go_to_the_earlier_start_in_any_trace_order():
    later, earlier = np.full(48, 200.0), np.full(48, 200.0)
    later[30], earlier[28] = 50.0, 50.0  # the same 50 g/kWh, at 06:00 in eu-north-1 and 04:00 in eu-west-3
    jobs = jobs_from_frame(pd.DataFrame({"job_id": ["x"], "arrival": [IDX[26]], "duration_h": [1.0], "slack_h": [8.0]}))
    chosen = []
    for order in (["eu-north-1", "eu-west-3"], ["eu-west-3", "eu-north-1"]):
        series = {"eu-south-2": pd.Series(300.0, IDX), **{r: pd.Series(later if r == "eu-north-1" else earlier, IDX) for r in order}}
        ctx = SimContext.build(CarbonTrace.from_series(series), jobs, home_region="eu-south-2", forecaster=_perfect)
        seg = evaluate(ctx, run_policy(ctx, "carbonaware-prefect")).segments.iloc[0]
        chosen.append((seg["region"], pd.Timestamp(seg["start"])))
    assert chosen == [("eu-west-3", IDX[28])] * 2  # was eu-north-1 at 06:00 when its trace came first


def test_carbonaware_prefect_warns_of_short_history_in_a_region_it_moves_jobs_to():
    idx = pd.date_range("2023-03-01T00:00Z", periods=24 * 12, freq="h")
    rng = np.random.default_rng(0)
    es = pd.Series(300 + 50 * rng.random(len(idx)), index=idx)
    se = pd.Series(20 + 10 * rng.random(len(idx) - 24 * 8), index=idx[24 * 8:])  # 8 days later: no history before
    jobs = pd.DataFrame({"job_id": ["a", "b"], "arrival": [idx[24 * 8 + 30], idx[24 * 8 + 40]], "duration_h": 1.0, "slack_h": 6.0})
    out = simulate(jobs, {"eu-south-2": es, "eu-north-1": se}, "carbonaware-prefect", home_region="eu-south-2")
    assert out.summary()["jobs_per_region"] == {"eu-south-2": 0, "eu-north-1": 2}
    assert any("2 of 2 jobs arrive with under 7 days of carbon history in eu-north-1" in n for n in out.notes), out.notes


def _two_region_jobs(home: str, types: list[str]) -> tuple[dict, pd.DataFrame]:
    series = {home: pd.Series(300.0, IDX), "eu-north-1": pd.Series(20.0, IDX)}
    jobs = pd.DataFrame({"job_id": [f"j{i}" for i in range(len(types))], "arrival": IDX[30], "duration_h": 1.0,
                         "slack_h": 6.0, "instance_type": types, "region": home})
    return series, jobs


def test_a_type_not_sold_in_another_region_keeps_its_jobs_at_home_and_the_rest_move():
    # a1.large is sold in eu-central-1 but not in eu-north-1 (the embedded catalogues); m5.large in both (L5)
    series, jobs = _two_region_jobs("eu-central-1", ["a1.large", "m5.large"])
    for policy in ("now", "threshold", "lets-wait-awhile", "oracle", "care", "care-once", "care-check", "carbonaware-prefect"):
        out = simulate(jobs, series, policy, home_region="eu-central-1", forecast_model="seasonal_naive")
        where = dict(zip(out.segments["job_id"], out.segments["region"]))
        assert where["j0"] == "eu-central-1", policy  # before: the whole run stopped on "has no price in eu-north-1"
        if policy in ("oracle", "care", "care-once", "care-check", "carbonaware-prefect"):
            assert where["j1"] == "eu-north-1", policy
        assert np.isfinite(out.cost_usd).all() and np.isfinite(out.carbon_g).all(), policy
        assert "instance type a1.large is not sold in eu-north-1 (no price there): its 1 job is not moved to eu-north-1" in out.notes


def test_a_type_not_sold_in_the_jobs_own_region_is_still_an_error_naming_the_row():
    series, jobs = _two_region_jobs("eu-south-2", ["m5.large", "c5a.large"])  # c5a.large: eu-north-1 only, but the job is homed in eu-south-2
    with pytest.raises(DataError, match=r"line 3 \(job 'j1'\).*'c5a.large' has no price in eu-south-2"):
        simulate(jobs, series, "now", home_region="eu-south-2")


def test_care_keeps_an_interruptible_job_in_one_run_when_the_slot_fill_is_no_greener_as_decide():
    # 3 h job, 0.5 h slack over 277.1, 258, 235, 209.5: using the first or the second half of 21:00's slot costs the
    # same; plan_interruptible (decide()) keeps the single run 21:30-00:30 on such a tie, so must the simulator (L2)
    from care_flows.planning.decide import decide
    from care_flows.policy import CarePolicy

    v = np.full(48, 300.0)
    v[21:25] = [277.1, 258.0, 235.0, 209.5]
    trace = CarbonTrace.from_series({"eu-west-3": pd.Series(v, IDX)})
    jobs = jobs_from_frame(pd.DataFrame({"job_id": ["j"], "arrival": [IDX[21]], "duration_h": [3.0], "slack_h": [0.5], "interruptible": [True]}))
    ctx = SimContext.build(trace, jobs, home_region="eu-west-3", forecaster=_perfect)
    fc = pd.Series(ctx.fc[0, 0], index=IDX[21] + pd.to_timedelta(np.arange(ctx.fc.shape[2]), unit="h"))
    policy = CarePolicy(home_region="eu-west-3", regions=["eu-west-3"], instance_type="m5.large", vcpu=2, memory_gib=1, interruptible=True)
    chosen = decide(policy, {"eu-west-3": fc}, IDX[21], duration=pd.Timedelta("3h"), deadline=IDX[21] + pd.Timedelta("3.5h")).chosen
    want = [(IDX[21] + pd.Timedelta("30min"), IDX[24] + pd.Timedelta("30min"))]
    assert [(s, e) for s, e in chosen.segments] == want
    for name in ("care-once", "care", "care-check"):
        out = evaluate(ctx, run_policy(ctx, name))
        got = [(pd.Timestamp(s), pd.Timestamp(e)) for s, e in zip(out.segments["start"], out.segments["end"])]
        assert got == want, name  # was 21:00-21:30 and 22:00-00:30


def test_care_still_splits_an_interruptible_job_when_the_slot_fill_is_greener():
    v = np.full(48, 300.0)
    v[21:25] = [100.0, 300.0, 100.0, 300.0]  # two green hours with a dirty one between: 2 h job, 3 h slack
    trace = CarbonTrace.from_series({"eu-west-3": pd.Series(v, IDX)})
    jobs = jobs_from_frame(pd.DataFrame({"job_id": ["j"], "arrival": [IDX[21]], "duration_h": [2.0], "slack_h": [3.0], "interruptible": [True]}))
    ctx = SimContext.build(trace, jobs, home_region="eu-west-3", forecaster=_perfect)
    out = evaluate(ctx, run_policy(ctx, "care-once"))
    assert [pd.Timestamp(s) for s in out.segments["start"]] == [IDX[21], IDX[23]]
