"""Disk cache (one network call for repeated questions, TTL, atomic files) and the fallback chain."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from care_flows.errors import ProviderUnavailableError, UnknownZoneError
from care_flows.signals import CachedSignal, FallbackSignal, TraceSignal, get_signal, series_meta
from care_flows.signals.electricitymaps import ElectricityMapsSignal

WINDOW = ("2023-06-01T00:00Z", "2023-06-01T06:00Z")
PAST_RANGE = "/v3/carbon-intensity/past-range"


def em(srv, sleeps, clock):
    return ElectricityMapsSignal("tok", base_url=srv.url + "/v3", sleep=sleeps, clock=clock, max_retries=1)


def test_repeated_request_is_served_from_disk_without_a_network_call(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    cached = CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, clock=clock)
    first = cached.history("ES", *WINDOW)
    for _ in range(50):
        again = cached.history("ES", *WINDOW)
    assert srv.count(PAST_RANGE) == 1
    assert series_meta(first).source == "electricitymaps" and series_meta(again).source == "cache:electricitymaps"
    assert again.tolist() == first.tolist() and list(again.index) == list(first.index)
    # a second CachedSignal (another flow, another process) shares the same files
    other = CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, clock=clock)
    other.history("ES", *WINDOW)
    assert srv.count(PAST_RANGE) == 1


def test_entries_expire_after_their_ttl(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    cached = CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, history_ttl="10m", clock=clock)
    cached.history("ES", *WINDOW)
    clock.now += pd.Timedelta("9m")
    cached.history("ES", *WINDOW)
    assert srv.count(PAST_RANGE) == 1
    clock.now += pd.Timedelta("2m")
    assert series_meta(cached.history("ES", *WINDOW)).source == "electricitymaps"
    assert srv.count(PAST_RANGE) == 2


def test_forecast_keys_round_to_the_step_and_ttl_is_15_minutes(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, "electricitymaps_forecast.json"))
    cached = CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, clock=clock)
    cached.forecast("ES", "2024-05-01T12:00Z", "6h")
    cached.forecast("ES", "2024-05-01T12:20Z", "5h30m")  # same hourly window once rounded
    assert srv.count("/v3/carbon-intensity/forecast") == 1
    clock.now += pd.Timedelta("16m")
    cached.forecast("ES", "2024-05-01T12:00Z", "6h")
    assert srv.count("/v3/carbon-intensity/forecast") == 2


def test_writes_are_atomic_and_corrupt_entries_are_misses(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    cached = CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, clock=clock)
    cached.history("ES", *WINDOW)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and not list(tmp_path.rglob(".tmp-*"))
    doc = json.loads(files[0].read_text())
    assert doc["request"] == {"source": "electricitymaps", "zone": "ES", "kind": "lifecycle", "op": "history",
                              "start": "2023-06-01T00:00:00+00:00", "end": "2023-06-01T06:00:00+00:00"}
    files[0].write_text('{"format": 1, "stored_at": "2024-05-01T10:00:00+00:00", "times": [')  # a torn write
    assert series_meta(cached.history("ES", *WINDOW)).source == "electricitymaps"
    assert srv.count(PAST_RANGE) == 2


def test_fallback_chain_uses_live_then_stale_cache_then_embedded(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    chain = get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=clock,
                       max_retries=1, cache_dir=tmp_path, history_ttl="5m")
    live = chain.history("ES", *WINDOW)
    assert series_meta(live).source == "electricitymaps" and series_meta(live).fallback_errors == ()

    # provider down, entry expired: the stale cache answers
    srv.route(PAST_RANGE, srv.reply(500, b"down"))
    clock.now += pd.Timedelta("1h")
    stale = chain.history("ES", *WINDOW)
    meta = series_meta(stale)
    assert meta.source == "stale-cache:electricitymaps" and stale.tolist() == live.tolist()
    assert len(meta.fallback_errors) == 1 and "HTTP 500" in meta.fallback_errors[0]

    # a window never cached: embedded history answers
    emb = chain.history("ES", "2023-07-01T00:00Z", "2023-07-01T03:00Z")
    meta = series_meta(emb)
    assert meta.source == "embedded" and len(emb) == 3 and len(meta.fallback_errors) == 2
    assert meta.fallback_errors[1].startswith("stale-cache:electricitymaps: ProviderUnavailableError")


@pytest.mark.parametrize("failure", ["401", "429", "timeout", "malformed"])
def test_forecast_falls_back_to_embedded_history_forecast(provider_server, no_sleep, clock, tmp_path, failure):
    srv = provider_server
    replies = {
        "401": srv.reply(401, b"{}"),
        "429": srv.reply(429, b"{}", headers={"Retry-After": "0"}),
        "timeout": srv.reply(200, "electricitymaps_forecast.json", delay_s=0.5),
        "malformed": srv.reply(200, b"<html>"),
    }
    srv.route("/v3/carbon-intensity/forecast", replies[failure])
    chain = get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=clock,
                       max_retries=1, timeout_s=0.1, cache_dir=tmp_path)
    fc = chain.forecast("eu-south-2", "2024-05-01T12:00Z", "6h")
    meta = series_meta(fc)
    assert meta.source == "embedded" and len(fc) == 6 and fc.index[0] == pd.Timestamp("2024-05-01T12:00Z")
    assert meta.forecast_model != "oracle" and meta.fallback_errors[0].startswith("electricitymaps: Provider")


def test_every_source_failing_raises_one_provider_error(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(503, b""))
    chain = get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=clock,
                       max_retries=0, cache_dir=tmp_path)
    with pytest.raises(ProviderUnavailableError, match="no carbon source answered the history for zone ap-northeast-1.*JP-TK.*run now") as info:
        chain.history("ap-northeast-1", *WINDOW)
    assert "\n" not in str(info.value)


def test_fallback_without_live_providers_and_registry_errors():
    from care_flows.errors import ConfigError

    with pytest.raises(ConfigError, match="known sources: csv, electricitymaps, embedded, gb, watttime"):
        get_signal("carbonara")
    with pytest.raises(ConfigError, match="needs path"):
        get_signal("csv")
    chain = FallbackSignal([TraceSignal({}, source="a"), TraceSignal.embedded("direct")])
    assert series_meta(chain.history("FR", "2022-01-01T00:00Z", "2022-01-01T01:00Z")).signal == "direct"


def test_gb_and_watttime_chains_end_in_embedded_data(provider_server, no_sleep, clock, tmp_path):
    srv = provider_server  # no routes: every call is a 404
    gb = get_signal("gb", base_url=srv.url, sleep=no_sleep, clock=clock, cache_dir=tmp_path)
    fc = gb.forecast("GB", "2024-05-01T12:00Z", "2h")
    assert series_meta(fc).source == "embedded" and series_meta(fc).signal == "direct"
    # a GB API region (GB-13, London) falls back to the national trace, as eu-west-2 does (review 35b #5)
    for zone in ("GB-13", "eu-west-2"):
        fc = gb.forecast(zone, "2024-05-01T12:00Z", "2h")
        assert series_meta(fc).source == "embedded" and series_meta(fc).zone == "GB" and "(GB)" in fc.attrs["fallback_note"]
    with pytest.raises(UnknownZoneError):  # Northern Ireland is another grid, not Great Britain's
        TraceSignal.embedded("direct").forecast("GB-NIR", "2024-05-01T12:00Z", "2h")
    wt = get_signal("watttime", username="u", password="p", base_url=srv.url, sleep=no_sleep, clock=clock, cache_dir=tmp_path)
    fc = wt.forecast("eu-west-3", "2024-05-01T12:00Z", "2h")
    assert series_meta(fc).source == "embedded" and series_meta(fc).signal == "lifecycle" and series_meta(fc).zone == "FR"


def test_concurrent_callers_of_the_same_question_cost_one_call(provider_server, no_sleep, clock, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json", delay_s=0.2))
    flows = [CachedSignal(em(srv, no_sleep, clock), cache_dir=tmp_path, clock=clock) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda c: c.history("ES", *WINDOW), flows))
    assert srv.count(PAST_RANGE) == 1
    assert all(r.tolist() == results[0].tolist() for r in results)


def test_signal_modules_export_what_they_declare():
    import importlib

    for name in ["base", "trace", "cache", "fallback", "registry", "credentials", "electricitymaps", "watttime", "gb", "_http"]:
        module = importlib.import_module(f"care_flows.signals.{name}")
        for item in module.__all__:
            assert getattr(module, item) is not None, (name, item)
    import care_flows.signals as pkg

    for item in pkg.__all__:
        assert getattr(pkg, item) is not None, item


def test_bad_input_is_a_config_error_not_a_fallback(provider_server, no_sleep, clock, tmp_path):
    from care_flows.errors import ConfigError

    chain = get_signal("electricitymaps", api_token="tok", base_url=provider_server.url + "/v3", sleep=no_sleep, clock=clock, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="is not after start"):
        chain.history("ES", "2023-06-02T00:00Z", "2023-06-01T00:00Z")
    with pytest.raises(ConfigError, match="no UTC offset"):
        chain.forecast("ES", "2023-06-02T00:00", "1h")
    assert provider_server.count() == 0


def test_a_stale_entry_covering_little_of_the_question_leaves_it_to_the_next_source(provider_server, no_sleep, clock, tmp_path):
    """Review 35b #6: an expired 2 h forecast answered a 24 h question ahead of the embedded data's
    full horizon, and the planner then ran the job now; at least half the window must be covered."""
    srv = provider_server
    short = {"zone": "ES", "updatedAt": "2024-05-01T10:00:00.000Z",
             "forecast": [{"datetime": f"2024-05-01T{h:02d}:00:00.000Z", "carbonIntensity": 100 + h} for h in (10, 11)]}
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, short), srv.reply(500, b"down"))
    chain = get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", sleep=no_sleep, clock=clock,
                       max_retries=0, cache_dir=tmp_path)
    assert series_meta(chain.forecast("ES", "2024-05-01T10:00Z", "2h")).source == "electricitymaps"  # cached
    clock.now += pd.Timedelta("1h")  # expired; the provider now fails
    again = chain.forecast("ES", "2024-05-01T10:00Z", "3h")  # 2 h of 3: still the stale answer
    assert series_meta(again).source == "stale-cache:electricitymaps" and len(again) == 2
    day = chain.forecast("ES", "2024-05-01T10:00Z", "24h")
    assert series_meta(day).source == "embedded" and len(day) == 24
    assert "at least 50% of the window" in series_meta(day).fallback_errors[-1]
