"""Review 55a: the carbon providers against a broken or hostile upstream.

H1: Electricity Maps' ``auth-token`` header followed a redirect to another host. M1: an infinite value
(JSON ``1e400``) passed every check and broke planning instead of falling back. M2: the cache judged
"recent history" at lookup, so a partial history was served as complete for hours. M3/M4: ``care
intensity`` hid a provider's failure behind "no embedded trace", and replayed lifecycle data for a
direct source. M5: no cap on an answer's size. L1: deep JSON and huge integers leaked built-in errors.
L3: a base URL's ``user:password`` showed in reprs. L4: an entry stored in the future stayed fresh.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ProviderResponseError
from care_flows.signals import CachedSignal, get_signal, series_meta
from care_flows.signals.electricitymaps import ElectricityMapsSignal

FORECAST = "/v3/carbon-intensity/forecast"
PAST_RANGE = "/v3/carbon-intensity/past-range"
TOKEN = "emaps-SECRET-TOKEN-0123456789abcdef"


def em(url: str, clock, **kw) -> ElectricityMapsSignal:
    return ElectricityMapsSignal(TOKEN, base_url=url + "/v3", clock=clock, max_retries=0, sleep=lambda s: None, **kw)


def _body(value: str) -> bytes:
    points = ",".join(f'{{"datetime": "2024-05-01T{10 + h:02d}:00:00.000Z", "carbonIntensity": {value if h == 1 else 100 + h}}}' for h in range(4))
    return f'{{"zone": "ES", "forecast": [{points}], "updatedAt": "2024-05-01T09:50:00.000Z"}}'.encode()


def test_h1_a_redirect_is_refused_and_the_token_never_reaches_the_other_host(provider_server, clock):
    other = type(provider_server)()  # a second host (the conftest's FakeProvider)
    other.thread.start()
    try:
        other.route(FORECAST, other.reply(200, "electricitymaps_forecast.json"))
        provider_server.route(FORECAST, provider_server.reply(302, b"", headers={"Location": other.url + FORECAST}))
        with pytest.raises(ProviderResponseError, match=r"was redirected \(HTTP 302 to http://127\.0\.0\.1:\d+/v3/carbon-intensity/forecast\); "
                                                       r"CaRE does not follow redirects") as info:
            em(provider_server.url, clock).forecast("ES", "2024-05-01T10:00Z", "4h")
        assert other.count() == 0  # before: the request, auth-token header and all, went there
        assert TOKEN not in str(info.value)
    finally:
        other.server.shutdown()
        other.server.server_close()


@pytest.mark.parametrize("value", ["1e400", "Infinity"])
def test_m1_an_infinite_value_is_a_format_error_so_the_chain_falls_back(provider_server, clock, tmp_path, value):
    provider_server.route(FORECAST, provider_server.reply(200, _body(value)))
    with pytest.raises(ProviderResponseError, match="value inf at 2024-05-01T11:00:00\\+00:00 is missing, infinite or negative"):
        em(provider_server.url, clock).forecast("ES", "2024-05-01T10:00Z", "4h")
    chain = get_signal("electricitymaps", api_token=TOKEN, base_url=provider_server.url + "/v3", cache_dir=tmp_path, clock=clock, max_retries=0)
    series = chain.forecast("ES", "2024-05-01T10:00Z", "4h")
    assert series_meta(series).source == "embedded" and bool(pd.Series(series).notna().all())
    assert not list(tmp_path.rglob("*forecast*.json"))  # the bad answer is not cached


def test_m5_an_answer_beyond_the_size_cap_is_refused(provider_server, clock, monkeypatch):
    from care_flows.signals import _http

    assert _http.MAX_BODY_BYTES == 32 * 2**20
    monkeypatch.setattr(_http, "MAX_BODY_BYTES", 2**20)
    provider_server.route(FORECAST, provider_server.reply(200, b"[" + b" " * (2**20 + 10) + b"]"))
    with pytest.raises(ProviderResponseError, match=r"answered with more than 1 MiB \(decoded\)"):
        em(provider_server.url, clock).forecast("ES", "2024-05-01T10:00Z", "4h")


def test_l1_deep_json_and_a_huge_integer_are_format_errors_and_the_breaker_stays_usable(provider_server, clock):
    provider_server.route(FORECAST, provider_server.reply(200, b"[" * 100_000), provider_server.reply(200, "electricitymaps_forecast.json"))
    sig = ElectricityMapsSignal(TOKEN, base_url=provider_server.url + "/v3", clock=clock, max_retries=0, sleep=lambda s: None)
    with pytest.raises(ProviderResponseError, match="not JSON"):  # was a RecursionError
        sig.forecast("ES", "2024-05-01T10:00Z", "4h")
    assert len(sig.forecast("ES", "2024-05-01T10:00Z", "4h")) > 0  # was "a retry is under way" for 60 s
    provider_server.route(FORECAST, provider_server.reply(200, _body("1" + "0" * 400)))
    with pytest.raises(ProviderResponseError, match=r"point 1 has carbonIntensity 1000.*, not a number"):  # was an OverflowError
        sig.forecast("ES", "2024-05-01T10:00Z", "4h")


def test_l3_reprs_hide_a_base_urls_user_and_password():
    chain = get_signal("electricitymaps", api_token=TOKEN, base_url="https://gwuser:GW-PASSWORD-123456@gateway.example/v3")
    assert "GW-PASSWORD" not in repr(chain) and "gwuser" not in repr(chain)
    assert "https://***@gateway.example/v3" in repr(chain)


def test_m2_a_history_that_ended_near_its_fetch_keeps_the_short_ttl_later_too(provider_server, clock, tmp_path):
    route = "/v3/carbon-intensity/history"
    provider_server.route(route, provider_server.reply(200, "electricitymaps_history.json"))
    cached = CachedSignal(em(provider_server.url, clock), cache_dir=tmp_path, clock=clock)
    window = ("2024-05-01T04:00Z", "2024-05-01T10:00Z")  # fetched at 10:00: the provider has data only up to about now
    cached.history("ES", *window)
    clock.now += pd.Timedelta("4h")  # 14:00: the window ended 4 h ago, but it had not when the entry was stored
    assert series_meta(cached.history("ES", *window)).source == "electricitymaps"
    assert provider_server.count(route) == 2  # before: 1, a possibly partial answer served from the cache for up to 6 h
    clock.now += pd.Timedelta("1h")  # stored at 14:00, long after the window ended: the long TTL
    assert series_meta(cached.history("ES", *window)).source == "cache:electricitymaps"


def test_l4_an_entry_stored_in_the_future_is_stale(provider_server, clock, tmp_path):
    provider_server.route(FORECAST, provider_server.reply(200, "electricitymaps_forecast.json"))
    cached = CachedSignal(em(provider_server.url, clock), cache_dir=tmp_path, clock=clock)
    clock.now += pd.Timedelta("1D")  # the clock ran a day ahead when the entry was written ...
    cached.forecast("ES", "2024-05-01T12:00Z", "6h")
    clock.now -= pd.Timedelta("1D")  # ... and was corrected
    assert series_meta(cached.forecast("ES", "2024-05-01T12:00Z", "6h")).source == "electricitymaps"
    assert provider_server.count(FORECAST) == 2


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_m3_m4_care_intensity_names_the_failed_provider_and_replays_its_kind(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CARE_PROVIDER_COOLDOWN_S", "0")
    window = ["--start", "2026-11-29T00:00:00Z", "--end", "2026-11-29T02:00:00Z"]
    # a direct-only source down: the replay is the embedded *direct* trace (was lifecycle: 299 for 214 g/kWh)
    monkeypatch.setenv("GB_CARBON_INTENSITY_BASE_URL", "http://127.0.0.1:1")
    code, out, err = _cli(capsys, "intensity", "--zone", "GB", "--source", "gb", *window, "--json")
    assert code == 0 and json.loads(out)["signal"] == "direct"
    _, direct, _ = _cli(capsys, "intensity", "--zone", "GB", "--kind", "direct", *window, "--json")
    assert [p["g_per_kwh"] for p in json.loads(out)["points"]] == [p["g_per_kwh"] for p in json.loads(direct)["points"]]
    # a zone without embedded data: the provider's failure is the error, not "no embedded trace"
    monkeypatch.setenv("WATTTIME_USERNAME", "u")
    monkeypatch.setenv("WATTTIME_PASSWORD", "p-secret-123")
    monkeypatch.setenv("WATTTIME_BASE_URL", "http://127.0.0.1:1")
    code, out, err = _cli(capsys, "intensity", "--region", "us-west-1", "--source", "watttime", *window)
    assert code == 2 and "watttime GET /login failed to connect (connection refused)" in err, err
    assert "p-secret-123" not in err


def test_l2_a_mistyped_region_is_a_config_error_before_any_source_is_asked(provider_server, clock, tmp_path):
    from care_flows.errors import UnknownRegionError

    chain = get_signal("electricitymaps", api_token=TOKEN, base_url=provider_server.url + "/v3", cache_dir=tmp_path, clock=clock)
    with pytest.raises(UnknownRegionError, match="unknown region 'eu-sout-2' \\(did you mean 'eu-south-2'\\?\\)"):
        chain.forecast("eu-sout-2", "2024-05-01T10:00Z", "4h")  # was ProviderUnavailableError: "no carbon source answered"
    assert provider_server.count() == 0
