"""Learned sizing: runs record their usage, later runs are sized from it (store -> forecast -> right_size)."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest
from prefect import flow

from care_flows.orchestration import care
from care_flows.orchestration.learned_sizing import (
    MIN_STEPS,
    MIN_VCPU,
    SYSTEM_MEMORY_GIB,
    call_planner,
    describe_sizing,
    learned_need,
    need_for_policy,
    plan_sized,
    record_usage,
)
from care_flows.policy import CarePolicy
from care_flows.pricing import EmbeddedPrices
from care_flows.usage_capture import UsageStore


def _run(store: UsageStore, key: str, start: str, minutes: int, cpu: float | list[float], mem: float = 2.0) -> None:
    t = pd.date_range(start, periods=minutes * 12, freq="5s", tz="UTC")
    values = cpu if isinstance(cpu, list) else [cpu] * len(t)
    store.append(key, pd.DataFrame({"time": t, "cpu_vcpu": values, "memory_gib": mem, "n_processes": 2}))


def test_no_need_until_the_history_holds_enough_running(tmp_path) -> None:
    store = UsageStore(tmp_path)
    assert learned_need(store, "etl", duration_s=3600) is None
    _run(store, "etl", "2026-01-01T00:00Z", MIN_STEPS - 1, 1.0)
    assert learned_need(store, "etl", duration_s=3600) is None
    _run(store, "etl", "2026-01-02T00:00Z", 1, 1.0)  # a second run adds the tenth minute
    learned = learned_need(store, "etl", duration_s=3600)
    assert learned is not None and learned.steps == MIN_STEPS
    assert learned.need.peak_vcpu == pytest.approx(1.0)
    assert learned.need.peak_memory_gib == pytest.approx(2.0 + SYSTEM_MEMORY_GIB)


def test_a_quiet_tail_of_the_last_run_does_not_size_the_next_run_down(tmp_path) -> None:
    store = UsageStore(tmp_path)
    # 20 busy minutes at 3 vCPU, then a 2-minute write-out at 0.1 vCPU: the last-value forecast is 0.1
    _run(store, "etl", "2026-01-01T00:00Z", 22, [3.0] * 240 + [0.1] * 24)
    learned = learned_need(store, "etl", duration_s=20 * 60)
    assert learned is not None
    assert learned.need.peak_vcpu == pytest.approx(3.0)
    # the mean is the run's, from its start (was < 1.0: the tail's level; review 31 #2)
    assert learned.need.mean_vcpu == pytest.approx((20 * 3.0 + 2 * 0.1) / 22, abs=0.01)


def test_policy_switches_keys_and_broken_histories(tmp_path, caplog) -> None:
    store = UsageStore(tmp_path)
    _run(store, "shared-key", "2026-01-01T00:00Z", 15, 6.0, mem=20.0)
    by_key = need_for_policy(CarePolicy(usage_key="shared-key"), "my_flow", store)
    assert by_key is not None and by_key.key == "shared-key" and by_key.need.peak_vcpu == pytest.approx(6.0)
    assert need_for_policy(CarePolicy(), "my_flow", store) is None  # the flow's own history is empty
    assert need_for_policy(CarePolicy(usage_key="shared-key", size_from_usage=False), "f", store) is None
    assert need_for_policy(CarePolicy(usage_key="shared-key", instance_type="m5.large"), "f", store) is None
    assert "pinned instance type m5.large" == describe_sizing(CarePolicy(instance_type="m5.large"), None)
    assert "declared need 2 vCPU, 4 GiB (under 10 min of usage history)" == describe_sizing(CarePolicy(), None)
    # a corrupt history is reported and ignored: sizing falls back to the policy, the run goes on
    store.path("broken").write_text('time,cpu_vcpu\n"unterminated,1\n')
    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        assert need_for_policy(CarePolicy(usage_key="broken"), "f", store) is None
    assert "usage history 'broken' not used" in caplog.text
    # recording: nothing when the policy opts out
    record_usage(CarePolicy(size_from_usage=False), "optout", pd.DataFrame({"time": [pd.Timestamp("2026-01-01", tz="UTC")], "cpu_vcpu": [1.0],
                                                                          "memory_gib": [1.0], "n_processes": [1]}), store)
    assert not store.path("optout").exists()


def test_call_planner_passes_usage_only_to_planners_that_take_it() -> None:
    seen = {}

    def old_style(policy, now, signal=None):  # type: ignore[no-untyped-def]
        seen["old"] = True
        return "plan"

    def new_style(policy, now, signal=None, usage=None):  # type: ignore[no-untyped-def]
        seen["usage"] = usage
        return "plan"

    assert call_planner(old_style, None, None, signal=None, usage=object()) == "plan"
    marker = object()
    call_planner(new_style, None, None, usage=marker)
    assert seen == {"old": True, "usage": marker}


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_records_its_runs_and_is_sized_from_them(forecast, t0, decision_markdown) -> None:
    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h", vcpu=2, memory_gib=4)

    @care(policy=pol, signal=fc, clock=lambda: t0)
    @flow
    def learned_etl() -> int:
        return 1

    first = learned_etl(return_state=True)
    md = decision_markdown(first.state_details.flow_run_id)
    assert "declared need 2 vCPU, 4 GiB" in md
    store = UsageStore()
    assert len(store.load("learned-etl")) >= 1  # the run's own samples were recorded under the flow name (Prefect spells it learned-etl)

    _run(store, "learned-etl", "2026-01-01T00:00Z", 15, 6.0, mem=20.0)  # earlier, bigger runs
    second = learned_etl(return_state=True)
    md = decision_markdown(second.state_details.flow_run_id)
    assert "Sized from**: usage history 'learned-etl'" in md
    itype = re.search(r"instance type: `([^`]+)`", md).group(1)  # type: ignore[union-attr]
    row = EmbeddedPrices().catalog("eu-north-1").set_index("instance_type").loc[itype]
    # 6 vCPU and 20 + 0.5 GiB at p95, plus the policy's 20 % headroom
    assert row["vcpu"] >= 6.0 * 1.2 and row["memory_gib"] >= 20.5 * 1.2


def test_recorded_usage_keeps_the_largest_value_of_every_ten_seconds(tmp_path) -> None:
    store = UsageStore(tmp_path)
    t = pd.date_range("2026-01-01T00:00:00Z", periods=60, freq="1s")
    cpu = [0.2] * 60
    cpu[13] = 3.5  # a one-second burst survives the binning
    record_usage(CarePolicy(), "etl", pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": 1.0, "n_processes": 1}), store)
    frame = store.load("etl")
    assert len(frame) == 6 and frame["cpu_vcpu"].max() == 3.5 and frame.loc[1, "cpu_vcpu"] == 3.5


def test_cli_usage_shows_the_learned_need_and_the_type_it_maps_to(tmp_path, capsys) -> None:
    import json

    from care_flows.cli import main

    store = UsageStore(tmp_path)
    _run(store, "etl-nightly", "2026-01-01T00:00Z", 5, 3.0, mem=6.0)
    args = ["usage", "etl-nightly", "--duration", "30m", "--region", "eu-north-1", "--usage-dir", str(tmp_path), "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["minutes_of_running"] == 5 and doc["need"] is None and "under 10 min" in doc["note"]
    _run(store, "etl-nightly", "2026-01-02T00:00Z", 10, 3.0, mem=6.0)
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["need"]["peak_vcpu"] == pytest.approx(3.0) and doc["need"]["peak_memory_gib"] == pytest.approx(6.5)
    row = EmbeddedPrices().catalog("eu-north-1").set_index("instance_type").loc[doc["instance_type"]]
    assert row["vcpu"] >= 3.6 and row["memory_gib"] >= 6.5 * 1.2 and doc["usd_per_hour"] == pytest.approx(row["usd_per_hour"])
    # usage errors: one line, exit 2
    for bad, needle in ((["usage", "nope", "--usage-dir", str(tmp_path)], "no usage history named 'nope'"),
                        (["usage", "etl-nightly", "--usage-dir", str(tmp_path), "--duration", "-1h"], "--duration"),
                        (["usage", "etl-nightly", "--usage-dir", str(tmp_path), "--region", "eu-nowhere-1"], "eu-nowhere-1"),
                        (["usage", "etl-nightly", "--usage-dir", str(tmp_path / "missing")], "is not a folder"),
                        (["usage", " ", "--usage-dir", str(tmp_path)], "usage history name is empty; give the flow name"),
                        (["usage", "broken", "--usage-dir", str(tmp_path)], f"usage store file {tmp_path / 'broken.csv'}: usage samples lack")):
        if "broken" in bad:
            (tmp_path / "broken.csv").write_text("when,cpu\n2026-01-01T00:00Z,1\n")
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_memory_is_sized_for_the_largest_value_not_a_percentile(tmp_path) -> None:
    store = UsageStore(tmp_path)
    for day in (1, 2, 3):  # hour-long runs at 2 GiB with a 12 GiB join in their last 2 minutes
        t = pd.date_range(f"2026-01-0{day}T00:00Z", periods=60 * 6, freq="10s", tz="UTC")
        mem = [2.0] * (58 * 6) + [12.0] * (2 * 6)
        store.append("etl", pd.DataFrame({"time": t, "cpu_vcpu": 1.0, "memory_gib": mem, "n_processes": 1}))
    need = learned_need(store, "etl", duration_s=3600).need  # type: ignore[union-attr]
    assert need.peak_memory_gib == pytest.approx(12.0 + SYSTEM_MEMORY_GIB)
    assert need.mean_memory_gib <= need.peak_memory_gib and need.peak_vcpu == pytest.approx(1.0)


def test_an_idle_flow_still_gets_a_cpu_and_the_memo_follows_new_runs(tmp_path) -> None:
    store = UsageStore(tmp_path)
    _run(store, "waits", "2026-01-01T00:00Z", 12, 0.0, mem=0.3)
    first = need_for_policy(CarePolicy(), "waits", store)
    assert first is not None and first.need.peak_vcpu == MIN_VCPU
    assert need_for_policy(CarePolicy(), "waits", store) is first  # memoised: same history, same answer
    _run(store, "waits", "2026-01-02T00:00Z", 12, 5.0, mem=0.3)  # a new, busy run changes the history
    again = need_for_policy(CarePolicy(), "waits", store)
    assert again is not first and again.need.peak_vcpu == pytest.approx(5.0) and again.steps == 24  # type: ignore[union-attr]


def test_a_learned_need_nothing_fits_falls_back_to_the_declared_need(tmp_path, caplog) -> None:
    from care_flows.orchestration.plan import plan_run

    store = UsageStore(tmp_path)
    _run(store, "huge", "2026-01-01T00:00Z", 15, 900.0, mem=8000.0)  # no EC2 type has 900 vCPU
    policy = CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], max_vcpu=1000)  # (the default caps CPU at 8)
    learned = need_for_policy(policy, "huge", store)
    t0 = pd.Timestamp("2026-03-02T00:00Z")
    fc = {"eu-north-1": pd.Series([20.0] * 12, index=pd.date_range(t0, periods=12, freq="1h"))}
    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        plan = plan_sized(lambda usage: plan_run(policy, t0, forecasts=fc, usage=usage), policy, learned)
    assert "planning with the learned need failed" in caplog.text and "900" in caplog.text
    assert plan.sizing.startswith("declared need 2 vCPU, 4 GiB (the learned need 900 vCPU, 8000.5 GiB did not plan: ")
    assert plan.instance_type is not None  # planned with the declared need
    window = plan_sized(lambda usage: plan_run(policy, t0, forecasts=fc, usage=usage, planner="window"), policy,
                        need_for_policy(CarePolicy(), "etl-small", _small_store(tmp_path)))
    assert window.sizing == "declared need 2 vCPU, 4 GiB (this planner does not size from the usage history)"


def _small_store(tmp_path) -> UsageStore:  # type: ignore[no-untyped-def]
    store = UsageStore(tmp_path / "small")
    _run(store, "etl-small", "2026-01-01T00:00Z", 15, 1.0)
    return store


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("store_env", ["s3://Bad_Bucket/x", "s3://care-usage/x@unreachable"])
def test_a_broken_or_unreachable_usage_store_never_fails_a_run(store_env, monkeypatch, caplog, forecast, t0) -> None:
    import socket

    if store_env.endswith("@unreachable"):
        with socket.socket() as s:  # a loopback port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        store_env = store_env.removesuffix("@unreachable")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CARE_USAGE_STORE", store_env)
    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"]), signal=fc, clock=lambda: t0)
    @flow(name="store-broken")
    def store_broken() -> int:
        return 7

    with caplog.at_level(logging.WARNING):
        assert store_broken() == 7
    assert "not used" in caplog.text or "could not" in caplog.text


@pytest.mark.usefixtures("prefect_harness")
def test_a_running_flow_appends_its_usage_every_flush_period(monkeypatch, forecast, t0) -> None:
    import time

    import care_flows.orchestration.learned_sizing as learned_sizing

    monkeypatch.setattr(learned_sizing, "FLUSH_EVERY_S", 0.5)
    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"]), signal=fc, clock=lambda: t0)
    @flow(name="long-runner")
    def long_runner() -> int:
        time.sleep(3.0)  # the sampler (1 s) has flushed at least once by now
        return len(UsageStore().load("long-runner"))

    assert long_runner() >= 1  # samples were in the history while the body was still running
    assert len(UsageStore().load("long-runner")) >= 2  # the rest was appended at the end


@pytest.mark.usefixtures("prefect_harness")
def test_an_async_flow_closes_its_segment_off_the_event_loop_and_records_usage(monkeypatch, forecast, t0) -> None:
    import asyncio

    import care_flows.orchestration.decorator as decorator

    seen: list[bool] = []
    real_finish = decorator._finish

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            asyncio.get_running_loop()
            seen.append(True)  # on the event loop: a slow S3 flush would stall every coroutine
        except RuntimeError:
            seen.append(False)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(decorator, "_finish", spy)
    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"]), signal=fc, clock=lambda: t0)
    @flow(name="async-usage")
    async def async_usage() -> int:
        await asyncio.sleep(0.1)
        return 3

    state = asyncio.run(async_usage(return_state=True))
    assert state.is_completed() and seen == [False]
    assert len(UsageStore().load("async-usage")) >= 1


def test_an_unreadable_history_is_the_reason_the_decision_gives_and_its_warning_reaches_the_run_log(forecast, t0, decision_markdown) -> None:
    """Review 41c M2: the decision said "under 10 min of usage history" for a history that could not
    be read, and the warning went to a logger Prefect does not send to the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}
    store = UsageStore()
    store.directory.mkdir(parents=True, exist_ok=True)
    store.path("unreadable-etl").write_bytes(b"time,cpu_vcpu,memory_gib,n_processes\n\xff\xfe not text\n")

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", vcpu=2, memory_gib=4), signal=fc, clock=lambda: t0)
    @flow(name="unreadable-etl")
    def unreadable_etl() -> int:
        return 1

    state = unreadable_etl(return_state=True)
    run_id = state.state_details.flow_run_id
    md = decision_markdown(run_id)
    assert "declared need 2 vCPU, 4 GiB (usage history 'unreadable-etl' not readable: usage store file" in md and "not UTF-8" in md
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10, at_exit=False)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert any("usage history 'unreadable-etl' not used" in entry.message for entry in logs), [e.message for e in logs]
