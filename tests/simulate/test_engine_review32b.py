"""Review 32 #3: the arrival forecasts are built per job group, over the group's own issue slots and
horizon, so one job with a long slack no longer widens every issue slot's forecast row; the
decisions are bit for bit those of the one dense forecast over the longest horizon."""

import numpy as np
import pandas as pd
import pytest

import care_flows.simulate.policies as pol
from care_flows.simulate.engine import CarbonTrace, SimContext, evaluate, load_trace
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import POLICIES, run_policy, slack_chunks

T0 = pd.Timestamp("2023-01-01T00:00Z")


def _trace_15min(days: int = 40) -> CarbonTrace:
    rng = np.random.default_rng(1)
    n = days * 96
    values = 150 + 60 * np.sin(np.arange(n) / 96 * 2 * np.pi) + rng.normal(0, 8, n)
    return CarbonTrace.from_series({"eu-south-2": pd.Series(np.abs(values), index=pd.date_range(T0, periods=n, freq="15min"))})


def _jobs(n: int, outlier_slack_h: float, span_h: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    slack = np.full(n, 12.0)
    slack[n // 2] = outlier_slack_h
    return jobs_from_frame(pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        "arrival": T0 + pd.Timedelta("2D") + pd.to_timedelta(np.sort(rng.uniform(0, span_h, n)), unit="h").round("s"),
        "duration_h": np.round(rng.uniform(0.3, 3.0, n), 2), "slack_h": slack, "interruptible": rng.random(n) < 0.4,
    }))


class _Recorder:
    """A forecaster (persistence) that records the shape of every forecast it is asked for."""

    def __init__(self):
        self.shapes = []
        self.__name__ = "recorder"

    def __call__(self, values, issue_idx, horizon, steps_per_day):
        self.shapes.append((len(issue_idx), int(horizon)))
        last = values[np.maximum(np.asarray(issue_idx) - 1, 0)]
        return np.broadcast_to(last[:, None] + 0.01 * np.arange(horizon)[None, :], (len(issue_idx), horizon)).copy()


def test_one_long_slack_job_does_not_widen_the_other_jobs_forecast_rows(monkeypatch):
    monkeypatch.setattr(pol, "CHUNK_CELLS", 50_000)  # 400 jobs x ~60 steps fit; the 500 h outlier does not
    rec = _Recorder()
    ctx = SimContext.build(_trace_15min(), jobs_from_frame(_jobs(400, 500.0, 24 * 12).frame), home_region="eu-south-2", forecaster=rec)
    assert len(slack_chunks(ctx)) == 2
    for name in ("care", "oracle", "threshold", "gaia-carbon-time"):
        assert not evaluate(ctx, run_policy(ctx, name)).missed.any()
    # only the outlier's own row is ~2000 steps long (it was one such row per issue slot: ~400 x 2060)
    assert sorted(rows for rows, h in rec.shapes if h > 200) == [1], rec.shapes
    assert max(h for _, h in rec.shapes) == ctx.horizon_steps()
    assert max(rows * horizon for rows, horizon in rec.shapes) < len(ctx.uq) * ctx.horizon_steps() / 20


def test_group_forecasts_are_the_first_columns_of_the_dense_forecast(monkeypatch):
    monkeypatch.setattr(pol, "CHUNK_CELLS", 5_000)
    jobs = _jobs(300, 300.0, 24 * 20, seed=3)
    dense = SimContext.build(_trace_15min(), jobs, home_region="eu-south-2", forecast_model="seasonal_naive")
    lazy = SimContext.build(_trace_15min(), jobs, home_region="eu-south-2", forecast_model="seasonal_naive")
    groups = slack_chunks(lazy)
    assert len(groups) > 2
    fc, fcum = dense.fc, dense.fcum
    for g in groups:
        sub = lazy.subset(g)
        H = sub.fc.shape[2]
        assert H < fc.shape[2] or 150 in g  # only the outlier's group is as long as the dense forecast
        np.testing.assert_array_equal(sub.fc[:, sub.u], fc[:, dense.u[g], :H])
        np.testing.assert_array_equal(sub.fcum[:, sub.u], fcum[:, dense.u[g], : H + 1])
        assert lazy.subset(g).fc is sub.fc  # built once per group, then cached
    assert lazy._fc is None  # the whole context's dense forecast was never built


def _canonical(decision):
    order = np.argsort(decision.seg_job, kind="stable")
    return decision.region, decision.seg_job[order], decision.seg_start[order], decision.seg_len[order]


@pytest.mark.parametrize("model", ["default", "seasonal_naive_local"])
def test_per_group_forecasts_decide_bit_for_bit_like_the_dense_forecast(monkeypatch, model):
    """Two regions, fractional arrivals and durations, long-slack outliers: every policy decides the
    same with one group (the dense forecast) as with many groups (each its own forecast)."""
    rng = np.random.default_rng(8)
    n = 400
    slack = rng.choice([0.0, 0.4, 3.0, 12.0, 24.0, 47.5], size=n)
    slack[rng.choice(n, 4, replace=False)] = rng.uniform(300, 900, 4)
    frame = pd.DataFrame(
        {"job_id": [f"j{i}" for i in range(n)],
         "arrival": pd.Timestamp("2022-02-01T00:00Z") + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 60, n)), unit="h").round("s"),
         "duration_h": np.round(rng.uniform(0.2, 6.0, n), 3), "slack_h": slack, "interruptible": rng.random(n) < 0.4,
         "region": rng.choice(["", "eu-south-2", "eu-north-1"], size=n)}
    )
    trace = load_trace(["embedded:ES", "embedded:SE"])
    jobs = jobs_from_frame(frame)
    for name in POLICIES:
        monkeypatch.setattr(pol, "CHUNK_CELLS", 10**12)
        one_ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model=model)
        one = run_policy(one_ctx, name)
        monkeypatch.setattr(pol, "CHUNK_CELLS", 1500)
        many_ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model=model)
        assert len(slack_chunks(many_ctx)) >= 8
        many = run_policy(many_ctx, name)
        assert many_ctx._fc is None  # each group used its own forecast
        for x, y in zip(_canonical(one), _canonical(many)):
            np.testing.assert_array_equal(x, y, err_msg=name)
        np.testing.assert_array_equal(evaluate(one_ctx, one).carbon_g, evaluate(many_ctx, many).carbon_g, err_msg=name)
