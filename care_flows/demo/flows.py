"""The flows ``care demo`` deploys: small real workloads under the four demo policies.

Each flow is a plain Prefect flow under ``@care`` with the scenario's policy played on the demo
clock (``$CARE_DEMO_SECONDS_PER_HOUR`` wall seconds per grid hour) and a
:class:`~care_flows.demo.scenario.DemoPlanner`. A body does a little real pandas work and then
waits out the rest of its expected duration, so a "2 h" job occupies 2 grid hours of the
replay. The checkpointed flow runs three :func:`care.resumable_task` stages with
``care.checkpoint()`` between them.

>>> [f.name for f in (deferral, greener_region, right_sizing, checkpointed)]
['care-demo-deferral', 'care-demo-greener-region', 'care-demo-right-sizing', 'care-demo-checkpointed']
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from prefect import flow

from care_flows.demo.clock import DemoClock
from care_flows.demo.scenario import DEFAULT_SECONDS_PER_HOUR, ENV_SPH, DemoPlanner, demo_dir, mark, scenario, wall_policy
from care_flows.errors import ConfigError
from care_flows.orchestration import care

__all__ = ["workload", "deferral", "greener_region", "right_sizing", "checkpointed", "SECONDS_PER_HOUR"]



def _seconds_per_hour() -> float:
    """The demo clock's rate: from its file when the clock runs (always, for dispatched runs), else the env."""
    try:
        return DemoClock.load(demo_dir()).seconds_per_hour
    except ConfigError:
        return float(os.environ.get(ENV_SPH) or DEFAULT_SECONDS_PER_HOUR)


SECONDS_PER_HOUR = _seconds_per_hour()
"""At import. Trigger runs import before the clock starts and may see the default rate; they only
plan (in grid time), so this matters only to bodies and checkpoints, which run in dispatched runs."""


def workload(rows: int = 200_000, seed: int = 7) -> float:
    """A small real ETL step: build, filter and aggregate a frame.

    >>> round(workload(1000), 3) > 0
    True
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"k": rng.integers(0, 100, rows), "v": rng.normal(size=rows)})
    return float(df[df["v"] > 0].groupby("k")["v"].mean().sum())


def _work_for(wall_s: float, rows: int) -> float:
    """Run :func:`workload`, then wait until ``wall_s`` have passed (the job's simulated length)."""
    t = time.monotonic()
    value = workload(rows)
    time.sleep(max(0.0, wall_s - (time.monotonic() - t)))
    return value


def _care(key: str):  # noqa: ANN202
    return care(policy=wall_policy(scenario(key), SECONDS_PER_HOUR), planner=DemoPlanner(key))


def _hours(key: str) -> float:
    return scenario(key).grid_policy().expected_duration.total_seconds() / 3600.0


@_care("deferral")
@flow(name="care-demo-deferral", log_prints=True)
def deferral(rows: int = 200_000) -> float:
    """Nightly aggregation that may wait for a greener hour at home."""
    return _work_for(_hours("deferral") * _seconds_per_hour(), rows)


@_care("greener-region")
@flow(name="care-demo-greener-region", log_prints=True)
def greener_region(rows: int = 200_000) -> float:
    """A job with a tight deadline that may move to the greener region."""
    return _work_for(_hours("greener-region") * _seconds_per_hour(), rows)


@_care("right-sizing")
@flow(name="care-demo-right-sizing", log_prints=True)
def right_sizing(rows: int = 200_000) -> float:
    """A job declared at 8 vCPU / 32 GiB whose measured usage is far smaller."""
    return _work_for(_hours("right-sizing") * _seconds_per_hour(), rows)


@care.resumable_task
def stage(name: str, x: float) -> float:
    """One grid hour of work; its result persists, so a continuation run reads it back."""
    mark(name)
    return x + _work_for(_seconds_per_hour(), 50_000)


@_care("checkpointed")
@flow(name="care-demo-checkpointed", log_prints=True)
def checkpointed(x: float = 1.0) -> float:
    """Three stages with a checkpoint between them: it may pause when the slot stops being green."""
    a = stage("one", x)
    care.checkpoint()
    b = stage("two", a)
    care.checkpoint()
    return stage("three", b)
