"""`care controller` as an operator runs it for days (review 25): secrets kept out of --json, a stored
policy block that no longer validates, runs rescheduled by hand, readable output, failed passes,
the care:moved tag, the baseline wording and two controllers on one server."""

from __future__ import annotations

import io
import json
import socket
from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled

from care_flows.blocks import CarePolicyBlock
from care_flows.cli import main
from care_flows.orchestration.controller import ControllerAction, control_once, run_controller

LEASE_VARIABLE = "care-controller-lease"  # care_flows.orchestration.controller.LEASE_VARIABLE (asserted below)

H = pd.Timedelta(hours=1)
POLICY = {"home_region": "eu-south-2", "regions": ["eu-south-2"], "expected_duration": "1h", "deadline_within": "8h"}


@flow(name="r25-nightly")
def nightly() -> str:
    return "ok"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mine(actions, run) -> ControllerAction:
    [action] = [a for a in actions if a.flow_run_id == str(run.id)]
    return action


@pytest.mark.usefixtures("prefect_harness")
def test_json_output_never_holds_a_secret_of_the_run_or_its_overrides(capsys):
    """H1: the action's job_variables echoed the run's env, care_overrides and the target's env in clear."""
    overrides = {"targets": {"eu-south-2": {"job_variables": {"env": {"API_TOKEN": "tok-s3cret", "STAGE": "prod"}}}}}
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="r25-eu-south-2", type="process"))
        except ObjectAlreadyExists:
            pass
    dep = nightly.to_deployment(name="r25-secrets", tags=["care"], work_pool_name="r25-eu-south-2",
                                job_variables={"care_overrides": overrides}).apply()
    t_run = pd.Timestamp.now(tz="UTC").floor("min") + pd.Timedelta(minutes=20)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()),
            job_variables={"env": {"DB_PASSWORD": "hunter2", "API_URL": "https://user:s3cretpw@db.example.org/x"}})
    assert main(["controller", "--once", "--json", "--lookahead", "30m", "--policy-block", json.dumps(POLICY)]) == 0
    captured = capsys.readouterr()
    for secret in ("tok-s3cret", "hunter2", "s3cretpw"):
        assert secret not in captured.out and secret not in captured.err, secret
    action = next(a for a in json.loads(captured.out)["actions"] if a["flow_run_id"] == str(run.id))
    # only what CaRE set (the region, the instance type, the target's variables), masked
    assert action["job_variables"]["env"] == {"API_TOKEN": "***", "STAGE": "prod"}, action
    assert "care_overrides" not in action["job_variables"] and "DB_PASSWORD" not in json.dumps(action)
    with get_client(sync_client=True) as client:  # the run itself still gets the real values
        assert client.read_flow_run(run.id).job_variables["env"]["API_TOKEN"] == "tok-s3cret"


def test_an_action_masks_secrets_whatever_builds_it():
    a = ControllerAction("1", "r", "f/d", "failed", reason="cannot reach postgresql://care:hunter2@db/x",
                         job_variables={"env": {"MY_SECRET": "x1"}, "url": "https://tok:pw@h/"})
    assert "hunter2" not in json.dumps(a.to_dict()) and a.job_variables == {"env": {"MY_SECRET": "***"}, "url": "***"}


def _invalid_block(name: str) -> None:
    """A saved policy block edited afterwards (the UI, another CaRE version) so it no longer validates."""
    doc_id = CarePolicyBlock(policy=POLICY).save(name, overwrite=True)
    with get_client(sync_client=True) as client:
        client.update_block_document(doc_id, BlockDocumentUpdate(data={"policy": {**POLICY, "home_region": "eu-mars-1"}},
                                                                  merge_existing_data=False))


@pytest.mark.usefixtures("prefect_harness")
def test_an_invalid_stored_policy_block_is_one_line_for_the_option_and_for_a_tag(capsys):
    """M1: --policy-block was an internal error (exit 1); a care-policy tag failed the run every pass with
    Prefect's raw text and the deployment shown as a UUID."""
    _invalid_block("r25-bad")
    assert main(["controller", "--once", "--policy-block", "r25-bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "internal error" not in err, err
    assert "CarePolicyBlock 'r25-bad' holds an invalid document" in err and "eu-mars-1" in err and "fix --policy-block" in err, err

    dep = nightly.to_deployment(name="r25-bad-tag", tags=["care", "care-policy:r25-bad"]).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        action = _mine(control_once(client), run)
        after = client.read_flow_run(run.id)
    assert action.action == "failed" and action.deployment == "r25-nightly/r25-bad-tag" and action.old_start == t_run.isoformat()
    assert action.reason.startswith("CarePolicyBlock 'r25-bad' holds an invalid document (home_region: unknown region 'eu-mars-1'")
    assert "fix it in the Prefect UI" in action.reason and "the deployment tag 'care-policy:r25-bad'" in action.reason
    assert "care:planned" not in after.tags and pd.Timestamp(after.next_scheduled_start_time) == t_run  # left as it is


@pytest.mark.usefixtures("prefect_harness")
def test_a_replan_that_cannot_load_its_policy_names_the_deployment_not_its_uuid(monkeypatch, forecast):
    """M1: errors of the re-plan check (outside the try) were reported as "ConfigError: ..." with a UUID."""
    CarePolicyBlock(policy={**POLICY, "replan_every": "1h"}).save("r25-replan", overwrite=True)
    dep = nightly.to_deployment(name="r25-replan", tags=["care", "care-policy:r25-replan"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        assert _mine(control_once(client, signal=fc, clock=lambda: now), run).action == "moved"
        monkeypatch.setenv("CARE_TARGETS_BLOCK", "r25-no-such-targets")
        action = _mine(control_once(client, signal=fc, clock=lambda: now + H), run)
    assert action.action == "failed" and action.deployment == "r25-nightly/r25-replan", action
    assert action.reason.startswith("no RegionTargets named 'r25-no-such-targets'") and action.old_start == (t_run + 2 * H).isoformat()


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_rescheduled_by_hand_is_left_where_the_operator_put_it(forecast):
    """M2: a planned run moved by an operator was moved back "to finish an interrupted move"."""
    CarePolicyBlock(policy={**POLICY, "replan_every": "1h"}).save("r25-hand", overwrite=True)
    dep = nightly.to_deployment(name="r25-hand", tags=["care", "care-policy:r25-hand"]).apply()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    t_run = now.ceil("h") + 3 * H
    fc = {"eu-south-2": forecast(t_run, [300, 300, 40, 300, 300, 300, 300, 300, 300, 300])}
    by_hand = t_run + pd.Timedelta(minutes=17)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        first = _mine(control_once(client, signal=fc, clock=lambda: now), run)
        assert first.action == "moved" and client.read_flow_run(run.id).job_variables["care"]["from"] == t_run.isoformat()
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=by_hand.to_pydatetime()), force=True)  # the operator
        noticed = _mine(control_once(client, signal=fc, clock=lambda: now + 2 * H), run)  # also past its re-plan time
        assert noticed.action == "skipped" and noticed.news, noticed
        assert noticed.reason.startswith(f"rescheduled outside CaRE to {by_hand.isoformat()} (CaRE had planned {(t_run + 2 * H).isoformat()}); left alone")
        fr = client.read_flow_run(run.id)
        assert pd.Timestamp(fr.state.state_details.scheduled_time) == by_hand and fr.job_variables["care"]["replan_at"] is None
        later = _mine(control_once(client, signal=fc, clock=lambda: now + 3 * H), run)
        assert later.action == "skipped" and later.reason == "rescheduled outside CaRE; left alone" and not later.news
        assert pd.Timestamp(client.read_flow_run(run.id).state.state_details.scheduled_time) == by_hand


@pytest.mark.usefixtures("prefect_harness")
def test_care_moved_only_on_moved_runs_and_the_baseline_is_named(forecast):
    """L2: a kept run was tagged care:moved. L3: "vs N now" was the intensity at the scheduled time."""
    CarePolicyBlock(policy=POLICY).save("r25-tags", overwrite=True)
    dep = nightly.to_deployment(name="r25-tags", tags=["care", "care-policy:r25-tags"]).apply()
    t_run = pd.Timestamp.now(tz="UTC").ceil("h") + H
    flat = {"eu-south-2": forecast(t_run, [100.0] * 10)}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t_run.to_pydatetime()))
        action = _mine(control_once(client, signal=flat), run)
        tags = set(client.read_flow_run(run.id).tags)
    assert action.action == "kept" and action.news and "100 g/kWh vs 100 at its scheduled time" in action.reason, action
    assert "care:planned" in tags and "care:moved" not in tags


@pytest.mark.usefixtures("prefect_harness")
def test_each_action_is_written_when_done_so_an_interrupted_pass_leaves_its_record(monkeypatch, capsys, forecast):
    """M3: nothing was written until a pass ended, so a stopped controller left no line for the runs it moved."""
    from care_flows.orchestration import controller

    CarePolicyBlock(policy=POLICY).save("r25-kill", overwrite=True)
    dep = nightly.to_deployment(name="r25-kill", tags=["care", "care-policy:r25-kill"]).apply()
    t1 = pd.Timestamp.now(tz="UTC").floor("min") + pd.Timedelta(minutes=7)
    t2 = t1 + pd.Timedelta(minutes=1)
    real = controller.plan_run

    def plan_run(policy, at, **kw):
        if abs(pd.Timestamp(at) - t2) < pd.Timedelta(seconds=1):
            raise KeyboardInterrupt  # Ctrl-C / SIGTERM in the middle of the pass
        return real(policy, at, **kw)

    import time

    real_sleep = time.sleep

    def no_sleep(seconds: float) -> None:
        if seconds >= 5:  # the controller's wait between passes (30 s); short sleeps are the client's own retries under load
            raise AssertionError("the pass ended without being interrupted")  # never loop in a test
        real_sleep(seconds)

    monkeypatch.setattr(controller, "plan_run", plan_run)
    monkeypatch.setattr(time, "sleep", no_sleep)
    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t1.to_pydatetime()))
        client.create_flow_run_from_deployment(dep, state=Scheduled(scheduled_time=t2.to_pydatetime()))
    assert main(["controller", "--lookahead", "15m"]) == 130
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if first.name in x]
    assert line[:25].endswith("+00:00") and pd.Timestamp(line[:25]).tzinfo is not None, line
    assert line[26:].startswith(("moved", "kept")) and "r25-nightly/r25-kill" in line, line
    with get_client(sync_client=True) as client:
        assert client.read_variable_by_name(LEASE_VARIABLE) is None  # released on the way out


def _action(run_id: str, action: str, reason: str = "", **kw) -> ControllerAction:
    return ControllerAction(run_id, f"run-{run_id}", "f/d", action, reason, old_start="2026-11-29T12:00:00+00:00", **kw)


def test_the_default_output_is_the_news_and_one_summary_line_per_pass():
    """M3: 132 runs gave 132 lines every pass; the same failure was repeated every 30 s."""
    from care_flows.cli.controller import PassReport

    out = io.StringIO()
    report = PassReport(json_out=False, verbose=False, stream=out, now=lambda: pd.Timestamp("2026-11-29T12:15:00.4", tz="UTC"))
    first_pass = [
        _action("1", "moved", "embedded: 40 g/kWh vs 300 at its scheduled time", new_start="2026-11-29T14:00:00+00:00", replans=0),
        _action("2", "failed", "CarePolicyBlock 'x' holds an invalid document (...)"),
        _action("3", "skipped", "already planned (next re-plan at 2026-11-29T12:18:00+00:00)", replan_at="2026-11-29T12:18:00+00:00",
                waiting=True),
        _action("4", "kept", "re-plan 2 (embedded): ...", new_start="2026-11-29T12:00:00+00:00", replans=2),
    ]
    for a in first_pass:
        report.action(a)
    report.end_of_pass(first_pass)
    second_pass = first_pass[1:3]  # run 1 started; run 2 still fails the same way; run 3 still waits
    for a in second_pass:
        report.action(a)
    report.end_of_pass(second_pass)
    lines = out.getvalue().splitlines()
    assert lines == [
        "2026-11-29T12:15:00+00:00 moved     run-1 (f/d) 2026-11-29T12:00:00+00:00 -> 2026-11-29T14:00:00+00:00  "
        "embedded: 40 g/kWh vs 300 at its scheduled time",
        "2026-11-29T12:15:00+00:00 failed    run-2 (f/d) 2026-11-29T12:00:00+00:00 -> -  CarePolicyBlock 'x' holds an invalid document (...)",
        "2026-11-29T12:15:00+00:00 pass: 1 moved, 0 re-planned, 1 kept, 1 failed, 0 skipped, 1 waiting; next re-plan 2026-11-29T12:18:00+00:00",
        "2026-11-29T12:15:00+00:00 pass: 0 moved, 0 re-planned, 0 kept, 1 failed, 0 skipped, 1 waiting; next re-plan 2026-11-29T12:18:00+00:00",
    ]
    verbose = io.StringIO()
    loud = PassReport(json_out=False, verbose=True, stream=verbose)
    for a in second_pass:
        loud.action(a)
        loud.action(a)
    assert len(verbose.getvalue().splitlines()) == 4  # --verbose: every run, every pass
    # a run that waits for its next re-plan is written as the summary counts it: waiting, not skipped (review 48c L3)
    assert [line.split()[1] for line in verbose.getvalue().splitlines()] == ["failed", "failed", "waiting", "waiting"]


def test_a_failed_pass_is_reported_as_failed_not_as_an_empty_pass():
    """L1: after "cannot reach the Prefect API" the CLI printed "no upcoming Scheduled runs" / {"actions": []}."""
    passes, errors, sleeps = [], [], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    url = f"http://127.0.0.1:{_closed_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}), pytest.raises(KeyboardInterrupt):
        run_controller(interval=timedelta(seconds=5), on_pass=passes.append, on_error=errors.append, sleep=sleep)
    from care_flows.cli.controller import PassReport

    assert passes == [] and len(errors) == 2 and all(e.startswith(f"cannot reach the Prefect API at {url}") for e in errors), errors
    out = io.StringIO()
    PassReport(json_out=False, verbose=False, stream=out).error(errors[0])
    assert " error: cannot reach the Prefect API" in out.getvalue() and "no upcoming" not in out.getvalue()


@pytest.mark.usefixtures("prefect_harness")
def test_a_second_controller_waits_for_the_first_ones_lease(capsys):
    """L5: two controllers on one server planned and moved every run twice, with no warning."""
    from care_flows.orchestration import controller

    assert controller.LEASE_VARIABLE == LEASE_VARIABLE
    ControllerLease = controller.ControllerLease
    other = ControllerLease(timedelta(minutes=2), holder="ops-host:4242:abc")
    assert other.acquire() is None
    try:
        assert main(["controller", "--once", "--lookahead", "1m"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: another care controller (ops-host:4242:abc) holds the lease") and err.count("\n") == 1, err
        waited, passes, sleeps = [], [], []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 2:
                other.release()  # the first controller stops: the second takes over on its next pass
            if len(sleeps) == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_controller(interval=timedelta(seconds=1), lookahead=timedelta(minutes=1), on_pass=passes.append, on_error=waited.append,
                           sleep=sleep)
        assert len(waited) == 1 and waited[0].startswith("another care controller (ops-host:4242:abc)"), waited  # said once
        assert len(passes) == 1  # the pass after the first one let go
        with get_client(sync_client=True) as client:
            assert client.read_variable_by_name(LEASE_VARIABLE) is None  # and released when it stopped
    finally:
        other.release()


def test_the_docs_state_the_minimum_lead_the_code_keeps():
    """L4: docs/PREFECT.md said runs within 5 s are left alone; the code leaves 30 s."""
    from pathlib import Path

    from care_flows.orchestration.controller import default_min_lead

    text = (Path(__file__).resolve().parents[2] / "docs" / "PREFECT.md").read_text(encoding="utf-8")
    assert default_min_lead() == timedelta(seconds=30)
    assert "within 5 s" not in text and "worker prefetch + 20 s, 30 s by default" in text
