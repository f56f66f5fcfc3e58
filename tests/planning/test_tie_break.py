"""CarePolicy.tie_break: how options tied within tolerance (or on a weighted score) are ordered.

The default (home region, then the least gCO2eq, then the earliest start; until 2026-11-30 home then
earliest, the fixed order used before the field existed) orders tied options; other orders change the
winner only among tied options; the vectorised simulator agrees
with ``decide()`` under a non-default order; ``care regions --tie-break`` passes it through.
"""

import json

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError
from care_flows.planning.decide import decide
from care_flows.planning.spatial import choose, rank_options
from care_flows.policy import CarePolicy
from care_flows.simulate.engine import SimContext, load_trace
from care_flows.simulate.jobs import jobs_from_frame
from care_flows.simulate.policies import run_policy

T0 = pd.Timestamp("2023-06-01T00:00Z")
HOME = "eu-south-2"


def _opts(**cols):
    n = len(next(iter(cols.values())))
    base = {
        "region": [HOME, "eu-north-1", "eu-central-1"][:n], "start": [T0] * n, "instance_type": ["t3.large"] * n,
        "usd_per_hour": [0.1] * n, "expected_g": [1.0] * n, "expected_usd": [0.1] * n, "latency_ms": [1.0] * n,
        "waste_vcpu": [0.0] * n, "waste_memory_gib": [0.0] * n,
    }
    base.update(cols)
    return pd.DataFrame(base)


def _winner(df, **kw):
    table, best = choose(df, home_region=HOME, **{"priorities": ["carbon", "cost"], **kw})
    return table.loc[best, "region"], table.loc[best, "start"]


# home 1 h later and 2% dirtier than eu-north-1: tied within the default 5% tolerance
TIED = _opts(region=[HOME, "eu-north-1"], start=[T0 + pd.Timedelta("1h"), T0], expected_g=[1.00, 0.98])


def test_default_is_home_then_carbon_then_earliest():
    df = _opts(start=[T0 + pd.Timedelta("2h"), T0 + pd.Timedelta("1h"), T0], expected_g=[1.0, 0.97, 0.99])
    assert _winner(df) == (HOME, T0 + pd.Timedelta("2h"))
    # without the home option, the greener of the tied others wins, though it starts later
    assert _winner(df.iloc[1:]) == ("eu-north-1", T0 + pd.Timedelta("1h"))
    full = rank_options(df, priorities=["carbon", "cost"], home_region=HOME)
    explicit = rank_options(df, priorities=["carbon", "cost"], home_region=HOME, tie_break=["home", "carbon", "earliest"])
    pd.testing.assert_frame_equal(full, explicit)
    assert list(full["region"]) == [HOME, "eu-north-1", "eu-central-1"]
    # the order before 2026-11-30
    before = rank_options(df, priorities=["carbon", "cost"], home_region=HOME, tie_break=["home", "earliest"])
    assert list(before["region"]) == [HOME, "eu-central-1", "eu-north-1"]


def test_earliest_first_picks_earlier_non_home_option():
    assert _winner(TIED)[0] == HOME
    assert _winner(TIED, tie_break=["earliest", "home"]) == ("eu-north-1", T0)
    # outside the tolerance the order does not matter: carbon decides
    assert _winner(TIED, tolerance_pct=1.0)[0] == "eu-north-1"
    assert _winner(TIED, tolerance_pct=1.0, tie_break=["home"])[0] == "eu-north-1"


def test_objective_tie_break_picks_the_cheaper_of_tied_options():
    df = _opts(expected_g=[1.0, 1.02, 1.01], expected_usd=[0.100, 0.099, 0.097])  # all tied on carbon and cost at 5%
    assert _winner(df)[0] == HOME
    assert _winner(df, tie_break=["cost"])[0] == "eu-central-1"
    assert _winner(df, tie_break=["carbon"])[0] == HOME
    # weighted mode: equal scores (constant column) are ordered the same way
    same = _opts(expected_g=[1.0, 1.0, 1.0], expected_usd=[0.100, 0.099, 0.097])
    assert _winner(same, weights={"carbon": 1.0})[0] == HOME
    assert _winner(same, weights={"carbon": 1.0}, tie_break=["cost"])[0] == "eu-central-1"


def test_empty_tie_break_uses_exact_values_then_row_order():
    assert _winner(TIED, tie_break=[])[0] == "eu-north-1"  # 0.98 < 1.00
    same = _opts(region=["eu-north-1", HOME, "eu-central-1"])  # identical in every objective
    ranked = rank_options(same, priorities=["carbon"], home_region=HOME, tie_break=[])
    assert list(ranked["region"]) == ["eu-north-1", HOME, "eu-central-1"]
    again = rank_options(same, priorities=["carbon"], home_region=HOME, tie_break=[])
    pd.testing.assert_frame_equal(ranked, again)


@pytest.mark.parametrize("bad, match", [(["nearest"], "unknown tie-break key 'nearest'"), (["home", "home"], "repeat")])
def test_bad_tie_break_rejected_by_ranking(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        rank_options(TIED, home_region=HOME, tie_break=bad)
    assert "\n" not in str(info.value)


def test_decide_uses_policy_tie_break():
    idx = pd.date_range(T0, periods=24, freq="h")
    flat = pd.Series(np.full(24, 100.0), index=idx)
    lower_later = flat.copy()
    lower_later.iloc[3:] = 99.0  # 1% less from 03:00: within tolerance of running now, above min savings 0.5%
    forecasts = {HOME: lower_later}
    kw = dict(home_region=HOME, regions=[HOME], instance_type="t3.large", tolerance_pct=5.0, min_savings_pct=0.5,
              deadline_within="12h")
    d = decide(CarePolicy(**kw), forecasts, T0)  # the default takes the greener of the tied options
    assert d.chosen.start == T0 + pd.Timedelta("3h") and d.chosen.region == HOME
    assert decide(CarePolicy(**kw, tie_break=["home", "earliest"]), forecasts, T0).chosen.start == T0
    assert decide(CarePolicy(**kw, tie_break=["carbon"]), forecasts, T0).chosen.start == T0 + pd.Timedelta("3h")


def test_simulator_tie_break_changes_tied_choices():
    """The order reaches the vectorised care policy (job-by-job agreement with decide(): tests/simulate)."""
    rng = np.random.default_rng(5)
    rows = [{"job_id": f"j{i}", "arrival": T0 + pd.Timedelta(hours=int(rng.integers(0, 24 * 150))),
             "duration_h": float(rng.choice([1.0, 2.0])), "slack_h": float(rng.choice([0.0, 6.0, 24.0])), "cpus": 2}
            for i in range(16)]
    trace = load_trace(["embedded:ES", "embedded:SE"])
    ctx = SimContext.build(trace, jobs_from_frame(pd.DataFrame(rows)), home_region=trace.regions[0],
                           forecast_model="seasonal_naive_local")
    default = run_policy(ctx, "care-once", tolerance_pct=50.0)
    explicit = run_policy(ctx, "care-once", tolerance_pct=50.0, tie_break=("home", "carbon", "earliest"))
    earliest = run_policy(ctx, "care-once", tolerance_pct=50.0, tie_break=("home", "earliest"))
    assert np.array_equal(default.region, explicit.region) and np.array_equal(default.seg_start, explicit.seg_start)
    assert (default.region != earliest.region).any() or not np.array_equal(default.seg_start, earliest.seg_start)
    with pytest.raises(ConfigError, match="unknown tie-break key 'soon'"):
        run_policy(ctx, "care-once", tie_break=("soon",))


CLI = ["regions", "--regions", HOME, "--at", "2023-06-01T12:00:00Z", "--duration", "1h", "--within", "12h", "--json"]


def test_cli_tie_break_flag(capsys):
    assert main(CLI) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["tie_break"] == ["home", "carbon", "earliest"]
    assert default["chosen"]["start"] > "2023-06-01T12:00:00+00:00"  # the later window is within 5%: the greener wins
    assert main([*CLI, "--tie-break", "home,earliest"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tie_break"] == ["home", "earliest"]
    assert doc["chosen"]["start"] == "2023-06-01T12:00:00+00:00"  # run now
    assert doc["chosen"]["expected_g"] > default["chosen"]["expected_g"]


@pytest.mark.parametrize("value, match", [("home,nearest", "unknown key 'nearest'"), ("home,home", "given twice")])
def test_cli_bad_tie_break_exits_2(capsys, value, match):
    assert main([*CLI, "--tie-break", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err
