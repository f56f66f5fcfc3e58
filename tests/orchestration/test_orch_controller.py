"""Controller and blocks under the session's Prefect test harness."""

from __future__ import annotations

import json
from datetime import timedelta
import sys
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock, ElectricityMapsCredentials, RegionTargets
from care_flows.cli import main
from care_flows.orchestration import care
from care_flows.orchestration.controller import control_once
from care_flows.orchestration.decorator import resolve_policy
from care_flows.policy import CarePolicy

pytestmark = pytest.mark.usefixtures("prefect_harness")
H = pd.Timedelta(hours=1)
RAN: list[str] = []


@flow(name="ctl-nightly")
def nightly(day: str = "x") -> str:
    RAN.append(day)
    return day


def test_blocks_round_trip_and_policy_by_block_name(forecast, t0):
    CarePolicyBlock.from_policy(CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="90m")).save("rt-policy", overwrite=True)
    RegionTargets(targets={"eu-north-1": {"work_pool": "care-eu-north-1"}}).save("rt-targets", overwrite=True)
    ElectricityMapsCredentials(api_token="rt-s3cret").save("rt-em", overwrite=True)
    pol = CarePolicyBlock.load("rt-policy").to_policy()
    assert pol.home_region == "eu-north-1" and pol.expected_duration == pd.Timedelta(minutes=90)
    assert resolve_policy("rt-policy", targets="rt-targets").targets["eu-north-1"].work_pool == "care-eu-north-1"
    assert ElectricityMapsCredentials.load("rt-em").api_token.get_secret_value() == "rt-s3cret"

    @care(policy="rt-policy", signal={"eu-north-1": forecast(t0, [10.0] * 10)}, clock=lambda: t0, planner="window")
    @flow
    def by_block() -> str:
        return "ok"

    assert by_block() == "ok"


def test_create_blocks_script_saves_the_documents(monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "blocks"))
    try:
        import create_blocks
    finally:
        sys.path.pop(0)
    first = dict(create_blocks.create_all(overwrite=True))
    assert sorted(first) == ["care-policy/green-batch", "care-region-targets/eu"] and set(first.values()) <= {"created", "replaced"}
    assert CarePolicyBlock.load("green-batch").to_policy().deadline_within == pd.Timedelta(hours=12)
    # run again with a token exported (TUTORIAL section 5): the edited policy is kept, the credential block
    # is still saved; before, the first existing document stopped the script with exit 2 (review 35a M2)
    edited = CarePolicyBlock.load("green-batch")
    edited.policy = {**edited.policy, "deadline_within": "6h"}
    edited.save("green-batch", overwrite=True)
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "tok-r35a")
    assert create_blocks.main([]) == 0
    out = capsys.readouterr().out
    assert "kept care-policy/green-batch (it exists; --overwrite replaces it)" in out
    assert "electricitymaps-credentials/electricitymaps" in out and "tok-r35a" not in out
    assert CarePolicyBlock.load("green-batch").to_policy().deadline_within == pd.Timedelta(hours=6)
    from care_flows.blocks import ElectricityMapsCredentials

    assert ElectricityMapsCredentials.load("electricitymaps").api_token.get_secret_value() == "tok-r35a"


def test_controller_moves_scheduled_runs_once_and_the_run_executes_directly(forecast):
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h"}).save("ctl-policy", overwrite=True)
    care_dep = nightly.to_deployment(name="cron-care", tags=["care", "care-policy:ctl-policy"]).apply()
    plain_dep = nightly.to_deployment(name="cron-plain").apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 40, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(care_dep, parameters={"day": "d7"}, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        other = client.create_flow_run_from_deployment(plain_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        actions = control_once(client, signal=fc)
        mine = [a for a in actions if a.flow_run_id == str(run.id)]
        assert len(mine) == 1 and mine[0].action == "moved" and mine[0].new_start == (t_run + 2 * H).isoformat()
        assert str(other.id) not in {a.flow_run_id for a in actions}
        moved = client.read_flow_run(run.id)
        # the state's scheduled time is what workers use (expected_start_time keeps the first one)
        assert moved.state.is_scheduled() and pd.Timestamp(moved.state.state_details.scheduled_time) == t_run + 2 * H
        assert pd.Timestamp(moved.next_scheduled_start_time) == t_run + 2 * H
        assert {"care:moved", "care:planned"} <= set(moved.tags)
        assert moved.job_variables["region"] == "eu-south-2" and moved.job_variables["care"]["plan"]["start"] == (t_run + 2 * H).isoformat()
        assert pd.Timestamp(client.read_flow_run(other.id).next_scheduled_start_time) == t_run
        again = [a for a in control_once(client, signal=fc) if a.flow_run_id == str(run.id)]
        assert again[0].action == "skipped"  # idempotent: a restarted controller does not move it twice
        assert pd.Timestamp(client.read_flow_run(run.id).next_scheduled_start_time) == t_run + 2 * H
    # when it runs, the body executes directly (no re-planning), with the plan's region
    from prefect.flow_engine import run_flow_sync

    ctl_flow = care(policy="ctl-policy", signal=fc, planner="window")(nightly)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(run.id)
    RAN.clear()
    state = run_flow_sync(ctl_flow, flow_run=fr, parameters=fr.parameters, return_type="state")
    assert state.is_completed() and RAN == ["d7"]


def test_cli_controller_once_json(capsys, forecast):
    code = main(["controller", "--once", "--json", "--lookahead", "1m"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out) == {"actions": []}
    assert main(["controller", "--once", "--lookahead", "-5m"]) == 2


def test_controller_replans_a_deferred_run_each_replan_period_with_the_same_window_and_baseline(forecast):
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "replan_every": "1h"}).save("rp-policy", overwrite=True)
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "replan_every": None}).save("once-policy", overwrite=True)
    rp_dep = nightly.to_deployment(name="cron-replan", tags=["care", "care-policy:rp-policy"]).apply()
    once_dep = nightly.to_deployment(name="cron-once", tags=["care", "care-policy:once-policy"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    first = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    fresh = {"eu-south-2": forecast(t_run, [300, 300, 200, 300, 300, 10, 300, 300, 300, 300])}  # a greener slot appeared

    def acts(client, fc, at):
        return {a.flow_run_id: a for a in control_once(client, signal=fc, clock=lambda: at)}

    def act(client, run, fc, at):
        return acts(client, fc, at)[str(run.id)]

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(rp_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        once = client.create_flow_run_from_deployment(once_dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        planned_now = acts(client, first, now)
        assert planned_now[str(run.id)].new_start == planned_now[str(once.id)].new_start == (t_run + 2 * H).isoformat()
        planned = client.read_flow_run(run.id).job_variables["care"]
        assert planned["earliest"] == t_run.isoformat() and planned["replans"] == 0
        assert planned["replan_at"] == (now + H).isoformat()
        # the first baseline's energy is kept with its gCO2eq (review 38f): marked here to tell it from a fresh one
        assert planned["plan"]["baseline_kwh"] > 0
        marked = {**planned, "plan": {**planned["plan"], "baseline_kwh": 0.123}}
        client.update_flow_run(run.id, job_variables={**client.read_flow_run(run.id).job_variables, "care": marked})
        # within the re-plan period nothing is redone, whatever the forecast says
        early = act(client, run, fresh, now + 30 * pd.Timedelta("1min"))
        assert early.action == "skipped" and "next re-plan at" in early.reason
        # one period later: planned again over the same window, moved to the new green slot
        later = act(client, run, fresh, now + H)
        assert later.action == "replanned" and later.new_start == (t_run + 5 * H).isoformat(), later
        fr = client.read_flow_run(run.id)
        assert pd.Timestamp(fr.state.state_details.scheduled_time) == t_run + 5 * H
        marker = fr.job_variables["care"]
        assert marker["replans"] == 1 and marker["earliest"] == t_run.isoformat() and marker["replan_at"] == (now + 2 * H).isoformat()
        assert marker["plan"]["deadline"] == planned["plan"]["deadline"]  # the same deadline
        assert marker["plan"]["baseline_g"] == pytest.approx(planned["plan"]["baseline_g"])  # the same "run now at home" baseline
        assert marker["plan"]["baseline_kwh"] == 0.123
        assert marker["plan"]["baseline_usd"] is not None and marker["plan"]["baseline_usd"] == planned["plan"]["baseline_usd"]
        assert marker["plan"]["baseline_instance_type"] == planned["plan"]["baseline_instance_type"]
        assert marker["plan"]["expected_g"] < planned["plan"]["expected_g"]
        assert act(client, run, fresh, now + H).action == "skipped"  # a restarted controller does not redo the decision
        # a marker an older CaRE wrote has no window_from, and its "from" is where the last re-plan moved the run
        # from (t_run + 2 h here): the deadline still counts from the first plan's time, its "earliest" (review 41d M1)
        old_style = {k: v for k, v in marker.items() if k != "window_from"}
        assert old_style["from"] == (t_run + 2 * H).isoformat()
        client.update_flow_run(run.id, job_variables={**client.read_flow_run(run.id).job_variables, "care": old_style})
        # the same forecast one period on: planned again, kept where it is (no move)
        kept = act(client, run, fresh, now + 2 * H)
        assert kept.action == "kept" and client.read_flow_run(run.id).job_variables["care"]["replans"] == 2
        assert client.read_flow_run(run.id).job_variables["care"]["plan"]["deadline"] == planned["plan"]["deadline"]
        # a greener slot after the deadline (counted from the first plan's time, not from where the last
        # re-plan moved the run: review 41a H1, each re-plan pushed the deadline by the last move)
        late = {"eu-south-2": forecast(t_run, [300, 300, 200, 300, 300, 10, 300, 300, 1, 300])}
        third = act(client, run, late, now + 3 * H)
        assert third.action == "kept" and "deadline now" not in third.reason, third
        marker = client.read_flow_run(run.id).job_variables["care"]
        assert marker["plan"]["deadline"] == planned["plan"]["deadline"] and marker["window_from"] == t_run.isoformat()
        assert pd.Timestamp(client.read_flow_run(run.id).state.state_details.scheduled_time) == t_run + 5 * H
        # replan_every None: planned once, never again
        assert act(client, once, fresh, now + 2 * H).action == "skipped"
        assert pd.Timestamp(client.read_flow_run(once.id).state.state_details.scheduled_time) == t_run + 2 * H


@flow(name="ctl-sized")
def sized_flow() -> str:
    return "ok"


def test_controller_sizes_a_run_from_its_flows_usage_history(forecast):
    from care_flows.usage_capture import UsageStore

    pol = {"home_region": "eu-north-1", "regions": ["eu-north-1"], "expected_duration": "1h", "deadline_within": "8h", "vcpu": 2, "memory_gib": 4}
    CarePolicyBlock(policy=pol).save("ctl-sized-policy", overwrite=True)
    dep = sized_flow.to_deployment(name="cron-sized", tags=["care", "care-policy:ctl-sized-policy"]).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-north-1": forecast(t_run, [20.0] * 12)}
    t = pd.date_range("2026-01-01", periods=15 * 60, freq="1s", tz="UTC")  # 15 minutes of past runs
    UsageStore().append("ctl-sized", pd.DataFrame({"time": t, "cpu_vcpu": 6.0, "memory_gib": 20.0, "n_processes": 3}))
    from care_flows.usage_capture import RunRecord

    for i in range(3):  # and the flow's runs took 90 minutes, not the declared hour
        UsageStore().append_run("ctl-sized", RunRecord(f"r{i}", t[0] + i * H, 5400.0))
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        [action] = [a for a in control_once(client, signal=fc) if a.flow_run_id == str(run.id)]
        plan = client.read_flow_run(run.id).job_variables["care"]["plan"]
    assert plan["sizing"].startswith("usage history 'ctl-sized' (15 min of runs): p95 6.00 vCPU, max 20.50 GiB")
    assert plan["duration_from"] == "p90 of the last 3 completed runs: 1h30m (declared 1h)"
    assert pd.Timestamp(plan["end"]) - pd.Timestamp(plan["start"]) == pd.Timedelta(minutes=90)
    assert "duration from run history: p90 of the last 3 completed runs: 1h30m (declared 1h)" in action.reason
    from care_flows.pricing import EmbeddedPrices

    row = EmbeddedPrices().catalog("eu-north-1").set_index("instance_type").loc[action.job_variables["instance_type"]]
    assert row["vcpu"] >= 6.0 * 1.2 and row["memory_gib"] >= 20.5 * 1.2


@flow(name="ctl-timed")
def timed_flow() -> str:
    import time

    time.sleep(0.5)
    return "done"


def test_controller_learns_an_undecorated_flows_duration_from_its_completed_runs(forecast):
    """Review 16 #8: a plain @flow body records no duration, so the controller learned nothing for the
    flows it exists for; it now reads the run times of the deployment's completed planned runs."""
    from prefect.flow_engine import run_flow_sync

    from care_flows.orchestration.controller import completed_run_times
    from care_flows.orchestration.dispatch import CONTINUATION_TAG, PLANNED_TAG

    CarePolicyBlock(policy={"home_region": "eu-north-1", "regions": ["eu-north-1"], "expected_duration": "3h",
                            "deadline_within": "8h"}).save("ctl-timed-policy", overwrite=True)
    dep = timed_flow.to_deployment(name="cron-timed", tags=["care", "care-policy:ctl-timed-policy"]).apply()
    with get_client(sync_client=True) as client:
        first = None
        for tags in ([PLANNED_TAG], [PLANNED_TAG, CONTINUATION_TAG], [], [PLANNED_TAG], [PLANNED_TAG]):
            # as a worker runs the runs the controller moved; the continuation carries its job's root (review 17 #4)
            job_vars = {"care": {"root": str(first.id)}} if CONTINUATION_TAG in tags else {}
            fr = client.create_flow_run_from_deployment(dep, tags=["care", *tags], job_variables=job_vars)
            first = first or fr
            assert run_flow_sync(timed_flow, flow_run=fr, return_type="state").is_completed()
        times = completed_run_times(client, dep)
        # three jobs: the first in two segments (summed), and not the run CaRE did not plan
        assert len(times) == 3 and 0.9 < times[0] < 60 and all(0.4 < t < 30 for t in times[1:]) and times[0] > max(times[1:])
        t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        [action] = [a for a in control_once(client, signal={"eu-north-1": forecast(t_run, [20.0] * 12)}) if a.flow_run_id == str(run.id)]
        plan = client.read_flow_run(run.id).job_variables["care"]["plan"]
    assert plan["duration_from"] == "p90 of the last 3 completed runs in Prefect: 1m (declared 3h)"
    assert pd.Timestamp(plan["end"]) - pd.Timestamp(plan["start"]) == pd.Timedelta(minutes=1)
    assert "duration from run history: p90 of the last 3 completed runs in Prefect: 1m (declared 3h)" in action.reason


def _pool(client, name: str, pool_type: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
    except ObjectAlreadyExists:
        pass


def test_controller_plans_only_regions_the_runs_pool_reaches(forecast):
    """Review 4 #9: a process pool runs where its workers are, so the controller may not report a move to
    another region (Prefect cannot change a run's pool); a care-ec2 pool launches wherever `region` says."""
    pol = {"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "1h", "deadline_within": "8h",
           "targets": {"eu-north-1": {"work_pool": "ctl-se-workers"}}}
    CarePolicyBlock(policy=pol).save("ctl-two-regions", overwrite=True)
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 120, 300, 300, 300, 300, 300, 300, 300]), "eu-north-1": forecast(t_run, [20.0] * 10)}
    tags = ["care", "care-policy:ctl-two-regions"]
    with get_client(sync_client=True) as client:
        _pool(client, "ctl-eu-south-2", "process")
        _pool(client, "ctl-se-workers", "process")
        _pool(client, "ctl-ec2", "care-ec2")
        deps = {
            "es": nightly.to_deployment(name="pool-es", tags=tags, work_pool_name="ctl-eu-south-2").apply(),
            "se": nightly.to_deployment(name="pool-se", tags=tags, work_pool_name="ctl-se-workers").apply(),
            "ec2": nightly.to_deployment(name="pool-ec2", tags=tags, work_pool_name="ctl-ec2").apply(),
        }
        runs = {k: client.create_flow_run_from_deployment(d, state=Scheduled(scheduled_time=t_run.to_pydatetime())) for k, d in deps.items()}
        acts = {a.flow_run_id: a for a in control_once(client, signal=fc)}
        es, se, ec2 = (acts[str(runs[k].id)] for k in ("es", "se", "ec2"))
        # the Spanish process pool: shifted in time to its green hour, in Spain, figures of Spain
        assert es.action == "moved" and es.region == "eu-south-2" and es.new_start == (t_run + 2 * H).isoformat(), es
        assert es.reason.startswith("time shift only: pool ctl-eu-south-2 runs in eu-south-2; ") and "120 g/kWh vs 300 at its scheduled time" in es.reason
        plan = client.read_flow_run(runs["es"].id).job_variables["care"]["plan"]
        assert plan["region"] == plan["home_region"] == "eu-south-2" and client.read_flow_run(runs["es"].id).job_variables["region"] == "eu-south-2"
        # a pool the policy's targets name for Sweden: planned in Sweden (and against "now in Sweden")
        assert se.region == "eu-north-1" and se.reason.startswith("time shift only: pool ctl-se-workers runs in eu-north-1; ")
        assert "20 g/kWh vs 20 at its scheduled time" in se.reason
        # a care-ec2 pool launches in the region job variable: a real move to Sweden, against "now in Spain"
        assert ec2.region == "eu-north-1" and ec2.new_start == t_run.isoformat() and "time shift only" not in ec2.reason, ec2
        assert "20 g/kWh vs 300 at its scheduled time" in ec2.reason
        assert client.read_flow_run(runs["ec2"].id).job_variables["region"] == "eu-north-1"


def test_controller_skips_a_pool_whose_region_has_no_carbon_data(forecast):
    """A process pool named for a region the carbon source does not cover (care-eu-west-1: zone IE,
    no embedded trace) cannot be planned: the run is left at its time as "skipped", with the reason
    and the fix, instead of a "failed" action on every pass."""
    pol = {"home_region": "eu-south-2", "regions": ["eu-south-2", "eu-north-1"], "expected_duration": "1h", "deadline_within": "8h"}
    CarePolicyBlock(policy=pol).save("ctl-ie-pool", overwrite=True)
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run, [300.0] * 10), "eu-north-1": forecast(t_run, [20.0] * 10)}
    with get_client(sync_client=True) as client:
        _pool(client, "care-eu-west-1", "process")
        dep = nightly.to_deployment(name="pool-ie", tags=["care", "care-policy:ctl-ie-pool"], work_pool_name="care-eu-west-1").apply()
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        [action] = [a for a in control_once(client, signal=fc) if a.flow_run_id == str(run.id)]
        after = client.read_flow_run(run.id)
    assert action.action == "skipped", action
    assert "pool care-eu-west-1 runs in eu-west-1" in action.reason and "no carbon data" in action.reason and "IE" in action.reason, action.reason
    assert "care:planned" not in after.tags and abs(pd.Timestamp(after.next_scheduled_start_time) - t_run) < pd.Timedelta(seconds=1)


def test_a_pass_reads_every_upcoming_run_page_by_page(monkeypatch):
    """Review 11 #3: one read_flow_runs call returns one page (200 on a default server), so the runs past
    it were never planned, pass after pass. Pages of 5 over 12 runs stand in for 200 over 230."""
    from care_flows.errors import PlanningError
    from care_flows.orchestration import controller

    monkeypatch.setattr(controller, "_page_size", lambda: 5)
    def planner(policy, at, signal=None, deadline=None, usage=None):
        raise PlanningError("counted")

    now = pd.Timestamp.now(tz="UTC")
    with get_client(sync_client=True) as client:
        dep = nightly.to_deployment(name="many-runs", tags=["care"]).apply()
        runs = [client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=(now + pd.Timedelta(minutes=10 + i)).to_pydatetime()))
                for i in range(12)]
        real_read, limits = client.read_flow_runs, []

        def read_flow_runs(**kw):
            if "offset" in kw:  # the paged read of upcoming runs (not the one-page read of past run times)
                limits.append(kw.get("limit"))
            return real_read(**kw)

        monkeypatch.setattr(client, "read_flow_runs", read_flow_runs)
        actions = control_once(client, default_policy=CarePolicy(), planner=planner, min_lead=timedelta(seconds=30))
    assert len(limits) >= 3 and set(limits) == {5}  # 12 runs (and any left by other tests) in pages of 5
    mine = [a for a in actions if a.flow_run_id in {str(r.id) for r in runs}]
    assert len(mine) == 12 and all(a.action == "failed" and a.reason == "counted" for a in mine), mine  # each one planned


def test_the_controller_plans_one_contiguous_run_for_an_interruptible_policy(forecast):
    """Review 11 #6: an undecorated flow cannot pause, so green segments 02:00 + 05:00 would claim a 90 %
    saving for a run that goes straight through from 02:00. It is planned as one 2 h block."""
    pol = {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "2h", "deadline_within": "9h",
           "interruptible": True}
    CarePolicyBlock(policy=pol).save("ctl-interruptible", overwrite=True)
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 20, 300, 300, 20, 300, 300, 300, 300, 300, 300])}
    dep = nightly.to_deployment(name="one-piece", tags=["care", "care-policy:ctl-interruptible"]).apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        [action] = [a for a in control_once(client, signal=fc) if a.flow_run_id == str(run.id)]
        plan = client.read_flow_run(run.id).job_variables["care"]["plan"]
    assert "one contiguous run (the flow has no @care checkpoints to pause at)" in action.reason, action.reason
    assert len(plan["segments"]) == 1 and plan["expected_g_per_kwh"] == pytest.approx(160.0)  # 20 + 300 over 2 h, not 20


def test_a_replan_keeps_the_latest_start_of_the_work_it_was_planned_for(t0):
    """Review 17 #8: the 'too close to re-plan' check used the declared duration (1h) while the plan
    was made for the learned 3h, so a run past its 3-hour latest start was re-planned into a deadline miss."""
    from types import SimpleNamespace

    from care_flows.orchestration.controller import _replan_due
    from care_flows.orchestration.plan import Plan

    deadline = t0 + 8 * H
    plan = Plan(region="eu-north-1", start=t0 + 5 * H, end=deadline, decided_at=t0, deadline=deadline, home_region="eu-north-1",
                now_here=False, segments=[(t0 + 5 * H, deadline)])
    marker = {"plan": plan.to_dict(), "earliest": t0.isoformat(), "replan_at": t0.isoformat()}
    run = SimpleNamespace(job_variables={"care": marker}, parameters={}, tags=[])
    dep = SimpleNamespace(tags=[], parameters={})
    policy = CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="8h")
    now = t0 + 4 * H  # 1 h before the 3-hour job's latest start, 3 h before a 1-hour job's
    assert _replan_due(marker, run, dep, now, policy, pd.Timedelta(minutes=90)) == "already planned (its latest start is too close to re-plan)"
    assert isinstance(_replan_due(marker, run, dep, t0 + 2 * H, policy, pd.Timedelta(minutes=90)), tuple)  # earlier: due


def test_a_pass_past_its_time_leaves_re_plans_to_the_next_pass_but_still_plans_new_runs(forecast):
    """Review 41b L1: a pass was bounded by a count of re-plans only; a busy server's retries
    stretched one to 255 s."""
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h", "replan_every": "1h"}).save("budget-policy", overwrite=True)
    dep = nightly.to_deployment(name="cron-budget", tags=["care", "care-policy:budget-policy"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        old = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        assert {a.flow_run_id: a for a in control_once(client, signal=fc, clock=lambda: now)}[str(old.id)].action == "moved"
        new = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        acts = {a.flow_run_id: a for a in control_once(client, signal=fc, clock=lambda: now + H, max_replan_s=0)}
    assert acts[str(new.id)].action == "moved"  # never planned: planned whatever the time
    assert acts[str(old.id)].action == "skipped" and "left for the next pass" in acts[str(old.id)].reason


def test_a_run_due_within_the_minimum_lead_is_said_only_when_care_never_planned_it(forecast):
    """Review 53b L5: a run due within the minimum lead was never read, so one CaRE had not planned started
    unplanned without a word, even with --verbose. It is now a skip that says so; one CaRE planned (it starts
    as planned) is still not shown."""
    from care_flows.orchestration.dispatch import PLANNED_TAG

    lead = timedelta(seconds=30)
    now = pd.Timestamp.now(tz="UTC")
    dep = nightly.to_deployment(name="due-soon", tags=["care", "care-policy:ctl-policy"]).apply()
    CarePolicyBlock(policy={"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h",
                            "deadline_within": "8h"}).save("ctl-policy", overwrite=True)
    soon = Scheduled(scheduled_time=(now + pd.Timedelta(seconds=15)).to_pydatetime())
    with get_client(sync_client=True) as client:
        unplanned = client.create_flow_run_from_deployment(dep, state=soon)
        planned = client.create_flow_run_from_deployment(dep, state=soon, tags=[PLANNED_TAG])
        actions = control_once(client, signal={"eu-south-2": forecast(now.floor("h"), [100.0] * 12)}, clock=lambda: now,
                               min_lead=lead)
    mine = {a.flow_run_id: a for a in actions if a.flow_run_id in {str(unplanned.id), str(planned.id)}}
    assert list(mine) == [str(unplanned.id)]
    a = mine[str(unplanned.id)]
    assert a.action == "skipped" and a.news
    assert a.reason == "starts within the minimum lead (30 s); left to the worker; it starts as scheduled, not planned by CaRE"
