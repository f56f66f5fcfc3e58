"""``instance_choice: priorities``: each region also offers the fitting types that draw less power than
every cheaper one, and the priorities choose the type as they choose regions and times (review 50b M1,
which the ``max_g_per_run`` rows answered for a cap only). The default, ``cheapest``, is unchanged."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

from care_flows.accounting import instance_watts
from care_flows.errors import ConfigError
from care_flows.planning.decide import CAP_TYPE, PRIORITY_TYPE, RIGHT_SIZED, decide, right_sized_rows
from care_flows.planning.sizing import sized_types
from care_flows.policy import CarePolicy

decide_module = importlib.import_module("care_flows.planning.decide")  # the module: the package exports the function by the same name
IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
FLAT = {"eu-south-2": pd.Series(206.0, index=IDX), "eu-north-1": pd.Series(20.0, index=IDX)}
# 2 vCPU / 8 GiB at the default 0.5 utilisation: t3.xlarge (0.1728 USD/h, 19.3 W in eu-north-1) is right-sized,
# m7i-flex.xlarge (0.2035 USD/h, 13.1 W) draws 32 % less
NEED = dict(home_region="eu-south-2", regions=["eu-north-1"], vcpu=2, memory_gib=8)


def _decide(**policy):
    return decide(CarePolicy(**{**NEED, **policy}), FLAT, IDX[0])


def _types(d, sized_for=None):
    o = d.options if sized_for is None else d.options[d.options["sized_for"] == sized_for]
    return sorted(set(o["instance_type"]))


def test_the_default_offers_only_the_right_sized_type():
    d = _decide()
    assert CarePolicy(**NEED).instance_choice == "cheapest"
    assert set(d.options["sized_for"]) == {RIGHT_SIZED} and _types(d) == ["t3.xlarge"]
    assert d.chosen.instance_type == "t3.xlarge"


def test_carbon_first_takes_the_lower_power_type_and_says_what_it_costs():
    cheap, green = _decide(), _decide(instance_choice="priorities")
    assert _types(green, PRIORITY_TYPE) == ["m7i-flex.xlarge"]
    assert (green.chosen.region, green.chosen.instance_type) == ("eu-north-1", "m7i-flex.xlarge")
    # the baseline stays the right-sized type run now at home, so the type's saving counts as a saving
    assert (green.baseline.region, green.baseline.instance_type) == ("eu-south-2", "t3.xlarge")
    assert green.baseline.expected_g == pytest.approx(cheap.baseline.expected_g)
    assert green.chosen.expected_g == pytest.approx(cheap.chosen.expected_g * 13.1 / 19.3, rel=0.01)
    assert green.savings_pct > cheap.savings_pct and green.chosen.expected_usd == pytest.approx(0.2035)
    (line,) = [w for w in green.warnings if "instead of the right-sized" in w]
    assert line == ("eu-north-1: m7i-flex.xlarge instead of the right-sized t3.xlarge: 32% less power for 0.2035 vs "
                    "0.1728 USD/h (instance_choice: priorities)")


def test_cost_first_keeps_the_cheapest_type_with_the_lower_power_one_ranked_below():
    d = _decide(instance_choice="priorities", priorities=["cost", "carbon"])
    assert d.chosen.instance_type == "t3.xlarge" and not any("instead of" in w for w in d.warnings)
    ranked = d.options.set_index(["region", "instance_type"])["rank"]
    assert ranked[("eu-north-1", "t3.xlarge")].min() < ranked[("eu-north-1", "m7i-flex.xlarge")].min()


def test_within_the_carbon_tolerance_the_tie_break_decides():
    # t3.xlarge emits 47 % more than m7i-flex.xlarge: equal carbon under a 50 % tolerance, where the tie-break
    # decides: the default's "carbon" (the least gCO2eq) keeps the lower-power type, "cost" takes the cheaper one
    assert _decide(instance_choice="priorities", tolerance_pct=40, tie_break=["cost"]).chosen.instance_type == "m7i-flex.xlarge"
    assert _decide(instance_choice="priorities", tolerance_pct=50).chosen.instance_type == "m7i-flex.xlarge"
    assert _decide(instance_choice="priorities", tolerance_pct=50, tie_break=["cost"]).chosen.instance_type == "t3.xlarge"


def test_weights_weigh_the_type_too():
    assert _decide(instance_choice="priorities", weights={"carbon": 1.0}).chosen.instance_type == "m7i-flex.xlarge"
    assert _decide(instance_choice="priorities", weights={"cost": 1.0}).chosen.instance_type == "t3.xlarge"


@pytest.mark.parametrize(("region", "vcpu", "memory_gib"), [("eu-north-1", 2, 8), ("eu-north-1", 0.5, 1), ("eu-south-2", 8, 32),
                                                            ("us-east-1", 3, 12)])
def test_the_offered_types_are_exactly_the_price_power_front(region, vcpu, memory_gib):
    """Brute force over every fitting type: a type is offered iff it draws less than every cheaper one."""
    pol = CarePolicy(home_region=region, regions=[], vcpu=vcpu, memory_gib=memory_gib, instance_choice="priorities")
    fc = {region: pd.Series(100.0, index=IDX)}
    d = decide(pol, fc, IDX[0])
    expected, least = [], float("inf")
    for i, size in enumerate(sized_types(region, vcpu, memory_gib, utilisation=0.5)):
        watts, _ = instance_watts(size.instance_type, size.expected_utilisation, vcpu=size.vcpu, memory_gib=size.memory_gib)
        if watts < least * (1 - 1e-9):
            least = watts
            expected.append(size.instance_type)
    now = d.options[d.options["kind"] == "now"]
    assert list(now.sort_values("expected_usd")["instance_type"]) == expected[: decide_module.MAX_PRIORITY_TYPES + 1]
    kwh = now.sort_values("expected_usd")["kwh"].to_numpy()
    assert (kwh[1:] < kwh[:-1]).all()  # each dearer type draws less
    assert list(right_sized_rows(now)["instance_type"]) == expected[:1]


def test_a_long_front_keeps_its_lowest_power_type(monkeypatch):
    monkeypatch.setattr(decide_module, "MAX_PRIORITY_TYPES", 1)
    d = decide(CarePolicy(home_region="eu-north-1", regions=[], vcpu=0.5, memory_gib=1, instance_choice="priorities"),
               {"eu-north-1": pd.Series(100.0, index=IDX)}, IDX[0])
    front = d.options[d.options["kind"] == "now"].sort_values("expected_usd")
    assert len(front) == 2 and front["kwh"].iloc[-1] == pytest.approx(front["kwh"].min())


def test_the_same_start_is_offered_on_every_type():
    fc = {"eu-south-2": pd.Series([300.0] * 4 + [100.0] * 20, index=IDX)}
    d = decide(CarePolicy(home_region="eu-south-2", regions=[], vcpu=2, memory_gib=8, instance_choice="priorities", deadline_within="12h"),
               fc, IDX[0])
    starts = d.options.groupby("instance_type")["start"].apply(lambda s: sorted(s)).to_dict()
    assert starts["t3.xlarge"] == starts["m7i-flex.xlarge"] == [IDX[0], IDX[4]]
    assert (d.chosen.instance_type, d.chosen.start) == ("m7i-flex.xlarge", IDX[4])
    assert "instead of the right-sized t3.xlarge: 32% less power" in " ".join(d.warnings)


@pytest.mark.parametrize("why", ["pinned", "cap_types", "target"])
def test_no_other_type_where_the_type_is_not_ours_to_choose(why):
    policy = {**NEED, "instance_choice": "priorities"}
    kwargs = {}
    if why == "pinned":
        policy["instance_type"] = "m5.xlarge"
    elif why == "cap_types":
        kwargs["cap_types"] = False
    else:
        policy["targets"] = {"eu-north-1": {"job_variables": {"instance_type": "t3.xlarge"}}}
    d = decide(CarePolicy(**policy), FLAT, IDX[0], **kwargs)
    if why == "target":
        assert set(d.options[d.options["sized_for"] == PRIORITY_TYPE]["region"]) == {"eu-south-2"}  # home, without a target, still does
        assert set(d.options[d.options["region"] == "eu-north-1"]["sized_for"]) == {RIGHT_SIZED}
    else:
        assert set(d.options["sized_for"]) == {RIGHT_SIZED}
        assert d.chosen.instance_type == ("m5.xlarge" if why == "pinned" else "t3.xlarge")


def test_max_g_per_run_is_met_by_the_front_without_cap_rows():
    # 10 minutes at 300 g/kWh, 2 vCPU / 4 GiB in eu-south-2: t3.xlarge 1.10 g, c7i-flex.xlarge 0.567 g
    fc = {"eu-south-2": pd.Series(300.0, index=IDX)}
    pol = dict(home_region="eu-south-2", regions=[], vcpu=2, memory_gib=4, expected_duration="10m", deadline_within="1h", max_g_per_run=0.8)
    capped = decide(CarePolicy(**pol), fc, IDX[0])
    front = decide(CarePolicy(**pol, instance_choice="priorities"), fc, IDX[0])
    assert capped.chosen.instance_type == "c7i-flex.xlarge" and CAP_TYPE in set(capped.options["sized_for"])
    assert CAP_TYPE not in set(front.options["sized_for"]) and front.chosen.expected_g <= 0.8
    assert front.chosen.expected_g <= capped.chosen.expected_g + 1e-12  # carbon first: the lowest-power type that fits
    # cost first, the cap is why a dearer type runs, and the warning says so (review 53a L2)
    cost_first = decide(CarePolicy(**pol, instance_choice="priorities", priorities=["cost", "carbon"]), fc, IDX[0])
    assert cost_first.chosen.instance_type != "t3.xlarge" and cost_first.chosen.expected_g <= 0.8
    (line,) = [w for w in cost_first.warnings if "instead of the right-sized t3.xlarge" in w]
    assert "t3.xlarge emits 1.1 gCO2eq at its best start there, over max_g_per_run 0.8 (instance_choice: priorities)" in line
    (line,) = [w for w in front.warnings if "instead of the right-sized" in w]
    assert "over max_g_per_run" in line
    lax = decide(CarePolicy(**{**pol, "max_g_per_run": 5.0}, instance_choice="priorities"), fc, IDX[0])
    assert not any("max_g_per_run" in w for w in lax.warnings)  # a cap the right-sized type meets is not the reason


def test_a_bad_value_is_one_line_naming_it():
    with pytest.raises(ConfigError) as err:
        CarePolicy(**NEED, instance_choice="greenest")
    assert "instance_choice" in str(err.value) and "'cheapest' or 'priorities'" in str(err.value) and "greenest" in str(err.value)
    assert "\n" not in str(err.value)


def test_waiting_is_weighed_against_starting_now_on_the_same_type():
    """Review 53a H1: the gain of waiting was measured against the region's first run-now row (the
    right-sized type), so a lower-power type's own 32 % counted as the gain of waiting 8 h for 1 %."""
    fc = pd.Series(200.0, index=IDX[:12])
    fc.iloc[8:] = 198.0  # 8 h later, 1 % greener
    pol = dict(home_region="eu-north-1", regions=[], vcpu=2, memory_gib=8, deadline_within="12h", min_savings_pct=10)
    for choice, kind in (("cheapest", "t3.xlarge"), ("priorities", "m7i-flex.xlarge")):
        d = decide(CarePolicy(**pol, instance_choice=choice), {"eu-north-1": fc}, IDX[0])
        assert (d.chosen.instance_type, d.chosen.start) == (kind, IDX[0]), (choice, d.warnings)
    assert "(eu-north-1 at 2023-06-01T08:00:00+00:00 on m7i-flex.xlarge) waits for 1.00% less carbon" in " ".join(d.warnings)


def test_cost_first_under_a_cap_still_waits_on_the_cheaper_type():
    """Review 53a H1: t3.xlarge breaks max_g_per_run now but meets it at 06:00; the wait was compared
    with m7i-flex.xlarge now (0 % gain) and dropped, so cost first paid 18 % more than with cheapest."""
    fc = pd.Series(20.0, index=IDX[:12])
    fc.iloc[6:] = 13.6
    pol = dict(home_region="eu-north-1", regions=[], vcpu=2, memory_gib=8, deadline_within="12h", max_g_per_run=0.3,
               priorities=["cost", "carbon"])
    for choice in ("cheapest", "priorities"):
        d = decide(CarePolicy(**pol, instance_choice=choice), {"eu-north-1": fc}, IDX[0])
        assert (d.chosen.instance_type, d.chosen.start, d.chosen.expected_usd) == ("t3.xlarge", IDX[6], pytest.approx(0.1728)), choice


def test_the_front_is_walked_once_per_need_and_not_shared_between_needs(monkeypatch):
    """A controller plans the same flow again and again: the walk of every fitting type is memoised per
    price source and need (review 53a L1), and a different need or filter gets its own front."""
    walked = []
    real = decide_module.sized_types
    monkeypatch.setattr(decide_module, "sized_types", lambda region, *a, **k: walked.append(region) or real(region, *a, **k))
    prices = decide_module.EmbeddedPrices()  # a fresh source: a fresh memo
    fc = {"eu-north-1": pd.Series(100.0, index=IDX)}

    def offered(**policy):
        pol = CarePolicy(**{"home_region": "eu-north-1", "regions": [], "vcpu": 2, "memory_gib": 8,
                            "instance_choice": "priorities", **policy})
        return _types(decide(pol, fc, IDX[0], prices=prices), PRIORITY_TYPE)

    first = offered()
    assert offered() == first and walked == ["eu-north-1"]
    assert offered(vcpu=8, memory_gib=32) != first and len(walked) == 2
    assert "m7i-flex.xlarge" in first and "m7i-flex.xlarge" not in offered(exclude_families=["m7i-flex"])
    assert len(walked) == 3
