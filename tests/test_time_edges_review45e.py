"""Review 45e: forecasts are issued at the start of the slot `now` falls in, the same in `care plan`, `care regions`
and `@care` / the controller (`fetch_forecasts`): the hour, or a sub-hourly trace's step."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from care_flows.cli import main
from care_flows.orchestration.plan import fetch_forecasts
from care_flows.policy import CarePolicy
from care_flows.signals import TraceSignal


def _quarter_hour_trace() -> pd.Series:
    """15-minute data with a drop to 50 g at 08:15 on 2023-06-01 (a wind front)."""
    idx = pd.date_range("2023-05-20", "2023-06-02", freq="15min", tz="UTC", inclusive="left")
    rng = np.random.default_rng(0)
    values = np.asarray(300 + 100 * np.sin(2 * np.pi * (idx.hour * 4 + idx.minute / 15) / 96) + rng.normal(0, 5, len(idx)), dtype=float)
    values[idx >= pd.Timestamp("2023-06-01T08:15Z")] = 50.0
    return pd.Series(values, index=idx)


def test_at_care_reads_the_rows_of_a_sub_hourly_trace_since_the_hour() -> None:
    """At 08:50 the rows 08:15 and 08:30 are known: issued at 08:00 (the hour) the forecast ignored them (374 g at
    09:00 against 50 measured); issued at 08:45 it is `care plan`'s forecast."""
    signal = TraceSignal({"ES": _quarter_hour_trace()}, source="csv")
    now = pd.Timestamp("2023-06-01T08:50Z")
    policy = CarePolicy(home_region="eu-south-2", regions=[], expected_duration="1h", deadline_within="4h")
    got = fetch_forecasts(policy, now, pd.Timedelta("4h"), signal=signal)["eu-south-2"]
    issue = pd.Timestamp("2023-06-01T08:45Z")
    expected = signal.forecast("ES", issue, now + pd.Timedelta("4h") - issue)
    assert got.index[0] == issue
    pd.testing.assert_series_equal(got, expected, check_names=False)
    assert got[pd.Timestamp("2023-06-01T09:00Z")] < 250  # 215 g; issued at the hour, 374


def test_care_regions_issues_at_the_hour_like_care_plan(capsys) -> None:
    """At 08:30 `care regions` forecast from 09:00: it warned, estimated run-now from later hours (157.6 vs 170.9 g)
    and, with the deadline at --at + duration, just ran now."""
    args = ["--at", "2023-06-01T08:30Z", "--within", "3h", "--duration", "1h", "--json"]
    assert main(["regions", "--regions", "eu-south-2", *args]) == 0
    captured = capsys.readouterr()
    regions = json.loads(captured.out)
    assert "forecast starts" not in captured.err
    assert main(["plan", "--zone", "ES", "--now", "2023-06-01T08:30Z", "--within", "3h", "--duration", "1h", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert round(regions["baseline"]["expected_g_per_kwh"], 1) == round(plan["run_now_g_per_kwh"], 1) == 170.9
    assert regions["chosen"]["start"] == plan["start"]
    assert main(["regions", "--regions", "eu-south-2", "--at", "2023-06-01T08:30Z", "--within", "1h", "--duration", "1h"]) == 0
    assert "forecast starts" not in capsys.readouterr().err
