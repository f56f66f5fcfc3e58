"""A flow that uses every core it is given keeps its size instead of growing one size per run (review 44b M3).

Each run's rows carry the vCPU the run could use (``capacity_vcpu``); a run whose CPU peak reached
90 % of them was CPU-bound, and its usage says nothing about how many more cores it would use.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import CPU_BOUND_SHARE, cpu_bound_need, need_for_policy, need_from_samples, plan_sized, record_usage
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy
from care_flows.pricing import EmbeddedPrices
from care_flows.usage_capture import CAPACITY_COLUMN, COLUMNS, CPU_MEAN_COLUMN, UsageSampler, UsageStore, samples_frame, stored_columns, usable_cpus

T0 = pd.Timestamp("2026-03-02T00:00Z")
REGION = "eu-north-1"
CATALOG = EmbeddedPrices().catalog(REGION).set_index("instance_type")


def _rows(day: int, vcpu: float, capacity: float | None, minutes: int = 30, mem: float = 3.0) -> pd.DataFrame:
    t = pd.date_range(T0 - pd.Timedelta(days=30 - day), periods=minutes * 6, freq="10s")
    frame = pd.DataFrame({"time": t, "cpu_vcpu": vcpu, "cpu_vcpu_mean": vcpu * 0.95, "memory_gib": mem, "n_processes": 2})
    if capacity is not None:
        frame[CAPACITY_COLUMN] = capacity
    return frame


def _plan(store: UsageStore, policy: CarePolicy):
    forecasts = {REGION: pd.Series(20.0, index=pd.date_range(T0, periods=48, freq="1h"))}
    learned = need_for_policy(policy, "pool", store)
    return learned, plan_sized(lambda usage: plan_run(policy, T0, forecasts=forecasts, usage=usage), policy, learned)


def test_a_flow_that_uses_every_core_keeps_its_type_run_after_run(tmp_path) -> None:
    """Without the capacity the type doubled every run (c5a.xlarge -> 2xlarge -> 4xlarge ... -> 32xlarge)."""
    store = UsageStore(tmp_path)
    policy = CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool", expected_duration="30m")
    on = "c5a.xlarge"
    types = []
    for day in range(5):
        cores = float(CATALOG.loc[on, "vcpu"])
        store.append("pool", _rows(day, cores, capacity=cores))  # busy on every core it had
        learned, plan = _plan(store, policy)
        assert learned.cpu_bound_vcpu == cores
        on = plan.instance_type
        types.append(on)
    assert types == ["c5a.xlarge"] * 5
    assert "of the 4 vCPU the newest run had (CPU-bound)" in plan.sizing and "declare a larger vcpu" in plan.sizing


def test_the_same_history_without_capacity_still_sizes_from_the_peak(tmp_path) -> None:
    """Rows stored before the column existed: the old rule (peak + headroom), nothing to tell CPU-bound from."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 4.0, capacity=None))
    learned, plan = _plan(store, CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool"))
    assert learned.cpu_bound_vcpu is None and learned.need.peak_vcpu == 4.0
    assert CATALOG.loc[plan.instance_type, "vcpu"] >= 4.8


def test_a_run_below_the_bound_is_sized_from_its_usage(tmp_path) -> None:
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, CPU_BOUND_SHARE * 8 - 0.1, capacity=8.0))  # 7.1 of 8: not bound
    learned = need_for_policy(CarePolicy(usage_key="pool"), "pool", store)
    assert learned.cpu_bound_vcpu is None and learned.need.peak_vcpu == pytest.approx(7.1)
    assert "CPU-bound" not in learned.describe()


def test_only_the_newest_run_decides(tmp_path) -> None:
    """An older CPU-bound run on 2 cores, then a run using 1.5 of 8: sized from usage (peak of both runs)."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 2.0, capacity=2.0))
    store.append("pool", _rows(1, 1.5, capacity=8.0))
    assert need_for_policy(CarePolicy(usage_key="pool"), "pool", store).cpu_bound_vcpu is None
    store.append("pool", _rows(2, 8.0, capacity=8.0))
    assert need_for_policy(CarePolicy(usage_key="pool"), "pool", store).cpu_bound_vcpu == 8.0


def test_a_declared_need_above_the_capacity_stands(tmp_path) -> None:
    """A run on a 2-core machine (a laptop, a taskset) that used both cores; the policy declares 8."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 2.0, capacity=2.0))
    learned = need_for_policy(CarePolicy(usage_key="pool", vcpu=8), "pool", store)
    assert learned.need.peak_vcpu == 8.0
    assert "sized for the declared 8 vCPU" in learned.describe()


@pytest.mark.parametrize("headroom_pct", [0.0, 5.0, 15.0, 20.0, 33.0, 100.0])
@pytest.mark.parametrize("cores", [1.0, 1.5, 2.0, 3.0, 4.0, 48.0, 96.0])
def test_the_cut_need_with_headroom_never_exceeds_the_cores(cores: float, headroom_pct: float) -> None:
    """cap / f x f must not come out a hair above cap: that would be the next size up after all."""
    learned = need_from_samples(_rows(0, cores, capacity=cores), "pool", duration_s=1800)
    need = cpu_bound_need(learned, CarePolicy(vcpu=0.5, headroom_pct=headroom_pct)).need
    assert need.peak_vcpu * (1 + headroom_pct / 100) <= cores
    assert need.peak_vcpu * (1 + headroom_pct / 100) >= cores - 0.01
    assert need.mean_vcpu <= need.peak_vcpu


def test_the_sampler_records_the_cores_it_could_use_and_the_stores_keep_them(tmp_path) -> None:
    with UsageSampler(interval_s=0.05) as sampler:
        _ = sum(i * i for i in range(100_000))
    assert {s.capacity_vcpu for s in sampler.samples} == {usable_cpus()}
    frame = samples_frame(sampler.samples)
    assert CAPACITY_COLUMN in stored_columns(frame)  # the S3 and Prefect-variables stores keep what stored_columns names
    store = UsageStore(tmp_path)
    record_usage(CarePolicy(), "etl", frame, store=store)
    assert set(store.load("etl")[CAPACITY_COLUMN]) == {usable_cpus()}


def test_a_history_begun_before_the_column_reads_its_newer_rows(tmp_path) -> None:
    """A file whose header has the mean but not the capacity: newer rows carry it as a sixth field."""
    store = UsageStore(tmp_path)
    path = store.path("pool")
    path.write_text(",".join(COLUMNS + [CPU_MEAN_COLUMN]) + "\n2026-01-01T00:00:00+00:00,1.0,2.0,1,0.5\n")
    store.append("pool", _rows(0, 4.0, capacity=4.0, minutes=1))
    rows = store.load("pool")
    assert len(rows) == 7 and math.isnan(rows[CAPACITY_COLUMN].iloc[0])
    assert rows[CAPACITY_COLUMN].iloc[1:].tolist() == [4.0] * 6
    assert rows[CPU_MEAN_COLUMN].iloc[0] == 0.5
    assert np.isclose(rows["cpu_vcpu"].iloc[1:], 4.0).all()


def test_care_usage_sizes_a_cpu_bound_history_as_planning_does(tmp_path, capsys) -> None:
    import json

    from care_flows.cli import main

    UsageStore(tmp_path).append("pool", _rows(0, 4.0, capacity=4.0))
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--region", REGION, "--vcpu", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["need"]["cpu_bound_vcpu"] == 4.0 and doc["need"]["peak_vcpu"] == pytest.approx(3.333)
    assert CATALOG.loc[doc["instance_type"], "vcpu"] == 4
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--region", REGION, "--vcpu", "1"]) == 0
    assert "CPU: p95 4.00 of the 4 vCPU the newest run had (CPU-bound)" in capsys.readouterr().out
