"""The clients against the providers' documented formats and error bodies (sources: tests/fixtures/providers/README.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from care_flows.errors import ProviderAuthError, ProviderResponseError
from care_flows.signals import series_meta
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.gb import GBCarbonSignal

from test_signals_providers import TOKEN, clock, em, wt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def fixture_body(name: str) -> bytes:
    """A recorded provider body (``import conftest`` would get whichever conftest.py pytest loaded first)."""
    return (FIXTURES / name).read_bytes()

PAST_RANGE = "/v3/carbon-intensity/past-range"


def fixture_doc(name: str):
    return json.loads(fixture_body(name))


# ---------------------------------------------------------------- Electricity Maps
def test_em_plan_without_the_zone_is_reported_as_a_plan_problem_not_a_bad_token(provider_server, no_sleep):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(401, "electricitymaps_error_zone_unauthorized.json"))
    with pytest.raises(ProviderAuthError) as info:
        em(srv, no_sleep).history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    msg = str(info.value)
    assert "plan does not include zone ES" in msg and "zoneKey=ES" in msg and "\n" not in msg
    assert info.value.status == 401 and srv.count(PAST_RANGE) == 1 and no_sleep == []


def test_em_invalid_token_message_carries_the_provider_explanation(provider_server, no_sleep):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(401, "electricitymaps_error_invalid_token.json"))
    with pytest.raises(ProviderAuthError, match="Invalid auth-token: The provided token is invalid") as info:
        em(srv, no_sleep).history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    assert "credentials" in str(info.value) and len(str(info.value)) < 400


def test_em_error_body_echoing_the_token_is_redacted(provider_server, no_sleep):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(403, {"error": "Invalid auth-token", "message": f"token {TOKEN} is not valid"}))
    with pytest.raises(ProviderAuthError) as info:
        em(srv, no_sleep).history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    assert TOKEN not in str(info.value) and TOKEN not in repr(vars(info.value)) and "token *** is not valid" in str(info.value)


def test_em_body_for_another_zone_is_refused(provider_server, no_sleep):
    """The API falls back to the caller's IP location when it finds no zone: never take that as the asked zone."""
    srv = provider_server
    doc = fixture_doc("electricitymaps_past_range.json")
    doc["zone"] = "DE"
    srv.route(PAST_RANGE, srv.reply(200, doc))
    with pytest.raises(ProviderResponseError, match="asked for zone ES but the body is for zone DE"):
        em(srv, no_sleep).history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")


def test_em_null_intensity_is_a_gap_that_is_interpolated(provider_server, no_sleep):
    srv = provider_server
    doc = fixture_doc("electricitymaps_past_range.json")
    doc["data"][2]["carbonIntensity"] = None  # carbon-aware-sdk models it as int? (a gap)
    srv.route(PAST_RANGE, srv.reply(200, doc))
    s = em(srv, no_sleep).history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    assert len(s) == 6 and s.iloc[2] == pytest.approx((284 + 267) / 2)


def test_em_points_of_another_emission_factor_type_are_refused(provider_server, no_sleep):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    with pytest.raises(ProviderResponseError, match="emissionFactorType direct"):
        em(srv, no_sleep, kind="direct").history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")


@pytest.mark.parametrize(("horizon", "sent"), [("6h", None), ("30h", "48"), ("60h", "72"), ("100h", "72")])
def test_em_forecast_asks_for_a_supported_horizon(provider_server, no_sleep, horizon, sent):
    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, "electricitymaps_forecast.json"))
    em(srv, no_sleep).forecast("ES", "2024-05-01T10:00Z", horizon)
    q = srv.requests[0]["query"]
    assert q.get("horizonHours") == ([sent] if sent else None)


def test_em_forecast_counts_the_hours_from_the_current_hour(provider_server, no_sleep):
    """The API's forecast starts at the start of the current hour: at 10:17, 24 points end at 10:00 the
    next day, 17 minutes short of a now + 24 h deadline (review 46b L1)."""
    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, "electricitymaps_forecast.json"))
    at = pd.Timestamp("2024-05-01T10:17Z")
    ElectricityMapsSignal(TOKEN, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: at).forecast("ES", at, "24h")
    assert srv.requests[0]["query"].get("horizonHours") == ["48"]
    ElectricityMapsSignal(TOKEN, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: at).forecast("ES", at, "23h")
    assert srv.requests[1]["query"].get("horizonHours") is None  # 10:00 + 24 points reach 09:17 the next day


# ---------------------------------------------------------------- WattTime
def test_wt_403_is_a_plan_error_naming_the_region_without_a_new_login(provider_server, no_sleep):
    srv = provider_server
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    srv.route("/v3/historical", srv.reply(403, "watttime_error_forbidden.json"))
    with pytest.raises(ProviderAuthError) as info:
        wt(srv, no_sleep).history("PJM_NJ", "2024-05-01T08:00Z", "2024-05-01T09:00Z")
    msg = str(info.value)
    assert "plan does not cover region PJM_NJ" in msg and "UNAUTHORIZED_REGION" in msg and "CAISO_NORTH" in msg
    assert srv.count("/login") == 1 and srv.count("/v3/historical") == 1


def test_wt_historical_chunks_do_not_overlap_on_the_inclusive_end(provider_server, no_sleep):
    srv = provider_server
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    srv.route("/v3/historical", srv.reply(200, "watttime_historical.json"))
    wt(srv, no_sleep).history("CAISO_NORTH", "2024-01-01T00:00Z", "2024-03-01T00:00Z")
    reqs = [r["query"] for r in srv.requests if r["path"] == "/v3/historical"]
    ends = [pd.Timestamp(q["end"][0]) for q in reqs]
    starts = [pd.Timestamp(q["start"][0]) for q in reqs]
    assert len(reqs) == 2 and ends[0] == starts[1] - pd.Timedelta("5min") and ends[1] == pd.Timestamp("2024-03-01T00:00Z")
    assert all(e - s <= pd.Timedelta("32D") for s, e in zip(starts, ends))


def test_wt_meta_warnings_are_logged(provider_server, no_sleep, caplog):
    srv = provider_server
    doc = fixture_doc("watttime_historical.json")
    doc["meta"]["warnings"] = [{"type": "EXAMPLE_WARNING", "message": "This is just an example"}]  # the spec's example
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    srv.route("/v3/historical", srv.reply(200, doc))
    caplog.set_level(logging.WARNING, logger="care_flows.signals.watttime")
    wt(srv, no_sleep).history("CAISO_NORTH", "2024-05-01T08:00Z", "2024-05-01T09:00Z")
    assert "EXAMPLE_WARNING: This is just an example" in caplog.text


# ---------------------------------------------------------------- GB Carbon Intensity API
def test_gb_regional_range_in_the_live_object_form(provider_server, no_sleep):
    srv = provider_server
    srv.route("/regional/intensity/2024-05-01T08:00Z/2024-05-01T10:00Z/regionid/13", srv.reply(200, "gb_regional_range.json"))
    s = GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=clock).history("eu-west-2", "2024-05-01T08:00Z", "2024-05-01T10:00Z")
    assert s.tolist() == [161, 158, 155, 153] and series_meta(s).zone == "GB-13" and series_meta(s).signal == "direct"


def test_gb_error_body_message_is_in_the_error(provider_server, no_sleep):
    srv = provider_server
    srv.route("/intensity/2024-05-01T08:00Z/2024-05-01T10:00Z", srv.reply(400, "gb_error_bad_request.json"))
    with pytest.raises(ProviderResponseError, match=r"HTTP 400 \(400 Bad Request: Please enter a valid date range\.\)"):
        GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=clock).history("GB", "2024-05-01T08:00Z", "2024-05-01T10:00Z")


def test_gb_consecutive_ranges_keep_each_half_hour_once(provider_server, no_sleep):
    srv = provider_server
    first = {"data": [{"from": f"2024-05-{d:02d}T{h:02d}:{m:02d}Z", "to": "x", "intensity": {"forecast": 100, "actual": 100, "index": "low"}}
                      for d in range(1, 16) for h in range(24) for m in (0, 30) if (d, h, m) <= (15, 0, 0)]}
    # the second range starts with the period ending at its {from}, already in the first answer, with another value
    second = {"data": [{"from": "2024-05-14T23:30Z", "to": "2024-05-15T00:00Z", "intensity": {"forecast": 999, "actual": 999, "index": "high"}},
                       {"from": "2024-05-15T00:00Z", "to": "2024-05-15T00:30Z", "intensity": {"forecast": 101, "actual": 101, "index": "low"}},
                       {"from": "2024-05-15T00:30Z", "to": "2024-05-15T01:00Z", "intensity": {"forecast": 102, "actual": 102, "index": "low"}}]}
    srv.route("/intensity/2024-05-01T00:00Z/2024-05-15T00:00Z", srv.reply(200, first))
    srv.route("/intensity/2024-05-15T00:00Z/2024-05-15T01:00Z", srv.reply(200, second))
    s = GBCarbonSignal(base_url=srv.url, sleep=no_sleep, clock=clock).history("GB", "2024-05-01T00:00Z", "2024-05-15T01:00Z")
    assert s.index.is_unique and s.loc["2024-05-14T23:30Z"] == 100 and s.iloc[-1] == 102 and len(s) == 14 * 48 + 2
