"""A provider body in the wrong shape is explained in the API's own terms (which point, which field), never by an internal class name."""

from __future__ import annotations

import pytest

from care_flows.errors import ProviderResponseError
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.gb import GBCarbonSignal
from care_flows.signals.watttime import WattTimeSignal

START, HORIZON = "2024-05-01T10:00Z", "3h"


def _clock():
    import pandas as pd

    return pd.Timestamp("2024-05-01T09:58Z")


@pytest.mark.parametrize(
    "points,said",
    [
        ([{"datetime": "bad", "carbonIntensity": "x"}], "point 0 has datetime 'bad', not an ISO 8601 time with offset"),
        ([{"datetime": "2024-05-01T10:00Z", "carbonIntensity": "x"}], "point 0 has carbonIntensity 'x', not a number"),
        ([{"datetime": "2024-05-01T10:00Z", "carbonIntensity": 1}, {"carbonIntensity": 2}], "point 1 has no datetime"),
        ([{"datetime": "2024-05-01T10:00Z"}], "point 0 has no carbonIntensity"),
        ([{"datetime": "2024-05-01T10:00", "carbonIntensity": 1}], "point 0 has datetime '2024-05-01T10:00', not an ISO 8601 time with offset"),
        (["oops"], "point 0 is 'oops', not an object"),
    ],
)
def test_electricitymaps_wrong_shape_names_the_point_and_field(provider_server, no_sleep, points, said):
    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, {"zone": "ES", "forecast": points}))
    sig = ElectricityMapsSignal("tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=_clock)
    with pytest.raises(ProviderResponseError) as info:
        sig.forecast("ES", START, HORIZON)
    msg = str(info.value)
    assert msg == f"electricitymaps /carbon-intensity/forecast: {said}; the API format may have changed"
    assert "Error" not in msg


def test_watttime_and_gb_wrong_shape_names_the_point_and_field(provider_server, no_sleep):
    srv = provider_server
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    srv.route("/v3/forecast", srv.reply(200, {"data": [{"point_time": "2024-05-01T10:00Z", "value": "x"}], "meta": {}}))
    with pytest.raises(ProviderResponseError, match=r"^watttime /v3/forecast: point 0 has value 'x', not a number; the API format may have changed$"):
        WattTimeSignal("u", "p", base_url=srv.url, sleep=no_sleep, clock=_clock).forecast("CAISO_NORTH", START, HORIZON)
    path = "/intensity/2024-05-01T10:00Z/fw48h"
    srv.route(path, srv.reply(200, {"data": [{"from": "2024-05-01T10:00Z", "intensity": 7}]}))
    with pytest.raises(ProviderResponseError, match=r"^gb /intensity/.*: point 0 has no intensity.forecast; the API format may have changed$"):
        GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=_clock).forecast("GB", START, HORIZON)


def test_a_null_value_is_a_gap_in_every_provider_not_a_format_change(provider_server, no_sleep):
    """GB and WattTime failed the whole call on one null ("the API format may have changed") while
    Electricity Maps interpolated it; null is a value not (yet) published in all three (review 46b L4)."""
    import pandas as pd

    srv = provider_server
    t = pd.date_range("2024-05-01T10:00Z", periods=4, freq="30min")
    gb_points = [{"from": x.strftime("%Y-%m-%dT%H:%MZ"), "to": (x + pd.Timedelta("30min")).strftime("%Y-%m-%dT%H:%MZ"),
                  "intensity": {"forecast": v, "actual": None, "index": "low"}} for x, v in zip(t, [100, None, 140, 150])]
    srv.route("/intensity/2024-05-01T10:00Z/fw48h", srv.reply(200, {"data": gb_points}))
    s = GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=_clock).forecast("GB", START, "2h")
    assert s.tolist() == [100.0, 120.0, 140.0, 150.0]
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    t5 = pd.date_range("2024-05-01T10:00Z", periods=4, freq="5min")
    wt_points = [{"point_time": x.isoformat(), "value": v} for x, v in zip(t5, [1000, None, 1200, 1300])]
    srv.route("/v3/forecast", srv.reply(200, {"data": wt_points, "meta": {"units": "lbs_co2_per_mwh"}}),
              srv.reply(200, {"data": [{"point_time": "2024-05-01T10:00Z", "value": None}], "meta": {"units": "lbs_co2_per_mwh"}}))
    w = WattTimeSignal("u", "p", base_url=srv.url, sleep=no_sleep, clock=_clock).forecast("CAISO_NORTH", START, "20min")
    assert w.round(3).tolist() == [453.592, 498.951, 544.31, 589.67]
    with pytest.raises(ProviderResponseError, match=r"^watttime /v3/forecast: the only point has value null \(no value published\); "
                                                    r"ask for another window or try later$"):
        WattTimeSignal("u", "p", base_url=srv.url, sleep=no_sleep, clock=_clock).forecast("CAISO_NORTH", START, "20min")


def test_a_forecast_whose_values_stop_is_an_error_so_the_chain_asks_the_next_source(provider_server, no_sleep):
    """Review 46d L4: with nulls dropped, a GB forecast whose values stopped after two half hours was a
    two-point forecast: the plan ran now on it instead of the fallback chain asking the next source."""
    import pandas as pd

    from care_flows.signals import FallbackSignal, TraceSignal, series_meta

    srv = provider_server
    t = pd.date_range("2023-06-01T10:00Z", periods=12, freq="30min")
    values = [100, 110, 120, None, None] + [None] * 7

    def body(vals):
        return {"data": [{"from": x.strftime("%Y-%m-%dT%H:%MZ"), "to": (x + pd.Timedelta("30min")).strftime("%Y-%m-%dT%H:%MZ"),
                          "intensity": {"forecast": v, "actual": None, "index": "low"}} for x, v in zip(t, vals)]}

    path = "/intensity/2023-06-01T10:00Z/fw48h"
    srv.route(path, srv.reply(200, body(values)), srv.reply(200, body(values[:6])), srv.reply(200, body(values)))
    gb = GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=lambda: pd.Timestamp("2023-06-01T09:58Z"), max_retries=0)
    with pytest.raises(ProviderResponseError, match=r"^gb /intensity/.*: the last 9 points have intensity.forecast null \(no value "
                                                    r"published after 2023-06-01T11:00:00\+00:00\); the data stop there"):
        gb.forecast("GB", "2023-06-01T10:00Z", "6h")
    assert gb.forecast("GB", "2023-06-01T10:00Z", "6h").tolist() == [100.0, 110.0, 120.0]  # three trailing nulls: dropped
    chain = FallbackSignal([gb, TraceSignal.embedded("direct")])
    fc = chain.forecast("GB", "2023-06-01T10:00Z", "6h")
    assert series_meta(fc).source == "embedded" and len(fc) == 6


def test_null_points_after_the_window_asked_or_in_a_history_are_only_dropped(provider_server, no_sleep):
    """Review 46f M2: the trailing-null rule looked at the whole answer: a 2 h GB forecast failed for nulls at the
    far end of the 48 h answer, and an Electricity Maps history window that has values failed for its last hours."""
    import pandas as pd

    srv = provider_server
    t = pd.date_range("2023-06-01T10:00Z", periods=12, freq="30min")
    values = [100, 110, 120, 130, 140] + [None] * 7
    body = {"data": [{"from": x.strftime("%Y-%m-%dT%H:%MZ"), "to": (x + pd.Timedelta("30min")).strftime("%Y-%m-%dT%H:%MZ"),
                      "intensity": {"forecast": v, "actual": None, "index": "low"}} for x, v in zip(t, values)]}
    srv.route("/intensity/2023-06-01T10:00Z/fw48h", srv.reply(200, body))
    gb = GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=lambda: pd.Timestamp("2023-06-01T09:58Z"), max_retries=0)
    assert gb.forecast("GB", "2023-06-01T10:00Z", "2h").tolist() == [100.0, 110.0, 120.0, 130.0]
    hours = pd.date_range("2023-06-01T00:00Z", periods=24, freq="h")
    history = {"zone": "ES", "history": [{"zone": "ES", "datetime": x.isoformat().replace("+00:00", "Z"),
                                          "carbonIntensity": None if k >= 20 else 100 + k, "emissionFactorType": "lifecycle"}
                                         for k, x in enumerate(hours)]}
    srv.route("/v3/carbon-intensity/history", srv.reply(200, history))
    em = ElectricityMapsSignal("tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: pd.Timestamp("2023-06-02T00:10Z"))
    assert em.history("ES", "2023-06-01T10:00Z", "2023-06-01T12:00Z").tolist() == [110.0, 111.0]
