"""Review 40c (every figure recomputed by hand; these are the presentation defects it found).

M1: ``care compare`` priced a t3 at its list price at any --utilisation without saying that
``care regions`` and the planner add CPU credits (0.3192 vs 0.5642 USD for a t3.large at 100 % for 3.5 h).
L1: a shift in time at home showed "-0 USD/tCO2eq". L2: ``care report`` showed "-0.0 g (-0.0 %)" saved
for a run now at home. L3: its saved % came from a sum rounded to 6 decimals (93.34665 for 93.3333)
and a 3-second run's kWh kept 2 digits. L4: tables printed 0.000 gCO2eq for short runs. L5: a 700x
worse option's carbon ratio printed as x0.0.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from care_flows.accounting import abatement_usd_per_tco2, format_sig
from care_flows.cli import main
from care_flows.cli.report import summarize

COMPARE = ["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large"]


def test_compare_keeps_the_studys_list_prices_and_says_what_credits_would_add(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*COMPARE, "--utilisation", "1", "--hours", "3.5", "--intensity", "ES=206,SE=20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["usd"] for r in doc["rows"]] == pytest.approx([0.3192, 0.3024])  # list prices, as the study's table
    assert [r["credit_usd_per_hour"] for r in doc["rows"]] == pytest.approx([0.07, 0.07])  # (1 - 0.3) x 2 vCPU x 0.05
    assert any("also pays 0.0700 USD/h of CPU credits (0.2450 USD for the run" in n for n in doc["notes"]), doc["notes"]
    assert main(["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "m5.large", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["notes"] == [] and {r["credit_usd_per_hour"] for r in doc["rows"]} == {0.0}  # not burstable: nothing to add


def test_compare_shows_short_runs_and_extreme_ratios_with_their_digits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*COMPARE, "--hours", "0.001389", "--intensity", "ES=1,SE=700"]) == 0
    out = capsys.readouterr().out
    assert "0.0156" in out and "0.0000222" in out and " 0.000 " not in out
    assert "carbon x0.00143" in out and "carbon x0.0," not in out


def test_the_regions_table_gives_a_10_second_runs_grams(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "10s",
                 "--vcpu", "1.5", "--memory-gib", "6"]) == 0
    out = capsys.readouterr().out
    assert "(0.000779 gCO2eq, 0.000261 USD)" in out and "(0.00 gCO2eq" not in out


def test_no_minus_zero() -> None:
    assert str(abatement_usd_per_tco2(-0.0, 7.15)) == "0.0"
    assert format_sig(-0.0, "USD/tCO2eq", 0) == "0 USD/tCO2eq"


def _segment(**kw: float) -> dict:
    return {"flow": "f", "job": "j", "outcome": "completed", "started": pd.Timestamp("2023-06-01T00:00Z"),
            "finished": pd.Timestamp("2023-06-01T00:00:03Z"), "realized_usd": 7.825e-05, "baseline_realized_usd": 7.825e-05, **kw}


def test_care_report_saves_exactly_nothing_for_a_run_now_at_home_and_keeps_short_runs_digits() -> None:
    home = _segment(realized_kwh=0.0134852187, realized_g=2.69704375, realized_g_per_kwh=200.0,
                    baseline_realized_kwh=0.0134852187, baseline_realized_g_per_kwh=200.0)
    row = summarize([home])["flows"][0]
    assert str(row["saved_g"]["value"]) == "0.0" and str(row["saved_pct"]["value"]) == "0.0"
    kwh = 1.12376823e-05  # 3 s of a t3.large at 20 g/kWh against 300 at home
    short = _segment(realized_kwh=kwh, realized_g=kwh * 20, realized_g_per_kwh=20.0, baseline_realized_kwh=kwh, baseline_realized_g_per_kwh=300.0)
    row = summarize([short])["flows"][0]
    assert row["saved_pct"]["value"] == pytest.approx(100 * (1 - 20 / 300), abs=1e-6)  # was 93.34665
    assert row["realized_kwh"]["value"] == kwh  # was 1.1e-05
