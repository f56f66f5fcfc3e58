"""Review 38c (a new user's side): L7, a breaker's "skipping until" is a full ISO instant; L19, a
credential a provider echoes back in a successful but malformed answer is redacted like the one in
an HTTP error body; L5, ``--source gb`` for a zone off the GB grid is a usage error, not an outage."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from care_flows.errors import CareError, ConfigError, ProviderResponseError
from care_flows.signals import get_signal
from care_flows.signals.breaker import CircuitBreaker
from care_flows.signals.electricitymaps import ElectricityMapsSignal
from care_flows.signals.watttime import WattTimeSignal

TOKEN = "tok-SECRET-1234"
PASSWORD = "wt-PASS-SECRET-5678"
NOW = pd.Timestamp("2024-05-01T10:00Z")


# ------------------------------------------------------------------ L7
def test_the_breakers_reason_names_the_instant_it_skips_until_with_date_and_offset():
    # was: "HTTP 500, 30 s ago, skipping until 12:05 UTC" (no date: in JSON read the next day it is ambiguous)
    b = CircuitBreaker()
    t0 = pd.Timestamp("2024-05-01T23:58:30.250Z")
    b.record_failure("electricitymaps", "http://x", t0, "HTTP 500", cooldown_s=300)
    with pytest.raises(CareError) as info:
        b.before_call("electricitymaps", "http://x", t0 + pd.Timedelta("30s"))
    assert info.value.reason == "HTTP 500, 30 s ago, skipping until 2024-05-02T00:03:30+00:00"


# ------------------------------------------------------------------ L19
def _latest(**fields):
    body = {"zone": "ES", "carbonIntensity": 119, "datetime": "2024-05-01T09:00:00.000Z", "emissionFactorType": "lifecycle"}
    return {**body, **fields}


@pytest.mark.parametrize("fields", [{"datetime": TOKEN}, {"zone": TOKEN}, {"carbonIntensity": f"x{TOKEN}"}])
def test_a_token_echoed_in_a_successful_answer_is_redacted_in_the_error(provider_server, no_sleep, fields):
    # was: ProviderResponseError "... point 0 has datetime 'tok-SECRET-1234', not an ISO 8601 time"
    srv = provider_server
    srv.route("/v3/carbon-intensity/latest", srv.reply(200, _latest(**fields)))
    sig = ElectricityMapsSignal(TOKEN, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(ProviderResponseError) as info:
        sig.latest("ES")
    assert srv.requests[0]["headers"]["auth-token"] == TOKEN  # it was really sent
    text = " ".join([str(info.value), repr(info.value), str(getattr(info.value, "reason", "")), str(getattr(info.value, "detail", ""))])
    assert TOKEN not in text and "***" in str(info.value)


def test_an_echoed_token_stays_out_of_the_fallback_note_and_the_log(provider_server, no_sleep, tmp_path, caplog):
    srv = provider_server
    srv.route("/v3/carbon-intensity/forecast", srv.reply(200, {"zone": "ES", "forecast": [{"datetime": TOKEN, "carbonIntensity": 100}]}))
    caplog.set_level(logging.DEBUG)
    chain = get_signal("electricitymaps", api_token=TOKEN, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: NOW, cache_dir=tmp_path)
    fc = chain.forecast("ES", NOW, "6h")
    assert fc.attrs["source"] == "embedded" and srv.count() >= 1  # it fell back, on a malformed answer
    cached = "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    for text in (str(fc.attrs), caplog.text, cached):
        assert TOKEN not in text


def test_watttime_password_and_session_token_echoed_in_an_answer_are_redacted(provider_server, no_sleep, caplog):
    srv = provider_server
    session = "wt-session-token-9f8e7d"
    srv.route("/login", srv.reply(200, {"token": session}))
    srv.route("/v3/forecast", srv.reply(200, {"data": [{"point_time": f"{session}/{PASSWORD}", "value": 1.0}],
                                              "meta": {"warnings": [{"type": "echo", "message": f"hello {PASSWORD}"}]}}))
    caplog.set_level(logging.DEBUG)
    sig = WattTimeSignal("alice", PASSWORD, base_url=srv.url, sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(ProviderResponseError) as info:
        sig.forecast("CAISO_NORTH", NOW, "1h")
    for text in (str(info.value), caplog.text):
        assert PASSWORD not in text and session not in text
    assert "***" in str(info.value)


LONG_TOKEN = "emaps-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1"  # 48 characters: messages cut what they quote at about 40


@pytest.mark.parametrize("route, body", [
    ("/v3/carbon-intensity/latest", _latest(datetime=LONG_TOKEN)),
    ("/v3/carbon-intensity/forecast", {"zone": "ES", "updatedAt": LONG_TOKEN, "forecast": [{"datetime": "2024-05-01T10:00:00Z", "carbonIntensity": 1}]}),
])
def test_a_long_token_quoted_cut_short_is_still_redacted(provider_server, no_sleep, route, body):
    """Review 38d M1: the message cut the echoed token to ~40 characters before redaction, which hides only whole credentials."""
    srv = provider_server
    srv.route(route, srv.reply(200, body))
    sig = ElectricityMapsSignal(LONG_TOKEN, base_url=srv.url + "/v3", sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(ProviderResponseError) as info:
        sig.latest("ES") if route.endswith("latest") else sig.forecast("ES", NOW, "1h")
    assert LONG_TOKEN[:12] not in str(info.value) and "***" in str(info.value), str(info.value)


def test_a_watttime_user_name_is_not_hidden_in_messages(provider_server, no_sleep):
    """Review 38d L1: the user name is no secret; hiding it garbled messages (user 'forecast': '/v3/***')."""
    srv = provider_server
    srv.route("/login", srv.reply(200, {"token": "wt-session-token-9f8e7d"}))
    srv.route("/v3/forecast", srv.reply(200, {"data": [{"point_time": "soon", "value": 1.0}]}))
    sig = WattTimeSignal("forecast", PASSWORD, base_url=srv.url, sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(ProviderResponseError) as info:
        sig.forecast("CAISO_NORTH", NOW, "1h")
    assert "/v3/forecast" in str(info.value)


# ------------------------------------------------------------------ L5 (the check the CLI uses)
def test_check_source_zone_refuses_a_zone_off_the_gb_grid_for_source_gb():
    from care_flows.cli import check_source_zone

    for zone in ("GB", "GB-13", "gb-1", "eu-west-2"):
        check_source_zone("gb", zone, name="--zone")
    check_source_zone("embedded", "ES", name="--zone")
    with pytest.raises(ConfigError, match=r"^--source gb covers the GB grid only .*, not --zone ES; use --source embedded"):
        check_source_zone("gb", "ES", name="--zone")


def test_the_prefix_rule_hides_cut_tokens_but_not_the_words_around_them():
    """Review 38f L4/L5: 'Bearer <JWT>' made every 'Bearer e...' text ***; many cut quotes took quadratic time."""
    from care_flows.signals._http import _redact

    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.payload.sig"
    assert _redact('WWW-Authenticate: Bearer error="invalid_token"', [f"Bearer {jwt}", jwt]) == 'WWW-Authenticate: Bearer error="invalid_token"'
    assert _redact(f"got '{jwt[:30]}...'", [f"Bearer {jwt}", jwt]) == "got '***...'"
    many = " ".join([jwt[:20]] * 20000)
    assert _redact(many, [jwt]) == " ".join(["***"] * 20000)


def test_the_prefix_rule_still_hides_cut_quotes_of_credentials_with_spaces():
    """Review 38g M1: skipping every credential with a space let cut quotes of spaced passwords and bearer values show."""
    from care_flows.signals._http import _redact

    assert _redact("password 'correct horse batt...'", ["correct horse battery staple"]) == "password '***...'"
    assert _redact("header 'Bearer abcdefgh1234...'", ["Bearer abcdefgh12345678"]) == "header '***...'"
    assert _redact("x-api-key 'key with spa...'", ["key with space 0123456789"]) == "x-api-key '***...'"
    assert _redact('WWW-Authenticate: Bearer error="x"', ["Bearer abcdefgh12345678", "abcdefgh12345678"]) == 'WWW-Authenticate: Bearer error="x"'
