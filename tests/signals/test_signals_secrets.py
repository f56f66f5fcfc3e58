"""A planted secret never shows up in repr, logs, error messages, fallback notes or cache files."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from care_flows.errors import CareError, ProviderAuthError
from care_flows.signals import get_signal
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.watttime import WattTimeSignal

EM_SECRET = "PLANTED-em-7f3a9c2e"
WT_SECRET = "PLANTED-wt-b41d8e60"
NOW = pd.Timestamp("2024-05-01T10:00Z")


def _all_text(tmp_path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("status", [200, 401, 429, 500, "malformed"])
def test_electricitymaps_token_never_leaks(provider_server, no_sleep, tmp_path, caplog, status):
    srv = provider_server
    reply = srv.reply(200, b"{oops") if status == "malformed" else srv.reply(status, "electricitymaps_past_range.json" if status == 200 else b"{}", headers={"Retry-After": "0"})
    srv.route("/v3/carbon-intensity/past-range", reply)
    caplog.set_level(logging.DEBUG)
    chain = get_signal("electricitymaps", api_token=EM_SECRET, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: NOW, cache_dir=tmp_path)
    s = chain.history("ES", "2023-06-01T00:00Z", "2023-06-01T06:00Z")
    texts = [repr(chain), str(chain), repr(chain.sources[0].inner), str(s.attrs), caplog.text, _all_text(tmp_path)]
    assert srv.requests[0]["headers"]["auth-token"] == EM_SECRET  # it was really used
    for text in texts:
        assert EM_SECRET not in text


def test_watttime_password_and_token_never_leak(provider_server, no_sleep, tmp_path, caplog):
    srv = provider_server
    srv.route("/login", srv.reply(200, {"token": WT_SECRET + "-token"}))
    srv.route("/v3/forecast", srv.reply(500, b"{}"))
    caplog.set_level(logging.DEBUG)
    sig = WattTimeSignal("alice", WT_SECRET, base_url=srv.url, sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(CareError) as info:
        sig.forecast("CAISO_NORTH", "2024-05-01T10:00Z", "1h")
    chain = get_signal("watttime", username="alice", password=WT_SECRET, base_url=srv.url, sleep=no_sleep, clock=lambda: NOW, cache_dir=tmp_path)
    fc = chain.forecast("eu-west-3", "2024-05-01T10:00Z", "1h")
    for text in [repr(sig), str(info.value), repr(chain), str(fc.attrs), caplog.text, _all_text(tmp_path), repr(vars(sig))]:
        assert WT_SECRET not in text


def test_auth_failure_message_does_not_echo_the_token(provider_server, no_sleep):
    srv = provider_server
    srv.route("/v3/carbon-intensity/latest", srv.reply(401, {"message": "bad token"}))
    sig = ElectricityMapsSignal(EM_SECRET, base_url=srv.url + "/v3", sleep=no_sleep)
    with pytest.raises(CareError) as info:
        sig.latest("ES")
    assert EM_SECRET not in str(info.value) and EM_SECRET not in repr(info.value)
    assert EM_SECRET not in repr(sig) and "**********" in repr(sig._token)


def test_a_token_with_a_line_break_around_it_is_sent_without_it(provider_server, no_sleep, monkeypatch):
    """Review 35b #1: a token read from a file ends in a line break; requests refused to send the header
    and CaRE said "could not connect; check the network", retried and opened the breaker."""
    from care_flows.signals.breaker import BREAKER

    srv = provider_server
    srv.route("/v3/carbon-intensity/latest", srv.reply(200, "electricitymaps_latest.json"))
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", f"{EM_SECRET}\r\n")
    BREAKER.reset()
    sig = ElectricityMapsSignal(base_url=srv.url + "/v3", sleep=no_sleep)
    sig.latest("ES")
    assert srv.count() == 1 and srv.requests[0]["headers"]["auth-token"] == EM_SECRET


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_token_http_cannot_carry_is_a_one_line_error_naming_its_origin_not_its_value(monkeypatch, where):
    bad = EM_SECRET[:5] + "\u2019" + EM_SECRET[5:]  # a typographic quote pasted in
    if where == "environment":
        monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", bad)
    with pytest.raises(ProviderAuthError) as info:
        ElectricityMapsSignal(api_token=bad if where == "argument" else None)
    message = str(info.value)
    assert "\n" not in message and bad not in message and EM_SECRET[:5] not in message
    assert ("ELECTRICITYMAPS_API_TOKEN" if where == "environment" else "api_token") in message and "copy the credential again" in message


def test_a_header_requests_will_not_send_is_not_reported_as_a_network_failure(provider_server, no_sleep):
    """The same check at the HTTP layer, for a header that did not come through resolve_secret: one
    attempt, an auth error, no breaker, and the value requests quotes in its own message not echoed."""
    from care_flows.signals._http import HttpClient
    from care_flows.signals.breaker import BREAKER

    BREAKER.reset()
    srv = provider_server
    client = HttpClient("electricitymaps", srv.url + "/v3", sleep=no_sleep)
    with pytest.raises(ProviderAuthError) as info:
        client.get_json("/carbon-intensity/latest", headers={"auth-token": EM_SECRET + "\n"})
    assert EM_SECRET not in str(info.value) and "could not connect" not in str(info.value)
    assert srv.count() == 0 and client.calls == 1
    assert not BREAKER.is_open("electricitymaps", srv.url + "/v3", pd.Timestamp.now(tz="UTC"))


def test_spaces_are_kept_and_a_blank_credential_is_named():
    """Review 35g L1: stripping every space sent a WattTime password that ends in one shortened, and an
    argument of spaces only was told to set the environment variable, which that call ignores."""
    from care_flows.signals.credentials import resolve_secret

    assert resolve_secret("pass word \n", env_var="X", provider="watttime", argument="password").get_secret_value() == "pass word "
    with pytest.raises(ProviderAuthError, match=r"^watttime: password is blank; give the credential itself$"):
        resolve_secret("   ", env_var="X", provider="watttime", argument="password")
