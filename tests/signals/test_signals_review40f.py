"""Review 40f: carbon-provider failures, end to end.

H1: headers sent a line every few seconds held a call (a `care plan`, a `@care` run) for 90 s: the
deadline was checked only once the body came. M1: a WattTime forecast gave each of its GETs (login,
region lookup, forecast) its own 15 s. M2: a `Retry-After` of a year kept the breaker open and the
cache's failure entry alive for a year. M3: `care plan --region eu-west-2 --source gb` asked for the
national forecast, where `care regions` and `@care` use London's regional one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ProviderUnavailableError
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.watttime import WattTimeSignal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
START = "2024-05-01T10:00Z"


def _header_trickler():
    """A raw server that sends a status line, then one header line every 0.3 s, for 30 s."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(100):
                if stop.is_set():
                    return
                conn.sendall(f"X-Slow-{i}: x\r\n".encode())
                time.sleep(0.3)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv, stop


def test_h1_headers_that_trickle_in_are_bounded_by_the_calls_deadline(clock):
    srv, stop = _header_trickler()
    try:
        sig = ElectricityMapsSignal("tok", base_url=f"http://127.0.0.1:{srv.getsockname()[1]}/v3", clock=clock,
                                    timeout_s=1.0, deadline_s=1.0, max_retries=1, cooldown_s=0, sleep=lambda s: None)
        t = time.monotonic()
        with pytest.raises(ProviderUnavailableError, match="the call's deadline, before its answer's headers were in") as info:
            sig.forecast("ES", START, "6h")
        assert time.monotonic() - t < 10  # not the 30 s the headers keep coming
        assert info.value.reason.startswith("timed out")
    finally:
        stop.set()
        srv.close()


def test_m1_login_region_lookup_and_forecast_share_one_deadline(provider_server, clock):
    srv = provider_server
    srv.route("/login", srv.reply(200, "watttime_login.json", delay_s=0.6))
    srv.route("/v3/region-from-loc", srv.reply(200, "watttime_region_from_loc.json", delay_s=0.6))
    srv.route("/v3/forecast", srv.reply(200, "watttime_forecast.json", delay_s=0.6))
    sig = WattTimeSignal("alice", "pw-123456", base_url=srv.url, clock=clock, timeout_s=5.0, deadline_s=1.0, max_retries=0,
                         cooldown_s=0, sleep=lambda s: None)
    with pytest.raises(ProviderUnavailableError) as info:
        sig.forecast("eu-west-3", START, "1h")  # 3 x 0.6 s asked of a 1 s call
    assert info.value.reason.startswith("timed out")
    assert "/v3/forecast" not in [r["path"] for r in srv.requests]  # no time was left to ask it


def test_m2_a_year_long_retry_after_holds_the_breaker_and_the_cache_for_an_hour_at_most(provider_server, clock, tmp_path):
    from care_flows.signals.breaker import BREAKER
    from care_flows.signals.cache import CachedSignal

    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(503, b"{}", headers={"Retry-After": "31536000"}))
    inner = ElectricityMapsSignal("tok", base_url=srv.url + "/v3", clock=clock, max_retries=0, cooldown_s=300, sleep=lambda s: None)
    cached = CachedSignal(inner, cache_dir=tmp_path, clock=clock)
    with pytest.raises(ProviderUnavailableError):
        cached.forecast("ES", START, "6h")
    [fail] = [json.loads(p.read_text()) for p in tmp_path.rglob("*.fail")]
    assert pd.Timestamp(fail["until"]) - pd.Timestamp(fail["failed_at"]) == pd.Timedelta(hours=1)
    now = clock()
    assert BREAKER.is_open("electricitymaps", srv.url + "/v3", now + pd.Timedelta(minutes=59))
    assert not BREAKER.is_open("electricitymaps", srv.url + "/v3", now + pd.Timedelta(minutes=61))  # not a year


def test_m3_care_plan_for_eu_west_2_asks_the_gb_source_for_londons_regional_forecast(provider_server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    provider_server.route("/", provider_server.reply(503, b"{}"))
    from care_flows.signals import registry

    real = registry.SOURCES["gb"]
    monkeypatch.setitem(registry.SOURCES, "gb", lambda kind, **s: real(kind, base_url=provider_server.url, max_retries=0, **s))
    assert main(["plan", "--region", "eu-west-2", "--source", "gb", "--now", "2023-06-01T08:00:00Z", "--duration", "1h",
                 "--within", "6h", "--json"]) == 0
    paths = [r["path"] for r in provider_server.requests]
    assert paths and all("/regional/" in p and p.endswith("/regionid/13") for p in paths), paths


def test_l5_the_home_region_is_asked_first_then_the_others_at_once():
    """4 regions of a provider answering in 9 s took 37 s one after another. The first region is still
    asked alone (a dead provider opens its breaker there, a half-open trial is decided, WattTime logs in
    once: review 40g M1-M2, L2), and a user's own callable is asked one region at a time (L1)."""
    from datetime import timedelta

    from care_flows.orchestration.plan import fetch_forecasts
    from care_flows.policy import CarePolicy
    from care_flows.signals import TraceSignal

    regions = ["eu-south-2", "eu-north-1", "eu-west-3", "eu-central-1"]
    together = threading.Barrier(len(regions) - 1, timeout=10)  # one after another, the first of them would wait here alone
    asked: list[str] = []
    base = TraceSignal.embedded()

    class Slow(type(base)):  # CaRE's own kind of source
        def forecast(self, zone, start, horizon, **kw):  # noqa: ANN001, ANN201
            asked.append(zone)
            if zone != "ES":  # the home region's grid
                together.wait()
            return super().forecast(zone, start, horizon, **kw)

    slow = Slow.__new__(Slow)
    slow.__dict__.update(base.__dict__)
    policy = CarePolicy(home_region="eu-south-2", regions=regions[1:], expected_duration="1h", deadline_within="6h")
    got = fetch_forecasts(policy, pd.Timestamp("2023-06-01T00:00Z"), timedelta(hours=6), signal=slow)
    assert list(got) == policy.candidate_regions and asked[0] == "ES"

    threads: set[str] = set()

    def own(region, start, span):  # noqa: ANN001, ANN202 - a user's callable may hold thread-bound resources
        threads.add(threading.current_thread().name)
        return pd.Series([100.0] * 8, index=pd.date_range(start, periods=8, freq="h"))

    assert list(fetch_forecasts(policy, pd.Timestamp("2026-01-01T00:00Z"), timedelta(hours=6), signal=own)) == policy.candidate_regions
    assert threads == {threading.current_thread().name}


def test_l2_an_unusable_cache_folder_is_said_once_per_process_not_once_per_cached_signal(provider_server, clock, tmp_path, caplog):
    import logging

    from care_flows.signals import get_signal

    provider_server.route("/v3/carbon-intensity/forecast", provider_server.reply(200, "electricitymaps_forecast.json"))
    (tmp_path / "f").write_text("x")
    with caplog.at_level(logging.WARNING, logger="care_flows.signals.cache"):
        for _ in range(3):  # as care regions does, one cached signal per region
            get_signal("electricitymaps", api_token="tok", base_url=provider_server.url + "/v3", clock=clock, max_retries=0,
                       cache_dir=tmp_path / "f" / "cache").forecast("ES", START, "6h")
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "cannot be used" in r.getMessage()]
    assert len(said) == 1, said


def test_l6_a_providers_base_url_can_be_set_in_the_environment(provider_server, monkeypatch, tmp_path, capsys):
    """A proxy, a regional endpoint or a test server: only Python (base_url=) or a credentials block could say so."""
    provider_server.route("/v3/carbon-intensity/forecast", provider_server.reply(200, "electricitymaps_forecast.json"))
    monkeypatch.setenv("CARE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-123456")
    monkeypatch.setenv("ELECTRICITYMAPS_BASE_URL", provider_server.url + "/v3")
    assert main(["plan", "--zone", "ES", "--source", "electricitymaps", "--now", "2024-05-01T12:00:00Z", "--duration", "1h",
                 "--within", "4h", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["data_source"].startswith("electricitymaps") and doc["warnings"] == [], doc
    assert [r["path"] for r in provider_server.requests] == ["/v3/carbon-intensity/forecast"]
    monkeypatch.setenv("ELECTRICITYMAPS_BASE_URL", "ftp://u:pw@h/x")
    assert main(["plan", "--zone", "ES", "--source", "electricitymaps", "--now", "2024-05-01T12:00:00Z", "--duration", "1h",
                 "--within", "4h"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: base URL ftp://***@h/x is not an http(s) URL") and "pw" not in err


def test_review40g_m2_a_dead_provider_is_asked_by_the_first_region_only(provider_server, clock, tmp_path):
    """Asked all at once, every region ran its own retry loop against a provider the first had found down
    (8 regions: 24 requests instead of 3)."""
    from datetime import timedelta

    from care_flows.orchestration.plan import fetch_forecasts
    from care_flows.policy import CarePolicy
    from care_flows.signals import get_signal

    provider_server.route("/v3/carbon-intensity/forecast", provider_server.reply(500, b"{}"))
    signal = get_signal("electricitymaps", api_token="tok-123456", base_url=provider_server.url + "/v3", clock=clock, max_retries=2,
                        sleep=lambda s: None, cache_dir=tmp_path)
    policy = CarePolicy(home_region="eu-south-2", regions=["eu-north-1", "eu-west-3", "eu-central-1"], expected_duration="1h",
                        deadline_within="6h")
    got = fetch_forecasts(policy, clock(), timedelta(hours=6), signal=signal)
    assert list(got) == policy.candidate_regions  # every region served, by the embedded fallback
    assert provider_server.count("/v3/carbon-intensity/forecast") == 3  # one retry loop (1 + 2 retries), then the breaker


def test_review40g_l5_a_refusal_says_what_to_fix(provider_server, clock):
    from care_flows.errors import ProviderAuthError
    from care_flows.signals.fallback import short_reason
    from care_flows.signals.gb import GBCarbonSignal

    srv = provider_server
    srv.route("/intensity/2024-05-01T10:00Z/fw48h", srv.reply(401, {"error": {"code": "401", "message": "denied"}}))
    with pytest.raises(ProviderAuthError) as gb:
        GBCarbonSignal(base_url=srv.url, clock=clock, max_retries=0, sleep=lambda s: None).forecast("GB", START, "6h")
    assert short_reason(gb.value) == "HTTP 401, refused: check the base URL or proxy"  # no credentials to check
    srv.route("/v3/carbon-intensity/forecast", srv.reply(401, {"message": "Request unauthorized for zoneKey=SE"}))
    with pytest.raises(ProviderAuthError) as em:
        ElectricityMapsSignal("tok-123456", base_url=srv.url + "/v3", clock=clock, max_retries=0, sleep=lambda s: None).forecast("SE", START, "6h")
    assert short_reason(em.value) == "HTTP 401: the token's plan lacks zone SE"


def test_review40g_l4_the_request_thread_sees_the_callers_context(clock):
    import contextvars

    import requests

    from care_flows.signals._http import HttpClient

    trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)
    seen = []

    class Session(requests.Session):
        def get(self, url, **kw):  # noqa: ANN001, ANN201
            seen.append(trace.get())
            resp = requests.models.Response()
            resp.status_code, resp._content = 200, b"{}"
            return resp

    trace.set("abc123")
    assert HttpClient("x", "http://127.0.0.1:1", session=Session(), deadline_s=5.0, cooldown_s=0, clock=clock).get_json("/a") == {}
    assert seen == ["abc123"]
