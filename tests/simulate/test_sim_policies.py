"""Policies: the oracle is optimal (brute force), every policy meets every feasible deadline, plans are
well formed, and the peers reproduce decisions computed by hand from their papers' descriptions."""

import itertools

import numpy as np
import pandas as pd
import pytest

from care_flows.simulate.engine import CarbonTrace, SimContext, evaluate
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import POLICIES, run_policy

T0 = pd.Timestamp("2023-01-01T00:00Z")


def make_trace(*rows, regions=("eu-south-2", "eu-north-1")):
    idx = pd.date_range(T0, periods=len(rows[0]), freq="h")
    return CarbonTrace.from_series({r: pd.Series(np.asarray(v, dtype=float), index=idx) for r, v in zip(regions, rows)})


def make_jobs(rows):
    """rows: (arrival_h, duration_h, slack_h[, interruptible])."""
    df = pd.DataFrame(
        {
            "job_id": [f"j{i}" for i in range(len(rows))],
            "arrival": [T0 + pd.Timedelta(hours=r[0]) for r in rows],
            "duration_h": [r[1] for r in rows],
            "slack_h": [r[2] for r in rows],
            "interruptible": [bool(r[3]) if len(r) > 3 else False for r in rows],
        }
    )
    return jobs_from_frame(df)


def fixed_forecast(pattern):
    """A forecaster that ignores the past and returns ``pattern`` from the issue slot on."""

    def forecaster(values, issue_idx, horizon, steps_per_day):
        p = np.asarray(pattern, dtype=float)
        rows = np.empty((len(issue_idx), horizon))
        for i, q in enumerate(issue_idx):
            rows[i] = p[np.clip(q + np.arange(horizon), 0, len(p) - 1)]
        return rows

    return forecaster


def brute_contiguous(values, a, d, dl, res):
    best = np.inf
    for s in np.arange(a, dl - d + 1e-9, res):
        t = np.arange(s, s + d - 1e-12, res)
        best = min(best, sum(values[int(np.floor(x + 1e-9))] * res for x in t))
    return best


def test_oracle_contiguous_equals_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(6):
        v = rng.uniform(10, 400, size=(2, 60))
        trace = make_trace(*v)
        rows = [(float(rng.integers(4, 40)) / 4 + 1, float(rng.integers(1, 16)) / 4, float(rng.integers(0, 40)) / 4) for _ in range(5)]
        ctx = SimContext.build(trace, make_jobs(rows), home_region="eu-south-2", forecaster=fixed_forecast(v[0]))
        out = evaluate(ctx, run_policy(ctx, "oracle"))
        for j, (a, d, slack) in enumerate(rows):
            want = min(brute_contiguous(v[r], a, d, a + d + slack, 0.25) for r in range(2)) * ctx.kwh_per_step[j]
            assert out.carbon_g[j] == pytest.approx(want, rel=1e-9)


def test_oracle_interruptible_equals_brute_force():
    rng = np.random.default_rng(11)
    v = rng.uniform(10, 400, size=(2, 40))
    trace = make_trace(*v)
    rows = [(3, 2, 4, True), (10, 3, 3, True), (20, 1, 6, True)]
    ctx = SimContext.build(trace, make_jobs(rows), home_region="eu-south-2", forecaster=fixed_forecast(v[0]))
    out = evaluate(ctx, run_policy(ctx, "oracle"))
    for j, (a, d, slack, _) in enumerate(rows):
        window = range(a, a + d + slack)
        want = min(min(sum(v[r][list(c)]) for c in itertools.combinations(window, d)) for r in range(2))
        assert out.carbon_g[j] == pytest.approx(want * ctx.kwh_per_step[j])


def _random_setup(seed, n=40, regions=2):
    rng = np.random.default_rng(seed)
    v = rng.uniform(5, 500, size=(regions, 24 * 8))
    trace = make_trace(*v, regions=("eu-south-2", "eu-north-1", "eu-central-1")[:regions])
    rows = [
        (24 + rng.uniform(0, 96), rng.uniform(0.05, 6), float(rng.choice([0.0, 0.3, 2.0, 12.5, 24.0])), bool(rng.integers(0, 2)))
        for _ in range(n)
    ]
    return trace, make_jobs(rows)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_meets_deadlines_and_plans_are_well_formed(seed, name):
    trace, jobs = _random_setup(seed)
    ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive_local")
    out = evaluate(ctx, run_policy(ctx, name))
    assert out.missed.sum() == 0
    seg = out.segments.merge(jobs.frame[["job_id", "arrival", "deadline", "duration_h"]], on="job_id")
    tol = pd.Timedelta("1ms")
    assert (seg["start"] >= seg["arrival"] - tol).all() and (seg["end"] <= seg["deadline"] + tol).all()
    assert (seg["end"] > seg["start"]).all()
    hours = ((seg["end"] - seg["start"]).dt.total_seconds() / 3600).groupby(seg["job_id"]).sum()
    want = jobs.frame.set_index("job_id")["duration_h"]
    assert np.allclose(hours.reindex(want.index).to_numpy(), want.to_numpy(), atol=1e-6)
    # segments of a job never overlap, and a job stays in one region
    for _, g in seg.sort_values("start").groupby("job_id"):
        assert (g["start"].iloc[1:].reset_index(drop=True) >= g["end"].iloc[:-1].reset_index(drop=True) - tol).all()
        assert g["region"].nunique() == 1
    # contiguous jobs are one segment
    contiguous = set(jobs.frame.loc[~jobs.frame["interruptible"], "job_id"])
    assert seg[seg["job_id"].isin(contiguous)].groupby("job_id").size().max() == 1


def test_oracle_never_worse_than_any_policy():
    trace, jobs = _random_setup(5, n=60)
    ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive_local")
    oracle = evaluate(ctx, run_policy(ctx, "oracle")).carbon_g
    for name in POLICIES:
        got = evaluate(ctx, run_policy(ctx, name)).carbon_g
        assert (oracle <= got + 1e-9).all(), name


# ----------------------------------------------------------------------------- peers, by hand
# Forecast for every job (fixed, from slot 0): hours 0..9 then 100 onwards.
PATTERN = [50, 40, 30, 90, 10, 20, 80, 70, 60, 95] + [100] * 50


OFFSET = 24  # hand-made cases start a day into the trace (the forecast needs some history)


def _ctx(rows, pattern=PATTERN, regions=1):
    pattern = [500.0] * OFFSET + list(pattern)
    rows = [(r[0] + OFFSET, *r[1:]) for r in rows]
    vals = [np.full(len(pattern), 500.0)] * regions
    trace = make_trace(*vals, regions=("eu-south-2", "eu-north-1")[:regions])
    return SimContext.build(trace, make_jobs(rows), home_region="eu-south-2", forecaster=fixed_forecast(pattern))


def _starts(ctx, name):
    dec = run_policy(ctx, name)
    out = evaluate(ctx, dec)
    return [(s.start - T0).total_seconds() / 3600 - OFFSET for s in out.segments.itertuples()]


def test_lets_wait_awhile_non_interruptible_by_hand():
    # arrival 1 h, 1 h job, 6 h slack: starts 1..7, forecast 40 30 90 10 20 80 70 -> wait 3 h (start 4, value 10)
    assert _starts(_ctx([(1, 1, 6)]), "lets-wait-awhile") == [4.0]
    # arrival 0.5 h, slack 4: starts 0.5 .. 4.5 straddle slots: 45, 35, 60, 50, 15 -> 4.5 (half 10, half 20)
    assert _starts(_ctx([(0.5, 1, 4)]), "lets-wait-awhile") == [4.5]
    # with slack 3 the last start is 3.5 (50): the best is 1.5 (half 40, half 30), where CaRE's slot-aligned
    # candidates would pick 2.0 (30)
    assert _starts(_ctx([(0.5, 1, 3)]), "lets-wait-awhile") == [1.5]


def test_lets_wait_awhile_interruptible_by_hand():
    # 2 h within [1, 9): the two lowest steps are 4 (10) and 5 (20) -> one merged segment 4..6
    assert _starts(_ctx([(1, 2, 6, True)]), "lets-wait-awhile") == [4.0]
    # 3 h within [0, 9): 10 (4), 20 (5), 30 (2)
    assert sorted(_starts(_ctx([(0, 3, 6, True)]), "lets-wait-awhile")) == [2.0, 4.0]


def test_carbonaware_prefect_by_hand():
    # arrival 0.5 h: only slot boundaries 1, 2, 3 (latest start 0.5 + 3 = 3.5); forecast 40 30 90 -> start 2
    assert _starts(_ctx([(0.5, 1, 3)]), "carbonaware-prefect") == [2.0]
    # a 2.5 h job is scored on floor(2.5) = 2 points: means from 1: 35, 2: 60, 3: 50, 4: 15 -> start 4
    assert _starts(_ctx([(1, 2.5, 5)]), "carbonaware-prefect") == [4.0]
    # several zones: the least mean over (zone, time)
    pattern2 = [500.0] * 60
    ctx = _ctx([(1, 1, 6)], regions=2)
    ctx.fc[1] = np.asarray(pattern2)[None, : ctx.fc.shape[2]]
    ctx.fc[1][:, 6] = 5.0  # 6 h after the issue slot: absolute hour 7 in the second region is the least
    ctx.fcum[1] = np.concatenate([np.zeros((ctx.fc.shape[1], 1)), np.cumsum(ctx.fc[1], axis=1)], axis=1)
    dec = run_policy(ctx, "carbonaware-prefect")
    assert dec.region.tolist() == [1] and dec.seg_start.tolist() == [OFFSET + 7.0]


def test_gaia_carbon_time_by_hand():
    # one 1 h job (queue mean Lm = 1 h), arrival 0, max wait 5 h; C_k = 50 40 30 90 10 20
    # (C0 - Ck) / (k + 1): 0, 5, 6.67, -10, 8, 5 -> wait 4 h
    assert _starts(_ctx([(0, 1, 5)]), "gaia-carbon-time") == [4.0]
    # with a second job that is also short but 0.5 h long, Lm = 0.75 h: C_k over 0.75 h
    ctx = _ctx([(0, 1, 5), (0, 0.5, 1)])
    assert ctx.mean_len.tolist() == [0.75, 0.75]
    # the saving per unit of completion time favours waiting less than the least-carbon slot:
    pattern = [100, 60, 55, 55, 55, 55, 55, 0] + [100] * 50
    # job 1 h, wait <= 7 h: k=1 -> 40/2 = 20; k=7 -> 100/8 = 12.5: GAIA waits 1 h, the oracle would wait 7 h
    assert _starts(_ctx([(0, 1, 7)], pattern=pattern), "gaia-carbon-time") == [1.0]
    assert _starts(_ctx([(0, 1, 7)], pattern=pattern), "lets-wait-awhile") == [7.0]
    # the rule uses the queue's mean length, not the job's own: a 1.5 h job (wait <= 3 h) with a
    # 0.5 h job gives Lm = 1 h; C_k over 1 h = 100 40 100 0 -> (C0 - Ck) / (k + 1): 30, 0, 25 -> wait 1 h
    # (its own 1.5 h would give C_k = p_k + p_(k+1) / 2 = 120 90 100 50 -> 12, 5.7, 15.6 -> wait 3 h);
    # the 0.5 h job: k <= 1, (100 - 40) / 2 = 30 > 0 -> wait 1 h
    ctx = _ctx([(0, 1.5, 3), (0, 0.5, 1)], pattern=[100, 40, 100, 0, 100] + [100] * 50)
    assert ctx.mean_len.tolist() == [1.0, 1.0]
    assert _starts(ctx, "gaia-carbon-time") == [1.0, 1.0]


def test_care_prefers_greener_cheaper_region_and_runs_now_when_saving_is_small():
    ctx = _ctx([(1, 1, 6)], regions=2)
    # region 2 forecast flat at 5 (greener), cheaper in the embedded prices: move now (earliest within tolerance)
    ctx.fc[1] = 5.0
    ctx.fcum[1] = np.concatenate([np.zeros((ctx.fc.shape[1], 1)), np.cumsum(ctx.fc[1], axis=1)], axis=1)
    dec = run_policy(ctx, "care")
    assert dec.region.tolist() == [1] and dec.seg_start.tolist() == [OFFSET + 1.0]
    flat = _ctx([(1, 1, 6)], pattern=[100.0, 100.0, 99.5] + [100.0] * 50)
    assert run_policy(flat, "care").seg_start.tolist() == [OFFSET + 1.0]  # 0.5% saving < min_savings_pct 1%


def test_carbonaware_prefect_scores_a_start_over_the_jobs_whole_duration():
    """Review 35f L1: a 1.9 h job was judged on the first hour of each start alone (floor(duration)
    points), so it started at 00:00 (10 g/kWh, then 200) rather than 23:00 (60, then 10); the
    scheduler averages its 5-minute forecast over the job's duration."""
    day = np.full(24, 60.0)
    day[0], day[1] = 10.0, 200.0
    idx = pd.date_range("2023-01-01", periods=24 * 4, freq="h", tz="UTC")
    trace = CarbonTrace.from_series({"eu-south-2": pd.Series(np.tile(day, 4), index=idx)})
    jobs = jobs_from_frame(pd.DataFrame({"job_id": ["x"], "arrival": [pd.Timestamp("2023-01-02T23:00Z")], "duration_h": [1.9], "slack_h": [20.0]}))
    ctx = SimContext.build(trace, jobs, home_region="eu-south-2", forecast_model="seasonal_naive")  # the forecast is the truth here
    out = evaluate(ctx, run_policy(ctx, "carbonaware-prefect"))
    assert out.segments.start.iloc[0] == pd.Timestamp("2023-01-02T23:00Z")
    assert out.carbon_g[0] == pytest.approx(evaluate(ctx, run_policy(ctx, "lets-wait-awhile")).carbon_g[0])


def test_the_peers_take_the_earliest_start_on_a_flat_forecast_despite_float_noise():
    """Review 39c M1: on a flat forecast (persistence) every start is as good, and the peers promise the
    earliest (first) one; their window totals come from a year's cumulative sums, whose float noise
    (~1e-14) used to pick a later start for most jobs (lets-wait-awhile waited 5 h on average)."""
    from care_flows.simulate.engine import load_trace

    rng = np.random.default_rng(1)
    n = 200
    arrivals = [pd.Timestamp("2023-03-01T00:00Z") + pd.Timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 200, n)]
    jobs = jobs_from_frame(pd.DataFrame({"job_id": [f"j{i}" for i in range(n)], "arrival": arrivals,
                                         "duration_h": rng.choice([1.0, 2.0, 1.5], n), "slack_h": 12.0}))
    ctx = SimContext.build(load_trace(["embedded:ES"]), jobs, home_region="eu-south-2", forecast_model="persistence")
    for name in ("lets-wait-awhile", "gaia-carbon-time", "care-once"):
        np.testing.assert_allclose(run_policy(ctx, name).seg_start, ctx.a, atol=1e-9, err_msg=name)
    # carbonaware-prefect scores starts on the slot grid: its first candidate is the next whole hour
    np.testing.assert_allclose(run_policy(ctx, "carbonaware-prefect").seg_start, np.ceil(ctx.a - 1e-9), atol=1e-9)
