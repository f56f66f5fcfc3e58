"""Size a flow's next run from the CPU and memory its past runs really used.

Every ``@care`` run samples its process tree (:class:`care_flows.usage_capture.UsageSampler`)
and appends the samples to the flow's usage history (:func:`care_flows.usage_capture.default_usage_store`:
``$CARE_USAGE_DIR`` or ``~/.cache/care/usage``, or ``CARE_USAGE_STORE=s3://bucket/prefix`` or ``prefect-variables://prefix``),
under ``policy.usage_key`` or the flow's name.
When a run is planned (by ``@care`` or by ``care controller``) and the history holds at least
:data:`MIN_STEPS` minutes of running (counted as :data:`RECORD_STEP_S` per stored 10-second
bucket, :func:`care_flows.usage_capture.running_seconds`: five 30-second runs are 2.5 minutes,
not the up to ten minute bins they touch), the need comes from it instead of the policy's
declared ``vcpu`` / ``memory_gib``:

- the stored samples go on a one-minute grid (the largest sample of each minute; minutes
  without a run are dropped) and are split into runs where a minute without samples separates
  them: the next run does what the past runs did from their start (persistence with "period" =
  one run), not what the last run did at its end;
- CPU peak = the 95th percentile of the minutes of the newest :data:`MAX_RUNS` runs, whole runs
  aligned at their start (whatever the planned duration: a run planned for 15 minutes that runs
  for an hour still peaks when the runs peaked), at least :data:`MIN_VCPU`; mean = the mean of
  the same minutes' mean CPU (expected utilisation, for CPU credits and energy), from the rows'
  stored 10-second means (``cpu_vcpu_mean``: a burst shorter than 10 s does not count as 10 s
  of its peak); rows stored before that column existed give their maximum instead, so the mean
  is then an upper bound (:attr:`LearnedNeed.mean_from_maxima`); memory peak = the larger of
  the same percentile and the largest value of those runs and of the last 7 days (running out of memory
  kills a run; running flows append their samples every :data:`FLUSH_EVERY_S`, so a killed run leaves the
  growth that killed it), + :data:`SYSTEM_MEMORY_GIB` for the operating system and the Prefect
  runtime around the flow's processes;
- a flow that never stops (a history of one unbroken run of two days or more) has no next run to
  align: there the usage forecaster (:func:`care_flows.forecast.usage.forecast_usage`: daily or
  weekly persistence, anomaly fallback, selection by recent error) forecasts the planned duration
  (at most 1 h, from the last 3 days of running); peak = the 95th percentile of that forecast
  together with the last run-length of steps, means = the means of the forecast of the
  one-minute mean CPU and of the memory forecast;
- the CPU need is at most the policy's ``max_vcpu`` (default :data:`MAX_VCPU_FACTOR` x ``vcpu``;
  :func:`capped_need`): a flow that uses every core it gets peaks at the cores of whatever type ran
  it and would otherwise ask for the next size up after every run, without bound; the sizing note
  says when the newest run used at least :data:`CPU_BOUND_SHARE` of the vCPU it could use (the
  rows' ``capacity_vcpu``), so may use more;
- right-sizing (``care_flows.planning.sizing.right_size``) then adds the policy's
  ``headroom_pct`` and picks the cheapest type per region that fits.

``policy.size_from_usage=False`` or a pinned ``instance_type`` keeps the declared figures. A
history that cannot be read, or a learned need nothing fits, is logged and ignored
(:func:`plan_sized` plans with the declared need): learned sizing never fails a run.

>>> import tempfile
>>> import pandas as pd
>>> from care_flows.usage_capture import UsageStore
>>> store = UsageStore(tempfile.mkdtemp())
>>> t = pd.date_range("2026-01-01", periods=1200, freq="3s", tz="UTC")  # one hour-long run
>>> store.append("etl", pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 2.0, "n_processes": 1}))
>>> learned = learned_need(store, "etl", duration_s=1800)
>>> learned.need.peak_vcpu, learned.need.peak_memory_gib, learned.steps, learned.running_s
(1.5, 2.5, 60, 3600.0)
>>> learned.runs
1
>>> learned_need(store, "other", duration_s=1800) is None
True
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from care_flows.errors import CareError
from care_flows.policy import CarePolicy

if TYPE_CHECKING:  # the forecaster, psutil and the catalogue load on first use, not when @care is imported
    from care_flows.planning.sizing import UsageSummary
    from care_flows.usage_capture import UsageStoreBackend

__all__ = ["LearnedNeed", "learned_need", "run_logger", "history_key", "need_from_samples", "need_for_policy", "describe_sizing", "accepts_usage", "takes_keyword", "plan_sized", "call_planner",
           "record_usage", "forget_store_failures", "MIN_STEPS", "STEP_S", "SYSTEM_MEMORY_GIB", "QUANTILE", "RECORD_STEP_S", "MAX_STEPS", "MAX_FORECAST_STEPS",
           "MEMORY_LOOKBACK_STEPS", "MEMORY_LOOKBACK", "MIN_VCPU", "FLUSH_EVERY_S", "FORECAST_HISTORY_STEPS", "MAX_RUNS", "CPU_BOUND_SHARE",
           "MAX_VCPU_FACTOR", "capped_need"]

log = logging.getLogger("care_flows.orchestration")

RECORD_STEP_S = 10.0
"""Samples are stored as the largest value of every 10 seconds (``cpu_vcpu``, ``memory_gib``,
``n_processes``) and the bucket's mean CPU (``cpu_vcpu_mean``), one row per bucket labelled with
the bucket's start (the row 13:10 of a run ending at 13:18 covers 13:10-13:18); each bucket counts
as 10 s of running."""
FLUSH_EVERY_S = 60.0
"""A running flow appends its samples every minute (a run killed by the OOM killer keeps them)."""
STEP_S = 60.0
"""Grid of the usage history, seconds (the largest sample of each minute)."""
MIN_STEPS = 10
"""Minutes of stored running (``running_seconds / 60``) needed before the history replaces the declared need."""
MAX_STEPS = 14 * 1440
"""Sizing reads at most the last 14 days of running (one-minute steps)."""
MAX_RUNS = 20
"""The CPU peak and the means come from the newest this many runs (a flow whose input grows is
sized for its recent runs)."""
MAX_FORECAST_STEPS = 60
"""The forecaster looks at most 1 h ahead; a longer run's peak also comes from the history's
quantile over the last run-length. (Its memory grows with history x horizon: 4 h ahead over 14
days peaked at 444 MiB in ``benchmarks/bench_learned_sizing.py``, too much for a trigger run on a
small instance; this bound and :data:`FORECAST_HISTORY_STEPS` keep it near 60 MiB.)"""
FORECAST_HISTORY_STEPS = 3 * 1440
"""The forecaster reads the last 3 days of running (enough for a daily period); quantiles and the
memory maximum read up to :data:`MAX_STEPS`."""
MEMORY_LOOKBACK_STEPS = 7 * 1440
"""A flow that never stops is sized for the largest memory of its last 7 days of running (not a
quantile); a flow of separate runs for the largest of its newest :data:`MAX_RUNS` runs and of the
last :data:`MEMORY_LOOKBACK` (calendar time), so a peak recorded under an older rule (RSS, before
PSS) ages out with the CPU instead of lasting 7 x 24 h of running (168 days of a 1 h daily flow)."""
MEMORY_LOOKBACK = pd.Timedelta(days=7)
"""Calendar look-back of the memory maximum of a flow of separate runs (see :data:`MEMORY_LOOKBACK_STEPS`)."""
MIN_VCPU = 0.25
"""Smallest learned CPU need (a flow that mostly waits still needs a CPU to run on)."""
SYSTEM_MEMORY_GIB = 0.5
"""Memory for the operating system and the Prefect runtime outside the sampled process tree."""
CPU_BOUND_SHARE = 0.9
"""A run whose CPU peak reached this share of the vCPU it could use (:data:`care_flows.usage_capture.CAPACITY_COLUMN`)
was CPU-bound: it might have used more cores had it had them (a pool sized by the cores it finds uses
all of them on any type). The sizing note says so, with the :func:`capped_need` limit."""
MAX_VCPU_FACTOR = 4.0
"""Without ``policy.max_vcpu``, the usage history may ask for up to this many times the declared ``vcpu``
(:func:`capped_need`; reviews 44b M3, 45c, 45d)."""
QUANTILE = 0.95
"""Quantile of the newest runs' one-minute CPU maxima taken as the CPU peak (for a flow that never
stops: of the forecast and the last run-length of history)."""

_MEMO: dict[tuple[Any, ...], "LearnedNeed | None"] = {}


@dataclass(frozen=True)
class LearnedNeed:
    """What the history says the next run needs, and how much history said it: ``steps`` one-minute
    steps read, ``running_s`` seconds of running in the history (:data:`RECORD_STEP_S` per stored
    bucket), ``runs`` the runs the need came from (None: forecast for a flow that never stops).

    ``mean_from_maxima``: some rows the mean CPU came from were stored without their 10-second
    mean (before ``cpu_vcpu_mean`` existed) and gave their 10-second maximum instead:
    ``need.mean_vcpu`` is then an upper bound (by about 2x for a flow that bursts for a few seconds at a time), and
    with it the expected utilisation, CPU credits and energy it sets."""

    need: UsageSummary
    steps: int
    key: str
    running_s: float | None = None
    runs: int | None = None
    mean_from_maxima: bool = False
    capacity_vcpu: float | None = None
    """The vCPU the newest run could use (its rows' ``capacity_vcpu``; a flow that never stops: its
    last run-length of rows); None when its rows were stored before the column existed."""
    newest_peak_vcpu: float | None = None
    """The newest run's CPU peak (the 95th percentile of its minutes)."""
    idle_on_more: float | None = None
    """What the recent runs that had more vCPU than the newest and left some idle (peak under
    :data:`CPU_BOUND_SHARE` of them) say, None without such a run: the newest such run's peak when it
    is above the newest run's cores (the need is at least that: review 45h M1), else the largest of
    their peaks that fit the newest run's cores (when it is about the newest run's peak, the need is
    known to fit there, so a CPU-bound newest run is not sized above its cores: review 45g M1, 8 -> 4
    -> 8 vCPU on alternate runs; an older busy run does not set a floor: 45i M1)."""
    observed_peak_vcpu: float | None = None
    """The history's CPU peak when :func:`capped_need` changed ``need.peak_vcpu`` (for :meth:`describe`)."""
    cpu_note: str = ""
    """What :func:`capped_need` says about the CPU need: CPU-bound, capped (for :meth:`describe`)."""

    def describe(self) -> str:
        """One line for logs and the decision artifact.

        >>> from care_flows.planning.sizing import UsageSummary
        >>> LearnedNeed(UsageSummary(1.5, 2.5, 0.64, 2.0), steps=30, key="etl", running_s=1800.0, mean_from_maxima=True).describe()
        "usage history 'etl' (30 min of runs): p95 1.50 vCPU, max 2.50 GiB, mean <= 0.64 vCPU (older rows stored 10-s maxima only: an upper bound)"
        """
        minutes = self.steps if self.running_s is None else round(self.running_s / 60.0)
        mean = self.need.mean_vcpu
        mean_note = "" if mean is None else (
            f", mean <= {mean:.2f} vCPU (older rows stored 10-s maxima only: an upper bound)" if self.mean_from_maxima
            else f", mean {mean:.2f} vCPU")
        peak = self.need.peak_vcpu if self.observed_peak_vcpu is None else self.observed_peak_vcpu
        cpu = f"p{QUANTILE * 100:.0f} {peak:.2f} vCPU" + (f" ({self.cpu_note})" if self.cpu_note else "")
        return f"usage history '{self.key}' ({minutes} min of runs): {cpu}, max {self.need.peak_memory_gib:.2f} GiB{mean_note}"


def learned_need(store: UsageStoreBackend, key: str, *, duration_s: float, min_steps: int = MIN_STEPS) -> LearnedNeed | None:
    """The need of the next run of ``key`` over ``duration_s``, or None with too little history
    (:func:`need_from_samples` on the stored samples)."""
    return need_from_samples(store.load(key), key, duration_s=duration_s, min_steps=min_steps)


def need_from_samples(frame: pd.DataFrame, key: str, *, duration_s: float, min_steps: int = MIN_STEPS) -> LearnedNeed | None:
    """The need of the next run from a history's samples (``time, cpu_vcpu, memory_gib, ...``), or
    None when they hold under ``min_steps`` minutes of running (:func:`running_seconds`).

    CPU: the 95th percentile of the one-minute maxima of the newest :data:`MAX_RUNS` runs (runs are
    separated by a minute without samples; whole runs, from their start), at least :data:`MIN_VCPU`;
    means: the mean of the same minutes' means (CPU: of the rows' ``cpu_vcpu_mean``, their
    ``cpu_vcpu`` where it is missing, :attr:`LearnedNeed.mean_from_maxima`). Memory: the largest
    of that percentile and the largest value of the same runs and of the last :data:`MEMORY_LOOKBACK`
    (a flow that never stops: of its last :data:`MEMORY_LOOKBACK_STEPS` of running),
    + :data:`SYSTEM_MEMORY_GIB`: a short spike that a percentile drops is what kills a run. ``duration_s`` only matters for a flow that
    never stops (one unbroken run of two days or more): its forecast covers ``duration_s`` (at most
    :data:`MAX_FORECAST_STEPS`) after its last step.

    >>> t = pd.date_range("2026-01-01T02:00Z", periods=360, freq="10s")  # an hour, busy in its first half
    >>> run = pd.DataFrame({"time": t, "cpu_vcpu": [4.0] * 180 + [0.5] * 180, "memory_gib": 1.0, "n_processes": 1})
    >>> two_runs = pd.concat([run, run.assign(time=t + pd.Timedelta(days=1))])
    >>> need = need_from_samples(two_runs, "etl", duration_s=900).need  # the last run ended quiet
    >>> need.peak_vcpu, need.mean_vcpu
    (4.0, 2.25)

    Rows with their 10-second mean (what :func:`record_usage` stores): a flow busy 2 s of every 10
    peaks at its burst but uses a fifth of it on average.

    >>> bursty = two_runs.assign(cpu_vcpu=4.0, cpu_vcpu_mean=0.8)
    >>> learned = need_from_samples(bursty, "etl", duration_s=900)
    >>> learned.need.peak_vcpu, learned.need.mean_vcpu, learned.mean_from_maxima
    (4.0, 0.8, False)
    """
    from care_flows.forecast.usage import forecast_usage
    from care_flows.planning.sizing import UsageSummary
    from care_flows.usage_capture import CPU_MEAN_COLUMN, cpu_vcpu_means, running_seconds, samples_frame, usage_series

    running_s = running_seconds(frame, step_s=RECORD_STEP_S)
    if running_s < min_steps * STEP_S:
        return None
    cpu = usage_series(frame, "cpu_vcpu", step_s=STEP_S, how="max")
    cpu = cpu.iloc[-MAX_STEPS:]
    mem = usage_series(frame, "memory_gib", step_s=STEP_S, how="max").reindex(cpu.index).ffill().bfill()
    cpu_v, mem_v = cpu.to_numpy(dtype=float), mem.to_numpy(dtype=float)
    # a minute without samples separates two runs; each run counts from its own start
    gap = np.asarray(cpu.index[1:] - cpu.index[:-1] > pd.Timedelta(seconds=STEP_S), dtype=bool)
    run_of = np.concatenate([[0], np.cumsum(gap)])
    n_runs = int(run_of[-1]) + 1
    if n_runs > 1 or len(cpu) < 2 * 86_400 / STEP_S:
        recent_runs = run_of > run_of[-1] - MAX_RUNS  # the newest MAX_RUNS runs, whole
        minutes = cpu.index[recent_runs]  # the means of their samples per minute (not the minute maxima), one resampling
        rows = samples_frame(frame)
        rows = rows[rows["time"] >= minutes[0]]
        newest = run_of == run_of[-1]
        parsed, newest_rows = rows, rows[rows["time"] >= cpu.index[newest][0]]
        cpu_mean, from_max = cpu_vcpu_means(rows)  # the rows' 10-s means (their maxima where none was stored)
        times = pd.DatetimeIndex(rows["time"])
        rows = pd.DataFrame({"cpu_vcpu": cpu_mean, "memory_gib": rows["memory_gib"].astype(float)}).set_axis(times)
        per_minute = rows.resample(pd.Timedelta(seconds=STEP_S)).mean().reindex(minutes).ffill().bfill()
        means = [per_minute["cpu_vcpu"].to_numpy(), per_minute["memory_gib"].to_numpy()]
        peak_vcpu = max(float(np.quantile(cpu_v[recent_runs], QUANTILE)), MIN_VCPU)
        lookback = recent_runs | np.asarray(cpu.index >= cpu.index[-1] - MEMORY_LOOKBACK, dtype=bool)
        peak_mem = max(float(np.quantile(mem_v[recent_runs], QUANTILE)), float(np.max(mem_v[lookback]))) + SYSTEM_MEMORY_GIB
        need = UsageSummary(peak_vcpu=round(peak_vcpu, 3), peak_memory_gib=round(peak_mem, 3),
                            mean_vcpu=round(min(float(np.mean(means[0])), peak_vcpu), 3),
                            mean_memory_gib=round(min(float(np.mean(means[1])) + SYSTEM_MEMORY_GIB, peak_mem), 3))
        newest_run = _newest_run(newest_rows, cpu_v[newest])
        idle = _idle_on_more(parsed, cpu.index, run_of, cpu_v, recent_runs, newest_run["capacity_vcpu"])
        return LearnedNeed(need=need, steps=len(cpu), key=key, running_s=running_s, runs=min(n_runs, MAX_RUNS),
                           mean_from_maxima=bool(from_max.any()), idle_on_more=idle, **newest_run)
    # a flow that never stops: forecast its next duration_s from its last steps (daily/weekly period searched)
    run_steps = max(1, math.ceil(duration_s / STEP_S))
    horizon = min(run_steps, MAX_FORECAST_STEPS)
    recent = min(len(cpu), max(run_steps, min_steps))
    period = "auto"
    recent_fc = slice(-FORECAST_HISTORY_STEPS, None)
    fc_cpu = np.clip(forecast_usage(cpu_v[recent_fc], horizon, period=period, step_s=STEP_S).values, 0.0, None)
    fc_mem = np.clip(forecast_usage(mem_v[recent_fc], horizon, period=period, step_s=STEP_S).values, 0.0, None)
    # the mean CPU: a forecast of the same minutes' means (of the rows' 10-s means, maxima where none was stored)
    minutes_fc = cpu.index[recent_fc]
    rows = samples_frame(frame)
    rows = rows[rows["time"] >= minutes_fc[0]]
    from_max = bool(cpu_vcpu_means(rows)[1].any())
    cpu_mean_v = usage_series(rows, CPU_MEAN_COLUMN, step_s=STEP_S, how="mean").reindex(minutes_fc).ffill().bfill()
    fc_cpu_mean = np.clip(forecast_usage(cpu_mean_v.to_numpy(dtype=float), horizon, period=period, step_s=STEP_S).values, 0.0, None)
    peak_vcpu = max(float(np.quantile(np.concatenate([fc_cpu, cpu_v[-recent:]]), QUANTILE)), MIN_VCPU)
    peak_mem = max(float(np.quantile(np.concatenate([fc_mem, mem_v[-recent:]]), QUANTILE)),
                   float(np.max(mem_v[-MEMORY_LOOKBACK_STEPS:]))) + SYSTEM_MEMORY_GIB
    need = UsageSummary(peak_vcpu=round(peak_vcpu, 3), peak_memory_gib=round(peak_mem, 3),
                        mean_vcpu=round(min(float(np.mean(fc_cpu_mean)), peak_vcpu), 3),
                        mean_memory_gib=round(min(float(np.mean(fc_mem)) + SYSTEM_MEMORY_GIB, peak_mem), 3))
    last = rows[rows["time"] >= cpu.index[-recent]]  # the last run-length of running: the "newest run" of a flow that never stops
    return LearnedNeed(need=need, steps=len(cpu), key=key, running_s=running_s, mean_from_maxima=from_max,
                       **_newest_run(last, cpu_v[-recent:]))


def _newest_run(rows: pd.DataFrame, minute_maxima: np.ndarray) -> dict[str, float | None]:
    """:class:`LearnedNeed`'s ``capacity_vcpu`` and ``newest_peak_vcpu`` of a run from its stored
    ``rows`` and its one-minute CPU maxima (capacity None: not stored)."""
    from care_flows.usage_capture import CAPACITY_COLUMN

    capacity = float(rows[CAPACITY_COLUMN].astype(float).max()) if CAPACITY_COLUMN in rows.columns and len(rows) else math.nan
    return {"capacity_vcpu": round(capacity, 3) if math.isfinite(capacity) and capacity > 0 else None,
            "newest_peak_vcpu": round(float(np.quantile(minute_maxima, QUANTILE)), 3)}


def _idle_on_more(rows: pd.DataFrame, minutes: pd.DatetimeIndex, run_of: np.ndarray, cpu_v: np.ndarray, recent: np.ndarray,
                  newest_capacity: float | None) -> float | None:
    """:attr:`LearnedNeed.idle_on_more` from the recent runs (``recent`` minutes; ``run_of`` numbers
    the runs of ``minutes``) that could use more vCPU than ``newest_capacity`` and peaked under
    :data:`CPU_BOUND_SHARE` of them; None without such a run."""
    from care_flows.usage_capture import CAPACITY_COLUMN

    if newest_capacity is None or CAPACITY_COLUMN not in rows.columns:
        return None
    run_of_minute = pd.Series(run_of[recent], index=minutes[recent])
    row_run = run_of_minute.reindex(pd.DatetimeIndex(rows["time"]).floor(pd.Timedelta(seconds=STEP_S))).to_numpy()
    capacity = pd.Series(rows[CAPACITY_COLUMN].to_numpy(dtype=float)).groupby(row_run).max()  # NaN runs (outside recent) drop out
    peaks = [(run, peak) for run, cap in capacity.items() if math.isfinite(cap) and cap > newest_capacity
             for peak in [float(np.quantile(cpu_v[run_of == run], QUANTILE))] if peak < CPU_BOUND_SHARE * cap]
    if not peaks:
        return None
    latest = max(peaks)[1]  # the newest of them: a floor only while it is the latest word (45i M1)
    fits = [peak for _, peak in peaks if peak <= newest_capacity]
    return round(latest if latest > newest_capacity or not fits else max(fits), 3)


def capped_need(learned: LearnedNeed, policy: CarePolicy) -> LearnedNeed:
    """``learned`` for sizing under ``policy``: its CPU need at most ``policy.max_vcpu`` (default
    :data:`MAX_VCPU_FACTOR` x ``vcpu``), and a note when the newest run was CPU-bound (its peak
    reached :data:`CPU_BOUND_SHARE` of the vCPU it could use) or the need was capped.

    A run's CPU peak cannot exceed the cores it had: a flow that uses every core it gets (a pool
    sized by the cores it finds, BLAS threads), or a fixed share of them, peaks at the cores of
    whatever type ran it, so its peak plus headroom asks for the next size up after every run,
    without bound (review 44b M3). The cap bounds that growth; a flow that needs more than its type
    still grows, up to the cap. (Sizing a CPU-bound run from its declared need instead, or from the
    cores it had, left a flow with a fixed need above its declared type stuck on it, and runs that
    alternated between busy and light still grew: reviews 45c, 45d.)

    >>> from care_flows.planning.sizing import UsageSummary
    >>> pool = LearnedNeed(UsageSummary(16.0, 2.5, 15.0, 2.0), steps=30, key="etl", running_s=1800.0,
    ...                    capacity_vcpu=16.0, newest_peak_vcpu=16.0)
    >>> sized = capped_need(pool, CarePolicy(vcpu=2))
    >>> sized.need.peak_vcpu, sized.need.mean_vcpu
    (8.0, 15.0)
    >>> sized.describe()
    "usage history 'etl' (30 min of runs): p95 16.00 vCPU (the newest run used 16.00 of the 16 vCPU it could: CPU-bound, it may use more; capped at max_vcpu 8 = 4 x vcpu), max 2.50 GiB, mean 15.00 vCPU"
    """
    limit = float(policy.max_vcpu) if policy.max_vcpu is not None else MAX_VCPU_FACTOR * float(policy.vcpu)
    limit_text = f"max_vcpu {limit:g}" + ("" if policy.max_vcpu is not None else f" = {MAX_VCPU_FACTOR:g} x vcpu")
    cap, newest = learned.capacity_vcpu, learned.newest_peak_vcpu
    notes = []
    need = learned.need
    if cap is not None and newest is not None and newest >= CPU_BOUND_SHARE * cap:
        notes.append(f"the newest run used {newest:.2f} of the {cap:g} vCPU it could: CPU-bound, it may use more")
        seen = learned.idle_on_more  # the peak of a run with more cores that left some idle
        if seen is not None and seen > cap:  # it needed more than the newest run had: at least that (45h M1)
            if seen > need.peak_vcpu:
                need = dataclasses.replace(need, peak_vcpu=seen)
                notes[-1] += f"; sized as {seen:g} vCPU, the peak of a run with more of them"
        elif seen is not None and seen >= newest - (0.01 if newest >= 0.99 * cap else max(0.01, 0.02 * cap)):
            # its need fits the newest run's cores: no size up (45g M1); 2 % for noise (45i L2), but not when the newest
            # run used every core, which a grown need does (45j M1)
            notes[-1] += f"; a run with more of them peaked at {seen:.2f}: not sized up for it"
        elif need.peak_vcpu <= cap < limit:  # just above its cores, so the next size even at 0 % headroom (45f M2)
            need = dataclasses.replace(need, peak_vcpu=round(cap + 0.01, 3))
            notes[-1] += f"; sized as {need.peak_vcpu:g} vCPU, just above them"
    if need.peak_vcpu > limit:
        notes.append(f"capped at {limit_text}")
        # the mean stays measured: a capped pool flow still uses what it gets on the type the cap sizes to (45f L2)
        need = dataclasses.replace(need, peak_vcpu=limit)
    elif notes:
        notes[-1] += f"; at most {limit_text}"
    if not notes:
        return learned
    return dataclasses.replace(learned, need=need, cpu_note="; ".join(notes), observed_peak_vcpu=learned.need.peak_vcpu)


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The flow run's logger when there is a run (it reaches the Prefect UI; the ``care_flows``
    loggers do not, unless in ``PREFECT_LOGGING_EXTRA_LOGGERS``), else ``care_flows.orchestration``."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - no run context (the controller, a thread after the run)
        return log


def need_for_policy(policy: CarePolicy, flow_name: str, store: UsageStoreBackend | None = None, *,
                    on_error: Callable[[str], None] | None = None) -> LearnedNeed | None:
    """:func:`learned_need` for a policy's runs (its CPU need at most the policy's ``max_vcpu``:
    :func:`capped_need`); None when the policy sizes by declaration, the
    history is too short, or it cannot be read (a warning, and ``on_error`` gets why, for the
    decision's sizing note: sizing never fails a run).

    Stores with a ``fingerprint(name)`` (the local and the S3 store) are memoised until the
    history changes, so a controller pass over many runs of one flow forecasts its history once.
    """
    if not policy.size_from_usage or policy.instance_type:
        return None
    key = history_key(policy, flow_name)
    duration_s = policy.expected_duration.total_seconds()
    try:
        store = store or _default_store()
        fingerprint = getattr(store, "fingerprint", None)
        if fingerprint is None:
            learned = learned_need(store, key, duration_s=duration_s)
        else:
            fp = fingerprint(key)
            if fp is None:  # no history at all
                return None
            memo_key = (type(store).__name__, str(getattr(store, "directory", getattr(store, "url", id(store)))), key, fp, duration_s)
            if memo_key not in _MEMO:
                if len(_MEMO) > 256:
                    _MEMO.clear()
                _MEMO[memo_key] = learned_need(store, key, duration_s=duration_s)
            learned = _MEMO[memo_key]
        return None if learned is None else capped_need(learned, policy)
    except Exception as exc:  # noqa: BLE001 - a usage history must never fail a run or a controller pass
        why = " ".join(str(exc).split()) or type(exc).__name__
        run_logger().warning("CaRE: usage history '%s' not used (%s); sizing from the policy", key, why)
        if on_error is not None:
            on_error(f"usage history '{key}' not readable: {why}")
        return None


_STORE_FAILURES: dict[str, int] = {}
"""Failed stores in a row per run (``record_usage(raise_errors=True)``), for its warning's pace."""


def forget_store_failures(run_id: str | None) -> None:
    """Drop a finished run's count of failed stores (:func:`record_usage`'s warning pace)."""
    if run_id is not None:
        _STORE_FAILURES.pop(run_id, None)


def record_usage(policy: CarePolicy, flow_name: str, frame: Any, store: UsageStoreBackend | None = None, *,
                 run_id: str | None = None, raise_errors: bool = False) -> None:
    """Append a run's samples to its usage history as one row per :data:`RECORD_STEP_S` (errors are
    logged, and raised again only with ``raise_errors``): the bucket's largest values (what peaks
    are sized from) and its mean CPU, ``cpu_vcpu_mean`` (what the expected utilisation is learned from).

    ``run_id``: the same for every flush of one run (the S3 store keeps a run in one object).
    ``raise_errors``: for a :class:`~care_flows.usage_capture.UsageSampler`'s ``on_flush``, which
    keeps a batch that failed to store and hands it over again with the next one (a store that
    failed once, e.g. a full disk or an S3 blip, must not lose the minute that held the peak;
    review 44b M1).

    >>> import tempfile
    >>> from care_flows.usage_capture import UsageStore
    >>> store = UsageStore(tempfile.mkdtemp())
    >>> t = pd.date_range("2026-01-01T02:00Z", periods=10, freq="1s")  # 2 s at 1.5 vCPU, 8 s at 0.1
    >>> record_usage(CarePolicy(), "etl", pd.DataFrame({"time": t, "cpu_vcpu": [1.5] * 2 + [0.1] * 8,
    ...                                               "memory_gib": 1.0, "n_processes": 1}), store=store)
    >>> store.load("etl")[["cpu_vcpu", "cpu_vcpu_mean"]].round(2).values.tolist()
    [[1.5, 0.38]]
    """
    if frame is None or len(frame) == 0 or not policy.size_from_usage:
        return
    key = history_key(policy, flow_name)
    try:
        # the largest values of every RECORD_STEP_S: sizing reads one-minute maxima, and a year of
        # one-second samples would make the history 10x larger than it needs to be
        from care_flows.usage_capture import CPU_MEAN_COLUMN

        frame = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True))).drop(columns="time")
        buckets = pd.Timedelta(seconds=RECORD_STEP_S)
        binned = frame.drop(columns=CPU_MEAN_COLUMN, errors="ignore").resample(buckets).max()
        # and the bucket's mean CPU: peaks are sized from the maxima, the expected utilisation from these
        means = frame[CPU_MEAN_COLUMN] if CPU_MEAN_COLUMN in frame.columns else frame["cpu_vcpu"]
        binned[CPU_MEAN_COLUMN] = pd.to_numeric(means, errors="coerce").resample(buckets).mean()
        binned = binned.dropna(how="all")
        (store or _default_store()).append(key, binned.rename_axis("time").reset_index(), run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - recording must never fail a run
        if raise_errors:  # the sampler hands the batch over again every minute: said once, then every 10th time (review 44d L2)
            if len(_STORE_FAILURES) > 1000:  # runs whose store never answered again: forget them
                _STORE_FAILURES.clear()
            n = _STORE_FAILURES[run_id or key] = _STORE_FAILURES.get(run_id or key, 0) + 1
            if n % 10 == 1:
                run_logger().warning("CaRE: could not store the usage of '%s'%s (%s); kept, and tried again with the next batch",
                                     key, "" if n == 1 else f" ({n} times in a row)", " ".join(str(exc).split()))
            raise
        run_logger().warning("CaRE: could not store the usage of '%s' (%s)", key, " ".join(str(exc).split()))
        return
    if raise_errors:
        _STORE_FAILURES.pop(run_id or key, None)


def history_key(policy: CarePolicy, flow_name: str) -> str:
    """The name a flow's usage history and run records are kept under: ``policy.usage_key``, else the flow's name."""
    return policy.usage_key or flow_name


def _default_store() -> UsageStoreBackend:
    from care_flows.usage_capture import default_usage_store

    return default_usage_store()


def describe_sizing(policy: CarePolicy, learned: LearnedNeed | None, *, used: bool = True, why: str | None = None) -> str:
    """What a plan's instance type was sized from, for the decision artifact."""
    if policy.instance_type:
        return f"pinned instance type {policy.instance_type}"
    if learned is not None and used:
        return learned.describe()
    if why is None:
        if learned is not None:
            why = "this planner does not size from the usage history"
        elif not policy.size_from_usage:
            why = "size_from_usage is off"
        else:
            why = f"under {MIN_STEPS} min of usage history"
    return f"declared need {policy.vcpu:g} vCPU, {policy.memory_gib:g} GiB ({why})"


def accepts_usage(planner: Callable[..., Any]) -> bool:
    """Whether a planner callable takes a ``usage`` keyword."""
    return takes_keyword(planner, "usage")


def takes_keyword(planner: Callable[..., Any], name: str) -> bool:
    """Whether a planner callable takes the keyword ``name`` (a planner a user gives may not)."""
    try:
        params = inspect.signature(planner).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def plan_sized(plan_call: Callable[[UsageSummary | None], Any], policy: CarePolicy, learned: LearnedNeed | None,
               *, takes_usage: bool = True, declared_because: str | None = None) -> Any:
    """Plan with the learned need, or with the declared one if planning with it fails; set ``sizing``.

    ``plan_call(usage)`` plans (``usage`` None: the policy's declared need). A learned need that
    no instance type fits (or any other planning error with it) is logged and dropped: the run is
    planned as if there were no history, so learned sizing never makes planning fail.
    ``declared_because``: why there is no learned need, when the caller knows (the sizing note).
    """
    used, why = (learned if takes_usage else None), declared_because
    if used is not None:
        try:
            plan = plan_call(used.need)
        except CareError as exc:
            msg = " ".join(str(exc).split())
            log.warning("CaRE: planning with the learned need failed (%s); planning with the declared need", msg)
            used, why = None, f"the learned need {used.need.peak_vcpu:g} vCPU, {used.need.peak_memory_gib:g} GiB did not plan: {msg[:160]}"
            plan = plan_call(None)
    else:
        plan = plan_call(None)
    if plan is not None and getattr(plan, "sizing", "set") is None:
        applied = used is not None and getattr(plan, "planner", "") != "window"  # the window planner does not size
        plan = dataclasses.replace(plan, sizing=describe_sizing(policy, learned, used=applied, why=why))
    return plan


def call_planner(planner: Callable[..., Any], *args: Any, usage: UsageSummary | None = None, **kwargs: Any) -> Any:
    """Call a planner, passing ``usage`` only when there is one and the planner takes it."""
    if usage is not None and accepts_usage(planner):
        kwargs["usage"] = usage
    return planner(*args, **kwargs)
