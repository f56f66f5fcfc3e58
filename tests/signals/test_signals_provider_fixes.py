"""Provider clients and the fallback chain, review 24: M2, L1, L2, L5, L6, L8."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from care_flows.errors import ConfigError, ProviderResponseError, ProviderUnavailableError
from care_flows.signals import FallbackSignal, TraceSignal, get_signal, series_meta
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.watttime import WattTimeSignal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"

FORECAST = "/v3/carbon-intensity/forecast"
START = "2024-05-01T10:00Z"


def em(srv, clock, **kw):
    kw.setdefault("cooldown_s", 0)
    return ElectricityMapsSignal("tok-SECRET", base_url=srv.url + "/v3", sleep=lambda s: None, clock=clock, max_retries=0, **kw)


@pytest.mark.parametrize("updated_at", ["2024-05-01T10:00:00", "not a time", 12])
def test_a_malformed_updated_at_is_a_provider_error_and_the_chain_falls_back(provider_server, clock, tmp_path, updated_at):
    srv = provider_server
    body = json.loads((FIXTURES / "electricitymaps_forecast.json").read_text())
    srv.route(FORECAST, srv.reply(200, {**body, "updatedAt": updated_at}))
    with pytest.raises(ProviderResponseError, match="updatedAt .* is not an ISO time with offset; the API format may have changed"):
        em(srv, clock).forecast("ES", START, "6h")
    chain = get_signal("electricitymaps", api_token="tok-SECRET", base_url=srv.url + "/v3", sleep=lambda s: None, clock=clock, cache_dir=tmp_path)
    fc = chain.forecast("ES", START, "6h")
    assert series_meta(fc).source == "embedded" and "ProviderResponseError" in series_meta(fc).fallback_errors[0]


class _Broken(TraceSignal):
    """A source failing in a way nobody planned for (a changed API format hitting a code path)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__({}, source="broken")
        self.exc = exc

    def forecast(self, zone, start, horizon, **kw):
        raise self.exc

    def history(self, zone, start, end):
        raise self.exc


@pytest.mark.parametrize("exc", [ConfigError("updatedAt has no UTC offset; add Z"), KeyError("updatedAt"), TypeError("x")])
def test_whatever_a_source_raises_is_its_failure_but_bad_input_is_still_the_callers(exc):
    chain = FallbackSignal([_Broken(exc), TraceSignal.embedded(replay=True)])
    fc = chain.forecast("ES", START, "3h")
    assert series_meta(fc).source == "embedded" and series_meta(fc).fallback_errors[0].startswith(f"broken: {type(exc).__name__}")
    with pytest.raises(ConfigError, match="no UTC offset"):
        chain.forecast("ES", "2024-05-01T10:00", "3h")
    with pytest.raises(ConfigError, match="is not after start"):
        chain.history("ES", "2024-05-01T10:00Z", "2024-05-01T09:00Z")
    with pytest.raises(ConfigError, match="zone '' is empty"):
        chain.forecast("", START, "3h")


def test_a_4xx_error_names_the_zone_asked_for(provider_server, clock):
    srv = provider_server
    srv.route(FORECAST, srv.reply(404, b""))
    with pytest.raises(ProviderResponseError) as info:
        em(srv, clock).forecast("XX", START, "6h")
    text = str(info.value)
    assert "(zone XX)" in text and "HTTP 404" in text and "tok-SECRET" not in text and "\n" not in text


def test_a_body_that_trickles_in_is_bounded_by_the_deadline(clock):
    body = (FIXTURES / "electricitymaps_forecast.json").read_bytes()

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = max(1, len(body) // 20)
            for i in range(0, len(body), step):
                try:
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        sig = ElectricityMapsSignal("tok", base_url=f"http://127.0.0.1:{server.server_address[1]}/v3", clock=clock,
                                    timeout_s=1.0, deadline_s=0.4, max_retries=1, cooldown_s=0)
        with pytest.raises(ProviderUnavailableError, match="sent its answer too slowly") as info:
            sig.forecast("ES", START, "6h")
        assert info.value.reason.startswith("timed out")
    finally:
        server.shutdown()
        server.server_close()


def test_a_normal_body_is_still_read_whole(provider_server, clock):
    srv = provider_server
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json"))
    assert len(em(srv, clock, deadline_s=5.0).forecast("ES", START, "6h")) == 6


def test_planning_eu_west_2_on_the_gb_api_uses_london(provider_server, clock, tmp_path):
    from care_flows.orchestration.plan import fetch_forecasts
    from care_flows.policy import CarePolicy

    srv = provider_server
    srv.route("/intensity/2024-05-01T10:00Z/fw48h", srv.reply(200, "gb_national_fw48h.json"))
    srv.route("/regional/intensity/2024-05-01T10:00Z/fw48h/regionid/13", srv.reply(200, "gb_regional_fw48h.json"))
    policy = CarePolicy(home_region="eu-west-2", regions=["eu-west-2", "eu-south-2"], deadline_within="6h",
                        expected_duration="1h", carbon_source="gb")
    sig = get_signal("gb", base_url=srv.url, sleep=lambda s: None, clock=clock, cache_dir=tmp_path)
    got = fetch_forecasts(policy, clock.now, pd.Timedelta("6h").to_pytimedelta(), sig)
    assert [r["path"] for r in srv.requests] == ["/regional/intensity/2024-05-01T10:00Z/fw48h/regionid/13"]
    assert series_meta(got["eu-west-2"]).zone == "GB-13" and series_meta(got["eu-west-2"]).source == "gb"
    assert series_meta(got["eu-south-2"]).source == "embedded" and series_meta(got["eu-south-2"]).zone == "ES"


def test_watttime_refuses_a_signal_type_it_would_mislabel():
    with pytest.raises(ConfigError, match="signal_type 'co2_aoer' is not supported.*co2_moer"):
        WattTimeSignal("u", "p", signal_type="co2_aoer")


def test_electricitymaps_recent_history_uses_the_free_tier_endpoint(provider_server):
    srv = provider_server
    srv.route("/v3/carbon-intensity/history", srv.reply(200, "electricitymaps_history.json"))
    srv.route("/v3/carbon-intensity/past-range", srv.reply(401, {"error": "Request unauthorized for zoneKey=ES,requestType=past-range"}))
    now = pd.Timestamp("2024-05-01T10:20Z")
    sig = ElectricityMapsSignal("tok", base_url=srv.url + "/v3", clock=lambda: now, cooldown_s=0, max_retries=0)
    s = sig.history("ES", "2024-05-01T06:00Z", "2024-05-01T09:00Z")
    assert [str(t) for t in s.index] == ["2024-05-01 06:00:00+00:00", "2024-05-01 07:00:00+00:00", "2024-05-01 08:00:00+00:00"]
    assert srv.requests[0]["path"] == "/v3/carbon-intensity/history" and srv.requests[0]["query"]["zone"] == ["ES"]
    assert series_meta(s).source == "electricitymaps" and series_meta(s).signal == "lifecycle"
    with pytest.raises(Exception, match="past-range"):  # older windows still need past-range (a commercial plan)
        sig.history("ES", "2024-04-20T00:00Z", "2024-04-20T03:00Z")


def test_a_run_in_eu_west_2_is_realized_on_londons_gb_series_not_the_national_one(provider_server):
    """Review 24 L2, the realized side: @care's realized intensity asked the GB API for the national series."""
    from care_flows.orchestration.decorator import CareConfig, _realized_intensity
    from care_flows.signals.gb import GBCarbonSignal

    srv = provider_server
    srv.route("/regional/intensity/2024-05-01T10:00Z/2024-05-01T12:40Z/regionid/13", srv.reply(200, "gb_regional_fw48h.json"))
    signal = GBCarbonSignal(base_url=srv.url, sleep=lambda s: None, max_retries=0, cooldown_s=0)
    policy = {"home_region": "eu-west-2", "regions": ["eu-west-2"]}
    config = CareConfig(policy, signal=signal, sample_usage=False)
    series, label = _realized_intensity(config, config.policy(), "eu-west-2", pd.Timestamp("2024-05-01T10:10Z"), pd.Timestamp("2024-05-01T11:40Z"))
    assert [r["path"] for r in srv.requests] == ["/regional/intensity/2024-05-01T10:00Z/2024-05-01T12:40Z/regionid/13"]
    # regional values are forecasts only: labelled so, not taken for measured data (review 46a M2)
    assert label == "history+forecast" and series is not None and series_meta(series).zone == "GB-13"


def test_a_fault_inside_a_source_is_named_in_the_fallback_note(caplog):
    """Review 26 L2: a TypeError in a source (or its own ConfigError) showed only as '(failed)'."""
    import logging

    class Broken(TraceSignal):
        name = "electricitymaps"

        def forecast(self, zone, start, horizon):
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    chain = FallbackSignal([Broken.embedded("lifecycle"), TraceSignal.embedded("lifecycle")])
    with caplog.at_level(logging.WARNING, logger="care_flows.signals.fallback"):
        fc = chain.forecast("ES", "2023-06-01T00:00Z", "6h")
    note = series_meta(fc).fallback_note
    assert "(TypeError: unsupported operand type(s) for +: 'NoneType' and 'int')" in note, note
    assert any("TypeError" in r.getMessage() for r in caplog.records)


def test_gb_history_says_which_values_are_the_apis_forecast(provider_server):
    """Review 46a M2: a half hour without a published actual is the API's forecast; the series says so."""
    from care_flows.signals.gb import GBCarbonSignal

    t = pd.date_range("2024-05-01T10:00Z", periods=4, freq="30min")

    def body(actuals):
        return {"data": [{"from": x.strftime("%Y-%m-%dT%H:%MZ"), "to": (x + pd.Timedelta("30min")).strftime("%Y-%m-%dT%H:%MZ"),
                          "intensity": {"forecast": 100 + i, "actual": a, "index": "low"}} for i, (x, a) in enumerate(zip(t, actuals))]}

    srv = provider_server
    path = "/intensity/2024-05-01T10:00Z/2024-05-01T12:00Z"
    srv.route(path, srv.reply(200, body([210, 220, 230, 240])), srv.reply(200, body([210, 220, 230, None])))
    gb = GBCarbonSignal(base_url=srv.url, sleep=lambda s: None, max_retries=0, cooldown_s=0)
    measured = gb.history("GB", t[0], t[0] + pd.Timedelta(hours=2))
    assert measured.tolist() == [210, 220, 230, 240] and series_meta(measured).forecast_model is None
    filled = gb.history("GB", t[0], t[0] + pd.Timedelta(hours=2))
    assert filled.tolist() == [210, 220, 230, 103]
    assert series_meta(filled).forecast_model == "gb-carbon-intensity (where no actual is published)"
    assert filled.attrs["unmeasured"] == ["2024-05-01T11:30:00+00:00"]  # which half hour (review 46d L5)


def test_gb_unmeasured_times_survive_the_default_chain_and_its_cache(provider_server, tmp_path):
    """Review 48b L1: get_signal("gb") (fallback over a cache over the API) dropped attrs["unmeasured"], so the
    realized label went back to counting the half hour after the run."""
    from care_flows.signals import get_signal

    t = pd.date_range("2024-05-01T10:00Z", periods=4, freq="30min")
    body = {"data": [{"from": x.strftime("%Y-%m-%dT%H:%MZ"), "to": (x + pd.Timedelta("30min")).strftime("%Y-%m-%dT%H:%MZ"),
                      "intensity": {"forecast": 100, "actual": None if i == 3 else 200, "index": "low"}} for i, x in enumerate(t)]}
    srv = provider_server
    srv.route("/intensity/2024-05-01T10:00Z/2024-05-01T12:00Z", srv.reply(200, body))
    chain = get_signal("gb", base_url=srv.url, max_retries=0, cache_dir=str(tmp_path / "cache"))
    first = chain.history("GB", t[0], t[0] + pd.Timedelta(hours=2))
    cached = chain.history("GB", t[0], t[0] + pd.Timedelta(hours=2))
    assert series_meta(cached).source.startswith("cache:")
    for s in (first, cached):
        assert s.attrs["unmeasured"] == ["2024-05-01T11:30:00+00:00"] and series_meta(s).unmeasured == ("2024-05-01T11:30:00+00:00",)
