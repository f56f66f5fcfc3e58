"""decide() with a bad or incomparable forecast in one region (reviews 10 #2 and 11 #4b)."""

import numpy as np
import pandas as pd
import pytest

from care_flows.errors import DataError
from care_flows.planning.decide import decide
from care_flows.policy import CarePolicy

NOW = pd.Timestamp("2023-06-01T00:00Z")
IDX = pd.date_range(NOW, periods=24, freq="h")


def _policy(**kw):
    return CarePolicy(**{"home_region": "eu-south-2", "regions": ["eu-north-1", "eu-central-1"], "deadline_within": "6h", **kw})


def _series(value: float, signal: str | None = "lifecycle") -> pd.Series:
    s = pd.Series(value, index=IDX)
    if signal:
        s.attrs["signal"] = signal
    return s


def _reason(d, region: str) -> str:
    return d.options.loc[d.options["region"] == region, "reason"].iloc[0]


@pytest.mark.parametrize("damage", ["nan", "gap"])
def test_a_damaged_forecast_in_another_region_leaves_that_region_out(damage):
    bad = _series(20.0)
    if damage == "nan":
        bad.iloc[2] = np.nan
    else:
        bad = bad.drop(bad.index[2])
    d = decide(_policy(), {"eu-south-2": _series(200.0), "eu-north-1": bad, "eu-central-1": _series(100.0)}, NOW)
    assert d.chosen.region == "eu-central-1"
    assert _reason(d, "eu-north-1").startswith("unusable forecast (")
    # the home region's forecast is the baseline: damaged, it still stops the decision with the reason
    with pytest.raises(DataError):
        decide(_policy(), {"eu-south-2": bad, "eu-north-1": _series(20.0)}, NOW)


def test_forecasts_of_different_kinds_are_not_compared():
    """A WattTime (marginal) forecast at home and an embedded life-cycle fallback for Sweden: no 90 % 'saving'."""
    d = decide(_policy(), {"eu-south-2": _series(363.0, "marginal"), "eu-north-1": _series(38.0, "lifecycle"),
                           "eu-central-1": _series(300.0, "marginal")}, NOW)
    assert d.chosen.region == "eu-central-1"
    assert _reason(d, "eu-north-1") == "its forecast is lifecycle intensity, the home region's is marginal: not comparable"
    # series that do not say their kind (a user's own data) are compared as given
    d = decide(_policy(), {"eu-south-2": _series(363.0, None), "eu-north-1": _series(38.0, None)}, NOW)
    assert d.chosen.region == "eu-north-1"


def test_a_forecast_with_a_repeated_time_is_refused():
    """Review 11 #9: a duplicated 01:00 plus a missing 02:00 kept the span, and the rows were relabelled."""
    from care_flows.planning.windows import plan_contiguous

    idx = pd.DatetimeIndex(["2023-06-01T00:00Z", "2023-06-01T01:00Z", "2023-06-01T01:00Z", "2023-06-01T03:00Z"])
    with pytest.raises(DataError, match="1 duplicate time"):
        plan_contiguous(pd.Series([100.0, 10.0, 200.0, 300.0], index=idx), pd.Timedelta("1h"), NOW, NOW + pd.Timedelta("4h"))


def test_a_replayed_trace_and_current_data_are_not_compared():
    """Review 12 #2: Electricity Maps refused ES (401, plan lacks the zone), so home fell back to the embedded
    2023 replay while Sweden had today's live forecast: a 71 % 'saving' across years."""
    home = _series(140.0)
    home.attrs["forecast_model"] = "ridge+replay(2023)"
    live = _series(80.0)
    live.attrs["forecast_model"] = "electricitymaps"
    also_replayed = _series(100.0)
    also_replayed.attrs["forecast_model"] = "ridge+replay(2023)"
    d = decide(_policy(), {"eu-south-2": home, "eu-north-1": live, "eu-central-1": also_replayed}, NOW)
    assert _reason(d, "eu-north-1") == "its forecast is current data, the home region's is a replay of 2023: not comparable"
    assert d.chosen.region == "eu-central-1"
