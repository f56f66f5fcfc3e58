"""Review 39b M9: a corrupted run record (``duration_s: 1e300``) is skipped, not learned.

Negative, NaN and infinite durations were already skipped with a warning; a finite but absurd one
became the learned duration (``care usage`` printed it as a 300-digit number of hours). Durations over
``MAX_RUN_S`` (a year) are now skipped with a warning too.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from care_flows.cli import main
from care_flows.orchestration.learned_duration import (
    MAX_RUN_S,
    learned_duration,
    learned_from_durations,
    record_run,
    with_learned_duration,
)
from care_flows.policy import CarePolicy
from care_flows.usage_capture import RunRecord, UsageStore

T = pd.Timestamp("2026-01-01T02:00:00Z")


def _records(store: UsageStore, key: str, seconds: list[float]) -> None:
    for i, s in enumerate(seconds):
        store.append_run(key, RunRecord(f"r{i}", T + pd.Timedelta(hours=i), s))


def test_an_absurd_duration_is_skipped_with_a_warning_and_the_good_runs_are_learned(tmp_path: Path, caplog) -> None:
    store = UsageStore(tmp_path)
    _records(store, "etl", [600.0, 1e300, 660.0, 3000.0])
    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        learned = learned_duration(store, "etl")
    assert learned is not None and learned.runs == 3 and learned.duration_s == 2580.0
    assert "run history 'etl': skipped 1 of 4 completed runs whose duration is not finite or longer than 366 days" in caplog.text


def test_only_absurd_durations_leave_the_declared_duration(tmp_path: Path, caplog) -> None:
    store = UsageStore(tmp_path)
    _records(store, "hugeruns", [1e300] * 4)
    policy = CarePolicy(home_region="eu-south-2", expected_duration="30m")
    with caplog.at_level(logging.WARNING, logger="care_flows.orchestration"):
        assert learned_duration(store, "hugeruns") is None
        planned, note = with_learned_duration(policy, "hugeruns", store)
    assert planned.expected_duration == timedelta(minutes=30) and note is None
    assert "skipped 4 of 4 completed runs" in caplog.text


def test_the_bound_is_a_year() -> None:
    assert MAX_RUN_S == 366 * 86_400.0
    at = learned_from_durations([MAX_RUN_S] * 3)
    assert at is not None and at.duration_s == MAX_RUN_S
    assert learned_from_durations([MAX_RUN_S * 1.001] * 3) is None
    assert learned_from_durations([600.0, 600.0, MAX_RUN_S * 1.001, 600.0], source="completed runs in Prefect").runs == 3  # type: ignore[union-attr]


def test_an_absurd_duration_is_not_recorded(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    policy = CarePolicy(home_region="eu-south-2", expected_duration="30m")
    record_run(policy, "etl", run_id="a", finished=T, duration_s=1e300, store=store)
    record_run(policy, "etl", run_id="b", finished=T, duration_s=600.0, store=store)
    assert [r.duration_s for r in store.load_runs(history_key_of(policy, "etl"))] == [600.0]


def history_key_of(policy: CarePolicy, flow: str) -> str:
    from care_flows.orchestration.learned_sizing import history_key

    return history_key(policy, flow)


def test_cli_usage_does_not_print_the_absurd_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = UsageStore(tmp_path)
    _records(store, "hugeruns", [1e300] * 4)
    code = main(["usage", "hugeruns", "--usage-dir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["learned_duration_s"] is None and doc["duration_from"] == "default"
    assert "2777777" not in out and "2777777" not in err
    code = main(["usage", "hugeruns", "--usage-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and "2777777" not in out and "p90 of the last" not in out
