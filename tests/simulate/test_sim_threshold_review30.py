"""Review 30 #3: the simulator's ``threshold`` policy is CaRE's threshold mode: for interruptible jobs it
takes the same decisions as ``plan_threshold`` (one shared kernel, ``threshold_amounts``)."""

import numpy as np
import pandas as pd
import pytest

from care_flows.planning import plan_threshold
from care_flows.simulate.engine import CarbonTrace, SimContext, evaluate
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import run_policy

T0 = pd.Timestamp("2023-01-01T00:00Z")
H = pd.Timedelta("1h")


def perfect(vals):
    """A forecaster that returns the truth from the issue slot on (to compare rules, not forecasts)."""

    def forecaster(values, issue_idx, horizon, steps_per_day):
        padded = np.r_[vals, np.full(horizon, vals[-1])]
        return np.stack([padded[q : q + horizon] for q in issue_idx])

    return forecaster


def context(vals, frame):
    idx = pd.date_range(T0, periods=len(vals), freq="h")
    trace = CarbonTrace.from_series({"eu-south-2": pd.Series(vals, index=idx)})
    return SimContext.build(trace, jobs_from_frame(frame), home_region="eu-south-2", forecaster=perfect(vals))


def sim_segments(dec, j):
    """Job j's segments as merged (start, end) timestamps."""
    sel = dec.seg_job == j
    out = []
    for s, n in sorted(zip(dec.seg_start[sel], dec.seg_len[sel])):
        if out and abs(out[-1][1] - s) < 1e-9:
            out[-1][1] = s + n
        else:
            out.append([s, s + n])
    return [(T0 + pd.to_timedelta(a * 3600, unit="s"), T0 + pd.to_timedelta(b * 3600, unit="s")) for a, b in out]


def assert_same(sim, plan):
    assert len(sim) == len(plan.segments), (sim, plan.segments)
    for (a, b), seg in zip(sim, plan.segments):
        assert abs((a - seg.start).total_seconds()) < 1e-3 and abs((b - seg.end).total_seconds()) < 1e-3, (sim, plan.segments)


def test_reviewers_case_sim_and_plan_agree():
    # p8: below 40 are slots 1 and 6 of the window; the third hour is slot 3 (50): 26.67 g/kWh for both
    day2 = [90, 10, 90, 50, 90, 90, 20, 90] + [90] * 16
    vals = np.array([90.0] * 24 + day2)
    frame = pd.DataFrame({"job_id": ["i"], "arrival": [T0 + 24 * H], "duration_h": [3.0], "slack_h": [5.0], "interruptible": [True]})
    ctx = context(vals, frame)
    dec = run_policy(ctx, "threshold", g_per_kwh=40)
    out = evaluate(ctx, dec)
    plan = plan_threshold(pd.Series(vals, index=pd.date_range(T0, periods=48, freq="h")), 3 * H, T0 + 24 * H, T0 + 32 * H,
                          threshold_g_per_kwh=40)
    assert [(s.start, s.end) for s in plan.segments] == [(T0 + 25 * H, T0 + 26 * H), (T0 + 27 * H, T0 + 28 * H), (T0 + 30 * H, T0 + 31 * H)]
    assert_same(sim_segments(dec, 0), plan)
    assert out.carbon_g[0] / ctx.kwh_per_step[0] / 3 == pytest.approx(80 / 3) == pytest.approx(plan.expected_g_per_kwh)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rule", [{"g_per_kwh": 60.0}, {"g_per_kwh": 150.0}, {"g_per_kwh": 5.0}, {"percentile": 25.0}, {"percentile": 70.0}])
def test_random_jobs_sim_and_plan_take_the_same_decision(seed, rule):
    rng = np.random.default_rng(seed)
    vals = rng.uniform(20, 300, 24 * 8)
    n = 25
    frame = pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        # arrivals anywhere (whole seconds, often mid-slot), fractional durations and slacks
        "arrival": [T0 + pd.Timedelta(seconds=int(s)) for s in rng.integers(0, 3600 * 24 * 5, n)],
        "duration_h": rng.integers(1, 24, n) / 4,
        "slack_h": rng.integers(0, 80, n) / 4,
        "interruptible": True,
    })
    ctx = context(vals, frame)
    dec = run_policy(ctx, "threshold", **rule)
    out = evaluate(ctx, dec)
    series = pd.Series(vals, index=pd.date_range(T0, periods=len(vals), freq="h"))
    kw = {"threshold_g_per_kwh": rule["g_per_kwh"]} if "g_per_kwh" in rule else {"percentile": rule["percentile"]}
    for j, row in enumerate(frame.itertuples()):
        dur = pd.Timedelta(hours=row.duration_h)
        plan = plan_threshold(series, dur, row.arrival, row.arrival + dur + pd.Timedelta(hours=row.slack_h), **kw)
        assert_same(sim_segments(dec, j), plan)
        assert out.carbon_g[j] / ctx.kwh_per_step[j] / row.duration_h == pytest.approx(plan.expected_g_per_kwh, rel=1e-9)
