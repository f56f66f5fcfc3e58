"""``max_g_per_run`` weighs instance types too (review 50b M1): a region whose cheapest type breaks the
cap at every start also offers the cheapest fitting type that meets it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from care_flows.cli import main

from care_flows.accounting import energy_kwh, instance_watts
from care_flows.planning import decide, right_size
from care_flows.planning.sizing import sized_types
from care_flows.policy import CarePolicy

IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
# 4 dirty hours, then green: the best start is 04:00 at 50 g/kWh
FORECASTS = {"eu-south-2": pd.Series([200.0] * 4 + [50.0] * 20, index=IDX), "eu-north-1": pd.Series(20.0, index=IDX)}


def _policy(**extra) -> CarePolicy:
    base = dict(home_region="eu-south-2", regions=[], deadline_within="8h", vcpu=2, memory_gib=4, expected_duration="1h")
    return CarePolicy(**{**base, **extra})


def _grams(instance_type: str, g_per_kwh: float, utilisation: float = 0.5) -> float:
    size = next(s for s in sized_types("eu-south-2", 2, 4, utilisation=utilisation) if s.instance_type == instance_type)
    watts, _ = instance_watts(instance_type, size.expected_utilisation, vcpu=size.vcpu, memory_gib=size.memory_gib)
    return float(energy_kwh(watts, 1.0)) * g_per_kwh


def test_a_cap_only_a_dearer_type_meets_runs_on_the_cheapest_such_type_not_now_over_the_cap():
    d = decide(_policy(max_g_per_run=1.0), FORECASTS, IDX[0])
    assert d.chosen.instance_type == "c7i-flex.xlarge" and d.chosen.start == IDX[4]
    assert d.chosen.expected_g <= 1.0 and d.chosen.expected_g == pytest.approx(_grams("c7i-flex.xlarge", 50.0))
    assert not any("no feasible option" in w for w in d.warnings), d.warnings
    # the cheapest type breaks the cap even at 04:00; every type between it and c7i-flex.xlarge too
    cheapest = d.options[d.options["sized_for"] == "cheapest"]
    assert set(cheapest["instance_type"]) == {"t3.xlarge"} and not cheapest["feasible"].any()
    order = [s.instance_type for s in sized_types("eu-south-2", 2, 4, utilisation=0.5)]
    assert all(_grams(t, 50.0) > 1.0 for t in order[: order.index("c7i-flex.xlarge")])
    # the baseline is still the right-sized type run now at home, and the saving is against it
    assert (d.baseline.instance_type, d.baseline.start) == ("t3.xlarge", IDX[0])
    assert d.savings_g == pytest.approx(d.baseline.expected_g - d.chosen.expected_g)
    # why a dearer type: the options say which rows are there for the cap, and a note names both types (review 51a M2)
    assert {o["sized_for"] for o in d.to_dict()["options"]} == {"cheapest", "max_g_per_run"}
    assert ("eu-south-2: c7i-flex.xlarge instead of the right-sized t3.xlarge (0.1915 vs 0.1824 USD/h): t3.xlarge emits 1.1 gCO2eq "
            "at its best start there, over max_g_per_run 1") in d.warnings


def test_care_regions_marks_the_cap_type_in_its_table_and_json(capsys):
    args = ["regions", "--regions", "eu-south-2", "--at", "2023-06-01T08:00:00Z", "--within", "8h", "--duration", "1h",
            "--vcpu", "2", "--memory-gib", "4", "--max-g-per-run", "3"]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chosen"]["instance_type"] == "c7i-flex.xlarge"
    assert {(o["instance_type"], o["sized_for"]) for o in doc["options"]} == {("c7i-flex.xlarge", "max_g_per_run"), ("t3.xlarge", "cheapest")}
    assert main(args) == 0
    out = capsys.readouterr()
    assert "c7i-flex.xlarge (cap)" in out.out and "instead of the right-sized t3.xlarge" in out.err


def test_without_a_cap_or_when_the_cheapest_type_meets_it_only_the_cheapest_type_is_offered():
    for cap in (None, 1.2):  # t3.xlarge at 04:00: 1.10 g
        d = decide(_policy(max_g_per_run=cap), FORECASTS, IDX[0])
        assert set(d.options["instance_type"]) == {"t3.xlarge"} and set(d.options["sized_for"]) == {"cheapest"}
        assert (d.chosen.instance_type, d.chosen.start) == ("t3.xlarge", IDX[4])


def test_a_cap_no_type_meets_still_runs_now_at_home_on_the_cheapest_type_with_the_warning():
    d = decide(_policy(max_g_per_run=0.01), FORECASTS, IDX[0])
    assert (d.chosen.instance_type, d.chosen.start) == ("t3.xlarge", IDX[0])
    assert any("no feasible option" in w for w in d.warnings)
    # a cap type that breaks the budget: its rows name the type in the warning (review 51a L1)
    d = decide(_policy(max_g_per_run=1.0, budget_usd_per_hour=0.19), FORECASTS, IDX[0])
    (line,) = [w for w in d.warnings if "no feasible option" in w]
    assert "eu-south-2@2023-06-01T04:00:00+00:00 on c7i-flex.xlarge: price 0.1915 USD/h > budget 0.19" in line
    assert "eu-south-2@2023-06-01T04:00:00+00:00: carbon 1.10 g/run > max 1" in line


def test_a_pinned_type_is_never_swapped_for_the_cap():
    d = decide(_policy(max_g_per_run=0.5, instance_type="t3.xlarge"), FORECASTS, IDX[0])
    assert set(d.options["instance_type"]) == {"t3.xlarge"}
    assert any("no feasible option" in w for w in d.warnings)


def test_another_region_under_the_cap_still_wins_on_the_priorities():
    # eu-north-1 at 20 g/kWh meets the cap with its own cheapest type, now: carbon first picks it over waiting at home
    d = decide(_policy(max_g_per_run=1.0, regions=["eu-north-1"]), FORECASTS, IDX[0])
    assert d.chosen.region == "eu-north-1" and d.chosen.expected_g <= 1.0
    assert d.chosen.instance_type == right_size("eu-north-1", 2, 4, utilisation=0.5).instance_type


def test_sized_types_ranks_as_right_size_does():
    for region in ("eu-south-2", "eu-north-1", "us-east-1"):
        ranked = list(sized_types(region, 3, 12, utilisation=0.7))
        assert ranked[0] == right_size(region, 3, 12, utilisation=0.7)
        price = [s.usd_per_hour + s.credit_usd_per_hour for s in ranked]
        assert price == sorted(price) and all(s.vcpu >= 3.6 and s.memory_gib >= 14.4 for s in ranked)
