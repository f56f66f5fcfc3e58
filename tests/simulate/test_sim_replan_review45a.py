"""Review 45a: the simulator's re-plan looks only where the controller looks, and refuses percentages out of range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from care_flows.errors import ConfigError
from care_flows.simulate.engine import SimContext, evaluate
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import run_policy
from tests.simulate.test_sim_care_check import T0, _forecaster, _trace


def _ctx(arrival_h: float, duration_h: float, slack_h: float, real: np.ndarray, forecasts: dict) -> SimContext:
    jobs = jobs_from_frame(pd.DataFrame([{"job_id": "j0", "arrival": T0 + pd.Timedelta(hours=arrival_h), "duration_h": duration_h,
                                          "slack_h": slack_h}]))
    return SimContext.build(_trace({"eu-central-1": real}), jobs, home_region="eu-central-1", forecaster=_forecaster(forecasts))


@pytest.mark.parametrize("slack_h", [0.6, 2.0])
def test_a_plan_that_starts_before_the_first_pass_starts_as_planned(slack_h: float) -> None:
    """Arrival 10.2 h, 1.5 h of work; slot 11 is the green one and every forecast is the truth: the plan
    made at arrival starts at 10.5 h (ending on the 12 h boundary). No controller pass comes before then,
    so `care` must start there too (it was forced to its latest start, 10.8 h, or re-decided at 11 h: dirtier)."""
    real = np.full(72, 100.0)
    real[11], real[12] = 10.0, 200.0
    ctx = _ctx(10.2, 1.5, slack_h, real, {q: {10: 100.0, 11: 10.0, 12: 200.0} for q in range(10, 14)})
    starts, carbon = {}, {}
    for policy in ("care-once", "care", "care-check"):
        dec = run_policy(ctx, policy, min_savings_pct=0.0)
        starts[policy] = float(dec.seg_start[dec.seg_job == 0].min())
        carbon[policy] = float(evaluate(ctx, dec).carbon_g[0])
    assert starts["care-once"] == pytest.approx(10.5)
    assert starts["care"] == pytest.approx(10.5) and carbon["care"] == pytest.approx(carbon["care-once"])
    assert starts["care-check"] == pytest.approx(10.5)


@pytest.mark.parametrize("policy", ["care", "care-once", "care-check"])
@pytest.mark.parametrize("param", ["tolerance_pct", "min_savings_pct"])
@pytest.mark.parametrize("value", [-5.0, 150.0])
def test_percentages_out_of_range_are_refused(policy: str, param: str, value: float) -> None:
    """CarePolicy refuses them; the simulator ran every job now at home with a RuntimeWarning for -5."""
    ctx = _ctx(10.0, 1.0, 5.0, np.full(72, 100.0), {})
    with pytest.raises(ConfigError, match=f"{param} {value} must be between 0 and 100"):
        run_policy(ctx, policy, **{param: value})
