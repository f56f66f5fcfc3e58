"""Review 42a L1, L2, L3, L5: weights that are not numbers, weights on a tiny scale, negative
intensities, and the constraints ``care regions`` could not express."""

import json

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError, DataError
from care_flows.planning.decide import decide
from care_flows.planning.windows import plan_contiguous
from care_flows.policy import CarePolicy, load_policy

IDX = pd.date_range("2023-06-01", periods=24, freq="h", tz="UTC")
AT = ["--at", "2023-06-01T08:00:00Z"]


@pytest.mark.parametrize("text", ['{"weights": {"carbon": NaN, "cost": 1}}', '{"weights": {"carbon": 1, "latency": Infinity}}'])
def test_weights_that_are_not_finite_are_refused(text):
    with pytest.raises(ConfigError, match=r"weights: .* must be >= 0 and finite with a positive sum"):
        load_policy(text)


def test_the_scale_of_the_weights_does_not_change_the_choice(capsys):
    chosen = []
    for w in ("1", "1000", "1e-13", "1e308"):  # 1e308 twice overflowed the sum (review 42c L1)
        weights = f"carbon={w},cost={w}"
        assert main(["regions", "--regions", "eu-south-2,eu-north-1", *AT, "--vcpu", "1.5", "--memory-gib", "6", "--weights", weights, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        chosen.append((doc["chosen"]["region"], doc["chosen"]["instance_type"]))
    assert chosen[0][0] == "eu-north-1" and chosen == [chosen[0]] * 4


def test_a_negative_intensity_is_a_data_error_naming_it():
    fc = pd.Series(-10.0, index=IDX)
    with pytest.raises(DataError, match=r"negative value \(-10 g/kWh at 2023-06-01 00:00:00\+00:00\); carbon intensity is never below 0"):
        decide(CarePolicy(home_region="eu-south-2", deadline_within="2h"), {"eu-south-2": fc}, IDX[0])
    with pytest.raises(DataError, match="negative value"):
        plan_contiguous(fc, "1h", IDX[0], IDX[6])


def test_care_regions_takes_the_per_hour_budget_the_carbon_cap_and_the_minimum_saving(capsys):
    base = ["regions", "--regions", "eu-south-2,eu-north-1", *AT, "--vcpu", "1.5", "--memory-gib", "6", "--json"]

    def run(*extra):
        assert main([*base, *extra]) == 0
        doc = json.loads(capsys.readouterr().out)
        return doc["chosen"]["region"], {o["region"]: o["reason"] for o in doc["options"] if o["kind"] == "now"}

    assert run("--budget-usd-per-hour", "0.095") == ("eu-north-1", {"eu-north-1": "", "eu-south-2": "price 0.0987 USD/h > budget 0.095"})
    region, reasons = run("--max-g-per-run", "0.3")
    assert region == "eu-north-1" and reasons["eu-south-2"].startswith("carbon 2.41 g/run > max 0.3")
    region, reasons = run("--min-savings-pct", "99")
    assert region == "eu-south-2" and reasons["eu-north-1"].startswith("below the minimum saving (--min-savings-pct 99%): saves 88.")
    assert main([*base, "--min-savings-pct", "-1"]) == 2
    assert "--min-savings-pct: Input should be greater than or equal to 0" in capsys.readouterr().err
