"""Review 40a (a first-time user): M1, ``care demo --out /proc/nope/report`` ran the whole 2-minute
demo and then failed without its summary (os.access said /proc was writable); L9, an unreachable
``--api-url`` printed a promise and a failed clean-up before the error."""

from __future__ import annotations

import time

import pytest

from care_flows.cli import main


def test_an_out_folder_that_cannot_be_made_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    t = time.monotonic()
    assert main(["demo", "--out", "/proc/nope/report"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: --out /proc/nope/report cannot be written (No such file or directory); give a folder you may write to\n"
    assert "Starting a local Prefect server" not in out and time.monotonic() - t < 30


def test_an_unreachable_api_is_one_error_line_without_promises_or_clean_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--api-url", "http://127.0.0.1:1/api"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: cannot reach the Prefect API at http://127.0.0.1:1/api (connection refused)") and err.count("\n") == 1
    assert "Using the Prefect API" not in out and "clean-up" not in out and "cancelled 0" not in out, out
