"""Review 40b M1: a WattTime password with a Latin-1 character ('ä'), a quote or a backslash was not
hidden when the provider (or a gateway) echoed it: requests sends Basic auth as Latin-1 base64 while
only the UTF-8 one was redacted, and a FastAPI ``detail`` was redacted after ``json.dumps`` had escaped
the password (``p\\u00e4ss...``, ``pa\\"ss``)."""

from __future__ import annotations

import base64
import logging

import pandas as pd
import pytest

from care_flows.errors import CareError
from care_flows.signals.watttime import WattTimeSignal

NOW = pd.Timestamp("2024-05-01T10:00Z")


@pytest.mark.parametrize("password", ["pässwort-2024!", 'pa"ss\\word-2024'])
@pytest.mark.parametrize("echo", ["header", "detail", "detail_object"])
def test_an_echoed_password_is_hidden_whatever_its_characters(provider_server, no_sleep, caplog, password: str, echo: str) -> None:
    latin1 = base64.b64encode(f"bob:{password}".encode("latin-1")).decode()
    body = {"header": {"error": f"invalid Authorization header Basic {latin1}"},
            "detail": {"detail": f"bad credentials bob:{password}"},
            "detail_object": {"detail": {"msg": "refused", "credential": f"bob:{password}"}}}[echo]
    srv = provider_server
    srv.route("/login", srv.reply(401, body))
    caplog.set_level(logging.DEBUG)
    sig = WattTimeSignal("bob", password, base_url=srv.url, sleep=no_sleep, clock=lambda: NOW)
    with pytest.raises(CareError) as info:
        sig.forecast("CAISO_NORTH", NOW, "1h")
    assert srv.requests[0]["headers"]["Authorization"] == f"Basic {latin1}"  # what requests really sent
    escaped = password.replace("ä", "\\u00e4").replace('"', '\\"').replace("\\w", "\\\\w")
    for text in (str(info.value), repr(info.value), str(getattr(info.value, "detail", "")), caplog.text):
        assert password not in text and latin1 not in text and escaped not in text and "sswort" not in text and "ss\\" not in text, text
    assert "***" in str(info.value)
