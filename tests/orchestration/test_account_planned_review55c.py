"""Review 55c M1: the controller compared every attempt of a retried (or paused) planned run with the
same first slice of running now at home; running now at home, a retry would also come after the
failed attempt, so its slice begins that much later, as a ``@care`` retry's does (review 42b M2)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.orchestration.account_planned import _account, attempts_of
from care_flows.orchestration.dispatch import care_marker
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)


@flow(name="r55c-plain")
def plain() -> str:
    return "ok"


def _state(kind: str, name: str, at: pd.Timestamp):  # a state as the server returns it: type, name, timestamp
    from types import SimpleNamespace as S

    return S(type=S(value=kind), name=name, timestamp=at)


def test_a_retry_is_weighed_against_the_home_hour_after_the_failed_attempt(forecast):
    t0 = pd.Timestamp("2026-12-01T00:00Z")
    home = {"eu-south-2": forecast(t0, [100.0] + [500.0] * 9)}  # 100 g/kWh in the first hour at home, 500 after
    policy = CarePolicy(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h")
    plan = plan_run(policy, t0, forecasts=home)
    # Prefect's retry: try 1 runs 00:00-01:00 and fails, try 2 runs 01:05-02:05 and completes
    tries = attempts_of([_state("RUNNING", "Running", t0), _state("SCHEDULED", "AwaitingRetry", t0 + H),
                         _state("RUNNING", "Running", t0 + H + pd.Timedelta("5min")), _state("COMPLETED", "Completed", t0 + 2 * H + pd.Timedelta("5min"))])
    assert [(a.outcome, a.earlier_s) for a in tries] == [("failed", 0.0), ("completed", 3600.0)]
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(plain, job_variables={"care": care_marker(plan, segment=0, root="r55c-root")})
        run = client.read_flow_run(run.id)
        figures = [_account(client, run, attempt, home, {}) for attempt in tries]
    assert [f["baseline_realized_g_per_kwh"] for f in figures] == pytest.approx([100.0, 500.0])  # was [100, 100]: 200% "more"
    assert [f["realized_g_per_kwh"] for f in figures] == pytest.approx([100.0, 500.0])
