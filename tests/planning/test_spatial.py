"""Spatial scoring: constraints with reasons, lexicographic tolerance, weights, tie-breaks."""

import numpy as np
import pandas as pd
import pytest

from care_flows.errors import ConfigError
from care_flows.planning.spatial import apply_constraints, choose, rank_options

T0 = pd.Timestamp("2023-06-01T00:00Z")


def _opts(**cols):
    n = len(next(iter(cols.values())))
    base = {
        "region": ["eu-south-2", "eu-north-1", "eu-central-1"][:n], "start": [T0] * n, "instance_type": ["t3.large"] * n,
        "usd_per_hour": [0.1] * n, "expected_g": [1.0] * n, "expected_usd": [0.1] * n, "latency_ms": [1.0] * n,
        "waste_vcpu": [0.0] * n, "waste_memory_gib": [0.0] * n,
    }
    base.update(cols)
    return pd.DataFrame(base)


def test_infeasible_kept_with_reasons():
    df = _opts(
        expected_g=[3.3, 0.3, np.nan], expected_usd=[0.09, 0.5, 0.1], usd_per_hour=[0.09, 0.5, 0.1], latency_ms=[1.0, 37.4, 20.0],
    )
    df["reason"] = ["", "", ""]
    out = apply_constraints(df, max_latency_ms=30, budget_usd_per_run=0.2, budget_usd_per_hour=0.3, max_g_per_run=3.0)
    assert list(out["feasible"]) == [False, False, False]
    assert out.loc[0, "reason"] == "carbon 3.30 g/run > max 3"
    assert "latency 37.4 ms > max 30 ms" in out.loc[1, "reason"] and "cost 0.5000 USD/run > budget 0.2" in out.loc[1, "reason"]
    assert "price 0.5000 USD/h > budget 0.3" in out.loc[1, "reason"]
    assert out.loc[2, "reason"] == "no carbon data"
    table, best = choose(df, max_latency_ms=30, max_g_per_run=3.0)
    assert best is None and table["rank"].isna().all() and len(table) == 3


def test_pre_set_reason_type_not_offered():
    df = _opts(expected_g=[3.0, 0.3])
    df["reason"] = ["", "type not offered"]
    table, best = choose(df, priorities=["carbon"], home_region="eu-south-2")
    assert table.loc[best, "region"] == "eu-south-2"
    assert table.set_index("region").loc["eu-north-1", "reason"] == "type not offered"


def test_lexicographic_tolerance_lets_next_objective_decide():
    # cost first: north is 4% dearer (within 5% -> equal), far greener -> north wins
    df = _opts(expected_usd=[1.00, 1.04], expected_g=[100.0, 10.0])
    _, best = choose(df, priorities=["cost", "carbon"], tolerance_pct=5, home_region="eu-south-2")
    assert df.loc[best, "region"] == "eu-north-1"
    # 6% dearer is outside the tolerance -> cost decides
    df = _opts(expected_usd=[1.00, 1.06], expected_g=[100.0, 10.0])
    _, best = choose(df, priorities=["cost", "carbon"], tolerance_pct=5, home_region="eu-south-2")
    assert df.loc[best, "region"] == "eu-south-2"
    # zero tolerance: strict cost order
    df = _opts(expected_usd=[1.00, 1.04], expected_g=[100.0, 10.0])
    _, best = choose(df, priorities=["cost", "carbon"], tolerance_pct=0, home_region="eu-south-2")
    assert df.loc[best, "region"] == "eu-south-2"


def test_ties_home_first_then_earliest_start():
    df = _opts(expected_g=[1.0, 1.0])
    for home in ("eu-south-2", "eu-north-1"):
        _, best = choose(df, priorities=["carbon", "cost"], home_region=home)
        assert df.loc[best, "region"] == home
    later = pd.DataFrame({**_opts(expected_g=[1.0, 1.0]).to_dict("list"), "region": ["eu-north-1", "eu-north-1"],
                          "start": [T0 + pd.Timedelta("2h"), T0]})
    _, best = choose(later, priorities=["carbon"], home_region="eu-south-2")
    assert later.loc[best, "start"] == T0


def test_full_ranking_and_latency_priority():
    df = _opts(expected_g=[3.0, 0.3, 1.0], latency_ms=[1.0, 37.0, 15.0])
    ranked = rank_options(apply_constraints(df), priorities=["carbon"], home_region="eu-south-2")
    assert list(ranked["region"]) == ["eu-north-1", "eu-central-1", "eu-south-2"] and list(ranked["rank"]) == [1, 2, 3]
    ranked = rank_options(apply_constraints(df), priorities=["latency"], home_region="eu-south-2")
    assert ranked.iloc[0]["region"] == "eu-south-2"


def test_weights_scale_each_objective_by_its_largest_value():
    # carbon: south 100, north 10 ; cost: south 1.0, north 1.5
    df = _opts(expected_g=[100.0, 10.0], expected_usd=[1.0, 1.5])
    table, best = choose(df, weights={"carbon": 0.7, "cost": 0.3}, home_region="eu-south-2")
    assert table.loc[best, "region"] == "eu-north-1"
    assert table.set_index("region")["score"].to_dict() == pytest.approx({"eu-north-1": 0.7 * 0.1 + 0.3, "eu-south-2": 0.7 + 0.3 / 1.5})
    _, best = choose(df, weights={"carbon": 0.2, "cost": 0.8}, home_region="eu-south-2")
    assert df.loc[best, "region"] == "eu-south-2"
    with pytest.raises(ConfigError, match="unknown objective"):
        choose(df, weights={"speed": 1.0})


def test_equal_weights_do_not_trade_a_large_carbon_gap_for_a_small_price_gap():
    """Review 10 #17: min-max scaling made a 1.7 % price gap weigh as much as the whole carbon range, so
    0.5/0.5 took 6.13 g over 1.67 g to save 0.0058 USD (the embedded data, 2023-03-01 08:00)."""
    df = pd.DataFrame({
        "region": ["eu-west-3", "eu-north-1", "eu-central-1", "eu-south-2"], "start": pd.Timestamp("2023-03-01T08:00Z"),
        "expected_g": [6.127, 1.672, 27.544, 13.585], "expected_usd": [0.3398, 0.3456, 0.3456, 0.3648],
        "latency_ms": 10.0, "waste_vcpu": 0.0, "waste_memory_gib": 0.0,
    })
    table, best = choose(df, weights={"carbon": 0.5, "cost": 0.5}, home_region="eu-south-2")
    assert table.loc[best, "region"] == "eu-north-1"


def test_resource_objective_uses_waste():
    df = _opts(waste_vcpu=[2.0, 0.5], waste_memory_gib=[8.0, 2.0])
    _, best = choose(df, priorities=["resource"], home_region="eu-south-2")
    assert df.loc[best, "region"] == "eu-north-1"


from hypothesis import given, settings
from hypothesis import strategies as st

_vals = st.floats(min_value=0.01, max_value=1000, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_vals, _vals, st.booleans()), min_size=1, max_size=8), st.floats(min_value=0, max_value=20))
def test_property_chosen_is_feasible_and_within_tolerance(rows, tol):
    n = len(rows)
    df = pd.DataFrame({
        "region": ["eu-south-2"] * n, "start": [T0 + pd.Timedelta(hours=i) for i in range(n)], "instance_type": ["t3.large"] * n,
        "usd_per_hour": [r[1] for r in rows], "expected_g": [r[0] for r in rows], "expected_usd": [r[1] for r in rows],
        "latency_ms": [1.0] * n, "waste_vcpu": [0.0] * n, "waste_memory_gib": [0.0] * n,
        "reason": ["" if r[2] else "type not offered" for r in rows],
    })
    table, best = choose(df, priorities=["carbon", "cost"], tolerance_pct=tol, home_region="eu-south-2")
    feasible = df[df["reason"] == ""]
    if feasible.empty:
        assert best is None
        return
    assert table.loc[best, "feasible"]
    g_best = feasible["expected_g"].min()
    assert table.loc[best, "expected_g"] <= g_best * (1 + tol / 100) + 1e-9
    assert sorted(table["rank"].dropna()) == list(range(1, len(feasible) + 1))
