"""Review 40a (a first-time user follows the README and the tutorial).

L1: Ctrl-C while pandas read a CSV came out as "internal error (ParserError: ... Calling read(nbytes) on
source failed ...)" (exit 1) or as the user's valid file "cannot be parsed" (exit 2), not exit 130.
L2: Ctrl-C while the commands were imported printed a 30-line traceback.
M3: "01/06/2023 08:00Z" was read month first (6 January) without a word.
"""

from __future__ import annotations

import os
import signal

import click
import pandas as pd
import pytest

import care_flows.cli as cli
from care_flows.cli import main


def _interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_the_commands_are_imported_is_exit_130_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_app", lambda: _interrupt())
    assert main(["info"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_ctrl_c_that_a_library_turned_into_its_own_error_is_still_an_interrupt(monkeypatch, capsys):
    def read_csv() -> None:
        try:
            _interrupt()
        except KeyboardInterrupt:  # what pandas' C reader does with it
            raise pd.errors.ParserError("Error tokenizing data. C error: Calling read(nbytes) on source failed. Try engine='python'.") from None

    monkeypatch.setattr(cli.typer.main, "get_command", lambda _app: click.Command("care", callback=read_csv))
    assert main([]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


@pytest.mark.parametrize("text", ["01/06/2023 08:00Z", "01/06/2023 08:00 +00:00", "01/06/2023"])
def test_a_day_month_time_is_refused_not_read_month_first(capsys, text):
    assert main(["plan", "--zone", "ES", "--now", text, "--duration", "2h", "--within", "24h"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --now {text!r} is not an ISO 8601 time (year-month-day first); use e.g. 2023-06-01T12:00:00Z\n"


@pytest.mark.parametrize("text", ["2023-06-01T08:00Z", "2023-06-01 08:00:00+00:00", "20230601T0800Z", "2023-06-01 08:00 UTC",
                                  "2023-06-01T08:00:00.5+02:00"])
def test_iso_shapes_still_parse(text):
    assert main(["plan", "--zone", "ES", "--now", text, "--duration", "2h", "--within", "24h", "--json"]) == 0


# --- review 40e, on the changes above -------------------------------------------------------------

def test_l3_an_ignored_sigint_stays_ignored(monkeypatch, capsys):
    """A `care controller &` of a script starts with SIGINT ignored; the terminal's Ctrl-C must not stop it."""
    seen = []
    monkeypatch.setattr(cli.typer.main, "get_command", lambda _app: click.Command("care", callback=lambda: seen.append(signal.getsignal(signal.SIGINT))))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main([]) == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_l4_a_sub_second_usage_step_is_accepted(tmp_path, capsys):
    csv = tmp_path / "usage.csv"
    csv.write_text("cpu\n" + "".join(f"{1 + (i % 12) / 10}\n" for i in range(120)), encoding="utf-8")
    assert main(["forecast-usage", "--csv", str(csv), "--column", "cpu", "--period", "12", "--horizon", "2", "--step", "0.5s", "--json"]) == 0


@pytest.mark.parametrize("text", ["2023/06/01 12:00Z", "2023-6-1T12:00Z", "2023-06-01T12:00:00 GMT"])
def test_l6_year_first_forms_pandas_reads_the_same_way_still_parse(text):
    assert main(["plan", "--zone", "ES", "--now", text, "--duration", "2h", "--within", "24h", "--json"]) == 0


def test_l7_a_wrong_scheme_does_not_echo_the_query(capsys):
    assert main(["demo", "--api-url", "htp://127.0.0.1:4200/api?token=SEKRET123"]) == 2
    err = capsys.readouterr().err
    assert "SEKRET123" not in err and err.startswith("error: --api-url htp://127.0.0.1:4200/api?... is not an http(s) URL")
