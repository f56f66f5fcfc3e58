"""Learned durations: completed runs record how long their body ran, later runs are planned with it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow

from care_flows.errors import DataError
from care_flows.orchestration import care
from care_flows.orchestration.learned_duration import MAX_RUNS, MIN_RUNS, learned_duration, record_run, with_learned_duration
from care_flows.policy import CarePolicy
from care_flows.usage_capture import RunRecord, UsageStore

T = pd.Timestamp("2026-01-01T02:00:00Z")


def _records(store: UsageStore, key: str, minutes: list[float]) -> None:
    for i, m in enumerate(minutes):
        store.append_run(key, RunRecord(f"r{i}", T + pd.Timedelta(days=i), m * 60.0))


def test_the_p90_of_the_newest_runs_rounded_up_to_a_minute(tmp_path) -> None:
    store = UsageStore(tmp_path)
    _records(store, "etl", [10.0] * (MIN_RUNS - 1))
    assert learned_duration(store, "etl") is None  # too few runs
    _records(store, "etl", [10.0])
    assert learned_duration(store, "etl").duration_s == 600.0  # type: ignore[union-attr]
    # the flow grew: only the newest MAX_RUNS count, so old short runs stop pulling the figure down
    store2 = UsageStore(tmp_path / "b")
    _records(store2, "etl", [10.0] * 30 + [40.5] * MAX_RUNS)
    learned = learned_duration(store2, "etl")
    assert learned is not None and learned.runs == MAX_RUNS and learned.duration_s == 41 * 60.0
    # sub-minute flows are planned as one minute, not zero
    store3 = UsageStore(tmp_path / "c")
    _records(store3, "tiny", [0.1, 0.2, 0.1])
    assert learned_duration(store3, "tiny").duration_s == 60.0  # type: ignore[union-attr]


def test_the_policy_keeps_its_duration_when_learning_is_off_or_the_history_is_short_or_broken(tmp_path, caplog) -> None:
    store = UsageStore(tmp_path)
    _records(store, "etl", [90.0, 95.0, 100.0])
    pol = CarePolicy(home_region="eu-south-2", expected_duration="30m")
    learned, note = with_learned_duration(pol, "etl", store)
    assert learned.expected_duration == timedelta(minutes=99) and note is not None and "declared 30m" in note
    assert pol.expected_duration == timedelta(minutes=30)  # the caller's policy is not changed
    off = pol.model_copy(update={"duration_from_history": False})
    assert with_learned_duration(off, "etl", store) == (off, None)
    assert with_learned_duration(pol, "never-ran", store) == (pol, None)
    keyed = pol.model_copy(update={"usage_key": "etl"})
    assert with_learned_duration(keyed, "another-flow-name", store)[0].expected_duration == timedelta(minutes=99)

    class Broken:
        def load_runs(self, key: str) -> list[RunRecord]:
            raise DataError("disk on fire")

    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        assert with_learned_duration(pol, "etl", Broken()) == (pol, None)  # type: ignore[arg-type]
    assert "run history 'etl' not used (disk on fire)" in caplog.text
    # review 17 #5: a store that cannot be read does not hide Prefect's run times (all a plain flow has)
    learned, note = with_learned_duration(pol, "etl", Broken(), run_times=lambda: [0.0, 600.0, 700.0, 650.0])  # type: ignore[arg-type]
    assert learned.expected_duration == timedelta(minutes=12) and note == "p90 of the last 3 completed runs in Prefect: 12m (declared 30m)"
    assert with_learned_duration(pol, "etl", object()) == (pol, None)  # type: ignore[arg-type]  # a store without run records


def test_records_are_kept_apart_from_the_samples_and_bad_lines_are_skipped(tmp_path, caplog) -> None:
    store = UsageStore(tmp_path)
    pol = CarePolicy(home_region="eu-south-2")
    record_run(pol, "etl", run_id="a", finished=T, duration_s=120.0, store=store)
    record_run(pol, "etl", run_id="b", finished=T, duration_s=-5.0, store=store)  # a clock that went backwards: not recorded
    record_run(pol.model_copy(update={"duration_from_history": False}), "etl", run_id="c", finished=T, duration_s=60.0, store=store)
    assert [r.run_id for r in store.load_runs("etl")] == ["a"]
    assert store.load("etl").empty  # the samples' history does not read run records
    with store.runs_path("etl").open("a") as fh:
        fh.write("not json\n" + json.dumps({"run_id": "d", "finished": "2026-01-01T03:00:00", "duration_s": 5}) + "\n")
    with caplog.at_level(logging.WARNING):
        assert [r.run_id for r in store.load_runs("etl")] == ["a"]
    assert "skipped 2 malformed line(s)" in caplog.text

    class ReadOnly:
        def append_run(self, key: str, record: RunRecord) -> None:
            raise PermissionError("read-only file system")

    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        record_run(pol, "etl", run_id="e", finished=T, duration_s=1.0, store=ReadOnly())  # type: ignore[arg-type]
    assert "could not record the duration of 'etl' (read-only file system)" in caplog.text


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_that_runs_longer_than_declared_is_planned_with_its_real_duration(forecast, decision_markdown) -> None:
    import re
    import time

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-north-1": forecast(now, [20.0] * 12)}
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="30m", deadline_within="8h")

    @care(policy=pol, signal=fc)
    @flow
    def long_etl() -> int:
        time.sleep(0.3)
        return 1

    state = long_etl(return_state=True)
    assert "Duration from" not in decision_markdown(state.state_details.flow_run_id)
    [record] = UsageStore().load_runs("long-etl")  # timed by the real clock: the body, not the planning
    assert 0.3 <= record.duration_s < 30 and record.run_id == str(state.state_details.flow_run_id)

    # an injected clock (tests, replays) does not time the body: nothing is recorded
    care(policy=pol, signal=fc, clock=lambda: now)(flow(name="long-etl")(lambda: 1))()
    assert len(UsageStore().load_runs("long-etl")) == 1

    for i in range(3):  # the flow has grown: its last runs took 3 hours
        UsageStore().append_run("long-etl", RunRecord(f"grown-{i}", now + pd.Timedelta(minutes=i + 1), 3 * 3600.0))
    state = long_etl(return_state=True)
    md = decision_markdown(state.state_details.flow_run_id)
    assert "**Duration from**: p90 of the last 4 completed runs: 3h (declared 30m)" in md
    start, end = (pd.Timestamp(t) for t in re.search(r"\*\*Window\*\*: (\S+) -> (\S+)", md).groups())  # type: ignore[union-attr]
    assert abs((end - start) - pd.Timedelta(hours=3)) <= pd.Timedelta(seconds=1)

    @care(policy=pol, signal=fc)
    @flow(name="long-etl")
    def failing() -> int:
        raise RuntimeError("boom")

    failing(return_state=True)  # a failed run is not a duration
    assert len(UsageStore().load_runs("long-etl")) == 5


def test_a_few_runs_longer_than_the_deadline_window_do_not_stop_shifting(tmp_path, caplog) -> None:
    store = UsageStore(tmp_path)
    _records(store, "etl", [60.0] * 17 + [600.0] * 3)  # three 10-hour backfills among the last 20 runs
    pol = CarePolicy(home_region="eu-south-2", expected_duration="1h", deadline_within="8h")
    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        kept, note = with_learned_duration(pol, "etl", store)
    assert kept.expected_duration == timedelta(hours=1)
    assert note == "the declared 1h, not the p90 of the last 20 completed runs: 10h, which is longer than deadline_within 8h"
    assert note in caplog.text


def test_cli_usage_sizes_for_the_learned_duration_and_says_so(tmp_path, capsys) -> None:
    from care_flows.cli import main

    store = UsageStore(tmp_path)
    t = pd.date_range("2026-01-01", periods=15 * 6, freq="10s", tz="UTC")
    store.append("etl", pd.DataFrame({"time": t, "cpu_vcpu": 1.5, "memory_gib": 2.0, "n_processes": 1}))
    args = ["usage", "etl", "--usage-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["duration_s"], doc["duration_from"], doc["runs_recorded"], doc["learned_duration_s"]) == (3600.0, "default", 0, None)
    _records(store, "etl", [40.0, 50.0, 45.0])
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["duration_s"], doc["duration_from"], doc["runs_recorded"], doc["learned_duration_s"]) == (2940.0, "learned", 3, 2940.0)
    assert main([*args, "--duration", "2h"]) == 0
    out = capsys.readouterr().out
    assert "duration: p90 of the last 3 completed runs: 49m; planning uses it instead of expected_duration (sized below for --duration 2h)" in out


@pytest.mark.usefixtures("prefect_harness")
def test_a_body_that_returns_a_failed_state_is_not_a_completed_run(forecast) -> None:
    """Review 17: a body that returns Failed(...) (Prefect fails the run) was recorded as a completed run."""
    from prefect.states import Failed

    now = pd.Timestamp.now(tz="UTC").floor("h")
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="30m", deadline_within="8h")

    @care(policy=pol, signal={"eu-north-1": forecast(now, [20.0] * 12)})
    @flow(name="returns-failed")
    def returns_failed():  # type: ignore[no-untyped-def]
        return Failed(message="the input was empty")

    assert returns_failed(return_state=True).is_failed()
    assert UsageStore().load_runs("returns-failed") == []


def test_a_retried_run_is_not_recorded_for_the_learned_duration(forecast) -> None:
    """Review 42d M1: a retry counts its failed attempts' time as work done (42b M2), but with plain tasks it
    ran them again, so its time is not the flow's: recording it pushed the learned p90 up."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    pol = dict(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="30m", deadline_within="8h")
    attempts: list[int] = []

    @care(policy=pol, signal={"eu-north-1": forecast(now, [20.0] * 12)})
    @flow(name="retried-etl", retries=1, retry_delay_seconds=0)
    def retried_etl() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")
        return 1

    assert retried_etl(return_state=True).is_completed() and len(attempts) == 2
    assert UsageStore().load_runs("retried-etl") == []
