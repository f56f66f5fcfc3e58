"""Review 41e: CaRE used from Python (a notebook), not the CLI.

H1: ``CarePolicy(...)`` and ``CarePolicyBlock(...)`` raised pydantic's multi-line ValidationError, which
``except CareError`` misses; a refused assignment left the policy in the state its checks forbid (M5).
H2: a bare number as a duration meant nanoseconds in the planning API (a "2 ns job, 100 % saved") and a
forecast ``horizon=24`` gave one row. H3: no ``py.typed`` marker although pyproject ships it.
M1: the planning API read times without an offset as UTC, where the rest of CaRE refuses them.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from care_flows import CareError, CarePolicy
from care_flows.blocks import CarePolicyBlock
from care_flows.errors import ConfigError, DataError
from care_flows.forecast.carbon import forecast_carbon
from care_flows.planning.windows import plan_contiguous, plan_interruptible

FC = pd.Series([300.0, 300.0, 40.0, 300.0, 300.0, 300.0], index=pd.date_range("2023-06-01", periods=6, freq="h", tz="UTC"))
T0, T1 = FC.index[0], FC.index[-1] + pd.Timedelta("1h")


@pytest.mark.parametrize("kwargs, says", [
    ({"deadlin_within": "12h"}, "unknown field 'deadlin_within'; did you mean 'deadline_within'?"),
    ({"regions": ["eu-nort-1"]}, "regions: unknown region 'eu-nort-1'"),
    ({"deadline_within": "12 hours"}, "deadline_within '12 hours' is not a duration"),
    ({"budget_usd_per_run": -1}, "budget_usd_per_run"),
    ({"expected_duration": "30h", "deadline_within": "12h"}, "expected_duration 30h exceeds deadline_within 12h"),
])
def test_a_policy_built_with_keywords_is_a_one_line_care_error(kwargs, says):
    with pytest.raises(CareError) as info:
        CarePolicy(**kwargs)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and message.startswith("invalid CaRE policy: ") and says in message
    assert "\n" not in message and "invalid CaRE policy: invalid" not in message and "pydantic" not in message


def test_a_refused_assignment_leaves_the_policy_as_it_was():
    q = CarePolicy(interruptible=True, threshold_g_per_kwh=100)
    with pytest.raises(ConfigError, match="needs interruptible"):
        q.interruptible = False
    assert q.interruptible is True and q.threshold_g_per_kwh == 100
    p = CarePolicy(expected_duration="2h", deadline_within="12h")
    with pytest.raises(ConfigError):
        p.deadline_within = "1h"
    assert p.deadline_within == pd.Timedelta("12h")
    p.deadline_within = "6h"  # a good value is set as before
    assert p.deadline_within == pd.Timedelta("6h")


def test_a_policy_block_says_what_is_wrong_in_one_line_and_takes_a_policy_object():
    with pytest.raises(ConfigError, match="^invalid CaRE policy: unknown field 'deadlin_within'"):
        CarePolicyBlock(policy={"deadlin_within": "12h"})
    with pytest.raises(ConfigError, match="^invalid CaRE policy block: policy: "):
        CarePolicyBlock(policy=5)
    policy = CarePolicy(deadline_within="6h", home_region="eu-north-1", regions=["eu-west-1"])
    assert CarePolicyBlock(policy=policy).to_policy() == policy == CarePolicyBlock.from_policy(policy).to_policy()


def test_a_bare_number_is_seconds_in_the_planning_api_as_in_a_policy():
    two_hours = plan_contiguous(FC, 7200, T0, T1)
    assert two_hours.duration_s == 7200 and two_hours.start == FC.index[1]
    assert plan_contiguous(FC, np.timedelta64(2, "h"), T0, T1).start == two_hours.start
    assert plan_contiguous(FC, pd.offsets.Hour(2), T0, T1).start == two_hours.start  # a fixed pandas offset (review 41f L1)
    with pytest.raises(ConfigError, match=r"duration 2 is under one second|duration 0.5 is under one second"):
        plan_contiguous(FC, 0.5, T0, T1)
    with pytest.raises(ConfigError, match="min_segment 0.5 is under one second"):
        plan_interruptible(FC, "2h", T0, T1, min_segment=0.5)


def test_times_without_an_offset_and_a_deadline_given_as_a_duration_are_refused():
    with pytest.raises(ConfigError, match="earliest 2023-06-01T00:00:00 has no UTC offset"):
        plan_contiguous(FC, "1h", pd.Timestamp("2023-06-01"), T1)
    with pytest.raises(ConfigError, match="has no UTC offset"):
        plan_contiguous(FC, "1h", "2023-06-01T00:00", T1)
    with pytest.raises(ConfigError, match="deadline 1 days 00:00:00 is a duration, not a time"):
        plan_contiguous(FC, "1h", T0, pd.Timedelta("24h"))
    assert plan_contiguous(FC, "1h", "2023-06-01T00:00Z", T1).start == FC.index[2]


def test_a_forecast_horizon_is_seconds_when_a_bare_number_and_a_short_one_still_gives_a_step():
    from care_flows.data import embedded_intensity
    from care_flows.orchestration.plan import plan_run

    history = embedded_intensity("ES")["2023-05"]
    assert len(forecast_carbon(history, pd.Timestamp("2023-06-01T00:00Z"), 86_400)) == 24  # seconds, as a policy reads them
    assert len(forecast_carbon(history, pd.Timestamp("2023-06-01T00:00Z"), "40m")) == 1  # review 41f H1: under a step
    with pytest.raises(ConfigError, match="forecast horizon 0.5 is under one second"):
        forecast_carbon(history, pd.Timestamp("2023-06-01T00:00Z"), 0.5)
    # a 10-minute job with a 40-minute deadline on hourly data is planned (it failed: 'horizon shorter than the data step')
    plan = plan_run(CarePolicy(expected_duration="10m", deadline_within="40m"), pd.Timestamp.now(tz="UTC"))
    assert plan.start is not None


def test_the_package_says_it_is_typed():
    assert resources.files("care_flows").joinpath("py.typed").is_file()


@pytest.mark.parametrize("forecast, says", [
    (FC.to_frame("g_per_kwh"), "is a DataFrame (columns ['g_per_kwh']); pass one column as a Series"),
    (FC.to_numpy(), "is a ndarray, not a pandas Series"),
    (FC.iloc[::-1], "index is not sorted; sort it (.sort_index())"),
    (pd.concat([FC, FC.iloc[:1]]), "1 duplicate time(s) (first 2023-06-01T00:00:00+00:00)"),
])
def test_a_forecast_of_the_wrong_shape_is_told_what_to_do(forecast, says):
    """Review 41e M2: a DataFrame or an array was 'empty', an unsorted index was told to resample."""
    from care_flows.errors import DataError

    with pytest.raises(DataError) as info:
        plan_contiguous(forecast, "1h", T0, T1)
    assert says in str(info.value)


def test_the_usage_forecast_reads_a_series_step_from_its_index():
    """Review 41e M4: a 15-minute or hourly Series was taken as 5-minute values and lost its daily period."""
    from care_flows.errors import DataError
    from care_flows.forecast.usage import evaluate_usage, forecast_usage

    t = np.arange(4 * 96)
    quarter = pd.Series(2 + np.sin(2 * np.pi * t / 96), index=pd.date_range("2026-01-01", periods=len(t), freq="15min", tz="UTC"))
    fc = forecast_usage(quarter, 4)
    assert fc.period_steps == 96 and fc.step_s == 900.0
    assert evaluate_usage(quarter, horizon=4).period_steps == 96
    with pytest.raises(ConfigError, match="step_s=300 but usage history's index steps by 900 s"):
        forecast_usage(quarter, 4, step_s=300)
    with pytest.raises(DataError, match="not sorted"):
        forecast_usage(quarter.iloc[::-1], 4)
    with pytest.raises(DataError, match="is a DataFrame"):
        forecast_usage(quarter.to_frame("cpu"), 4)
    with pytest.raises(ConfigError, match="horizon '1h' is a number of steps ahead"):
        forecast_usage(quarter, "1h")


def test_list_fields_take_a_comma_separated_string_as_tie_break_does():
    """Review 41e M3: tie_break="home,earliest" worked, priorities="carbon,cost" was 'Input should be a valid list'."""
    p = CarePolicy(home_region="eu-north-1", regions="eu-north-1, eu-west-1", priorities="cost,carbon", exclude_families="t2")
    assert p.candidate_regions == ["eu-north-1", "eu-west-1"] and [o.value for o in p.priorities] == ["cost", "carbon"]
    assert p.exclude_families == ["t2"] and p == CarePolicy(home_region="eu-north-1", regions=["eu-west-1"], priorities=["cost", "carbon"],
                                                           exclude_families=["t2"])


def test_forecasts_keyed_by_zone_and_a_misspelt_region_say_what_is_wrong():
    """Review 41e L2, L3: forecasts keyed by zone gave 'no carbon forecast for home region ... use a carbon
    source that covers it'; a region typo asked of a signal was 'zone EU-NORT-1 has no embedded data'."""
    from care_flows.data import embedded_intensity
    from care_flows.errors import NoBaselineDataError, UnknownRegionError
    from care_flows.planning.decide import decide
    from care_flows.signals import get_signal

    window = slice("2023-06-01", "2023-06-02")
    with pytest.raises(NoBaselineDataError, match=r"forecasts has keys ES, SE but none of the policy's regions .*key each forecast by its AWS region"):
        decide(CarePolicy(), {"ES": embedded_intensity("ES")[window], "SE": embedded_intensity("SE")[window]}, "2023-06-01T00:00Z")
    with pytest.raises(UnknownRegionError, match="unknown region 'eu-nort-1'"):
        get_signal("embedded").forecast("eu-nort-1", "2023-06-01T00:00Z", "6h")


def test_decide_reads_a_duration_as_the_planning_api_does():
    """Review 41e M3: ``decide`` parsed its duration with the policy parser, so ``np.timedelta64``, a pandas
    offset or "2 hours" failed there while ``plan_*`` took them, and 0.5 (meant as hours) was a half-second job."""
    from care_flows.data import embedded_intensity
    from care_flows.planning.decide import decide

    now = pd.Timestamp("2023-06-01T08:00Z")
    forecasts = {"eu-south-2": embedded_intensity("ES")[now : now + pd.Timedelta("12h")]}
    policy = CarePolicy(home_region="eu-south-2", deadline_within="12h")
    two_hours = decide(policy, forecasts, now, duration="2h").chosen.start
    for same in (7200, np.timedelta64(2, "h"), pd.offsets.Hour(2), "2 hours"):
        assert decide(policy, forecasts, now, duration=same).chosen.start == two_hours, same
    with pytest.raises(ConfigError, match=r"duration 0.5 is under one second \(a number is seconds\)"):
        decide(policy, forecasts, now, duration=0.5)


def test_footprint_and_right_size_check_their_input_as_the_policy_does():
    """Review 41e L4: hours as a duration was a TypeError, a Series intensity pandas' "truth value is
    ambiguous", a NaN price a silent ``usd: nan``, and a family typo "no type passes the filters"."""
    from care_flows.accounting import footprint
    from care_flows.planning.sizing import right_size

    one_hour = footprint("t3.large", hours=1, g_per_kwh=206, usd_per_hour=0.0912)
    for hours in (pd.Timedelta("1h"), "60m", np.timedelta64(3600, "s")):
        assert footprint("t3.large", hours=hours, g_per_kwh=206, usd_per_hour=0.0912) == one_hour
    assert footprint("t3.large", hours=np.float64(1), g_per_kwh=np.int64(206), usd_per_hour=0.0912) == one_hour
    for kwargs, says in [
        (dict(g_per_kwh=pd.Series([200.0, 210.0])), "carbon intensity Series is not a number of g/kWh; give one number"),
        (dict(usd_per_hour=float("nan")), "price nan USD/h must be a finite number >= 0"),
        (dict(hours=-1), "hours -1 must be a finite number >= 0"),
        (dict(kwh=-0.1), "energy -0.1 kWh must be a finite number >= 0"),
    ]:
        args = {"hours": 1, "g_per_kwh": 206, "usd_per_hour": 0.0912, **kwargs}
        with pytest.raises(ConfigError, match=says):
            footprint("t3.large", **args)
    with pytest.raises(ConfigError, match=r"unknown instance family 'm6' in eu-north-1 \(did you mean 'm6i'\?\)"):
        right_size("eu-north-1", 2, 8, families=["m6"])


def test_a_decision_and_an_outcome_print_in_a_few_lines():
    """Review 41e L7: repr(Decision) printed both Options with full segment tuples, then a truncated
    DataFrame; repr(Outcome) printed the whole simulation context."""
    from care_flows.planning.decide import decide
    from care_flows.simulate import simulate
    from care_flows.simulate.jobs import poisson_jobs

    t = pd.date_range("2023-06-01", periods=12, freq="h", tz="UTC")
    d = decide(CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="6h"),
               {"eu-south-2": pd.Series(200.0, index=t), "eu-north-1": pd.Series(20.0, index=t)}, t[0])
    text = repr(d)
    assert len(text.splitlines()) == 4 and "chosen=Option(eu-north-1" in text and "options=2 (2 feasible)" in text
    out = simulate(poisson_jobs(500, window_h=48, start=pd.Timestamp("2023-06-01", tz="UTC")), "embedded:ES", "now")
    assert len(repr(out)) < 200 and repr(out).startswith("Outcome(policy='now', jobs=500, ")


def test_a_forecast_with_naive_times_is_refused_as_naive_times_are():
    """Review 41e M1 (rest): a forecast Series with a naive index was read as UTC, so local times planned hours off."""
    naive = FC.tz_localize(None)
    with pytest.raises(DataError, match=r"the carbon forecast index has no time zone \(first .*\); localise it, e\.g\. \.tz_localize\('UTC'\)"):
        plan_contiguous(naive, "2h", T0, T1)
    assert plan_contiguous(FC.tz_convert("Europe/Madrid"), "2h", T0, T1).start == plan_contiguous(FC, "2h", T0, T1).start


def test_a_misspelt_objective_gets_a_did_you_mean_as_tie_break_does():
    """Review 41e L6: pydantic's 'Input should be ...' for priorities and weights had no did-you-mean."""
    with pytest.raises(ConfigError, match=r"priorities.0: Input should be .* \(got 'carbn'\); did you mean 'carbon'\?"):
        CarePolicy(priorities=["carbn"])
    with pytest.raises(ConfigError, match=r"\(got 'latncy'\); did you mean 'latency'\?"):
        CarePolicy(weights={"latncy": 1})
