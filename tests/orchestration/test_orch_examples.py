"""The examples do their real work (local mode: plan with the embedded signal, record, run now)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import etl_flow  # noqa: E402
import interruptible_flow  # noqa: E402
import ml_training_flow  # noqa: E402


def test_etl_writes_a_daily_report(tmp_path):
    path = etl_flow.carbon_report(zones=["ES", "SE"], year=2023, out_dir=str(tmp_path))
    df = pd.read_csv(path)
    assert len(df) == 2 * 365 and set(df["zone"]) == {"ES", "SE"}
    assert (df["min_g_per_kwh"] <= df["mean_g_per_kwh"]).all()


def test_ml_training_beats_the_naive_baseline():
    result = ml_training_flow.train_model(zone="ES", alphas=[1.0, 100.0])
    assert result["test_mae"] < result["naive_1d_mae"] and result["n_train"] > 17000


def test_interruptible_backfill_runs_all_stages():
    out = interruptible_flow.backfill(zones=["ES", "SE"], year=2023)
    assert list(out["zone"]) == ["ES", "SE"] and out["greenest_hour_utc"].between(0, 23).all()
