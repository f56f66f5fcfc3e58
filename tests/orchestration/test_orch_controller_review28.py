"""`care controller` after review 28: secrets quoted by exception texts, the waiting line said once per
holder, --once naming the fix for a dead lease, dead and clock-skewed leases taken over, the summary's
next re-plan, SIGTERM as a clean stop, and a region target's env merged over the run's own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.cli import main
from care_flows.cli.controller import PassReport, summary_line
from care_flows.orchestration import care
from care_flows.orchestration.controller import (
    LEASE_VARIABLE,
    _holder_gone,
    _process_space,
    LEFT_ALONE,
    ControllerAction,
    ControllerLease,
    control_once,
    run_controller,
)
from care_flows.orchestration.overrides import secret_values
from care_flows.timeutil import utcnow
from tests.prefect_queries import runs_of

H = pd.Timedelta(hours=1)
POLICY = {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h"}


@flow(name="r28-nightly")
def nightly() -> str:
    return "ok"


def _pool(name: str, *, template: bool = False) -> str:
    from prefect.workers.process import ProcessWorker

    base = ProcessWorker.get_default_base_job_template() if template else {}
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=base), overwrite=True)
    return name


def _mine(actions, run) -> ControllerAction:
    [action] = [a for a in actions if a.flow_run_id == str(run.id)]
    return action


def _documents(text: str) -> list[dict]:
    """The JSON documents printed one after another on stdout."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def _no_lease() -> None:
    with get_client(sync_client=True) as client:
        if client.read_variable_by_name(LEASE_VARIABLE) is not None:
            client.delete_variable_by_name(LEASE_VARIABLE)


@pytest.mark.usefixtures("prefect_harness")
def test_a_secret_quoted_by_prefects_422_or_by_pydantic_never_reaches_the_output(capsys):
    """M1: the failed reason carried Prefect's "Failure reason: 86427531" and pydantic's "(got '...tok-s3cret...')"."""
    _no_lease()
    templated = _pool("r28-eu-north-1", template=True)  # the server validates env values against ProcessWorker's template
    numeric = {"regions": ["eu-north-1"], "home_region": "eu-north-1",
               "targets": {"eu-north-1": {"job_variables": {"env": {"DB_PASSWORD": 86427531, "STAGE": "prod"}}}}}
    dep1 = nightly.to_deployment(name="r28-sec-422", tags=["care"], work_pool_name=templated,
                                 job_variables={"care_overrides": numeric}).apply()
    as_text = {"targets": {"eu-south-2": {"job_variables": json.dumps({"env": {"API_TOKEN": "tok-s3cret"}})}}}
    dep2 = nightly.to_deployment(name="r28-sec-str", tags=["care"], work_pool_name=_pool("r28-eu-south-2"),
                                 job_variables={"care_overrides": as_text}).apply()
    t_run = pd.Timestamp.now(tz="UTC").floor("min") + pd.Timedelta(minutes=20)
    with get_client(sync_client=True) as client:
        runs = [client.create_flow_run_from_deployment(d, state=Scheduled(scheduled_time=t_run.to_pydatetime())) for d in (dep1, dep2)]
    for args in (["--json"], []):
        assert main(["controller", "--once", *args, "--lookahead", "30m", "--policy-block", json.dumps(POLICY)]) == 0
        captured = capsys.readouterr()
        for secret in ("86427531", "tok-s3cret"):
            assert secret not in captured.out and secret not in captured.err, (secret, captured)
    assert main(["controller", "--once", "--json", "--lookahead", "30m", "--policy-block", json.dumps(POLICY)]) == 0
    actions = json.loads(capsys.readouterr().out)["actions"]
    by_id = {a["flow_run_id"]: a for a in actions}
    failed_422, failed_str = by_id[str(runs[0].id)], by_id[str(runs[1].id)]
    assert failed_422["action"] == "failed" and "env.DB_PASSWORD" in failed_422["reason"] and "***" in failed_422["reason"], failed_422
    assert failed_str["action"] == "failed" and "valid dictionary" in failed_str["reason"] and "***" in failed_str["reason"], failed_str


def test_every_reason_masks_the_secret_values_of_the_runs_job_variables_wherever_they_occur():
    """M1: a value is masked even where no secret-looking name stands next to it (an exception quoting it alone)."""
    run_vars = {"env": {"DB_PASSWORD": 86427531, "NOTE": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "STAGE": "prod"}}
    dep_vars = {"care_overrides": json.dumps({"targets": {"eu-north-1": {"job_variables": json.dumps({"env": {"API_TOKEN": "tok-s3cret"}})}}})}
    known = secret_values(run_vars, dep_vars)
    assert set(known) == {"86427531", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "tok-s3cret"}
    reason = "ValueError: bad values 86427531, tok-s3cret and ghp_abcdefghijklmnopqrstuvwxyz0123456789 in stage prod"
    action = ControllerAction("1", "r", "f/d", "failed", reason).masking(known)
    assert action.reason == "ValueError: bad values ***, *** and *** in stage prod"


@pytest.mark.usefixtures("prefect_harness")
def test_the_waiting_line_is_said_once_per_holder_though_the_holder_renews_every_pass(capsys):
    """M2: the holder's new expiry changed the text each pass, so the waiter wrote one line (one JSON document) per pass."""
    _no_lease()
    other = ControllerLease(timedelta(minutes=2), holder="ops-host:4242:r28")
    assert other.acquire() is None
    sleeps, errors = [], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        other.acquire(utcnow() + pd.Timedelta(seconds=10 * len(sleeps)))  # the holder's next pass: a later expiry
        if len(sleeps) == 4:
            raise KeyboardInterrupt

    try:
        for json_out in (True, False):
            sleeps.clear()
            report = PassReport(json_out=json_out, verbose=False, json_lines=True)  # the loop's
            with pytest.raises(KeyboardInterrupt):
                run_controller(interval=timedelta(seconds=1), lookahead=timedelta(minutes=1), on_pass=report.end_of_pass,
                               on_action=report.action, on_error=errors.append, on_wait=report.waiting, sleep=sleep)
            captured = capsys.readouterr()
            if json_out:
                docs = [json.loads(line) for line in captured.out.splitlines()]  # JSON Lines (review 38c L8)
                assert len(docs) == 1 and set(docs[0]) == {"waiting"}, docs
                assert docs[0]["waiting"].startswith("another care controller (ops-host:4242:r28) holds the lease")
            else:
                lines = captured.err.splitlines()
                assert len(lines) == 1 and " waiting: another care controller (ops-host:4242:r28)" in lines[0], lines
        assert errors == []
    finally:
        other.release()


@pytest.mark.usefixtures("prefect_harness")
def test_once_names_the_fix_for_a_dead_lease_and_does_not_say_it_waits(capsys):
    """L1: --once said "this one waits and takes over when it expires" and exited 2."""
    _no_lease()
    other = ControllerLease(timedelta(minutes=2), holder="ops-host:4242:once")
    assert other.acquire() is None
    try:
        assert main(["controller", "--once", "--lookahead", "1m"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "waits" not in err, err
        assert err.startswith("error: another care controller (ops-host:4242:once) holds the lease 'care-controller-lease' until ")
        assert "try again after " in err and "if that controller is gone, run `prefect variable unset care-controller-lease`" in err
    finally:
        other.release()


@pytest.mark.usefixtures("prefect_harness")
def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once():
    """L2: a controller restarted after SIGKILL waited up to 3 intervals for its own dead predecessor."""
    _no_lease()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = ControllerLease(timedelta(hours=1), holder=f"{_process_space()}:{int(gone.stdout)}:dead01")
    assert dead.acquire() is None
    alive = ControllerLease(timedelta(hours=1), holder=f"{_process_space()}:{os.getppid()}:alive1")  # a live process here
    restarted = ControllerLease(timedelta(minutes=2))
    try:
        assert restarted.acquire() is None  # not an hour later
        with get_client(sync_client=True) as client:
            assert client.read_variable_by_name(LEASE_VARIABLE).value["holder"] == restarted.holder
        restarted.release()
        assert alive.acquire() is None
        held = ControllerLease(timedelta(minutes=2)).acquire()
        assert held is not None and held.holder == alive.holder  # a live one is respected
    finally:
        alive.release()
        restarted.release()


@pytest.mark.usefixtures("prefect_harness")
def test_a_lease_from_a_clock_running_ahead_is_taken_over_after_its_ttl_on_the_waiters_own_clock():
    """L2: a dead holder whose clock ran 1 h ahead blocked the only controller for 1 h 2 min."""
    _no_lease()
    skewed = ControllerLease(timedelta(minutes=2), holder="batch-2:811:5e1f0a")
    assert skewed.acquire(utcnow() + H) is None  # expires 1 h 2 min ahead of this host's clock; then it dies
    tick = [0.0]
    waiter = ControllerLease(timedelta(seconds=30), monotonic=lambda: tick[0])
    try:
        assert waiter.acquire() is not None
        tick[0] = 100.0
        assert waiter.acquire() is not None  # the holder's ttl (120 s) has not passed unchanged yet
        tick[0] = 121.0
        assert waiter.acquire() is None  # unchanged for the holder's ttl: it is gone
    finally:
        waiter.release()
        skewed.release()


def test_the_summary_never_shows_a_past_re_plan_nor_microseconds_and_a_hand_moved_run_is_not_waiting():
    """L3: "next re-plan 2026-11-29T12:49:22.714153+00:00" on every pass, past and with microseconds."""
    def a(i: str, reason: str, replan_at: str | None = None) -> ControllerAction:
        return ControllerAction(i, f"r{i}", "f/d", "skipped", reason, replan_at=replan_at, waiting=replan_at is not None)

    now = pd.Timestamp("2026-11-29T12:50:12", tz="UTC")
    later = [a("1", "already planned (next re-plan at x)", "2026-11-29T13:49:22.714153+00:00")]
    assert summary_line(later, now=now).endswith("; next re-plan 2026-11-29T13:49:22+00:00")
    overdue = [a("2", "re-plan due; left for the next pass (re-plan budget of this pass used)", "2026-11-29T12:49:22.714153+00:00")]
    assert summary_line(overdue, now=now).endswith("; next re-plan on the next pass")
    hand = a("3", LEFT_ALONE)
    assert not hand.waiting and not hand.news
    assert summary_line([hand], now=now) == "pass: 0 moved, 0 re-planned, 0 kept, 0 failed, 1 skipped, 0 waiting"


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_whose_policy_stopped_re_planning_shows_no_next_re_plan(forecast):
    """L3: after replan_every was set to null, the marker's past replan_at was shown on every pass."""
    CarePolicyBlock(policy={**POLICY, "replan_every": "1h"}).save("r28-stop", overwrite=True)
    dep = nightly.to_deployment(name="r28-stop", tags=["care", "care-policy:r28-stop"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s") + pd.Timedelta(microseconds=714153)
    t_run = now.ceil("h") + 3 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        first = _mine(control_once(client, signal=fc, clock=lambda: now), run)
        assert first.action == "moved" and first.replan_at == (now + H).floor("s").isoformat(), first  # whole seconds
        CarePolicyBlock(policy={**POLICY, "replan_every": None}).save("r28-stop", overwrite=True)
        later = _mine(control_once(client, signal=fc, clock=lambda: now + 2 * H), run)
    assert later.action == "skipped" and later.reason == "already planned" and later.replan_at is None, later
    assert later.waiting and not later.news  # counted as waiting, not as a skip needing the operator
    assert "next re-plan" not in summary_line([later], now=now + 2 * H)


@pytest.mark.usefixtures("prefect_harness")
def test_sigterm_is_a_clean_stop_exit_0(monkeypatch, capsys):
    """L4: SIGTERM (systemctl stop) ended the controller with 130, so systemd marked the unit failed."""
    import time

    _no_lease()

    def sleep(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the service manager stops it between passes
        raise AssertionError("SIGTERM did not stop the loop")

    monkeypatch.setattr(time, "sleep", sleep)
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["controller", "--lookahead", "1m"]) == 0
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler restored
    assert " pass: " in capsys.readouterr().err
    with get_client(sync_client=True) as client:
        assert client.read_variable_by_name(LEASE_VARIABLE) is None  # released on the way out


@pytest.mark.usefixtures("prefect_harness")
def test_a_targets_env_is_merged_over_the_runs_own_env_by_the_controller():
    """Review 28 (outside the commit): the target's env replaced the run's, so its API_TOKEN was gone when it ran."""
    _no_lease()
    target = {"targets": {"eu-south-2": {"job_variables": {"env": {"STAGE": "prod", "LOG_LEVEL": "info"}}}}}
    dep = nightly.to_deployment(name="r28-env", tags=["care"], work_pool_name=_pool("r28-env-eu-south-2"),
                                job_variables={"care_overrides": target}).apply()
    t_run = pd.Timestamp.now(tz="UTC").floor("min") + pd.Timedelta(minutes=20)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()),
                                                     job_variables={"env": {"API_TOKEN": "tok-own", "STAGE": "dev"}})
        action = _mine(control_once(client, default_policy=_policy(), lookahead=timedelta(minutes=30)), run)
        env = client.read_flow_run(run.id).job_variables["env"]
    assert action.action in ("moved", "kept"), action
    assert env == {"API_TOKEN": "tok-own", "STAGE": "prod", "LOG_LEVEL": "info"}  # the run's own kept, the target's wins
    assert action.job_variables["env"] == {"STAGE": "prod", "LOG_LEVEL": "info"}  # the action shows only what CaRE set


def _policy():
    from care_flows.policy import CarePolicy

    return CarePolicy(**POLICY)


SEEN: list[str] = []


@pytest.mark.usefixtures("prefect_harness")
def test_a_care_dispatched_run_keeps_the_trigger_runs_env_under_the_targets(forecast):
    """Review 28 (outside the commit): @care's dispatched run carried only the target's env, not the trigger run's own."""
    from prefect.flow_engine import run_flow_sync

    now = pd.Timestamp.now(tz="UTC").floor("h")
    fc = {"eu-south-2": forecast(now, [300, 300, 20, 300, 300, 300, 300, 300, 300, 300])}
    pol = dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h",
               targets={"eu-south-2": {"job_variables": {"env": {"STAGE": "prod"}}}})

    @care(policy=pol, signal=fc, clock=lambda: now, planner="window", sample_usage=False)
    @flow(name="r28-env-etl")
    def env_etl() -> str:
        SEEN.append("ran")
        return "ran"

    dep_id = env_etl.to_deployment(name="r28-env-etl", work_pool_name=_pool("r28-care-eu-south-2")).apply()
    with get_client(sync_client=True) as client:
        trigger = client.create_flow_run_from_deployment(dep_id, job_variables={"env": {"API_TOKEN": "tok-own", "STAGE": "dev"}})
        client.set_flow_run_state(trigger.id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(trigger.id)
    state = run_flow_sync(env_etl, flow_run=fr, parameters=fr.parameters, return_type="state")
    assert state.is_completed() and SEEN == []  # dispatched to the green hour
    with get_client(sync_client=True) as client:
        child = next(r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id != trigger.id)
    assert child.job_variables["env"] == {"API_TOKEN": "tok-own", "STAGE": "prod"}, child.job_variables


def test_a_holder_in_another_pid_namespace_of_the_same_host_name_is_not_gone():
    """Review 35e H2: two controllers in containers sharing a host name (host networking) each saw the
    other's PID missing, took the lease over at every pass, and both ran; the holder now names its PID
    namespace, and a PID is only checked in the same one."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    assert _holder_gone(f"{_process_space()}:{pid}:dead01")  # this namespace: the PID is checked
    other_space = f"{socket.gethostname()}@pidns1"  # the same host name, another PID namespace
    assert not _holder_gone(f"{other_space}:{pid}:ctl-b1")
    assert not _holder_gone(f"{socket.gethostname()}:{pid}:old001")  # a holder without its namespace: only its expiry ends it
    assert ControllerLease(timedelta(minutes=2)).holder.startswith(_process_space() + ":")


@pytest.mark.parametrize("once", [False, True])
def test_the_loop_writes_json_lines_and_once_one_indented_document(monkeypatch, capsys, once):
    """Review 38c L8: the loop's pretty-printed documents, one after another, were neither JSON nor JSON Lines."""
    import care_flows.orchestration.controller as controller

    def two_passes(*, on_pass, on_error, on_wait, once, **_):
        on_pass([])
        if not once:
            on_error("cannot reach the Prefect API at http://127.0.0.1:1/api")
            on_wait("another care controller (h:1:x) holds the lease")

    monkeypatch.setattr(controller, "run_controller", two_passes)
    assert main(["controller", "--json", *(["--once"] if once else [])]) == 0
    out = capsys.readouterr().out
    if once:
        assert json.loads(out) == {"actions": []} and out.count("\n") > 1  # one indented document
    else:
        assert [json.loads(line) for line in out.splitlines()] == [
            {"actions": []}, {"error": "cannot reach the Prefect API at http://127.0.0.1:1/api"},
            {"waiting": "another care controller (h:1:x) holds the lease"}]
