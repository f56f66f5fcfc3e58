"""Review 33 #9: the memory maximum of a flow of separate runs looks back over its newest MAX_RUNS
runs and the last 7 calendar days, not 7 x 24 h of running (168 days of a daily 1 h flow), so a
peak stored under an older rule (RSS before PSS) ages out with the CPU."""

import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import MAX_RUNS, SYSTEM_MEMORY_GIB, need_from_samples


def _run(start: str, memory_gib: float, minutes: int = 30, spike_gib: float | None = None) -> pd.DataFrame:
    t = pd.date_range(start, periods=minutes * 6, freq="10s")
    mem = [memory_gib] * len(t)
    if spike_gib is not None:
        mem[len(t) // 2] = spike_gib  # one 10-s sample: a percentile drops it, the maximum must not
    return pd.DataFrame({"time": t, "cpu_vcpu": 1.0, "memory_gib": mem, "n_processes": 1, "cpu_vcpu_mean": 0.5})


def test_old_memory_peaks_of_a_daily_flow_age_out_after_max_runs_runs():
    day0 = pd.Timestamp("2026-01-01T02:00Z")
    old = [_run(day0 + pd.Timedelta(days=d), 3.0) for d in range(25)]  # RSS-era rows
    new = [_run(day0 + pd.Timedelta(days=25 + d), 1.0) for d in range(MAX_RUNS)]
    learned = need_from_samples(pd.concat(old + new), "etl", duration_s=1800)
    assert learned.need.peak_memory_gib == pytest.approx(1.0 + SYSTEM_MEMORY_GIB)  # was 3.5
    # one more old run inside the newest MAX_RUNS keeps its peak: the lookback is runs, not a fixed count of rows
    learned = need_from_samples(pd.concat(old + new[1:] + [_run(day0 + pd.Timedelta(days=60), 1.0, spike_gib=2.5)]), "etl", duration_s=1800)
    assert learned.need.peak_memory_gib == pytest.approx(2.5 + SYSTEM_MEMORY_GIB)


def test_a_memory_spike_of_the_last_week_counts_even_beyond_max_runs_runs():
    start = pd.Timestamp("2026-01-01T00:00Z")
    runs = [_run(start + pd.Timedelta(minutes=20 * i), 1.0, minutes=10, spike_gib=4.0 if i == 0 else None) for i in range(3 * MAX_RUNS)]
    learned = need_from_samples(pd.concat(runs), "frequent", duration_s=600)
    assert learned.runs == MAX_RUNS
    assert learned.need.peak_memory_gib == pytest.approx(4.0 + SYSTEM_MEMORY_GIB)  # 20 h ago: within 7 days
    late = [_run(start + pd.Timedelta(days=8) + pd.Timedelta(minutes=20 * i), 1.0, minutes=10) for i in range(MAX_RUNS)]
    learned = need_from_samples(pd.concat(runs + late), "frequent", duration_s=600)
    assert learned.need.peak_memory_gib == pytest.approx(1.0 + SYSTEM_MEMORY_GIB)  # 8 days and 20 runs ago: gone
