"""Review 30 #7: one job with a long slack must not widen every job's matrices.

A policy's per-job matrices are (jobs, ~window steps). Before, the width was the longest window of
all jobs, so one job with 2000 h of slack among 5,000 jobs of 24 h made every matrix 5,000 x ~4,000
(1.6 GB peak for ``oracle``; the 100k-job GAIA trace ran out of memory). ``run_policy`` now runs
each group of similar window (:func:`slack_chunks`) on its own; the decisions do not change.
"""

import numpy as np
import pandas as pd
import pytest

import care_flows.simulate.policies as pol
from care_flows.simulate.engine import SimContext, evaluate, load_trace
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import POLICIES, run_policy, slack_chunks

N_JOBS = 5000
OUTLIER_SLACK_H = 2000.0


def _context(outlier_slack_h: float) -> SimContext:
    rng = np.random.default_rng(0)
    arrival = pd.Timestamp("2022-01-10T00:00Z") + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 300, N_JOBS)), unit="h").round("s")
    slack = np.full(N_JOBS, 24.0)
    slack[0] = outlier_slack_h
    frame = pd.DataFrame(
        {"job_id": [f"j{i}" for i in range(N_JOBS)], "arrival": arrival, "duration_h": 1.0, "slack_h": slack,
         "interruptible": rng.random(N_JOBS) < 0.3}
    )
    return SimContext.build(load_trace(["embedded:ES"]), jobs_from_frame(frame), home_region="eu-south-2", forecast_model="seasonal_naive")


@pytest.fixture(scope="module")
def contexts():
    return _context(24.0), _context(OUTLIER_SLACK_H)


class _ShapeSpy:
    """Records the size of every matrix the policy kernels are given; fails at once above ``limit``."""

    def __init__(self, monkeypatch):
        self.limit = np.inf
        self.largest = 0
        for name, arg in (("fc_int", 3), ("true_int", 2), ("fc_slot", 3)):
            monkeypatch.setattr(SimContext, name, self._wrap(getattr(SimContext, name), arg))
        monkeypatch.setattr(pol, "greedy_fill", self._wrap(pol.greedy_fill, 0))

    def _wrap(self, fn, arg):
        def spy(*args, **kwargs):
            cells = int(np.size(args[arg]))
            self.largest = max(self.largest, cells)
            assert cells <= self.limit, f"{fn.__name__} was given a matrix of {np.shape(args[arg])} ({cells} cells > {self.limit:.0f})"
            return fn(*args, **kwargs)

        return spy


@pytest.mark.parametrize("name", list(POLICIES))
def test_one_long_slack_job_adds_only_its_own_row(contexts, monkeypatch, name):
    short, long = contexts
    spy = _ShapeSpy(monkeypatch)
    run_policy(short, name)
    without_outlier = spy.largest
    outlier_row = 2 * (int(np.ceil(long.dl[0] - long.a[0])) + 4)  # the widest per-job row (grid+ends candidates)
    spy.limit = max(without_outlier, N_JOBS) + outlier_row  # ~0.3 M cells; the old code gave 5,000 x ~4,000 = 20 M
    out = evaluate(long, run_policy(long, name))
    assert not out.missed.any()


def _canonical(decision):
    order = np.argsort(decision.seg_job, kind="stable")
    return decision.region, decision.seg_job[order], decision.seg_start[order], decision.seg_len[order]


def test_job_groups_do_not_change_decisions(monkeypatch):
    """Fractional arrivals and durations, 40% interruptible, two regions, some long-slack outliers:
    every policy decides exactly (bit for bit) the same with one group and with many."""
    rng = np.random.default_rng(5)
    n = 600
    arrival = pd.Timestamp("2022-02-01T00:00Z") + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 60, n)), unit="h").round("s")
    slack = rng.choice([0.0, 0.4, 3.0, 12.0, 24.0, 47.5], size=n)
    slack[rng.choice(n, 4, replace=False)] = rng.uniform(300, 900, 4)
    frame = pd.DataFrame(
        {"job_id": [f"j{i}" for i in range(n)], "arrival": arrival, "duration_h": np.round(rng.uniform(0.2, 6.0, n), 3),
         "slack_h": slack, "interruptible": rng.random(n) < 0.4}
    )
    ctx = SimContext.build(load_trace(["embedded:ES", "embedded:SE"]), jobs_from_frame(frame), home_region="eu-south-2")
    for name in POLICIES:
        monkeypatch.setattr(pol, "CHUNK_CELLS", 10**12)
        assert len(slack_chunks(ctx)) == 1
        one = run_policy(ctx, name)
        monkeypatch.setattr(pol, "CHUNK_CELLS", 1500)
        assert len(slack_chunks(ctx)) > 10
        many = run_policy(ctx, name)
        for x, y in zip(_canonical(one), _canonical(many)):
            np.testing.assert_array_equal(x, y, err_msg=name)
        np.testing.assert_array_equal(evaluate(ctx, one).carbon_g, evaluate(ctx, many).carbon_g, err_msg=name)


def test_slack_chunks_partition_the_jobs_within_the_budget(contexts):
    ctx = contexts[1]
    cells = 20_000
    groups = slack_chunks(ctx, cells=cells)
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(ctx.n))
    width = np.ceil(ctx.dl - ctx.a - 1e-9) + 2
    for g in groups:
        w = width[g]
        assert len(g) == 1 or (len(g) * w.max() <= cells and w.max() <= 2 * w.min())
    assert [g.tolist() for g in groups if 0 in g] == [[0]]  # the outlier is alone
    assert len(slack_chunks(contexts[0])) == 1  # 5,000 jobs of 24 h fit in the default budget: one group, as before
