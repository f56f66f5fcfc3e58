"""Flows deployed by test_orch_e2e.py to a real server + process worker (not collected by pytest).

The synthetic forecast comes from a scenario file (``CARE_E2E_SCENARIO``) written by the test:
piecewise values relative to the moment the trigger run plans (the forecast's ``start``), so the
green window sits a fixed number of seconds ahead of the plan however long the worker took to
start the trigger run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow

from care_flows.orchestration import care
from care_flows.orchestration.checkpoint import current_run

__all__ = ["ScenarioSignal", "green_etl", "resumable_etl", "stage"]


def _scenario(key: str) -> dict:
    return json.loads(Path(os.environ["CARE_E2E_SCENARIO"]).read_text())[key]


class ScenarioSignal:
    """Piecewise-constant synthetic forecast: ``pieces`` = [[until_s, g_per_kwh], ...] from ``start``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def forecast(self, zone: str, start: pd.Timestamp, horizon: pd.Timedelta) -> pd.Series:
        sc = _scenario(self.key)
        t0 = pd.Timestamp(start)
        idx = pd.date_range(t0, t0 + pd.Timedelta(seconds=sc["pieces"][-1][0]), freq=f"{sc['step_s']}s", inclusive="left")
        rel = (idx - t0).total_seconds().to_numpy()
        bounds = np.array([p[0] for p in sc["pieces"]], dtype=float)
        values = np.array([p[1] for p in sc["pieces"]], dtype=float)[np.searchsorted(bounds, rel, side="right")]
        s = pd.Series(values, index=idx, name="g_per_kwh")
        s.attrs["source"] = f"synthetic:{self.key}"
        return s


@care(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "10s", "deadline_within": "5m"}, signal=ScenarioSignal("defer"))
@flow(name="e2e-green-etl")
def green_etl(rows: int = 20_000) -> float:
    """A small real ETL: build, clean and aggregate a frame."""
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"k": rng.integers(0, 50, rows), "v": rng.normal(size=rows)})
    return float(df[df["v"] > 0].groupby("k")["v"].mean().sum())


def _mark(name: str) -> None:
    with open(Path(os.environ["CARE_E2E_MARKS"]) / name, "a") as fh:
        fh.write(f"{os.getpid()}\n")


@care.resumable_task
def stage(name: str, x: int, until: str | None = None) -> int:
    """A stage whose result persists (a continuation reads it back instead of recomputing).

    ``until``: keep working until then (the long first stage outlives the first green slot).
    """
    _mark(name)
    if until is not None:
        time.sleep(max(0.0, (pd.Timestamp(until) - pd.Timestamp.now(tz="UTC")).total_seconds()))
    return int(np.sum(np.arange(x + 1)))


@care(
    # seconds-long segments on a compressed clock: a 1 s start_margin (segments >= 5 s), not the 2 min of real workers
    policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "30s", "deadline_within": "5m", "interruptible": True,
            "start_margin": "1s"},
    signal=ScenarioSignal("resume"),
)
@flow(name="e2e-resumable")
def resumable_etl(x: int = 4) -> int:
    plan = current_run().plan  # the same plan in the trigger and the continuation (job variable)
    until = plan.decided_at + pd.Timedelta(seconds=_scenario("resume")["stage_one_s"])
    a = stage("one", x, until.isoformat())
    care.checkpoint()
    b = stage("two", a)
    care.checkpoint()
    return stage("three", b)
