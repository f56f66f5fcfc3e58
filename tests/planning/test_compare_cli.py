"""`care compare`: reproduces the reference study's table (10.3x carbon, study prices)."""

import json

import pytest

from care_flows.cli import main

BASE = ["compare", "--regions", "eu-south-2,eu-north-1", "--hours", "1"]


def _doc(capsys, *extra):
    code = main([*BASE, *extra, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_study_inputs_t3_large(capsys):
    doc = _doc(capsys, "--instance-type", "t3.large", "--intensity", "ES=206,SE=20")
    es, se = doc["rows"]
    assert (es["usd_per_hour"], se["usd_per_hour"]) == (0.0912, 0.0864)
    assert (es["g_per_kwh"], se["g_per_kwh"]) == (206.0, 20.0)
    v = doc["versus"][0]
    assert v["carbon_ratio"] == 10.3
    assert v["cost_ratio"] == pytest.approx(0.0912 / 0.0864, abs=1e-4)
    assert es["g_co2eq"] == pytest.approx(14.1 * 1.135 / 1000 * 206)  # t3.large 50%: 14.1 W
    avoided_t = (es["g_co2eq"] - se["g_co2eq"]) / 1e6
    assert v["abatement_usd_per_tco2"] == pytest.approx((0.0864 - 0.0912) / avoided_t) and v["abatement_usd_per_tco2"] < 0


def test_t3_medium_prices_and_default_intensity(capsys):
    doc = _doc(capsys, "--instance-type", "t3.medium")
    es, se = doc["rows"]
    assert (es["usd_per_hour"], se["usd_per_hour"]) == (0.0456, 0.0432)
    assert round(es["g_per_kwh"]) == 154 and round(se["g_per_kwh"]) == 24  # 2023 life-cycle means
    assert "2023 annual mean life-cycle" in es["intensity_source"]


def test_energy_override_and_text(capsys):
    doc = _doc(capsys, "--instance-type", "t3.large", "--intensity", "ES=206,SE=20", "--energy-wh", "10")
    assert doc["rows"][0]["g_co2eq"] == pytest.approx(2.06) and doc["versus"][0]["carbon_ratio"] == 10.3
    assert main([*BASE, "--instance-type", "t3.large", "--intensity", "eu-south-2=206,SE=20"]) == 0
    assert "carbon x10.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--instance-type", "t3.large", "--intensity", "ES=206,SE"], "ZONE=g_per_kwh"),
        (["--instance-type", "t3.large", "--intensity", "ES=abc"], "ZONE=g_per_kwh"),
        (["--instance-type", "t3.large", "--intensity", "ES=206,FR=50"], "FR match none"),
        (["--instance-type", "t3.large", "--hours", "-1"], "--hours"),
        (["--instance-type", "t3.lrge"], "t3.lrge"),
    ],
)
def test_bad_input(capsys, extra, match):
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err


def test_unknown_region(capsys):
    assert main(["compare", "--regions", "eu-south-2,mars-1", "--instance-type", "t3.large"]) == 2
    assert "unknown region 'mars-1'" in capsys.readouterr().err


def test_an_energy_figure_that_would_overflow_is_a_usage_error_and_a_tiny_abatement_prints_as_0(capsys):
    """Review 39b H4: --energy-wh 1e308 over 87840 h overflowed to inf, an internal error (exit 1) in --json;
    the text said 'abatement -0 USD/tCO2eq'."""
    assert main(["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large", "--energy-wh", "1e308",
                 "--hours", "87840", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: --energy-wh 1e+308 must be a number of Wh from 0 to 1e+12 (a TWh), e.g. 50\n"
    assert main(["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large", "--energy-wh", "1e12"]) == 0
    assert "abatement 0 USD/tCO2eq" in capsys.readouterr().out
