"""The per-process circuit breaker: a failing provider is skipped for a cool-down, then tried once again."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from care_flows.errors import ConfigError, ProviderUnavailableError
from care_flows.signals import get_signal, series_meta
from care_flows.signals._http import HttpClient
from care_flows.signals.breaker import BREAKER, COOLDOWN_ENV
from care_flows.signals.electricitymaps import ElectricityMapsSignal

FORECAST = "/v3/carbon-intensity/forecast"
START = "2024-05-01T12:00Z"


def chain(srv, clock, tmp_path, **kw):
    opts = {"timeout_s": 0.1, "max_retries": 1, "sleep": lambda s: None, "clock": clock, "cache_dir": tmp_path}
    return get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", **{**opts, **kw})


def test_a_hanging_provider_is_skipped_during_the_cooldown_and_tried_again_after_it(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json", delay_s=0.4))
    sig = chain(srv, clock, tmp_path)

    first = sig.forecast("ES", START, "6h")
    assert series_meta(first).source == "embedded" and srv.count(FORECAST) == 2  # one attempt + one retry

    clock.advance(120)  # within the 300 s cool-down: no request at all, straight to the embedded data
    second = sig.forecast("FR", START, "6h")
    meta = series_meta(second)
    assert srv.count(FORECAST) == 2 and meta.source == "embedded"
    assert re.search(r"electricitymaps failed 120 s ago \(timed out after 0\.\d+ s\); skipping it until 2024-05-01T10:05:00\+00:00", meta.fallback_errors[0])

    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json"))  # the provider is back
    clock.advance(181)  # past the cool-down: one call goes out (half-open), succeeds and closes the breaker
    third = sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 3 and series_meta(third).source == "electricitymaps"
    assert not BREAKER.is_open("electricitymaps", srv.url + "/v3", clock())


def test_a_failed_half_open_trial_opens_the_breaker_for_another_cooldown(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(500, b"<html>down</html>"))
    sig = chain(srv, clock, tmp_path, max_retries=0, cooldown_s=60)
    sig.forecast("ES", START, "6h")
    clock.advance(61)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 2
    clock.advance(30)
    fc = sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 2 and "failed 30 s ago (HTTP 500)" in series_meta(fc).fallback_errors[0]


@pytest.mark.parametrize(
    "reply,opens",
    [
        ((503, b""), True),
        ((429, b"{}", {"Retry-After": "0"}), True),
        ((401, b'{"error": "Invalid auth-token"}'), False),  # not transient, but answered at once; often one zone only
        ((403, b"{}"), False),
        ((200, b"<html>"), False),  # malformed: the provider is up
    ],
)
def test_which_failures_open_the_breaker(provider_server, clock, tmp_path, reply, opens):
    srv = provider_server
    srv.route(FORECAST, srv.reply(*reply))
    sig = chain(srv, clock, tmp_path, max_retries=0)
    sig.forecast("ES", START, "6h")
    clock.advance(10)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == (1 if opens else 2)


def test_the_breaker_is_keyed_by_source_and_base_url(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b""))
    chain(srv, clock, tmp_path / "a", max_retries=0).forecast("ES", START, "6h")
    assert BREAKER.is_open("electricitymaps", srv.url + "/v3", clock())
    assert not BREAKER.is_open("electricitymaps", srv.url + "/v3-other", clock())
    assert not BREAKER.is_open("gb", srv.url + "/v3", clock())
    # a second client for the same provider (another flow in this process) skips it too
    chain(srv, clock, tmp_path / "b", max_retries=0).forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 1


def test_cooldown_is_configurable_and_zero_switches_it_off(provider_server, clock, tmp_path, monkeypatch):
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b""))
    monkeypatch.setenv(COOLDOWN_ENV, "0")
    sig = chain(srv, clock, tmp_path, max_retries=0)
    sig.forecast("ES", START, "6h")
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 2
    monkeypatch.setenv(COOLDOWN_ENV, "20")
    sig = chain(srv, clock, tmp_path, max_retries=0)
    sig.forecast("ES", START, "6h")
    clock.advance(19)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 3
    clock.advance(2)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 4
    monkeypatch.setenv(COOLDOWN_ENV, "soon")
    with pytest.raises(ConfigError, match="CARE_PROVIDER_COOLDOWN_S='soon' is not a number"):
        chain(srv, clock, tmp_path)
    with pytest.raises(ConfigError, match="cooldown_s=-1"):
        ElectricityMapsSignal("tok", base_url=srv.url, cooldown_s=-1)


def test_rate_limit_keeps_the_breaker_open_at_least_for_retry_after(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(429, b"{}", headers={"Retry-After": "3600"}))
    sig = chain(srv, clock, tmp_path, cooldown_s=60)
    sig.forecast("ES", START, "6h")
    clock.advance(600)
    fc = sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 1 and "HTTP 429, rate limited" in series_meta(fc).fallback_errors[0]


def test_the_call_deadline_bounds_retries_of_a_hanging_provider(provider_server):
    srv = provider_server
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json", delay_s=1.0))
    http = HttpClient("electricitymaps", srv.url + "/v3", timeout_s=0.3, max_retries=5, deadline_s=0.5, backoff_s=0.01, sleep=lambda s: None, cooldown_s=0)
    with pytest.raises(ProviderUnavailableError, match=r"timed out after .* \(after [12] attempt\(s\) in") as info:
        http.get_json("/carbon-intensity/forecast")
    assert srv.count(FORECAST) <= 2 and "\n" not in str(info.value)  # not 6: the second attempt only gets the time left


def test_defaults_bound_a_call_to_about_15_s_not_31_5():
    sig = ElectricityMapsSignal("tok")
    assert (sig.http.timeout_s, sig.http.max_retries, sig.http.deadline_s) == (10.0, 2, 15.0)


def test_concurrent_callers_after_the_cooldown_send_one_trial(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b""))
    sig = chain(srv, clock, tmp_path, max_retries=0, cache=False, timeout_s=2)
    sig.forecast("ES", START, "6h")
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json", delay_s=0.8))
    clock.advance(301)
    barrier, out = threading.Barrier(6), []

    def ask() -> None:
        barrier.wait()
        out.append(series_meta(sig.forecast("ES", START, "6h")).source)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert srv.count(FORECAST) == 2  # the failure, then exactly one half-open trial
    assert sorted(out) == ["electricitymaps"] + ["embedded"] * 5


def test_fallback_note_is_one_readable_line_per_zone(provider_server, clock, tmp_path, caplog):
    srv = provider_server
    srv.route(FORECAST, srv.reply(500, b"<html>boom</html>"))
    sig = chain(srv, clock, tmp_path, max_retries=0)
    with caplog.at_level(logging.WARNING, logger="care_flows.signals.fallback"):
        fc = sig.forecast("ES", START, "6h")
        se = sig.forecast("eu-north-1", START, "6h")
    assert fc.attrs["fallback_note"] == "electricitymaps failed for ES (HTTP 500); using embedded (lifecycle, 2023 replay)"
    assert fc.attrs["requested_source"] == "electricitymaps" and fc.attrs["source"] == "embedded" and fc.attrs["signal"] == "lifecycle"
    assert fc.attrs["fallback_errors"][0].startswith("electricitymaps: ProviderUnavailableError: electricitymaps GET /carbon-intensity/forecast returned HTTP 500")
    assert se.attrs["fallback_note"] == (
        "electricitymaps failed for eu-north-1 (SE) (HTTP 500, 0 s ago, skipping until 2024-05-01T10:05:00+00:00); using embedded (lifecycle, 2023 replay)"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [fc.attrs["fallback_note"], se.attrs["fallback_note"]]


def test_a_live_answer_has_no_fallback_note_and_names_the_requested_source(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json"))
    sig = chain(srv, clock, tmp_path)
    live, hit = sig.forecast("ES", START, "6h"), sig.forecast("ES", START, "6h")
    assert (live.attrs["source"], live.attrs["requested_source"], live.attrs["fallback_note"]) == ("electricitymaps", "electricitymaps", None)
    assert (hit.attrs["source"], hit.attrs["requested_source"], hit.attrs["fallback_note"]) == ("cache:electricitymaps", "electricitymaps", None)
    assert get_signal("embedded").forecast("ES", START, "3h").attrs["requested_source"] == "embedded"


def test_a_503_with_retry_after_is_not_asked_again_sooner(provider_server, clock, tmp_path):
    """Review 35b #4: a 503's Retry-After (a maintenance window) was ignored: three retries at once,
    and with a 30 s cool-down the provider was asked again after 31 s although it had said 120 s."""
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b"{}", headers={"Retry-After": "120"}))
    sig = chain(srv, clock, tmp_path, cooldown_s=30)
    fc = sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 1 and "HTTP 503" in series_meta(fc).fallback_errors[0]  # 120 s > 30 s: no retry in this call
    clock.advance(31)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 1  # still within the 120 s the provider asked for
    clock.advance(120)
    sig.forecast("ES", START, "6h")
    assert srv.count(FORECAST) == 2


def test_a_short_retry_after_on_a_503_sets_the_wait(provider_server):
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b"{}", headers={"Retry-After": "2"}), srv.reply(200, "electricitymaps_forecast.json"))
    sleeps: list[float] = []
    http = HttpClient("electricitymaps", srv.url + "/v3", max_retries=2, deadline_s=None, sleep=sleeps.append, cooldown_s=0)
    http.get_json("/carbon-intensity/forecast")
    assert sleeps == [2.0] and srv.count(FORECAST) == 2  # before: the 0.5 s back-off


def test_a_zone_the_breaker_skipped_says_ago_once_when_its_cache_entry_answers_next(provider_server, clock, tmp_path):
    """Review 39f L3: the breaker's decorated reason ('HTTP 500, 0 s ago, skipping until ...') was stored as
    the cache's negative entry, which added its own 'ago': '(HTTP 500, 0 s ago, skipping until ..., 0 s ago)'."""
    srv = provider_server
    srv.route(FORECAST, srv.reply(500, b"<html>boom</html>"))
    sig = chain(srv, clock, tmp_path, max_retries=0)
    sig.forecast("ES", START, "6h")  # trips the breaker
    sig.forecast("eu-north-1", START, "6h")  # skipped by the breaker: its cache records the failure
    again = sig.forecast("eu-north-1", START, "6h")  # answered by that negative entry
    assert again.attrs["fallback_note"] == "electricitymaps failed for eu-north-1 (SE) (HTTP 500, 0 s ago); using embedded (lifecycle, 2023 replay)"
