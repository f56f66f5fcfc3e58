"""Review 42b M1: the checkpoint trusted ``expected_duration``. Once the work done passed it, "remaining"
was 0, so any later segment before the deadline was taken: a job 50% longer than expected paused into a
late segment and finished after a deadline it would have met by running on. Decisions with an injected
clock, no Prefect server."""

import logging

import pandas as pd

from care_flows.orchestration.checkpoint import _CURRENT, Continued, RunState, checkpoint
from care_flows.orchestration.plan import Plan
from care_flows.policy import CarePolicy

H = pd.Timedelta("1h")
T0 = pd.Timestamp("2026-12-01T00:00Z")


def _plan(segments, deadline_h):
    s = [(T0 + a * H, T0 + b * H) for a, b in segments]
    return Plan("eu-south-2", s[0][0], s[-1][1], T0, T0 + deadline_h * H, "eu-south-2", False, segments=s)


def _checks(expected, segments, deadline_h, checks_h):
    """The checkpoint's answer at each hour of ``checks_h`` (True: paused), in a run started at the first segment."""
    policy = CarePolicy(home_region="eu-south-2", interruptible=True, expected_duration=expected, deadline_within=f"{deadline_h}h")
    now = {"t": T0 + segments[0][0] * H}
    state = RunState(policy=policy, plan=_plan(segments, deadline_h), region="eu-south-2", clock=lambda: now["t"], root="r",
                     segment_started=now["t"], deployment_id="d", dispatcher=lambda s, start, i, done: "part1")
    token = _CURRENT.set(state)
    answers = []
    try:
        for h in checks_h:
            now["t"] = T0 + h * H
            try:
                answers.append(checkpoint())
            except Continued:
                answers.append(True)
                break
    finally:
        _CURRENT.reset(token)
    return answers


def test_a_run_that_outgrew_its_estimate_runs_on(caplog):
    # 2h15m expected; at 3.5 h, 2.5 h are done and there is more: the 6 minutes left before the deadline are not enough
    with caplog.at_level(logging.WARNING):
        assert _checks("135m", [(1, 3.5), (11.9, 12)], 12, [1.5, 2.0, 2.5, 3.0, 3.5]) == [False] * 5
    assert "the work has run 2h30m, more than the 2h15m it was planned for; not pausing" in caplog.text


def test_at_least_one_more_task_like_the_last_is_left():
    # 3 h expected, 1-hour steps: at 2.75 h of work the estimate leaves 15 min, but the next step takes about an hour
    assert _checks("3h", [(0, 2.75), (11.5, 12)], 12, [1.0, 2.0, 2.75]) == [False, False, False]
    # with 15-minute steps, 15 min left fits in the last half hour: it pauses as before
    assert _checks("3h", [(0, 2.75), (11.5, 12)], 12, [2.25, 2.5, 2.75]) == [False, False, True]


def test_a_segment_picked_up_late_runs_on_to_min_segment():
    """Review 42b L1: min_segment was applied when planning only; a continuation picked up late (a worker
    down) ran a 30-minute segment, paused again, and paid another launch."""
    policy = CarePolicy(home_region="eu-south-2", interruptible=True, expected_duration="5h", deadline_within="14h", min_segment="2h")
    segments = [(T0 + a * H, T0 + b * H) for a, b in [(1, 3), (8, 10), (11, 13)]]
    plan = Plan("eu-south-2", segments[0][0], segments[-1][1], T0, T0 + 14 * H, "eu-south-2", False, segments=segments)
    now = {"t": T0 + 9.5 * H}  # segment 1 ([8, 10)) picked up at 9.5 h with 2 h of work done
    state = RunState(policy=policy, plan=plan, region="eu-south-2", clock=lambda: now["t"], segment=1, root="r",
                     work_done_s=2 * 3600, segment_started=now["t"], deployment_id="d", dispatcher=lambda *a: "part2")
    token = _CURRENT.set(state)
    try:
        for h in (9.75, 10.0, 10.5):  # past the segment's end: before, it paused at 10.0 h
            now["t"] = T0 + h * H
            assert checkpoint() is False
    finally:
        _CURRENT.reset(token)


def test_the_overrun_warning_is_said_once(caplog):
    """Review 42d L3: it was logged at every checkpoint after the estimate (12 times in 66 minutes)."""
    with caplog.at_level(logging.WARNING):
        assert _checks("135m", [(1, 3.5), (11.9, 12)], 12, [3.0, 3.5, 3.6, 3.7, 3.8]) == [False] * 5
    assert caplog.text.count("more than the 2h15m it was planned for") == 1


def test_a_segment_planned_shorter_than_min_segment_is_followed():
    """Review 42d L4: a planner that made a segment shorter than min_segment (the built-in window planner
    ignores it) is followed; only a segment cut short by a late start runs on."""
    policy = CarePolicy(home_region="eu-south-2", interruptible=True, expected_duration="3h", deadline_within="14h", min_segment="2h")
    segments = [(T0 + a * H, T0 + b * H) for a, b in [(1, 2), (8, 10)]]
    plan = Plan("eu-south-2", segments[0][0], segments[-1][1], T0, T0 + 14 * H, "eu-south-2", False, segments=segments)
    now = {"t": T0 + 1 * H}
    state = RunState(policy=policy, plan=plan, region="eu-south-2", clock=lambda: now["t"], root="r",
                     segment_started=now["t"], deployment_id="d", dispatcher=lambda *a: "part1")
    token = _CURRENT.set(state)
    try:
        now["t"] = T0 + 2 * H
        try:
            checkpoint()
            paused = False
        except Continued:
            paused = True
    finally:
        _CURRENT.reset(token)
    assert paused


def test_a_retry_names_the_run_that_holds_the_rest_of_the_work(monkeypatch):
    """Review 42e L2: the retry looked one continuation ahead; with part1 paused too and part2 cancelled it
    named part1 (finished) and said the rest of the work 'runs there'."""
    from types import SimpleNamespace as NS

    from prefect.client.schemas.objects import StateType

    import care_flows.orchestration.decorator as deco

    runs = {"care-T-part1": NS(name="job-part1", id="c1", state=NS(name="Continued", type=StateType.COMPLETED),
                               job_variables={"care": {"segment": 1, "root": "T"}}),
            "care-T-part2": NS(name="job-part2", id="c2", state=NS(name="Cancelled", type=StateType.CANCELLED), job_variables={})}
    monkeypatch.setattr(deco, "_dispatched_by", lambda root, key=None: runs.get(key))
    state = deco._continued_by_earlier_attempt(NS(run_count=2), "T", 0, logging.getLogger("care"))
    assert state.name == "Continued"
    assert "job-part2 (c2)" in state.message and "it is Cancelled: retry that run" in state.message
