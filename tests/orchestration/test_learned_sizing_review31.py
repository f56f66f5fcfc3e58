"""Review 31 #2: learned sizing sizes the next run from the past runs' profiles (aligned at each
run's start), not from the continuation of the last run's quiet tail."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import MAX_RUNS, need_from_samples
from care_flows.planning.sizing import right_size
from care_flows.pricing import EmbeddedPrices


def _runs(profiles: list[np.ndarray], start: str = "2026-01-01T02:00:00Z", mem: float = 1.0) -> pd.DataFrame:
    """One run a day, each a per-minute CPU profile stored as @care records it (10-second rows)."""
    rows = []
    for day, per_minute in enumerate(profiles):
        t0 = pd.Timestamp(start) + pd.Timedelta(days=day)
        cpu = np.repeat(per_minute, 6)
        rows.append(pd.DataFrame({"time": pd.date_range(t0, periods=len(cpu), freq="10s"), "cpu_vcpu": cpu, "memory_gib": mem, "n_processes": 1}))
    return pd.concat(rows, ignore_index=True)


def _busy_middle(minutes: int = 60) -> np.ndarray:
    """4 vCPU from minute 5 to 35, 0.3 vCPU otherwise: mean 2.15 over 60 minutes, a quiet end."""
    m = np.arange(minutes)
    return np.where((m >= 5) & (m < 35), 4.0, 0.3)


@pytest.mark.parametrize("planned_min", [15, 60, 120])
def test_two_hour_long_runs_give_their_peak_and_mean_whatever_the_planned_duration(planned_min, caplog) -> None:
    frame = _runs([_busy_middle(), _busy_middle()])
    real_mean = float(frame["cpu_vcpu"].mean())
    assert real_mean == pytest.approx(2.15)
    with caplog.at_level(logging.WARNING):
        learned = need_from_samples(frame, "etl", duration_s=planned_min * 60)
    assert learned is not None
    need = learned.need
    # the last run ended on 25 quiet minutes at 0.3 vCPU: the next run still starts and peaks like the runs did
    assert need.peak_vcpu >= 4.0
    assert need.mean_vcpu == pytest.approx(real_mean, abs=0.1)  # was 0.3: the tail's level
    choice = right_size("eu-north-1", usage=need, prices=EmbeddedPrices(), headroom_pct=20)
    assert choice.vcpu >= 4.0 * 1.2  # the policy's headroom on top of the peak
    assert choice.expected_utilisation == pytest.approx(real_mean / choice.vcpu, rel=0.05)


def test_the_newest_runs_count_and_a_busy_minority_of_runs_still_sets_the_peak() -> None:
    quiet, busy = np.full(30, 0.5), np.full(30, 3.0)
    frame = _runs([quiet] * 5 + [busy] + [quiet] * 3)  # one run in nine was busy all along
    need = need_from_samples(frame, "etl", duration_s=1800).need  # type: ignore[union-attr]
    assert need.peak_vcpu == pytest.approx(3.0, rel=0.05)  # sized for a run like the busiest recent ones
    assert need.mean_vcpu == pytest.approx((8 * 0.5 + 3.0) / 9, abs=0.05)


def test_runs_of_different_lengths_are_aligned_at_their_start() -> None:
    # each run starts with 10 busy minutes and then idles for a varying time: the start matters, not the end
    profiles = [np.concatenate([np.full(10, 2.0), np.full(n, 0.2)]) for n in (5, 40, 10, 60)]
    need = need_from_samples(_runs(profiles), "etl", duration_s=10 * 60).need  # type: ignore[union-attr]
    assert need.peak_vcpu == pytest.approx(2.0)
    minutes = sum(len(p) for p in profiles)
    assert need.mean_vcpu == pytest.approx(sum(float(p.sum()) for p in profiles) / minutes, abs=0.05)


def test_only_the_newest_runs_count() -> None:
    quiet, busy = np.full(30, 0.5), np.full(30, 3.0)
    learned = need_from_samples(_runs([busy] + [quiet] * MAX_RUNS), "etl", duration_s=1800)
    assert learned is not None and learned.runs == MAX_RUNS
    assert learned.need.peak_vcpu == pytest.approx(0.5) and learned.need.mean_vcpu == pytest.approx(0.5)


def test_a_flow_that_never_stops_is_still_forecast_from_its_last_steps(caplog) -> None:
    t = pd.date_range("2026-01-01T00:00:00Z", periods=2 * 1440 * 6, freq="10s")  # two days, unbroken
    frame = pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 3.0, "n_processes": 1})
    with caplog.at_level(logging.WARNING):
        learned = need_from_samples(frame, "service", duration_s=3600)
    assert learned is not None and learned.runs is None  # no next run to align: the forecaster's continuation
    assert learned.need.peak_vcpu == pytest.approx(1.5) and learned.need.mean_vcpu == pytest.approx(1.5)
