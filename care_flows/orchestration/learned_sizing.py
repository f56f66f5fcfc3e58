"""Size a flow's next run from the CPU and memory its past runs really used.

Every ``@care`` run samples its process tree (:class:`care_flows.usage_capture.UsageSampler`)
and appends the samples to the flow's usage history (:func:`care_flows.usage_capture.default_usage_store`:
``$CARE_USAGE_DIR`` or ``~/.cache/care/usage``, or ``CARE_USAGE_STORE=s3://bucket/prefix``),
under ``policy.usage_key`` or the flow's name.
When a run is planned (by ``@care`` or by ``care controller``) and the history holds at least
:data:`MIN_STEPS` one-minute steps of running, the need comes from it instead of the policy's
declared ``vcpu`` / ``memory_gib``:

- the stored samples go on a one-minute grid (the largest sample of each minute; minutes
  without a run are dropped, so consecutive runs form one "while running" series);
- the usage forecaster (:func:`care_flows.forecast.usage.forecast_usage`: persistent forecast,
  anomaly fallback, selection by recent error) forecasts the next run's duration;
- peak = the 95th percentile of that forecast together with the last run-length of stored steps
  (a forecast that ends on a quiet tail of the previous run cannot size below what runs used);
  memory adds :data:`SYSTEM_MEMORY_GIB` for the operating system and the Prefect runtime around
  the flow's processes; mean = the forecast's mean (the expected utilisation, for energy);
- right-sizing (``care_flows.planning.sizing.right_size``) then adds the policy's
  ``headroom_pct`` and picks the cheapest type per region that fits.

``policy.size_from_usage=False`` or a pinned ``instance_type`` keeps the declared figures. A
history that cannot be read is logged and ignored: sizing never fails a run.

>>> import tempfile
>>> import pandas as pd
>>> from care_flows.usage_capture import UsageStore
>>> store = UsageStore(tempfile.mkdtemp())
>>> t = pd.date_range("2026-01-01", periods=1200, freq="3s", tz="UTC")  # one hour-long run
>>> store.append("etl", pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 2.0, "n_processes": 1}))
>>> learned = learned_need(store, "etl", duration_s=1800)
>>> learned.need.peak_vcpu, learned.need.peak_memory_gib, learned.steps
(1.5, 2.5, 60)
>>> learned_need(store, "other", duration_s=1800) is None
True
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from care_flows.errors import CareError
from care_flows.forecast.usage import forecast_usage
from care_flows.planning.sizing import UsageSummary
from care_flows.policy import CarePolicy
from care_flows.usage_capture import UsageStore, UsageStoreBackend, default_usage_store, usage_series

__all__ = ["LearnedNeed", "learned_need", "need_for_policy", "describe_sizing", "call_planner", "record_usage", "MIN_STEPS", "STEP_S",
           "SYSTEM_MEMORY_GIB", "QUANTILE", "RECORD_STEP_S", "MAX_STEPS"]

log = logging.getLogger("care_flows.orchestration")

RECORD_STEP_S = 10.0
"""Samples are stored as the largest value of every 10 seconds."""
STEP_S = 60.0
"""Grid of the usage history, seconds (the largest sample of each minute)."""
MIN_STEPS = 10
"""One-minute steps of stored running needed before the history replaces the declared need."""
MAX_STEPS = 14 * 1440
"""The forecast reads at most the last 14 days of running (one-minute steps)."""
SYSTEM_MEMORY_GIB = 0.5
"""Memory for the operating system and the Prefect runtime outside the sampled process tree."""
QUANTILE = 0.95
"""Quantile of the forecast (and of the last run-length of history) taken as the peak."""


@dataclass(frozen=True)
class LearnedNeed:
    """What the history says the next run needs, and how much history said it."""

    need: UsageSummary
    steps: int
    key: str

    def describe(self) -> str:
        """One line for logs and the decision artifact."""
        return (f"usage history '{self.key}' ({self.steps} min of runs): p{QUANTILE * 100:.0f} "
                f"{self.need.peak_vcpu:.2f} vCPU, {self.need.peak_memory_gib:.2f} GiB")


def learned_need(store: UsageStoreBackend, key: str, *, duration_s: float, min_steps: int = MIN_STEPS) -> LearnedNeed | None:
    """The need of the next run of ``key`` over ``duration_s``, or None with too little history."""
    frame = store.load(key)
    cpu = usage_series(frame, "cpu_vcpu", step_s=STEP_S, how="max")
    if len(cpu) < min_steps:
        return None
    cpu = cpu.iloc[-MAX_STEPS:]
    mem = usage_series(frame, "memory_gib", step_s=STEP_S, how="max").reindex(cpu.index).ffill().bfill()
    horizon = max(1, math.ceil(duration_s / STEP_S))
    recent = min(len(cpu), max(horizon, min_steps))
    # runs with gaps between them have no clock-time period in "running time": look for a daily
    # or weekly one only in an unbroken history of two days or more (a flow that never stops)
    unbroken = (cpu.index[-1] - cpu.index[0]).total_seconds() / STEP_S + 1 == len(cpu)
    period = "auto" if unbroken and len(cpu) >= 2 * 86_400 / STEP_S else None
    peaks, means = [], []
    for values in (cpu.to_numpy(dtype=float), mem.to_numpy(dtype=float)):
        fc = np.clip(forecast_usage(values, horizon, period=period, step_s=STEP_S).values, 0.0, None)
        peaks.append(float(np.quantile(np.concatenate([fc, values[-recent:]]), QUANTILE)))
        means.append(float(np.mean(fc)))
    need = UsageSummary(peak_vcpu=round(peaks[0], 3), peak_memory_gib=round(peaks[1] + SYSTEM_MEMORY_GIB, 3),
                        mean_vcpu=round(means[0], 3), mean_memory_gib=round(means[1] + SYSTEM_MEMORY_GIB, 3))
    return LearnedNeed(need=need, steps=len(cpu), key=key)


def need_for_policy(policy: CarePolicy, flow_name: str, store: UsageStoreBackend | None = None) -> LearnedNeed | None:
    """:func:`learned_need` for a policy's runs (None when the policy sizes by declaration).

    With the local :class:`UsageStore` the result is memoised until the history file changes, so
    a controller pass over many runs of one flow reads and forecasts its history once.
    """
    if not policy.size_from_usage or policy.instance_type:
        return None
    key = policy.usage_key or flow_name
    store = store or default_usage_store()
    duration_s = policy.expected_duration.total_seconds()
    try:
        if isinstance(store, UsageStore):
            path = store.path(key)
            if not path.exists():
                return None
            st = path.stat()
            return _memo_need(str(path), st.st_mtime_ns, st.st_size, key, duration_s)
        return learned_need(store, key, duration_s=duration_s)
    except (CareError, OSError, ValueError) as exc:
        log.warning("CaRE: usage history '%s' not used (%s); sizing from the policy", key, " ".join(str(exc).split()))
        return None


@functools.lru_cache(maxsize=64)
def _memo_need(path: str, _mtime_ns: int, _size: int, key: str, duration_s: float) -> LearnedNeed | None:
    store = UsageStore(os.path.dirname(path))
    return learned_need(store, key, duration_s=duration_s)


def record_usage(policy: CarePolicy, flow_name: str, frame: Any, store: UsageStoreBackend | None = None) -> None:
    """Append a run's samples (10-second maxima) to its usage history (errors are logged, never raised)."""
    if frame is None or len(frame) == 0 or not policy.size_from_usage:
        return
    key = policy.usage_key or flow_name
    try:
        # the largest values of every RECORD_STEP_S: sizing reads one-minute maxima, and a year of
        # one-second samples would make the history 10x larger than it needs to be
        binned = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True))).drop(columns="time")
        binned = binned.resample(pd.Timedelta(seconds=RECORD_STEP_S)).max().dropna(how="all")
        (store or default_usage_store()).append(key, binned.rename_axis("time").reset_index())
    except (CareError, OSError, ValueError) as exc:
        log.warning("CaRE: could not store the usage of '%s' (%s)", key, " ".join(str(exc).split()))


def describe_sizing(policy: CarePolicy, learned: LearnedNeed | None) -> str:
    """What a plan's instance type was sized from, for the decision artifact."""
    if policy.instance_type:
        return f"pinned instance type {policy.instance_type}"
    if learned is not None:
        return learned.describe()
    why = "size_from_usage is off" if not policy.size_from_usage else f"under {MIN_STEPS} min of usage history"
    return f"declared need {policy.vcpu:g} vCPU, {policy.memory_gib:g} GiB ({why})"


def call_planner(planner: Callable[..., Any], *args: Any, usage: UsageSummary | None = None, **kwargs: Any) -> Any:
    """Call a planner, passing ``usage`` only when there is one and the planner takes it."""
    if usage is not None:
        try:
            params = inspect.signature(planner).parameters
        except (TypeError, ValueError):
            params = {}
        if "usage" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs["usage"] = usage
    return planner(*args, **kwargs)
