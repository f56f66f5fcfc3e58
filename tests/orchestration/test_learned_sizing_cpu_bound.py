"""Learned sizing with flows that use every core they are given: the CPU need is capped at the policy's max_vcpu
(default 4 x vcpu) instead of growing one size per run without bound, and the note says when a run was CPU-bound
(reviews 44b M3, 45c, 45d).

Each run's rows carry the vCPU the run could use (``capacity_vcpu``); a run whose CPU peak reached 90 % of them
was CPU-bound and might have used more.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.errors import ConfigError
from care_flows.orchestration.learned_sizing import MAX_VCPU_FACTOR, need_for_policy, plan_sized, record_usage
from care_flows.orchestration.plan import plan_run
from care_flows.planning.sizing import right_size
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


def _loop(store: UsageStore, policy: CarePolicy, first_cores: float, use, runs: int = 6) -> list[float]:
    """Runs that each use ``use(cores)`` vCPU of the cores they get; the first on ``first_cores`` (a laptop, say),
    the rest on the type planned after the run before. The vCPU of each planned type."""
    cores, sizes = first_cores, []
    for day in range(runs):
        store.append("pool", _rows(day, min(use(cores), cores), capacity=cores))
        _, plan = _plan(store, policy)
        cores = float(CATALOG.loc[plan.instance_type, "vcpu"])
        sizes.append(cores)
    return sizes


def _policy(**kw) -> CarePolicy:
    return CarePolicy(home_region=REGION, regions=[REGION], usage_key="pool", expected_duration="30m", **kw)


def test_a_flow_that_uses_every_core_grows_to_the_cap_and_stays(tmp_path) -> None:
    """Without a bound the type doubled every run: c5a.xlarge -> 2xlarge -> ... -> 32xlarge in 8 runs (review 44b M3)."""
    sizes = _loop(UsageStore(tmp_path), _policy(), first_cores=4.0, use=lambda cores: cores, runs=8)
    assert sizes == [8, 16, 16, 16, 16, 16, 16, 16]  # need at most 4 x 2 = 8 vCPU; x 1.2 headroom -> a 16-vCPU type
    learned, plan = _plan(UsageStore(tmp_path), _policy())
    assert learned.need.peak_vcpu == 8.0
    assert "the newest run used 16.00 of the 16 vCPU it could: CPU-bound, it may use more" in plan.sizing
    assert "capped at max_vcpu 8 = 4 x vcpu" in plan.sizing


def test_max_vcpu_sets_the_cap(tmp_path) -> None:
    sizes = _loop(UsageStore(tmp_path), _policy(max_vcpu=3), first_cores=4.0, use=lambda cores: cores)
    assert set(sizes) == {4}  # 3 x 1.2 = 3.6 vCPU


@pytest.mark.parametrize("need", [3.5, 6.0, 7.9])
def test_a_fixed_need_above_the_declared_type_still_gets_it(tmp_path, need: float) -> None:
    """A flow that needs 6 vCPU saturates its first 4-vCPU type and then gets a type it fits, as before
    (sizing such a run from its declared vcpu left it stuck on 4 vCPU; review 45d H2)."""
    sizes = _loop(UsageStore(tmp_path), _policy(), first_cores=4.0, use=lambda cores: need)
    assert sizes[-1] >= need * 1.2 and len(set(sizes[-3:])) == 1, sizes


@pytest.mark.parametrize("headroom_pct, share", [(20.0, 0.85), (100.0, 0.5), (5.0, 0.96), (400.0, 0.3), (0.0, 1.0)])
def test_a_flow_using_a_share_of_any_type_is_bounded(tmp_path, headroom_pct: float, share: float) -> None:
    """85 % of its cores at 20 % headroom grew 8 -> 16 -> ... -> 96 vCPU (review 45c H1)."""
    policy = _policy(headroom_pct=headroom_pct)
    sizes = _loop(UsageStore(tmp_path), policy, first_cores=8.0, use=lambda cores: share * cores, runs=8)
    limit = right_size(REGION, MAX_VCPU_FACTOR * 2.0, 3.5, prices=EmbeddedPrices(), headroom_pct=headroom_pct).vcpu
    assert max(sizes) <= limit and len(set(sizes[-3:])) == 1, sizes


def test_busy_and_light_runs_in_turn_are_bounded(tmp_path) -> None:
    """Every other run uses all its cores, the others 0.5 vCPU: it doubled after every light run (review 45d H1)."""
    store, cores, seen = UsageStore(tmp_path), 4.0, []
    for day in range(10):
        store.append("pool", _rows(day, cores if day % 2 == 0 else 0.5, capacity=cores))
        _, plan = _plan(store, _policy())
        cores = float(CATALOG.loc[plan.instance_type, "vcpu"])
        seen.append(cores)
    assert max(seen) <= 16, seen


def test_a_first_run_on_a_big_machine_does_not_send_the_flow_to_its_size(tmp_path) -> None:
    """A first run on a 96-core box that used every core: sized at the cap, not at 96 x 1.2."""
    sizes = _loop(UsageStore(tmp_path), _policy(), first_cores=96.0, use=lambda cores: cores, runs=2)
    assert sizes == [16, 16]


def test_histories_without_capacity_and_light_runs_are_as_before(tmp_path) -> None:
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 4.0, capacity=None))
    learned = need_for_policy(_policy(), "pool", store)
    assert learned.capacity_vcpu is None and learned.need.peak_vcpu == 4.0 and learned.cpu_note == ""
    store2 = UsageStore(tmp_path / "light")
    store2.append("pool", _rows(0, 1.5, capacity=8.0))
    light = need_for_policy(_policy(), "pool", store2)
    assert light.need.peak_vcpu == 1.5 and "CPU-bound" not in light.describe()


def test_only_the_newest_run_is_called_cpu_bound(tmp_path) -> None:
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 2.0, capacity=2.0))
    store.append("pool", _rows(1, 1.5, capacity=8.0))
    assert "CPU-bound" not in need_for_policy(_policy(), "pool", store).describe()
    store.append("pool", _rows(2, 8.0, capacity=8.0))
    assert "used 8.00 of the 8 vCPU it could: CPU-bound, it may use more; at most max_vcpu 8" in need_for_policy(_policy(), "pool", store).describe()


def test_a_flow_that_never_stops_is_capped_too(tmp_path) -> None:
    """Three unbroken days at every core go through the forecaster's branch (review 45c M3)."""
    store = UsageStore(tmp_path)
    t = pd.date_range(T0 - pd.Timedelta(days=3), periods=3 * 8640, freq="10s")
    store.append("svc", pd.DataFrame({"time": t, "cpu_vcpu": 16.0, "cpu_vcpu_mean": 15.2, "memory_gib": 3.0, "n_processes": 4,
                                      CAPACITY_COLUMN: 16.0}))
    learned = need_for_policy(CarePolicy(usage_key="svc", vcpu=3), "svc", store)
    assert learned.runs is None  # the forecast branch
    assert learned.need.peak_vcpu == 12.0 and learned.need.mean_vcpu == pytest.approx(15.2) and "CPU-bound" in learned.cpu_note


def test_the_mean_stays_measured(tmp_path) -> None:
    """The mean is what the runs used, also under the cap: a pool flow capped at 8 on a 16-vCPU type still uses 15.2
    there (45c M1, 45d M2, 45f L2)."""
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 1.9, capacity=2.0))
    learned = need_for_policy(_policy(headroom_pct=100), "pool", store)
    assert learned.need.peak_vcpu == 2.01 and learned.need.mean_vcpu == pytest.approx(1.805)
    store.append("pool", _rows(1, 16.0, capacity=16.0))
    capped = need_for_policy(_policy(), "pool", store)
    assert capped.need.peak_vcpu == 8.0 and capped.need.mean_vcpu == pytest.approx((1.805 + 15.2) / 2, abs=1e-3)


def test_a_runs_vcpu_above_the_apps_max_vcpu_drops_it(tmp_path) -> None:
    """A run's care_overrides {"vcpu": 16} under an app policy with max_vcpu 8 failed the run (review 45f M1); in one
    policy a max_vcpu below vcpu stays an error, not silently ignored (45g L2)."""
    from care_flows.orchestration.overrides import apply_overrides

    policy = apply_overrides(CarePolicy(max_vcpu=8, usage_key="pool"), {"vcpu": 16})
    assert policy.vcpu == 16 and policy.max_vcpu is None
    store = UsageStore(tmp_path)
    store.append("pool", _rows(0, 40.0, capacity=48.0))
    assert need_for_policy(policy, "pool", store).need.peak_vcpu == 40.0  # under 4 x 16
    assert apply_overrides(CarePolicy(max_vcpu=8), {"vcpu": 4}).max_vcpu == 8
    with pytest.raises(ConfigError, match="max_vcpu 4 is below vcpu 8"):
        CarePolicy(vcpu=8, max_vcpu=4)


@pytest.mark.parametrize("need, headroom_pct, vcpu", [(3.7, 0.0, 2.0), (3.8, 5.0, 2.0), (7.5, 5.0, 8.0), (1.9, 0.0, 2.0)])
def test_a_fixed_need_just_under_its_cores_does_not_flip_between_two_sizes(tmp_path, need: float, headroom_pct: float,
                                                                            vcpu: float) -> None:
    """3.7 of 4 vCPU is CPU-bound, so it asked for 4.01 (8 vCPU); there it was not, so it went back to 4: 8, 4, 8, 4 ...
    A run with more cores that left some idle now says the need fits (review 45g M1)."""
    sizes = _loop(UsageStore(tmp_path), _policy(headroom_pct=headroom_pct, vcpu=vcpu), first_cores=need / 0.95, use=lambda cores: need)
    assert len(set(sizes[-4:])) == 1, sizes


@pytest.mark.parametrize("headroom_pct", [0.0, 20.0])
def test_a_cpu_bound_flow_grows_at_zero_headroom_too(tmp_path, headroom_pct: float) -> None:
    """A flow that needs 10 vCPU stayed on its 4-vCPU type for ever at 0 % headroom: 4 of 4 fits 4 (review 45f M2)."""
    sizes = _loop(UsageStore(tmp_path), _policy(headroom_pct=headroom_pct, vcpu=4), first_cores=4.0, use=lambda cores: 10.0)
    assert sizes[-1] >= 10 and len(set(sizes[-3:])) == 1, sizes


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


def test_care_usage_caps_and_names_a_cpu_bound_history(tmp_path, capsys) -> None:
    UsageStore(tmp_path).append("pool", _rows(0, 16.0, capacity=16.0))
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--region", REGION, "--vcpu", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["need"]["capacity_vcpu"] == 16.0 and doc["need"]["peak_vcpu"] == 4.0 and doc["need"]["max_vcpu"] == 4.0
    assert CATALOG.loc[doc["instance_type"], "vcpu"] == 8  # 4 x 1.2
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--region", REGION, "--vcpu", "1", "--max-vcpu", "16"]) == 0
    out = capsys.readouterr().out
    assert "CPU: the newest run used 16.00 of the 16 vCPU it could: CPU-bound, it may use more; at most max_vcpu 16" in out
    assert main(["usage", "pool", "--usage-dir", str(tmp_path), "--vcpu", "4", "--max-vcpu", "2"]) == 2
    assert "--max-vcpu 2 is below --vcpu 4" in capsys.readouterr().err


def test_a_need_that_grows_after_it_settled_still_grows(tmp_path) -> None:
    """3.7 vCPU settles on 4 cores (after one run on 8); then the need grows to 6: the old run on 8 cores that
    peaked at 3.7 kept it on 4 for 15 runs (review 45h M1)."""
    store, cores, sizes = UsageStore(tmp_path), 4.0, []
    policy = _policy(headroom_pct=0.0)
    for day in range(14):
        need = 3.7 if day < 6 else 6.0
        store.append("pool", _rows(day, min(need, cores), capacity=cores))
        _, plan = _plan(store, policy)
        cores = float(CATALOG.loc[plan.instance_type, "vcpu"])
        sizes.append(cores)
    assert sizes[3:6] == [4, 4, 4] and sizes[-4:] == [8, 8, 8, 8], sizes


def test_a_run_with_more_cores_that_needed_more_than_the_newest_had_is_not_evidence_against_growing(tmp_path) -> None:
    """19 capped runs on 4 cores, then one on 8 that peaked at 6 (under 90 % of 8): it is counted as 'idle on more',
    but 6 does not fit 4 cores, so the need is at least 6 (review 45h M1)."""
    store = UsageStore(tmp_path)
    for day in range(19):
        store.append("pool", _rows(day, 4.0, capacity=4.0))
    store.append("pool", _rows(19, 6.0, capacity=8.0))
    store.append("pool", _rows(20, 4.0, capacity=4.0))
    learned = need_for_policy(_policy(headroom_pct=0.0), "pool", store)
    assert learned.idle_on_more == 6.0 and learned.need.peak_vcpu == 6.0
    assert "sized as 6 vCPU, the peak of a run with more of them" in learned.describe()


def test_a_deployments_max_vcpu_and_a_runs_vcpu_above_it_merge_into_a_valid_policy() -> None:
    """overrides_from merged {max_vcpu: 4} and {vcpu: 8} into an invalid policy and the run failed (review 45h M2)."""
    from care_flows.orchestration.overrides import apply_overrides, overrides_from

    merged = overrides_from({"care_overrides": {"max_vcpu": 4}}, {"care_overrides": {"vcpu": 8}})
    assert merged == {"vcpu": 8}  # the key left out, not null: an app's own max_vcpu 16 stays (45i L3)
    assert apply_overrides(CarePolicy(), merged).vcpu == 8
    assert apply_overrides(CarePolicy(max_vcpu=16), merged).max_vcpu == 16
    with pytest.raises(ConfigError, match="max_vcpu 4 is below vcpu 8"):
        apply_overrides(CarePolicy(), overrides_from({"care_overrides": {"vcpu": 8, "max_vcpu": 4}}))


def test_one_busy_run_does_not_make_a_settled_flow_flip(tmp_path) -> None:
    """One run needed 6 vCPU on 8 cores, then every run needs 3.7 (360 vCPU-minutes of work a run): the old busy
    run set a floor of 6 each time the flow was CPU-bound on 4 cores, so 4, 8, 4, 8 until it left the window
    (review 45i M1)."""
    store, cores, sizes = UsageStore(tmp_path), 4.0, []
    for day in range(22):
        need = 6.0 if day == 1 else 3.7
        used = min(need, cores)
        store.append("pool", _rows(day, used, capacity=cores, minutes=round(360 / used)))
        _, plan = _plan(store, _policy(headroom_pct=0.0))
        cores = float(CATALOG.loc[plan.instance_type, "vcpu"])
        sizes.append(cores)
    changes = sum(a != b for a, b in zip(sizes, sizes[1:]))
    assert changes <= 3 and sizes[-5:] == [4] * 5, sizes


def test_a_need_that_grows_past_its_cores_is_sized_up_at_once(tmp_path) -> None:
    """3.93 vCPU for three runs (it settles on 4 cores after one on 8), then 6: the 8-core run's 3.93 was within 2 % of
    the 4.00 the newest run used, so the size-up was skipped for 19 runs (review 45j M1)."""
    store, cores, sizes = UsageStore(tmp_path), 8.0, []
    for day in range(10):
        need = 3.93 if day < 3 else 6.0
        used = min(need, cores)
        store.append("pool", _rows(day, used, capacity=cores, minutes=round(360 / used)))
        _, plan = _plan(store, _policy(headroom_pct=0.0))
        cores = float(CATALOG.loc[plan.instance_type, "vcpu"])
        sizes.append(cores)
    assert sizes[-5:] == [8] * 5 and sizes[3:].count(4) <= 2, sizes
