"""Review 54a M2: a region whose forecast starts after now is not chosen to start now on the intensity of
later hours, as one whose forecast ends too early is not (review 50b M2); its later starts stay options,
and a forecast that covers now (from the start of the current slot) keeps its start now."""

from __future__ import annotations

import pandas as pd

from care_flows.planning.decide import decide
from care_flows.policy import CarePolicy

NOW = pd.Timestamp("2023-06-01T08:00Z")
HOME = pd.Series(200.0, index=pd.date_range(NOW, periods=24, freq="h"))
POLICY = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], vcpu=2, memory_gib=4, deadline_within="12h")


def _north_now(d):
    return d.options[(d.options["region"] == "eu-north-1") & (d.options["kind"] == "now")].iloc[0]


def test_a_start_now_on_a_forecast_that_starts_later_is_not_an_option_but_its_later_starts_are():
    late = pd.Series(20.0, index=pd.date_range(NOW + pd.Timedelta("3h"), periods=21, freq="h"))
    d = decide(POLICY, {"eu-south-2": HOME, "eu-north-1": late}, NOW)
    # was: eu-north-1 "now, 08:00-09:00" at 20 g/kWh, the 11:00 value
    assert (d.chosen.region, d.chosen.start) == ("eu-north-1", NOW + pd.Timedelta("3h"))
    row = _north_now(d)
    assert not row["feasible"]
    assert row["reason"] == ("its forecast starts at 2023-06-01T11:00:00+00:00, 3h after now: the carbon of a run "
                             "started now is unknown")


def test_a_forecast_starting_after_the_latest_start_leaves_the_run_at_home():
    late = pd.Series(20.0, index=pd.date_range(NOW + pd.Timedelta("11h30min"), periods=12, freq="30min"))
    d = decide(POLICY, {"eu-south-2": HOME, "eu-north-1": late}, NOW)
    assert (d.chosen.region, d.chosen.start, d.savings_pct) == ("eu-south-2", NOW, 0.0)  # was eu-north-1 now, with no data


def test_a_forecast_from_the_start_of_the_current_slot_covers_a_start_now():
    north = pd.Series(20.0, index=pd.date_range(NOW, periods=24, freq="h"))
    d = decide(POLICY, {"eu-south-2": HOME, "eu-north-1": north}, NOW + pd.Timedelta("25min"))
    assert _north_now(d)["feasible"] and d.chosen.region == "eu-north-1" and d.chosen.kind == "now"


def test_a_nan_the_plan_never_reads_is_no_reason_to_drop_a_region_or_fail():
    """Review 54a L1: one NaN 47 h after a 6 h deadline made eu-north-1 "unusable forecast", and in the home
    region failed the plan (DataError). A NaN inside the window is still refused."""
    import numpy as np
    import pytest

    from care_flows.errors import DataError

    idx = pd.date_range("2023-06-01", periods=48, freq="h", tz="UTC")
    pol = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="6h")

    def with_nan(value, at):
        s = pd.Series(value, index=idx)
        s.iloc[at] = np.nan
        return s

    d = decide(pol, {"eu-south-2": pd.Series(200.0, index=idx), "eu-north-1": with_nan(20.0, -1)}, idx[0])
    assert (d.chosen.region, d.chosen.kind) == ("eu-north-1", "now") and not d.options["reason"].str.contains("unusable").any()
    d = decide(pol, {"eu-south-2": with_nan(200.0, -1), "eu-north-1": pd.Series(20.0, index=idx)}, idx[0])
    assert d.baseline.expected_g_per_kwh == 200.0
    with pytest.raises(DataError):
        decide(pol, {"eu-south-2": with_nan(200.0, 2), "eu-north-1": pd.Series(20.0, index=idx)}, idx[0])
