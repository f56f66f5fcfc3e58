"""Review 6 #8: running time is 10 s per stored 10-second bucket, not the minute bins a run touches."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect import flow

from care_flows.cli import main
from care_flows.orchestration import care
from care_flows.orchestration.learned_sizing import MIN_STEPS, learned_need, record_usage
from care_flows.policy import CarePolicy
from care_flows.usage_capture import UsageStore, running_seconds


def _record_run(store: UsageStore, key: str, start: str, seconds: int, cpu: float = 1.0) -> None:
    """One run as @care records it: 1-second samples, binned to 10-second maxima; the last sample spikes."""
    t = pd.date_range(start, periods=seconds + 1, freq="1s", tz="UTC")
    values = [cpu] * seconds + [4.0]
    record_usage(CarePolicy(), key, pd.DataFrame({"time": t, "cpu_vcpu": values, "memory_gib": 1.0, "n_processes": 1}), store)


def test_a_28_second_run_is_half_a_minute_and_keeps_its_last_partial_bucket(tmp_path, capsys) -> None:
    store = UsageStore(tmp_path)
    _record_run(store, "short", "2026-11-29T02:12:50.4Z", 28)  # 02:12:50.4 .. 02:13:18.4
    frame = store.load("short")
    assert [t.strftime("%H:%M:%S") for t in frame["time"]] == ["02:12:50", "02:13:00", "02:13:10"]
    assert frame["cpu_vcpu"].iloc[-1] == 4.0  # the row labelled 13:10 holds 13:10-13:18.4, the final sample included
    assert running_seconds(frame) == 30.0
    assert main(["usage", "short", "--usage-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["minutes_of_running"] == 0.5 and doc["need"] is None  # was 2: the minute bins 02:12 and 02:13
    assert main(["usage", "short", "--usage-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("short: 0.5 min of running recorded")


def test_five_30_second_runs_do_not_reach_the_ten_minute_threshold(tmp_path, capsys) -> None:
    store = UsageStore(tmp_path)
    for day in range(1, 6):  # each run 00:00:50 .. 00:01:20 touches two minute bins: ten bins in all
        _record_run(store, "tiny", f"2026-01-0{day}T00:00:50Z", 29)
    assert running_seconds(store.load("tiny")) == 150.0
    assert learned_need(store, "tiny", duration_s=60) is None
    assert main(["usage", "tiny", "--usage-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["minutes_of_running"] == 2.5 and "under 10 min" in doc["note"]
    for day in range(6, 21):  # 20 such runs: 600 s, the threshold's ten minutes of running
        _record_run(store, "tiny", f"2026-01-{day:02d}T00:00:50Z", 29)
    learned = learned_need(store, "tiny", duration_s=60)
    assert learned is not None and learned.running_s == MIN_STEPS * 60.0
    assert "(10 min of runs)" in learned.describe()


def test_a_split_bucket_from_a_periodic_flush_counts_once(tmp_path) -> None:
    store = UsageStore(tmp_path)
    t = pd.date_range("2026-01-01T00:00:00Z", periods=30, freq="1s", tz="UTC")
    frame = pd.DataFrame({"time": t, "cpu_vcpu": 1.0, "memory_gib": 1.0, "n_processes": 1})
    record_usage(CarePolicy(), "split", frame.iloc[:15], store, run_id="r")  # a flush at 00:00:15 ...
    record_usage(CarePolicy(), "split", frame.iloc[15:], store, run_id="r")  # ... and the final one
    loaded = store.load("split")
    assert len(loaded) == 4 and running_seconds(loaded) == 30.0  # 00:00:10 is stored twice, counted once


@pytest.mark.usefixtures("prefect_harness")
def test_a_care_run_records_the_bucket_its_body_ends_in(forecast, t0) -> None:
    import time

    fc = {"eu-north-1": forecast(t0, [20.0] * 12)}
    ended: list[pd.Timestamp] = []

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"]), signal=fc, clock=lambda: t0)
    @flow(name="ends-mid-bucket")
    def body() -> None:
        time.sleep(1.5)
        ended.append(pd.Timestamp.now(tz="UTC"))

    body()
    last = UsageStore().load("ends-mid-bucket")["time"].max()
    # the sampler's final sample (taken when the segment closes, after the body) reaches the history
    assert last >= ended[0].floor("10s")
