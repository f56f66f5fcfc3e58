"""A flow that uses every core it is given (or a fixed share of them) is sized from its declared vcpu instead of
growing one size per run (reviews 44b M3, 45c).

Each run's rows carry the vCPU the run could use (``capacity_vcpu``); a run whose CPU peak reached most of
them was CPU-bound, and its usage says nothing about how many more cores it would use.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from care_flows.orchestration.learned_sizing import (
    CPU_BOUND_SHARE,
    cpu_bound_need,
    cpu_bound_share,
    need_for_policy,
    need_from_samples,
    plan_sized,
    record_usage,
)
from care_flows.planning.sizing import right_size
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


def _plan(store: UsageStore, policy: CarePolicy, region: str = REGION):
    forecasts = {region: pd.Series(20.0, index=pd.date_range(T0, periods=48, freq="1h"))}
    learned = need_for_policy(policy, "pool", store)
    return learned, plan_sized(lambda usage: plan_run(policy, T0, forecasts=forecasts, usage=usage), policy, learned)


def _loop(store: UsageStore, policy: CarePolicy, first_cores: float, share: float, runs: int = 5, region: str = REGION) -> list[str]:
    """Runs that each use ``share`` of the cores they get; the first on ``first_cores`` (a laptop, say), the rest on the type planned."""
    catalog = EmbeddedPrices().catalog(region).set_index("instance_type")
    cores, types = first_cores, []
    for day in range(runs):
        store.append("pool", _rows(day, share * cores, capacity=cores))
        learned, plan = _plan(store, policy, region)
        types.append(plan.instance_type)
        cores = float(catalog.loc[plan.instance_type, "vcpu"])
    return types


def test_a_flow_that_uses_every_core_keeps_its_type_run_after_run(tmp_path) -> None:
    """Without the capacity the type doubled every run (c5a.xlarge -> 2xlarge -> 4xlarge ... -> 32xlarge)."""
    store = UsageStore(tmp_path)
    policy = CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool", expected_duration="30m")
    types = _loop(store, policy, first_cores=4.0, share=1.0)
    assert types == ["c5a.xlarge"] * 5  # the declared 2 vCPU x 1.2 headroom: the type with no history at all
    learned, plan = _plan(store, policy)
    assert learned.cpu_bound_vcpu == 4.0 and learned.need.peak_vcpu == 2.0
    assert "p95 4.00 of the 4 vCPU the newest run had, mean 95% of them (CPU-bound): sized for the declared 2 vCPU" in plan.sizing


def test_a_first_run_on_a_big_machine_does_not_pin_the_flow_to_its_cores(tmp_path) -> None:
    """A first run on a 16-core laptop: the flow is sized from its declared vcpu, not kept at 16 (review 45c M2)."""
    store = UsageStore(tmp_path)
    policy = CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool", vcpu=4)
    types = _loop(store, policy, first_cores=16.0, share=1.0, runs=3)
    assert {CATALOG.loc[t, "vcpu"] for t in types} == {8}  # 4 x 1.2 = 4.8 vCPU: an 8-vCPU type, every time


@pytest.mark.parametrize("headroom_pct, share", [(20.0, 0.85), (100.0, 0.5), (100.0, 0.6), (5.0, 0.96), (400.0, 0.3)])
def test_a_flow_using_a_fixed_share_of_any_type_does_not_grow(tmp_path, headroom_pct: float, share: float) -> None:
    """85 % of its cores at 20 % headroom asks for 1.02 x its cores: it grew 8 -> 16 -> ... -> 96 vCPU (review 45c H1)."""
    store = UsageStore(tmp_path)
    policy = CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool", headroom_pct=headroom_pct)
    types = _loop(store, policy, first_cores=8.0, share=share, runs=6)
    assert len(set(types[1:])) == 1, types
    declared = right_size(REGION, 2.0, 3.5, prices=EmbeddedPrices(), headroom_pct=headroom_pct)  # the default vcpu, the runs' memory
    assert CATALOG.loc[types[-1], "vcpu"] == declared.vcpu


def test_the_same_history_without_capacity_still_sizes_from_the_peak(tmp_path) -> None:
    """Rows stored before the column existed: the old rule (peak + headroom), nothing to tell CPU-bound from."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 4.0, capacity=None))
    learned, plan = _plan(store, CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool"))
    assert learned.cpu_bound_vcpu is None and learned.capacity_vcpu is None and learned.need.peak_vcpu == 4.0
    assert CATALOG.loc[plan.instance_type, "vcpu"] >= 4.8


def test_a_run_below_the_bound_is_sized_from_its_usage(tmp_path) -> None:
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, cpu_bound_share(20.0) * 8 - 0.1, capacity=8.0))  # 6.57 of 8: not bound
    learned = need_for_policy(CarePolicy(usage_key="pool"), "pool", store)
    assert learned.cpu_bound_vcpu is None and learned.need.peak_vcpu == pytest.approx(6.564)
    assert "CPU-bound" not in learned.describe()


def test_only_the_newest_run_decides(tmp_path) -> None:
    """An older CPU-bound run on 2 cores, then a run using 1.5 of 8: sized from usage (peak of both runs)."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 2.0, capacity=2.0))
    store.append("pool", _rows(1, 1.5, capacity=8.0))
    assert need_for_policy(CarePolicy(usage_key="pool"), "pool", store).cpu_bound_vcpu is None
    store.append("pool", _rows(2, 8.0, capacity=8.0))
    assert need_for_policy(CarePolicy(usage_key="pool"), "pool", store).cpu_bound_vcpu == 8.0


def test_a_flow_that_never_stops_is_checked_too(tmp_path) -> None:
    """Three unbroken days at every core go through the forecaster's branch; it never set the bound (review 45c M3)."""
    store = UsageStore(tmp_path)
    t = pd.date_range(T0 - pd.Timedelta(days=3), periods=3 * 8640, freq="10s")
    store.append("svc", pd.DataFrame({"time": t, "cpu_vcpu": 8.0, "cpu_vcpu_mean": 7.6, "memory_gib": 3.0, "n_processes": 4,
                                      CAPACITY_COLUMN: 8.0}))
    learned = need_for_policy(CarePolicy(usage_key="svc", vcpu=3), "svc", store)
    assert learned.runs is None  # the forecast branch
    assert learned.cpu_bound_vcpu == 8.0 and learned.need.peak_vcpu == 3.0


@pytest.mark.parametrize("headroom_pct", [0.0, 5.0, 20.0, 100.0, 400.0])
@pytest.mark.parametrize("cores", [1.0, 1.5, 2.0, 4.0, 96.0])
def test_a_bound_run_is_sized_like_no_history_with_a_mean_share_kept(cores: float, headroom_pct: float) -> None:
    """The CPU need is the declared vcpu; the mean keeps the share of its cores the run used (for credits and
    energy: at 100 % headroom a flow using 95 % of its cores was priced at 50 % and put on a burstable t3; 45c M1)."""
    learned = need_from_samples(_rows(0, 0.95 * cores, capacity=cores), "pool", duration_s=1800)
    policy = CarePolicy(vcpu=2, headroom_pct=headroom_pct)
    sized = cpu_bound_need(learned, policy)
    assert sized.cpu_bound_vcpu == cores and sized.need.peak_vcpu == 2.0
    assert sized.need.peak_memory_gib == learned.need.peak_memory_gib
    choice = right_size(REGION, usage=sized.need, prices=EmbeddedPrices(), headroom_pct=headroom_pct)
    declared = right_size(REGION, 2.0, sized.need.peak_memory_gib, prices=EmbeddedPrices(), headroom_pct=headroom_pct)
    assert choice.vcpu == declared.vcpu
    assert choice.expected_utilisation >= 0.95 * 0.9 * 2.0 * (1 + headroom_pct / 100) / choice.vcpu - 1e-9


def test_the_bound_share_follows_the_headroom() -> None:
    assert [cpu_bound_share(h) for h in (0, 10, 20, 100, 400)] == [CPU_BOUND_SHARE, CPU_BOUND_SHARE, 0.833, 0.5, 0.2]


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
    assert doc["need"]["cpu_bound_vcpu"] == 4.0 and doc["need"]["capacity_vcpu"] == 4.0 and doc["need"]["peak_vcpu"] == 1.0
    assert CATALOG.loc[doc["instance_type"], "vcpu"] == 2  # 1 x 1.2 vCPU
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--region", REGION, "--vcpu", "1"]) == 0
    out = capsys.readouterr().out
    assert "need 1 vCPU declared (--vcpu; CPU-bound, see below)" in out
    assert "CPU: p95 4.00 of the 4 vCPU the newest run had, mean 95% of them (CPU-bound): sized for the declared 1 vCPU" in out
