"""The disk cache must never be the reason a live provider is not asked (review 24: H1, M1, M3, L3, L4, L5, L7)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pandas as pd
import pytest

from care_flows.errors import ProviderUnavailableError
from care_flows.signals import CachedSignal, TraceSignal, get_signal, series_meta
from care_flows.signals.breaker import CircuitBreaker
from care_flows.signals.electricitymaps import ElectricityMapsSignal

WINDOW = ("2023-06-01T00:00Z", "2023-06-01T06:00Z")
PAST_RANGE = "/v3/carbon-intensity/past-range"
FORECAST = "/v3/carbon-intensity/forecast"
START = "2024-05-01T10:00Z"


def chain(srv, clock, cache_dir, **kw):
    kw.setdefault("max_retries", 0)
    return get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", sleep=lambda s: None, clock=clock,
                      cache_dir=cache_dir, **kw)


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unusable_cache_folder_means_no_cache_not_no_provider(provider_server, clock, tmp_path, caplog, where):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    (tmp_path / "f").write_text("x")
    cache_dir = tmp_path / "f" / "cache" if where == "under-a-file" else "/proc/care-cache"
    sig = chain(srv, clock, cache_dir)
    with caplog.at_level(logging.WARNING, logger="care_flows.signals.cache"):
        first = sig.history("ES", *WINDOW)
        second = sig.history("ES", *WINDOW)
    assert series_meta(first).source == "electricitymaps" and series_meta(first).fallback_errors == ()
    assert series_meta(second).source == "electricitymaps" and srv.count(PAST_RANGE) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot be used" in warnings[0] and "CARE_CACHE_DIR" in warnings[0] and "\n" not in warnings[0]


BAD_ENTRIES = ["null", "[]", '"x"', '{"format": 1}', '{"format": 1, "stored_at": "garbage"}',
               '{"format": 1, "stored_at": "2024-05-01T10:00:00+00:00"}',
               '{"format": 1, "stored_at": "2024-05-01T10:00:00+00:00", "request": {}, "meta": {"source": "x", "signal": "y", "zone": "ES"},'
               ' "times": ["not a time"], "g_per_kwh": [1.0]}']


@pytest.mark.parametrize("text", [*BAD_ENTRIES, '{"format": 1, "x": [1,2'])
def test_an_entry_of_the_wrong_shape_is_a_miss_and_is_replaced(provider_server, clock, tmp_path, text, caplog):
    srv = provider_server
    srv.route(PAST_RANGE, srv.reply(200, "electricitymaps_past_range.json"))
    sig = chain(srv, clock, tmp_path)
    sig.history("ES", *WINDOW)
    [entry] = tmp_path.rglob("*.json")
    entry.write_text(text)
    with caplog.at_level(logging.WARNING, logger="care_flows.signals.cache"):
        assert series_meta(sig.history("ES", *WINDOW)).source == "electricitymaps"  # even before the TTL ends
    # once, though the lookup reads the entry twice (before and under the lock): review 39f L4
    assert len([r for r in caplog.records if entry.name in r.getMessage()]) == 1
    assert srv.count(PAST_RANGE) == 2
    assert json.loads(entry.read_text())["format"] == 1  # replaced by the new answer
    assert series_meta(sig.history("ES", *WINDOW)).source == "cache:electricitymaps"


def test_one_bad_entry_does_not_break_the_stale_lookup_of_other_windows(tmp_path):
    c = CachedSignal(TraceSignal.embedded(), cache_dir=tmp_path)
    other = ("2023-06-02T00:00Z", "2023-06-02T06:00Z")
    c.history("ES", *WINDOW)
    c.history("ES", *other)
    entries = sorted(tmp_path.rglob("*.json"))
    assert len(entries) == 2
    good = {json.loads(p.read_text())["request"]["start"][:10]: p for p in entries}
    good["2023-06-01"].write_text("null")
    assert series_meta(c.stale().history("ES", *other)).source == "stale-cache:embedded"
    with pytest.raises(ProviderUnavailableError, match="no cached history"):
        c.stale().history("ES", *WINDOW)


def _own_breaker(sig):
    """What a separate process has: its own (closed) circuit breaker."""
    sig.sources[0].inner.http.breaker = CircuitBreaker()
    return sig


def test_a_provider_failure_is_remembered_for_other_processes_of_the_same_key(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b""))
    first = _own_breaker(chain(srv, clock, tmp_path))
    assert series_meta(first.forecast("ES", START, "6h")).source == "embedded"
    assert srv.count(FORECAST) == 1
    fails = list(tmp_path.rglob("*.fail"))
    assert len(fails) == 1 and "tok" not in fails[0].read_text()
    # another process (own breaker) asking the same question within fail_ttl fails fast
    second = _own_breaker(chain(srv, clock, tmp_path))
    fc = second.forecast("ES", START, "6h")
    assert series_meta(fc).source == "embedded" and srv.count(FORECAST) == 1
    assert "negative entry" in series_meta(fc).fallback_errors[0]
    # after fail_ttl (60 s) it is asked again; an answer clears the negative entry
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json"))
    clock.advance(61)
    third = _own_breaker(chain(srv, clock, tmp_path))
    assert series_meta(third.forecast("ES", START, "6h")).source == "electricitymaps"
    assert srv.count(FORECAST) == 2 and not list(tmp_path.rglob("*.fail"))


def test_a_provider_failure_makes_other_processes_skip_it_for_other_zones_and_windows_too(provider_server, clock, tmp_path):
    """Review 40f L1: the breaker lives in one process and the negative entry was per key, so each
    new CLI call or deployed run with another zone or window paid the provider's timeout again."""
    srv = provider_server
    srv.route(FORECAST, srv.reply(503, b""))
    first = _own_breaker(chain(srv, clock, tmp_path))
    assert series_meta(first.forecast("ES", START, "6h")).source == "embedded" and srv.count(FORECAST) == 1
    [down] = tmp_path.rglob("*.down")
    assert "tok" not in down.read_text() and srv.url not in down.read_text() and srv.url not in down.name
    clock.advance(30)
    other = _own_breaker(chain(srv, clock, tmp_path))  # another process, another zone and window
    fc = other.forecast("eu-north-1", "2024-05-01T11:00Z", "12h")
    assert series_meta(fc).source == "embedded" and srv.count(FORECAST) == 1
    assert "skipping it for every zone and window until" in series_meta(fc).fallback_errors[0]
    # another base URL (a mirror the user switched to) is not the provider that failed
    mirror = _own_breaker(get_signal("electricitymaps", api_token="tok", base_url=srv.url.replace("127.0.0.1", "localhost") + "/v3",
                                     sleep=lambda s: None, clock=clock, cache_dir=tmp_path, max_retries=0))
    mirror.forecast("FR", START, "6h")
    assert srv.count(FORECAST) == 2
    # after fail_ttl it is asked again, and its answer clears the provider's entry
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json"))
    clock.advance(31)
    again = _own_breaker(chain(srv, clock, tmp_path))
    assert series_meta(again.forecast("ES", START, "6h")).source == "electricitymaps"
    assert not down.exists()  # (the mirror's own entry, written when it failed too, is its own)


def test_callers_waiting_on_the_lock_fail_fast_instead_of_each_paying_the_timeout(provider_server, tmp_path):
    srv = provider_server
    srv.route(FORECAST, srv.reply(200, "electricitymaps_forecast.json", delay_s=1.0))
    start = pd.Timestamp.now(tz="UTC").floor("h")
    sigs = [_own_breaker(get_signal("electricitymaps", api_token="tok", base_url=srv.url + "/v3", cache_dir=tmp_path,
                                    timeout_s=0.3, deadline_s=0.3, max_retries=0)) for _ in range(3)]
    served: list[str] = []
    first = threading.Thread(target=lambda: served.append(series_meta(sigs[0].forecast("ES", start, "6h")).source))
    first.start()
    for _ in range(200):  # the first caller holds the key's lock while its request hangs
        if srv.count(FORECAST):
            break
        time.sleep(0.01)
    waiters = [threading.Thread(target=lambda s=s: served.append(series_meta(s.forecast("ES", start, "6h")).source)) for s in sigs[1:]]
    for t in waiters:
        t.start()
    for t in [first, *waiters]:
        t.join(30)
    assert served == ["embedded"] * 3
    assert srv.count(FORECAST) == 1  # without the negative entry each waiter asks (and waits) in turn


def test_a_history_window_reaching_now_is_kept_only_for_the_forecast_ttl(provider_server, clock, tmp_path):
    srv = provider_server

    def points(n):
        t0 = pd.Timestamp("2024-04-28T00:00Z")
        return {"zone": "ES", "data": [{"zone": "ES", "carbonIntensity": 100 + i, "emissionFactorType": "lifecycle",
                                        "datetime": (t0 + pd.Timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")} for i in range(n)]}

    clock.now = pd.Timestamp("2024-04-30T10:30Z")
    srv.route(PAST_RANGE, srv.reply(200, points(59)))  # data up to 10:00 today
    sig = chain(srv, clock, tmp_path)
    window = ("2024-04-28T00:00Z", "2024-05-01T00:00Z")
    assert len(sig.history("ES", *window)) == 59
    clock.advance(10 * 60)
    assert series_meta(sig.history("ES", *window)).source == "cache:electricitymaps"
    clock.now = pd.Timestamp("2024-04-30T12:30Z")
    srv.route(PAST_RANGE, srv.reply(200, points(61)))
    later = sig.history("ES", *window)
    assert series_meta(later).source == "electricitymaps" and len(later) == 61
    # a window that ended long before the fetch keeps the 6 h history TTL
    old = ("2024-04-28T00:00Z", "2024-04-29T00:00Z")
    sig.history("ES", *old)
    clock.advance(5 * 3600)
    assert series_meta(sig.history("ES", *old)).source == "cache:electricitymaps"


def test_the_stale_cache_prefers_the_entry_covering_more_of_the_window(tmp_path):
    t = [pd.Timestamp("2023-03-01T00:00Z")]
    c = CachedSignal(TraceSignal.embedded(oracle=True), cache_dir=tmp_path, clock=lambda: t[0])
    full = c.forecast("ES", "2023-03-01T10:00Z", "24h")
    t[0] += pd.Timedelta("1h")
    c.forecast("ES", "2023-03-01T10:00Z", "2h")  # newer but shorter
    stale = c.stale().forecast("ES", "2023-03-01T10:00Z", "24h")
    assert len(stale) == 24 and stale.tolist() == full.tolist()


def test_watttime_signal_type_is_part_of_the_cache_key(provider_server, clock, tmp_path):
    srv = provider_server
    srv.route("/login", srv.reply(200, "watttime_login.json"))
    srv.route("/v3/forecast", srv.reply(200, "watttime_forecast.json"))
    sig = get_signal("watttime", username="u", password="p", base_url=srv.url, sleep=lambda s: None, clock=clock, cache_dir=tmp_path)
    sig.forecast("CAISO_NORTH", clock.now, "1h")
    [entry] = tmp_path.rglob("*.json")
    assert json.loads(entry.read_text())["request"]["tag"] == "co2_moer"


def test_old_entries_are_pruned_with_their_lock_files(tmp_path):
    t = [pd.Timestamp("2023-03-01T00:00Z")]
    c = CachedSignal(TraceSignal.embedded(oracle=True), cache_dir=tmp_path, clock=lambda: t[0], keep="1d")
    for i in range(8 * 24):  # a plan every hour for 8 days, each with its own window end
        t[0] = pd.Timestamp("2023-03-01T00:00Z") + pd.Timedelta(hours=i)
        c.forecast("ES", t[0], pd.Timedelta(hours=6 + i % 3))
        c.history("SE", "2023-02-01T00:00Z", "2023-02-01T03:00Z")  # another zone/op: its own entries
    files = os.listdir(tmp_path / "embedded")
    forecasts = [f for f in files if f.startswith("forecast-ES-")]
    # entries stored and ending more than a day ago are gone, with their .lock files
    assert 0 < sum(f.endswith(".json") for f in forecasts) <= 24 + 12
    assert sum(f.endswith(".lock") for f in forecasts) == sum(f.endswith(".json") for f in forecasts)
    assert any(f.startswith("history-SE-") and f.endswith(".json") for f in files)
    stale = c.stale().forecast("ES", t[0], "6h")
    assert len(stale) == 6


def test_a_rate_limit_is_the_accounts_not_the_providers(provider_server, clock, tmp_path):
    """Review 41d L1: one token's 429 made every process sharing the cache skip the provider for every
    zone, for up to an hour, whatever token it had."""
    srv = provider_server
    srv.route(FORECAST, srv.reply(429, b"", headers={"Retry-After": "600"}))
    first = _own_breaker(chain(srv, clock, tmp_path))
    assert series_meta(first.forecast("ES", START, "6h")).source == "embedded"
    assert list(tmp_path.rglob("*.fail")) and not list(tmp_path.rglob("*.down"))


def test_a_zone_the_provider_never_serves_is_not_blamed_on_its_failure_for_another(clock, tmp_path):
    """Review 44a L4: after the GB API failed for GB, SE was reported "could not connect, 2 s ago" instead of
    "no data for this zone" (the provider-wide negative entry answered before the zone was looked at)."""
    def gb_chain():
        sig = get_signal("gb", base_url="http://127.0.0.1:9", sleep=lambda s: None, clock=clock, cache_dir=tmp_path, max_retries=0)
        return _own_breaker(sig)  # each call as a separate process: only the cache's entry is shared

    first = gb_chain().forecast("GB", START, "6h")
    assert series_meta(first).source == "embedded" and list(tmp_path.rglob("*.down"))
    clock.advance(2)
    fc = gb_chain().forecast("SE", START, "6h")
    assert series_meta(fc).source == "embedded"
    assert "no data for this zone" in series_meta(fc).fallback_note and "ago" not in series_meta(fc).fallback_note
