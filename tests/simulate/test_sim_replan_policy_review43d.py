"""Review 43d H1/M1 in the simulator: `care` re-plans and `care-check` checks at start with the policy's
tie-break within the region (care_flows.planning.replan.policy_threshold), as the controller and the
check at start of a real @care run now do, so the "care (ties: home, earliest)" row measures what runs."""

import numpy as np

from care_flows.simulate.engine import SimContext, evaluate
from care_flows.simulate.policies import run_policy
from tests.simulate.test_engine_review36a import _same_span_case, _digest

EARLIEST_FIRST = ("home", "earliest")


def _ctx():
    trace, jobs = _same_span_case()
    return SimContext.build(trace, jobs, home_region="eu-south-2")


def test_care_replans_with_the_tolerance_when_earliest_ranks_before_carbon():
    ctx = _ctx()
    ties = evaluate(ctx, run_policy(ctx, "care", tie_break=EARLIEST_FIRST))
    explicit = evaluate(ctx, run_policy(ctx, "care", tie_break=EARLIEST_FIRST, replan_threshold=-0.05))
    greenest = evaluate(ctx, run_policy(ctx, "care", tie_break=EARLIEST_FIRST, replan_threshold=0.0))
    assert _digest(ties) == _digest(explicit) != _digest(greenest)
    # starting now whenever now is within 5% of the best start left waits less
    assert ties.delay_h.mean() < greenest.delay_h.mean()
    # the default tie-break (carbon before earliest) keeps the threshold 0
    default = evaluate(ctx, run_policy(ctx, "care"))
    assert _digest(default) == _digest(evaluate(ctx, run_policy(ctx, "care", replan_threshold=0.0)))


def test_care_check_moves_on_only_beyond_the_tolerance_when_earliest_ranks_before_carbon(monkeypatch):
    from care_flows.simulate import policies

    ctx = _ctx()
    seen, differs = [], []
    real = policies._check_deferred_at_start

    def spy(ctx, jobs, region, plan_start, **kw):
        seen.append(kw["threshold"])
        greedy = plan_start.copy()
        real(ctx, jobs, region, greedy, **{**kw, "threshold": 0.0})
        real(ctx, jobs, region, plan_start, **kw)
        differs.append(not np.array_equal(greedy, plan_start, equal_nan=True))

    monkeypatch.setattr(policies, "_check_deferred_at_start", spy)
    run_policy(ctx, "care-check", tie_break=EARLIEST_FIRST)
    run_policy(ctx, "care-check")
    # the tie-break reaches the checks, and on this trace it keeps some start a greedy check moved on
    assert seen == [-0.05, 0.0] and differs == [True, False]
