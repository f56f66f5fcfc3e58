"""Accounting against hand-computed values."""

import math

import numpy as np
import pytest

from care_flows.accounting import (
    PUE_AWS, abatement_usd_per_tco2, compare_to_baseline, embodied_g_per_hour, footprint, instance_watts,
)
from care_flows.data import power_table
from care_flows.errors import ConfigError


def test_m5_large_50pct_1h_spain_by_hand():
    # power table: m5.large 4.4 / 7.0 / 14.1 / 20.0 W at 0/10/50/100 %
    assert tuple(power_table().loc["m5.large", ["watts_idle", "watts_10", "watts_50", "watts_100"]]) == (4.4, 7.0, 14.1, 20.0)
    f = footprint("m5.large", hours=1, g_per_kwh=206, usd_per_hour=0.107, utilisation=0.5, region="eu-south-2")
    kwh = 14.1 * 1 * 1.135 / 1000  # 0.0160035
    assert PUE_AWS == 1.135
    assert f.kwh == pytest.approx(kwh)
    assert f.g_co2eq == pytest.approx(kwh * 206)  # 3.2967 g
    assert f.g_co2eq == pytest.approx(3.29672, abs=1e-5)
    assert f.usd == pytest.approx(0.107)
    assert f.power_model == "teads" and not f.includes_embodied


def test_interpolation_and_vector():
    w, _ = instance_watts("m5.large", np.array([0.0, 0.05, 0.3, 0.75, 1.0]))
    assert w == pytest.approx([4.4, 5.7, 10.55, 17.05, 20.0])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        instance_watts("m5.large", 1.5)


def test_fallback_model_for_unknown_type():
    w, model = instance_watts("zz9.large", 0.0, vcpu=4, memory_gib=16)
    assert model == "ccf-fallback"
    from care_flows.data import ccf_use_coefficients

    lo = ccf_use_coefficients()["min_watts_per_vcpu"].mean()
    assert w == pytest.approx(4 * lo + 16 * 0.392)
    with pytest.raises(ConfigError, match="vcpu and memory_gib"):
        instance_watts("zz9.large", 0.5)


def test_abatement_sign_and_undefined():
    base = footprint("t3.large", hours=1, g_per_kwh=206, usd_per_hour=0.0912)
    green_cheap = footprint("t3.large", hours=1, g_per_kwh=20, usd_per_hour=0.0864)
    c = compare_to_baseline(green_cheap, base)
    assert c.carbon_ratio == pytest.approx(10.3)
    assert c.savings_usd == pytest.approx(0.0048)
    assert c.abatement_usd_per_tco2 < 0  # greener and cheaper
    green_dear = footprint("t3.large", hours=1, g_per_kwh=20, usd_per_hour=0.1)
    avoided_t = (base.g_co2eq - green_dear.g_co2eq) / 1e6
    assert compare_to_baseline(green_dear, base).abatement_usd_per_tco2 == pytest.approx((0.1 - 0.0912) / avoided_t)
    same = compare_to_baseline(base, base)
    assert same.abatement_usd_per_tco2 is None and same.savings_pct == 0 and same.notes
    assert abatement_usd_per_tco2(1.0, -3.0) is None and abatement_usd_per_tco2(1.0, math.nan) is None


def test_embodied_reported_separately():
    f = footprint("m5.large", hours=2, g_per_kwh=100, usd_per_hour=0.1)
    assert f.embodied_g == pytest.approx(2 * embodied_g_per_hour("m5.large")) and f.embodied_g > 0
    g = footprint("m5.large", hours=2, g_per_kwh=100, usd_per_hour=0.1, include_embodied=True)
    assert g.g_co2eq == pytest.approx(f.g_co2eq + f.embodied_g)


def test_given_energy_and_bad_input():
    f = footprint("t3.large", hours=1, g_per_kwh=206, usd_per_hour=0.0912, kwh=0.01)
    assert f.g_co2eq == pytest.approx(2.06) and f.power_model == "given"
    with pytest.raises(ConfigError):
        footprint("t3.large", hours=-1, g_per_kwh=206, usd_per_hour=0.1)
    with pytest.raises(ConfigError):
        footprint("t3.large", hours=1, g_per_kwh=-1, usd_per_hour=0.1)
