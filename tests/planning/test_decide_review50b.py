"""Review 50b: a region whose forecast ends before its run would is not chosen on the covered part's
mean (M2); a real instance family one region lacks is not called a typo (M3); region names with
spaces are the regions they name (L1); a NaN or infinite need is refused as such (L2)."""

from __future__ import annotations

import pandas as pd
import pytest

from care_flows.errors import ConfigError, PlanningError
from care_flows.planning.decide import decide
from care_flows.planning.sizing import right_size
from care_flows.policy import CarePolicy
from care_flows.pricing import EmbeddedPrices

IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
NOW = IDX[0]


def test_a_region_whose_forecast_ends_before_its_run_does_not_win_on_the_hour_it_knows() -> None:
    # was: eu-north-1 chosen, "90 % saved", its 10 g/kWh of one hour standing for three
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], instance_type="t3.large", expected_duration="3h", deadline_within="6h")
    fc = {"eu-south-2": pd.Series(100.0, index=IDX), "eu-north-1": pd.Series(10.0, index=IDX[:1])}
    d = decide(pol, fc, NOW)
    assert d.chosen.region == "eu-south-2" and d.savings_pct == 0.0
    row = d.options[d.options["region"] == "eu-north-1"].iloc[0]
    assert not row["feasible"]
    assert "its forecast ends at 2023-06-01T01:00:00+00:00, 2h before a run started now would end" in row["reason"]


def test_a_region_whose_forecast_covers_the_run_still_wins_and_the_home_baseline_keeps_a_short_forecast() -> None:
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], instance_type="t3.large", expected_duration="3h", deadline_within="6h")
    fc = {"eu-south-2": pd.Series(100.0, index=IDX[:2]), "eu-north-1": pd.Series(10.0, index=IDX[:3])}
    d = decide(pol, fc, NOW)
    assert d.chosen.region == "eu-north-1" and d.savings_pct == pytest.approx(90.0)
    assert any("eu-south-2: forecast is shorter than the job" in w for w in d.warnings)


def test_a_family_one_region_does_not_offer_is_said_so_not_called_unknown() -> None:
    prices = EmbeddedPrices()
    assert not [t for t in prices.catalog("eu-south-2")["instance_type"] if t.startswith("m6i.")]  # the premise
    with pytest.raises(PlanningError) as err:
        right_size("eu-south-2", 2, 4, prices=prices, families=["m6i"])
    assert "no m6i type is offered in eu-south-2" in str(err.value) and "unknown" not in str(err.value)
    d = decide(CarePolicy(home_region="eu-north-1", regions=["eu-south-2"], instance_families=["m6i"]),
               {r: pd.Series(100.0, index=IDX) for r in ("eu-north-1", "eu-south-2")}, NOW)
    row = d.options[d.options["region"] == "eu-south-2"].iloc[0]
    assert "no m6i type is offered in eu-south-2" in row["reason"] and "no price data" not in row["reason"]
    assert not [w for w in d.warnings if "unknown instance family" in w]
    with pytest.raises(ConfigError, match=r"unknown instance family 'm6' in eu-south-2"):  # a typo is still one
        right_size("eu-south-2", 2, 4, prices=prices, families=["m6"])


def test_region_names_with_spaces_are_the_regions_they_name() -> None:
    pol = CarePolicy(home_region=" eu-south-2", regions=["eu-north-1 "], targets={"eu-north-1 ": {"work_pool": "se"}})
    assert pol.home_region == "eu-south-2" and "eu-north-1" in pol.regions and list(pol.targets) == ["eu-north-1"]
    d = decide(pol, {"eu-south-2": pd.Series(200.0, index=IDX), "eu-north-1": pd.Series(20.0, index=IDX)}, NOW)
    assert d.chosen.region == "eu-north-1"
    assert (d.options["reason"] != "no price data").all()


@pytest.mark.parametrize("need", [{"vcpu": float("nan")}, {"memory_gib": float("inf")}])
def test_a_nan_or_infinite_need_is_refused_as_such(need) -> None:
    with pytest.raises(ConfigError, match="must be positive finite numbers"):
        decide(CarePolicy(home_region="eu-south-2"), {"eu-south-2": pd.Series(100.0, index=IDX)}, NOW, **need)
