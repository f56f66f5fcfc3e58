"""Review 35e M3, M4: a controller re-plan follows an edited deadline, and a run moved back by hand stays."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.orchestration.controller import control_once

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)


@flow(name="r35e-nightly")
def nightly(day: str = "x") -> str:
    return day


def _mine(actions, run):  # type: ignore[no-untyped-def]
    return [a for a in actions if a.flow_run_id == str(run.id)][0]


def _scheduled(client, run) -> pd.Timestamp:  # type: ignore[no-untyped-def]
    return pd.Timestamp(client.read_flow_run(run.id).state.state_details.scheduled_time)


def test_a_replan_follows_a_deadline_tightened_in_the_policy_block(forecast):
    """M3: re-plans kept the first plan's deadline, so a run stayed at 07:00 after the block said it must
    finish by 04:00, while new runs of the same deployment got the new deadline."""
    pol = {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "replan_every": "1h"}
    CarePolicyBlock(policy={**pol, "deadline_within": "8h"}).save("r35e-m3", overwrite=True)
    dep = nightly.to_deployment(name="cron-m3", tags=["care", "care-policy:r35e-m3"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    fc = {"eu-south-2": forecast(t_run, [300, 100, 300, 300, 300, 300, 40, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        first = _mine(control_once(client, signal=fc, clock=lambda: now), run)
        assert first.action == "moved" and pd.Timestamp(first.new_start) == t_run + 6 * H
        CarePolicyBlock(policy={**pol, "deadline_within": "3h"}).save("r35e-m3", overwrite=True)
        again = _mine(control_once(client, signal=fc, clock=lambda: now + H), run)
        assert again.action == "replanned" and pd.Timestamp(again.new_start) == t_run + H, again  # the green hour before the new deadline
        assert "deadline now" in again.reason and "the policy changed" in again.reason
        plan = client.read_flow_run(run.id).job_variables["care"]["plan"]
        assert pd.Timestamp(plan["deadline"]) == t_run + 3 * H


def test_a_run_moved_back_to_its_original_time_by_hand_is_left_there(forecast):
    """M4: the next pass took it for a move an interrupted pass had recorded and moved it again."""
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "replan_every": "1h"}).save("r35e-m4", overwrite=True)
    dep = nightly.to_deployment(name="cron-m4", tags=["care", "care-policy:r35e-m4"]).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + 2 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 40, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        assert _mine(control_once(client, signal=fc), run).action == "moved"
        # the record was written a while ago (the server's state time must be later than it by more than the tolerance)
        fr = client.read_flow_run(run.id)
        marker = {**fr.job_variables["care"], "recorded_at": (pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)).isoformat()}
        client.update_flow_run(run.id, job_variables={**fr.job_variables, "care": marker})
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=t_run.to_pydatetime()), force=True)  # the operator: back to cron time
        back = _mine(control_once(client, signal=fc), run)
        assert back.action == "skipped" and "rescheduled outside CaRE" in back.reason, back
        assert _scheduled(client, run) == t_run


def test_a_move_an_interrupted_pass_recorded_is_still_finished(forecast):
    """The other side of M4: the record is newer than the run's state (the pass died before moving it)."""
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h"}).save("r35e-m4b", overwrite=True)
    dep = nightly.to_deployment(name="cron-m4b", tags=["care", "care-policy:r35e-m4b"]).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + 2 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 40, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        assert _mine(control_once(client, signal=fc), run).action == "moved"
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=t_run.to_pydatetime()), force=True)  # as if the move never happened
        fr = client.read_flow_run(run.id)
        marker = {**fr.job_variables["care"], "recorded_at": pd.Timestamp.now(tz="UTC").isoformat()}  # recorded after that state
        client.update_flow_run(run.id, job_variables={**fr.job_variables, "care": marker})
        done = _mine(control_once(client, signal=fc), run)
        assert done.action == "moved" and "interrupted pass" in done.reason
        assert _scheduled(client, run) == t_run + 2 * H
