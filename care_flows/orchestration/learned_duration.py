"""Plan a flow's next run with the duration its past runs really took.

A policy's ``expected_duration`` is a guess made once; a nightly job that grew from 40 minutes
to two hours keeps being planned into 40-minute windows, runs into dirtier hours and its
deadline, and its expected gCO2eq and USD are a third of what it emits and costs. Every
completed ``@care`` run therefore records how long its body ran (all its segments together;
time spent waiting for a window is not counted) in the flow's usage store, next to its CPU and
memory samples (:meth:`care_flows.usage_capture.UsageStore.append_run`; the S3 store keeps one
``runs/*.json`` object per run). Once :data:`MIN_RUNS` runs are recorded, planning (``@care``
and ``care controller``) uses the :data:`QUANTILE` of the last :data:`MAX_RUNS` durations,
rounded up to a whole minute, instead of the declared ``expected_duration``. The decision
artifact says which it used ("Duration from").

A learned duration longer than the policy's ``deadline_within`` (a few unusually long runs, such
as a backfill, among the last 20) is not used: the declared one is, with a warning, so outliers
never stop later runs from shifting. Only runs timed by the real clock are recorded (an injected
``clock``, for tests and replays, does not measure the body). A run that was planned (a
dispatched or continued run) plans nothing: its expected work is the plan's.

``care controller`` also plans flows that are not decorated, whose bodies record nothing: for
them it passes ``run_times``, Prefect's run times of the deployment's completed planned runs
(:func:`care_flows.orchestration.controller.completed_run_times`), used when the store holds too
few records.

``policy.duration_from_history=False`` keeps the declared duration (and records nothing); a
history that cannot be read is logged and ignored: learning never fails a run. A recorded
duration over :data:`MAX_RUN_S` (a year) is taken as a corrupted record and skipped with a
warning, as negative, NaN and infinite ones are: one ``duration_s: 1e300`` line once became the
learned duration, printed as a 300-digit number of hours (review 39b M9).

>>> import tempfile
>>> import pandas as pd
>>> from care_flows.policy import CarePolicy
>>> from care_flows.usage_capture import RunRecord, UsageStore
>>> store = UsageStore(tempfile.mkdtemp())
>>> policy = CarePolicy(home_region="eu-south-2", expected_duration="30m")
>>> for i, minutes in enumerate([50, 55, 62]):
...     store.append_run("etl", RunRecord(f"r{i}", pd.Timestamp("2026-01-01T02:00:00Z") + pd.Timedelta(days=i), minutes * 60.0))
>>> learned, note = with_learned_duration(policy, "etl", store)
>>> learned.expected_duration, note
(datetime.timedelta(seconds=3660), 'p90 of the last 3 completed runs: 1h1m (declared 30m)')
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from care_flows.orchestration.learned_sizing import _default_store, history_key, run_logger
from care_flows.policy import CarePolicy
from care_flows.timeutil import format_duration

if TYPE_CHECKING:
    from care_flows.usage_capture import UsageStoreBackend

__all__ = ["LearnedDuration", "learned_duration", "learned_from_durations", "with_learned_duration", "record_run", "MIN_RUNS", "MAX_RUNS",
           "QUANTILE", "MAX_RUN_S", "usable_duration"]

log = logging.getLogger("care_flows.orchestration")

MIN_RUNS = 3
"""Completed runs needed before their durations replace the declared ``expected_duration``."""
MAX_RUNS = 20
"""Only the newest this many runs count (a flow whose input grows is planned for its recent runs)."""
QUANTILE = 0.9
"""Planned duration = this quantile of the recent durations: a window that fits nine runs in ten
(a run that outlasts its window keeps running; only its expected figures were low)."""
MAX_RUN_S = 366 * 86_400.0
"""A recorded run longer than this (a year) is implausible, a corrupted record: it is skipped with a
warning, as a negative, NaN or infinite duration is (:func:`learned_from_durations`), and
:func:`record_run` does not record one."""


@dataclass(frozen=True)
class LearnedDuration:
    """The duration learned from a flow's completed runs.

    >>> LearnedDuration(duration_s=3660.0, runs=3).describe(timedelta(minutes=30))
    'p90 of the last 3 completed runs: 1h1m (declared 30m)'
    """

    duration_s: float
    runs: int
    source: str = "completed runs"

    def describe(self, declared: timedelta | None = None) -> str:
        text = f"p{QUANTILE * 100:.0f} of the last {self.runs} {self.source}: {format_duration(self.duration_s)}"
        return text if declared is None else f"{text} (declared {format_duration(declared)})"


def learned_duration(store: UsageStoreBackend, key: str, *, min_runs: int = MIN_RUNS) -> LearnedDuration | None:
    """The planned duration from the run records of ``key``, None with fewer than ``min_runs``
    (or a store without run records).

    >>> import tempfile
    >>> from care_flows.usage_capture import RunRecord, UsageStore
    >>> store = UsageStore(tempfile.mkdtemp())
    >>> for i, s in enumerate([20.0, 25.0, 95.0, 30.0]):
    ...     store.append_run("etl", RunRecord(f"r{i}", pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=i), s))
    >>> learned_duration(store, "etl")
    LearnedDuration(duration_s=120.0, runs=4, source='completed runs')
    >>> learned_duration(store, "other") is None
    True
    """
    load_runs = getattr(store, "load_runs", None)
    if load_runs is None:
        return None
    return learned_from_durations([r.duration_s for r in load_runs(key)], min_runs=min_runs, key=key)


def usable_duration(duration_s: float) -> bool:
    """Whether a recorded run duration is one learning uses: finite, above 0 s (0: not timed) and at
    most :data:`MAX_RUN_S`.

    >>> [usable_duration(d) for d in (600.0, 0.0, float("nan"), 1e300)]
    [True, False, False, False]
    """
    return math.isfinite(duration_s) and 0 < duration_s <= MAX_RUN_S


def learned_from_durations(durations_s: Sequence[float], *, min_runs: int = MIN_RUNS, source: str = "completed runs",
                           key: str | None = None) -> LearnedDuration | None:
    """The planned duration from run times (oldest first; the newest :data:`MAX_RUNS` count), None
    with fewer than ``min_runs``: the :data:`QUANTILE`, rounded up to a whole minute, at least one.

    A duration over :data:`MAX_RUN_S` (a year: a corrupted record) is skipped with a warning
    (naming ``key``, the history, when given); so are NaN and infinite ones, and 0 s or less
    (not timed) is skipped silently.

    >>> learned_from_durations([600.0, 660.0, 3000.0], source="completed runs in Prefect")
    LearnedDuration(duration_s=2580.0, runs=3, source='completed runs in Prefect')
    >>> learned_from_durations([600.0, 1e300, 660.0, 3000.0])   # logs 'skipped 1 of 4 completed runs whose duration ...'
    LearnedDuration(duration_s=2580.0, runs=3, source='completed runs')
    """
    values = [float(d) for d in durations_s]
    implausible = sum(1 for d in values if not math.isfinite(d) or d > MAX_RUN_S)
    if implausible:
        where = f"run history '{key}': " if key is not None else ""
        log.warning("CaRE: %sskipped %d of %d %s whose duration is not finite or longer than %d days (a corrupted record?); "
                    "planning does not use them", where, implausible, len(values), source, round(MAX_RUN_S / 86_400))
    recent = [d for d in values if usable_duration(d)][-MAX_RUNS:]
    if len(recent) < max(1, min_runs):
        return None
    quantile_s = float(np.quantile(recent, QUANTILE))
    return LearnedDuration(duration_s=max(60.0, 60.0 * math.ceil(quantile_s / 60.0 - 1e-9)), runs=len(recent), source=source)


def with_learned_duration(policy: CarePolicy, flow_name: str, store: UsageStoreBackend | None = None, *,
                          run_times: Callable[[], Sequence[float]] | None = None) -> tuple[CarePolicy, str | None]:
    """``(policy, note)``: the policy with ``expected_duration`` replaced by the learned one and a
    note saying so, or the policy unchanged and None (too few runs, learning off, history not
    readable: logged, never raised).

    ``run_times``: where else to learn when the store holds too few records: run times of the
    flow's completed runs from Prefect (``care controller`` passes them for flows that are not
    decorated, whose bodies record nothing).
    """
    if not policy.duration_from_history:
        return policy, None
    key = history_key(policy, flow_name)
    learned = None
    try:
        learned = learned_duration(store or _default_store(), key)
    except Exception as exc:  # noqa: BLE001 - a run history must never fail a run or a controller pass
        log.warning("CaRE: run history '%s' not used (%s); planning with the declared duration", key, " ".join(str(exc).split()))
    if learned is None and run_times is not None:  # also when the store could not be read: Prefect is another source
        try:
            learned = learned_from_durations(run_times(), source="completed runs in Prefect")
        except Exception as exc:  # noqa: BLE001
            log.warning("CaRE: run times of '%s' from Prefect not used (%s); planning with the declared duration", key, " ".join(str(exc).split()))
    if learned is None:
        return policy, None
    if learned.duration_s > policy.deadline_within.total_seconds():
        # a few unusually long runs (a backfill) must not stop every later run from shifting: the
        # policy says its runs fit in deadline_within, so its declared duration stands
        note = (f"the declared {format_duration(policy.expected_duration)}, not the {learned.describe()}, which is longer "
                f"than deadline_within {format_duration(policy.deadline_within)}")
        log.warning("CaRE: run history of '%s': %s", key, note)
        return policy, note
    return policy.model_copy(update={"expected_duration": timedelta(seconds=learned.duration_s)}), learned.describe(policy.expected_duration)


def record_run(policy: CarePolicy, flow_name: str, *, run_id: str, finished: pd.Timestamp, duration_s: float,
               store: UsageStoreBackend | None = None) -> None:
    """Record a completed run's duration (errors are logged, never raised; nothing when learning is off)."""
    if not policy.duration_from_history or not math.isfinite(duration_s) or not 0 <= duration_s <= MAX_RUN_S:
        return
    key = history_key(policy, flow_name)
    try:
        from care_flows.usage_capture import RunRecord

        store = store or _default_store()
        append_run: Any = getattr(store, "append_run", None)
        if append_run is not None:
            append_run(key, RunRecord(run_id=run_id, finished=pd.Timestamp(finished).tz_convert("UTC"), duration_s=float(duration_s)))
    except Exception as exc:  # noqa: BLE001 - recording must never fail a run
        run_logger().warning("CaRE: could not record the duration of '%s' (%s)", key, " ".join(str(exc).split()))
