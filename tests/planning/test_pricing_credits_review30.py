"""Review 30 #6, #8, #10: CPU-credit surcharges of burstable types, pinned types smaller than the
need, and no duplicate "planned" option at a sub-microsecond ``now``.

Prices are the embedded snapshot (eu-north-1: t3.large 0.0864, m7i-flex.large 0.10175,
t3.xlarge 0.1728, m7i-flex.xlarge 0.2035; eu-south-2: t3.large 0.0912, t3.micro 0.0114).
"""

import json

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.planning.decide import decide
from care_flows.planning.sizing import UsageSummary, fitting_types, right_size
from care_flows.policy import CarePolicy
from care_flows.pricing import EmbeddedPrices, cpu_credit_usd_per_hour

IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
NOW = IDX[0]


def _flat(**values):
    return {r: pd.Series(float(v), index=IDX) for r, v in values.items()}


def _policy(**kw):
    base = dict(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="6h", expected_duration="1h")
    base.update(kw)
    return CarePolicy(**base)


# --- #6 the surcharge itself ---------------------------------------------------------------------

def test_credit_surcharge_is_the_use_above_the_per_vcpu_baseline():
    from care_flows.pricing import cpu_credit_usd_per_hour as credit

    assert credit("t3.large", 2, 0.5) == pytest.approx((0.5 - 0.3) * 2 * 0.05)  # 0.02
    assert credit("t3.xlarge", 4, 0.8) == pytest.approx((0.8 - 0.4) * 4 * 0.05)  # 0.08
    assert credit("t3a.medium", 2, 1.0) == pytest.approx(0.8 * 2 * 0.05)
    assert credit("t4g.large", 2, 0.5) == pytest.approx(0.2 * 2 * 0.04)  # Graviton credits are cheaper
    assert credit("t2.xlarge", 4, 0.5) == pytest.approx((0.5 - 0.225) * 4 * 0.05)  # t2's own baselines
    assert credit("t3.micro", 2, 1.7) == pytest.approx(0.9 * 2 * 0.05)  # utilisation is capped at 1
    assert credit("t3.large", 2, 0.3) == 0.0 and credit("t3.nano", 2, 0.0) == 0.0  # at / under the baseline
    assert credit("m5.large", 2, 1.0) == 0.0 and credit("m7i-flex.large", 2, 1.0) == 0.0  # not burstable


# --- #6 right-sizing ranks by list price + surcharge -----------------------------------------------

def test_right_size_ranks_burstable_types_by_their_effective_price():
    p = EmbeddedPrices()
    # unknown utilisation: list price only, as before
    assert right_size("eu-north-1", 1.5, 6, prices=p).instance_type == "t3.large"
    # at its 30 % baseline the t3.large costs its list price
    at_base = right_size("eu-north-1", 1.5, 6, prices=p, utilisation=0.3)
    assert (at_base.instance_type, at_base.credit_usd_per_hour) == ("t3.large", 0.0)
    # utilisation is a fraction of the 1.5 vCPU need: at 0.5 the job keeps 0.75 vCPU busy, 37.5 % of
    # the t3.large: 0.0864 + (0.375 - 0.3) x 2 x 0.05 = 0.0939 < 0.10175
    c = right_size("eu-north-1", 1.5, 6, prices=p, utilisation=0.5)
    assert (c.instance_type, c.expected_utilisation) == ("t3.large", 0.375)
    assert c.credit_usd_per_hour == pytest.approx(0.0075)
    # at 1.0 (1.5 vCPU busy, 75 %): 0.0864 + 0.045 = 0.1314 > 0.10175
    c = right_size("eu-north-1", 1.5, 6, prices=p, utilisation=1.0)
    assert (c.instance_type, c.usd_per_hour, c.credit_usd_per_hour) == ("m7i-flex.large", 0.10175, 0.0)
    # 2 vCPU need on 4-vCPU types: at 0.5 a mean of 1 vCPU is 25 % of a t3.xlarge, under its 40 % baseline;
    # even at 1.0 (50 %) it wins: 0.1728 + 0.02 < 0.2035
    x = right_size("eu-north-1", 2, 8, prices=p, utilisation=0.5)
    assert (x.instance_type, x.usd_per_hour, x.credit_usd_per_hour, x.expected_utilisation) == ("t3.xlarge", 0.1728, 0.0, 0.25)
    x = right_size("eu-north-1", 2, 8, prices=p, utilisation=1.0)
    assert x.instance_type == "t3.xlarge" and x.credit_usd_per_hour == pytest.approx(0.02)


def test_cpu_utilisation_is_a_fraction_of_the_need_so_the_assumed_mean_never_exceeds_the_declared_peak():
    """Review 33 #1: a 0.5 vCPU job at 50 % keeps 0.25 vCPU busy on any type, not 50 % of each type's vCPUs
    (which charged a t3.nano credits for 1 busy vCPU, twice the declared peak)."""
    p = EmbeddedPrices()
    nano = right_size("eu-north-1", 0.5, 0.3, prices=p, utilisation=0.5)
    assert nano.instance_type == "t3.nano"
    assert nano.expected_utilisation * nano.vcpu == pytest.approx(0.25)
    assert nano.credit_usd_per_hour == pytest.approx((0.125 - 0.05) * 2 * 0.05)  # 0.0075, not 0.045
    for need, u in ((0.5, 0.5), (1.5, 0.8), (3, 0.4), (6, 1.0)):
        for _, row in fitting_types(p.catalog("eu-north-1"), need, 1, utilisation=u).iterrows():
            busy = min(1.0, u * need / row["vcpu"])
            assert row["credit_usd_per_hour"] == pytest.approx(cpu_credit_usd_per_hour(row["instance_type"], row["vcpu"], busy))
    # decide: energy and credits follow the same mean on every option, home and away
    d = decide(_policy(vcpu=0.5, memory_gib=0.3), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert d.chosen.instance_type == "t3.nano" and d.chosen.credit_usd_per_hour == pytest.approx(0.0075)
    assert d.chosen.expected_usd == pytest.approx(0.0054 + 0.0075)
    from care_flows.accounting import energy_kwh, instance_watts

    assert d.chosen.kwh == pytest.approx(energy_kwh(instance_watts("t3.nano", 0.125)[0], 1.0))
    # a pinned type: the same mean over its vCPUs (2 vCPU need at 50 % on a 4-vCPU t3.xlarge = 25 %)
    pinned = decide(_policy(instance_type="t3.xlarge", vcpu=2, memory_gib=8), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert pinned.chosen.credit_usd_per_hour == 0.0
    assert pinned.chosen.kwh == pytest.approx(energy_kwh(instance_watts("t3.xlarge", 0.25)[0], 1.0))


def test_right_size_uses_the_usage_means_utilisation_of_each_type():
    p = EmbeddedPrices()
    busy = right_size("eu-north-1", prices=p, usage=UsageSummary(peak_vcpu=1.5, peak_memory_gib=6, mean_vcpu=1.0))
    assert busy.instance_type == "m7i-flex.large"  # 1 of 2 vCPU = 50 % on a t3.large
    light = right_size("eu-north-1", prices=p, usage=UsageSummary(peak_vcpu=1.5, peak_memory_gib=6, mean_vcpu=0.5),
                       utilisation=0.9)  # the usage mean wins over a given utilisation
    assert (light.instance_type, light.credit_usd_per_hour) == ("t3.large", 0.0)  # 25 % < 30 % baseline


# --- #6 decide: expected USD includes the surcharge, usd_per_hour stays the list price ---------------

def test_decide_expected_usd_includes_the_credit_surcharge_and_keeps_the_list_price():
    # 2 vCPU busy all the time = 50 % of a t3.xlarge, 10 points above its baseline: 0.1 x 4 x 0.05 = 0.02 USD/h
    d = decide(_policy(vcpu=2, memory_gib=8, cpu_utilisation=1.0), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert (d.chosen.region, d.chosen.instance_type) == ("eu-north-1", "t3.xlarge")
    assert d.chosen.usd_per_hour == 0.1728 and d.chosen.credit_usd_per_hour == pytest.approx(0.02)
    assert d.chosen.expected_usd == pytest.approx(0.1928)  # not 0.1728 (review 30: -11.6 %)
    doc = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert doc["chosen"]["credit_usd_per_hour"] == pytest.approx(0.02) and doc["chosen"]["usd_per_hour"] == 0.1728
    assert all("credit_usd_per_hour" in o for o in doc["options"])


def test_a_pinned_burstable_type_is_charged_its_credits_too():
    d = decide(_policy(instance_type="t3.large"), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert (d.chosen.instance_type, d.chosen.usd_per_hour) == ("t3.large", 0.0864)
    assert d.chosen.expected_usd == pytest.approx(0.0864 + 0.02)
    assert d.baseline.expected_usd == pytest.approx(0.0912 + 0.02)
    assert d.savings_usd == pytest.approx(0.0912 - 0.0864)  # the same surcharge on both sides
    low = decide(_policy(instance_type="t3.large", cpu_utilisation=0.2), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert low.chosen.expected_usd == pytest.approx(0.0864) and low.chosen.credit_usd_per_hour == 0.0


# --- #8 a pinned type smaller than the need --------------------------------------------------------

REASON = "t3.micro (2 vCPU, 1 GiB) < need 8 vCPU / 32 GiB"


def test_a_pinned_type_smaller_than_the_need_is_infeasible_everywhere():
    d = decide(_policy(instance_type="t3.micro", vcpu=8, memory_gib=32), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert not d.options["feasible"].any()
    assert set(d.options["reason"]) == {REASON}
    assert d.is_now_here and d.chosen == d.baseline  # the existing "nothing feasible" path: now, at home
    (warning,) = [w for w in d.warnings if "no feasible option" in w]
    assert REASON in warning and "\n" not in warning
    # only memory short: still infeasible, the same shape of reason
    m = decide(_policy(instance_type="t3.large", vcpu=2, memory_gib=12, regions=[]), _flat(**{"eu-south-2": 206}), NOW)
    assert set(m.options["reason"]) == {"t3.large (2 vCPU, 8 GiB) < need 2 vCPU / 12 GiB"}
    # a pinned type that is big enough stays feasible (no headroom is asked of a pinned type)
    ok = decide(_policy(instance_type="t3.large", vcpu=2, memory_gib=8), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert ok.options["feasible"].all() and ok.chosen.region == "eu-north-1"


def test_care_regions_says_the_pinned_type_is_too_small(capsys):
    code = main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T12:00:00Z", "--duration", "1h",
                 "--instance-type", "t3.micro", "--vcpu", "8", "--memory-gib", "32", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert [o["reason"] for o in doc["options"]] == [REASON, REASON]
    assert not any(o["feasible"] for o in doc["options"]) and doc["is_now_here"]
    assert any(REASON in w and "no feasible option" in w for w in doc["warnings"])


def test_a_care_flow_plan_with_a_too_small_pinned_type_runs_now_at_home_with_a_one_line_warning():
    from care_flows.orchestration.plan import plan_run

    pol = _policy(instance_type="t3.micro", vcpu=8, memory_gib=32)
    p = plan_run(pol, NOW, forecasts=_flat(**{"eu-south-2": 206, "eu-north-1": 20}), planner="decide")
    assert p.region == "eu-south-2" and p.instance_type == "t3.micro"
    assert any(REASON in w and "\n" not in w for w in p.warnings)


# --- #10 a sub-microsecond now ---------------------------------------------------------------------

def test_a_nanosecond_now_gives_no_planned_option_identical_to_now():
    now = pd.Timestamp("2023-06-01T08:20:00.123456789Z")
    d = decide(CarePolicy(home_region="eu-south-2", regions=[]), {"eu-south-2": pd.Series(100.0, index=IDX)}, now)
    assert list(d.options["kind"]) == ["now"]
    assert d.chosen.kind == "now" and d.is_now_here


def test_an_hourly_budget_counts_the_credit_surcharge_and_regions_json_shows_it(capsys):
    """A t3.large at 50 % CPU (a 2 vCPU need at the default 0.5) costs 0.0864 + 0.02 USD/h: a 0.10 USD/h budget must not pass it on its list price."""
    from care_flows.planning.spatial import apply_constraints

    df = pd.DataFrame({"region": ["eu-north-1"], "instance_type": ["t3.large"], "usd_per_hour": [0.0864],
                       "credit_usd_per_hour": [0.02], "expected_g": [1.0], "expected_usd": [0.1064], "latency_ms": [0.0], "reason": [""]})
    out = apply_constraints(df, budget_usd_per_hour=0.10)
    assert not out.loc[0, "feasible"] and out.loc[0, "reason"] == "price 0.1064 USD/h > budget 0.1"
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h",
                 "--vcpu", "2", "--memory-gib", "8", "--instance-type", "t3.large", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all("credit_usd_per_hour" in o for o in doc["options"])
    assert any(o["credit_usd_per_hour"] and o["credit_usd_per_hour"] > 0 for o in doc["options"])  # the default 50 % CPU


def test_care_regions_cpu_utilisation_option_sets_the_mean_the_credits_are_priced_at(capsys):
    args = ["regions", "--regions", "eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h",
            "--vcpu", "0.5", "--memory-gib", "0.3", "--json"]
    credits = {}
    for u in ("0.1", "1"):
        assert main([*args, "--cpu-utilisation", u]) == 0
        (opt,) = json.loads(capsys.readouterr().out)["options"]
        credits[u] = (opt["instance_type"], round(opt["credit_usd_per_hour"], 6))
    assert credits == {"0.1": ("t3.nano", 0.0), "1": ("t3.nano", 0.02)}  # 0.05 vCPU = the 5 % baseline; 0.5 = 25 %
    assert main([*args, "--cpu-utilisation", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--cpu-utilisation 1.5 must be between 0 and 1" in err and err.count("\n") == 1  # review 44a L3: names the fraction
