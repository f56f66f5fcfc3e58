"""Decision logic with an injected clock and synthetic signals (no Prefect server)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from care_flows.errors import PlanningError
from care_flows.orchestration.artifacts import decision_markdown, decision_table, sparkline
from care_flows.orchestration.checkpoint import _CURRENT, Continued, RunState, checkpoint
from care_flows.orchestration.clock import fixed_clock
from care_flows.orchestration.decorator import resolve_policy
from care_flows.orchestration.plan import Plan, plan_from_decision, plan_run, window_plan
from care_flows.orchestration.targets import job_variables_for
from care_flows.policy import CarePolicy

H = pd.Timedelta(hours=1)


def pol(**kw) -> CarePolicy:
    base = dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="2h", deadline_within="8h")
    base.update(kw)
    return CarePolicy(**base)


def test_flat_forecast_runs_now_here(forecast, t0):
    p = window_plan(pol(), {"eu-south-2": forecast(t0, [200.0] * 10)}, t0)
    assert p.now_here and p.region == "eu-south-2" and p.start == t0
    assert p.savings_pct == pytest.approx(0.0)


def test_green_window_later_is_chosen_and_savings_reported(forecast, t0):
    clock = fixed_clock(t0 + pd.Timedelta(minutes=20))
    p = window_plan(pol(), {"eu-south-2": forecast(t0, [300, 300, 300, 50, 60, 300, 300, 300, 300, 300])}, clock())
    assert not p.now_here
    assert p.start == t0 + 3 * H and p.end == t0 + 5 * H
    assert p.expected_g_per_kwh == pytest.approx(55.0)
    assert p.baseline_g_per_kwh == pytest.approx(300.0)
    assert p.savings_pct == pytest.approx(100 * (300 - 55) / 300)


def test_now_starts_inside_the_current_slot(forecast, t0):
    now = t0 + pd.Timedelta(minutes=30)
    p = window_plan(pol(), {"eu-south-2": forecast(t0, [50, 50, 50, 400, 400, 400, 400, 400, 400, 400])}, now)
    assert p.now_here and p.start == now


def test_other_region_greener_moves_the_run(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [250.0] * 10), "eu-north-1": forecast(t0, [30.0] * 10)}
    p = window_plan(pol(regions=["eu-south-2", "eu-north-1"]), fc, t0)
    assert p.region == "eu-north-1" and p.start == t0 and not p.now_here
    assert set(p.options["region"]) == {"eu-south-2", "eu-north-1"}
    assert p.options["chosen"].sum() == 1


def test_min_savings_keeps_the_baseline(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [200, 200, 199, 199, 200, 200, 200, 200, 200, 200])}
    p = window_plan(pol(min_savings_pct=5), fc, t0)
    assert p.now_here and p.start == t0


def test_deadline_excludes_late_windows(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [300, 300, 300, 300, 300, 10, 10, 300, 300, 300])}
    p = window_plan(pol(deadline_within="4h"), fc, t0)
    assert p.end <= t0 + 4 * H


def test_region_without_forecast_is_listed_infeasible(forecast, t0):
    p = window_plan(pol(regions=["eu-south-2", "eu-north-1"]), {"eu-south-2": forecast(t0, [100.0] * 10)}, t0)
    row = p.options[p.options["region"] == "eu-north-1"].iloc[0]
    assert not row["feasible"] and row["why"] == "no forecast"


def test_no_feasible_option_raises_planning_error(forecast, t0):
    with pytest.raises(PlanningError, match="no feasible option"):
        window_plan(pol(), {"eu-south-2": forecast(t0 - 48 * H, [100.0] * 5)}, t0)


def test_interruptible_picks_green_segments(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    p = window_plan(pol(interruptible=True), fc, t0)
    assert p.segments == [(t0, t0 + H), (t0 + 3 * H, t0 + 4 * H)]
    assert p.now_here and p.expected_g_per_kwh == pytest.approx(25.0)
    p2 = window_plan(pol(interruptible=True, max_segments=1), fc, t0)
    assert len(p2.segments) == 1


def test_plan_roundtrip_and_segment_lookup(forecast, t0):
    fc = {"eu-south-2": forecast(t0, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    p = window_plan(pol(interruptible=True), fc, t0)
    q = Plan.from_dict(p.to_dict())
    assert q.segments == p.segments and q.deadline == p.deadline and q.now_here == p.now_here
    assert q.segment_at(t0 + pd.Timedelta(minutes=30)) == 0
    assert q.segment_at(t0 + 2 * H) is None and q.next_segment(t0 + 2 * H) == 1
    assert q.next_segment(t0 + 3.5 * H) is None


def test_plan_run_with_a_signal_object(forecast, t0):
    calls = []

    class Sig:
        def forecast(self, zone, start, horizon):
            calls.append((zone, start, horizon))
            return forecast(t0, [100, 100, 10, 10, 100, 100, 100, 100, 100, 100])

    p = plan_run(pol(), t0, signal=Sig(), planner="window")
    assert p.start == t0 + 2 * H
    assert calls[0][0] == "ES" and calls[0][2] == pd.Timedelta(hours=8)


def test_adapter_reads_a_planning_decision(forecast, t0):
    chosen = SimpleNamespace(region="eu-north-1", zone="SE-SE3", instance_type="m6i.large", start=t0 + H, end=t0 + 3 * H,
                             segments=[(t0 + H, t0 + 3 * H)], expected_g=10.0, expected_usd=0.2, expected_g_per_kwh=25.0, latency_ms=40.0)
    d = SimpleNamespace(chosen=chosen, baseline=SimpleNamespace(expected_g=100.0, expected_g_per_kwh=250.0), is_now_here=False,
                        warnings=["stale forecast"], options=pd.DataFrame([{"region": "eu-north-1"}]))
    p = plan_from_decision(d, policy=pol(regions=["eu-south-2", "eu-north-1"]), now=t0, deadline=t0 + 8 * H)
    assert p.instance_type == "m6i.large" and p.savings_pct == pytest.approx(90.0) and p.planner == "decide"
    assert p.warnings == ["stale forecast"]


def test_artifact_text(forecast, t0):
    p = window_plan(pol(), {"eu-south-2": forecast(t0, [300, 300, 300, 50, 60, 300, 300, 300, 300, 300])}, t0)
    md = decision_markdown(p, action="deferred", dispatched="green-run", dispatched_url="http://127.0.0.1/x")
    line, marks = sparkline(p.forecast, p.segments)
    assert line in md and marks in md and marks.index("^") == 3 and marks.count("^") == 2
    assert "[green-run](http://127.0.0.1/x)" in md and "Expected savings" in md
    rows = decision_table(p)
    assert {"region", "start", "expected_g", "feasible", "why", "chosen"} <= set(rows[0])
    assert all(isinstance(r["start"], str) for r in rows)


def test_job_variables_and_policy_resolution():
    p = resolve_policy({"regions": ["eu-north-1"]}, targets={"eu-north-1": {"work_pool": "care-eu-north-1", "job_variables": {"x": 1}}})
    assert p.targets["eu-north-1"].work_pool == "care-eu-north-1"
    assert job_variables_for(p, "eu-north-1", None) == {"region": "eu-north-1", "x": 1}


def test_policy_from_environment(monkeypatch):
    monkeypatch.setenv("CARE_POLICY", '{"home_region": "eu-north-1", "regions": ["eu-north-1"]}')
    assert resolve_policy(None).home_region == "eu-north-1"


def _state(plan: Plan, now: list[pd.Timestamp], dispatched: list, **kw) -> RunState:
    policy = kw.pop("policy", pol(interruptible=True))
    return RunState(policy=policy, plan=plan, region="eu-south-2", clock=lambda: now[0], segment_started=now[0], deployment_id="dep",
                    dispatcher=lambda st, start, i, done: dispatched.append((start, i, done)) or SimpleNamespace(name="cont", id="1"), **kw)


@pytest.fixture
def seg_plan(forecast, t0) -> Plan:
    return window_plan(pol(interruptible=True), {"eu-south-2": forecast(t0, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}, t0)


def test_checkpoint_continues_only_when_red_with_slack(seg_plan, t0):
    now, dispatched = [t0 + pd.Timedelta(minutes=10)], []
    token = _CURRENT.set(_state(seg_plan, now, dispatched))
    try:
        assert checkpoint() is False  # still green
        now[0] = t0 + pd.Timedelta(minutes=70)  # red: next segment at +3h
        with pytest.raises(Continued):
            checkpoint()
        assert dispatched[0][0] == t0 + 3 * H and dispatched[0][2] == pytest.approx(60 * 60)  # work since the segment started
    finally:
        _CURRENT.reset(token)


def test_checkpoint_runs_to_the_end_without_slack_or_segments(seg_plan, t0):
    dispatched: list = []
    tight = pol(interruptible=True, expected_duration="2h", deadline_within="8h")
    # segment started long ago: remaining work is nil but the deadline check uses plan.deadline
    late = [seg_plan.deadline - pd.Timedelta(minutes=30)]
    token = _CURRENT.set(_state(seg_plan, late, dispatched, policy=tight))
    try:
        assert checkpoint() is False  # no later segment
    finally:
        _CURRENT.reset(token)
    now = [t0 + pd.Timedelta(minutes=70)]
    token = _CURRENT.set(_state(seg_plan, now, dispatched, policy=pol(interruptible=True, max_segments=1)))
    try:
        assert checkpoint() is False  # max_segments reached
    finally:
        _CURRENT.reset(token)
    squeezed = Plan.from_dict({**seg_plan.to_dict(), "deadline": (t0 + 3 * H + pd.Timedelta(minutes=10)).isoformat()})
    token = _CURRENT.set(_state(squeezed, now, dispatched))
    try:
        assert checkpoint() is False  # resuming at +3h leaves < remaining work before the deadline
    finally:
        _CURRENT.reset(token)
    assert dispatched == []


def test_checkpoint_pauses_when_the_next_task_would_mostly_run_after_the_green_segment(seg_plan, t0):
    # a run that started a little early (worker prefetch) reaches its checkpoint just before the
    # green segment ends: the next task (as long as the last, ~58 min) would run almost entirely
    # in the red hour, so it continues at the next green segment instead
    now, dispatched = [t0], []
    token = _CURRENT.set(_state(seg_plan, now, dispatched))
    try:
        now[0] = t0 + pd.Timedelta(minutes=58)
        with pytest.raises(Continued):
            checkpoint()
        assert dispatched[0][0] == t0 + 3 * H
    finally:
        _CURRENT.reset(token)
    now, dispatched = [t0], []
    token = _CURRENT.set(_state(seg_plan, now, dispatched))
    try:
        now[0] = t0 + pd.Timedelta(minutes=20)  # a 20 min task with 40 min of green left: go on
        assert checkpoint() is False and dispatched == []
    finally:
        _CURRENT.reset(token)


def test_artifact_names_the_forecast_model_and_says_when_the_trace_is_replayed():
    from care_flows.signals.registry import get_signal

    t0 = pd.Timestamp("2026-06-01T00:00Z")  # after the embedded 2021-2023 traces: replayed
    fc = get_signal("embedded").forecast("eu-south-2", t0, pd.Timedelta("8h"))
    md = decision_markdown(window_plan(pol(), {"eu-south-2": fc}, t0), action="deferred")
    assert "forecast `ridge+replay(2023)`" in md and "replayed" in md and "not this day's grid" in md
    fc23 = get_signal("embedded").forecast("eu-south-2", pd.Timestamp("2023-06-01T00:00Z"), pd.Timedelta("8h"))
    md23 = decision_markdown(window_plan(pol(), {"eu-south-2": fc23}, pd.Timestamp("2023-06-01T00:00Z")), action="deferred")
    assert "forecast `ridge`" in md23 and "replayed" not in md23


def test_window_planner_segments_add_up_to_the_job_when_it_starts_mid_slot(forecast, t0):
    """Review 11 #8a: at 00:45 the current slot has 15 minutes left but counted as a whole hour (1 h 15 of a 2 h job)."""
    fc = {"eu-south-2": forecast(t0, [20, 400, 400, 30, 400, 400, 400, 400, 400, 400])}
    p = window_plan(pol(interruptible=True), fc, t0 + 45 * pd.Timedelta(minutes=1))
    assert sum((b - a for a, b in p.segments), pd.Timedelta(0)) == 2 * H
    assert p.expected_g_per_kwh == pytest.approx((20 * 0.25 + 30 * 1 + 400 * 0.75) / 2)


def test_window_planner_energy_is_the_accounting_model(forecast, t0):
    """Review 11 #8b: its own power model (no PUE) gave 2.78 g where decide gave 6.59 g for the same run."""
    policy = pol(instance_type="m5.large")
    fc = {"eu-south-2": forecast(t0, [200.0] * 10)}
    assert window_plan(policy, fc, t0).expected_g == pytest.approx(plan_run(policy, t0, forecasts=fc, planner="decide").expected_g, rel=1e-9)


@pytest.mark.parametrize("planner", ["window", "auto"])
def test_an_interruptible_plan_from_a_real_clock_reading_with_microseconds(forecast, planner):
    """Review 16 #2: the window planner's partial last slot put a nanosecond value into a microsecond
    column (pandas 3: TypeError), so an interruptible flow on the system clock failed."""
    now = pd.Timestamp("2026-03-02T10:20:03.123457Z")
    pol = CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="2h", deadline_within="12h", interruptible=True)
    plan = plan_run(pol, now, signal={"eu-north-1": forecast(pd.Timestamp("2026-03-02T10:00Z"), [50.0] * 48)}, planner=planner)
    assert plan.segments == [(now, now + pd.Timedelta(hours=2))]


def test_the_window_planner_names_an_impossible_duration_readably(forecast, t0):
    """Review 17 #8: the message said 'the job (0 days 03:00:00)'."""
    pol = CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="2h")
    with pytest.raises(PlanningError, match=r"^the job \(3h\) cannot finish before the deadline 2026-03-02T02:00:00\+00:00"):
        window_plan(pol, {"eu-north-1": forecast(t0, [20.0] * 6)}, t0, duration=pd.Timedelta(hours=3))


def test_no_policy_at_all_plans_with_the_defaults_and_says_so(monkeypatch, caplog):
    """Review 39a M3: @care() with no policy (nor CARE_POLICY / CARE_POLICY_BLOCK) planned with the built-in
    defaults (home Spain, Sweden allowed) without a word."""
    import logging

    monkeypatch.delenv("CARE_POLICY", raising=False)
    monkeypatch.delenv("CARE_POLICY_BLOCK", raising=False)
    with caplog.at_level(logging.WARNING, logger="care_flows"):
        assert resolve_policy(None) == CarePolicy()
    (line,) = [r.getMessage() for r in caplog.records if "no policy given" in r.getMessage()]
    assert "home_region eu-south-2, regions eu-south-2,eu-north-1, deadline_within 24h" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="care_flows"):
        resolve_policy({"home_region": "eu-north-1"})
    assert not [r for r in caplog.records if "no policy given" in r.getMessage()]


def test_the_window_planner_keeps_the_hard_constraints_it_can_and_says_what_it_ignores():
    """Review 43d M3: `@care(planner="window")` sent a run 54.7 ms away under max_latency_ms=20 and broke
    max_g_per_run, silently; the budgets and ranking fields it cannot apply were not mentioned."""
    import pandas as pd

    from care_flows.errors import PlanningError
    from care_flows.orchestration.plan import window_plan
    from care_flows.policy import CarePolicy

    idx = pd.date_range("2026-01-01", periods=24, freq="h", tz="UTC")
    forecasts = {"eu-south-2": pd.Series(100.0, index=idx), "eu-north-1": pd.Series(20.0, index=idx)}
    kw = dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h")
    assert window_plan(CarePolicy(**kw), forecasts, idx[0]).region == "eu-north-1"
    near = window_plan(CarePolicy(**kw, max_latency_ms=20), forecasts, idx[0])
    assert near.region == "eu-south-2" and near.warnings == []
    assert "latency 54.7 ms > max 20 ms" in set(near.options["why"])
    capped = window_plan(CarePolicy(**kw, max_g_per_run=0.5), forecasts, idx[0])  # home now 0.73 g, eu-north-1 0.15 g
    assert capped.region == "eu-north-1"
    with pytest.raises(PlanningError, match="max_g_per_run 0.0001"):
        window_plan(CarePolicy(**kw, max_g_per_run=0.0001), forecasts, idx[0])
    said = window_plan(CarePolicy(**kw, budget_usd_per_hour=0.5, tie_break=["home", "earliest"]), forecasts, idx[0]).warnings
    assert said == ["the window planner applies carbon, min_savings_pct, max_latency_ms and max_g_per_run only: tie_break, "
                    "budget_usd_per_hour not applied (use the default planner, decide)"]


def test_the_window_planner_falls_back_home_only_when_home_keeps_the_carbon_cap():
    """Review 43e M1, L1: below the minimum saving it fell back to running now at home even when that broke
    max_g_per_run; and priorities=["carbon"], what it does, was warned about as not applied."""
    import pandas as pd

    from care_flows.orchestration.plan import window_plan
    from care_flows.policy import CarePolicy

    idx = pd.date_range("2026-03-02", periods=24, freq="h", tz="UTC")
    se = pd.Series(100.5, index=idx)
    se.iloc[6:] = 99.5
    forecasts = {"eu-south-2": pd.Series(100.0, index=idx), "eu-north-1": se}
    kw = dict(home_region="eu-south-2", regions=["eu-north-1"], expected_duration="1h", deadline_within="12h")
    free = window_plan(CarePolicy(**kw), forecasts, idx[0])
    assert free.region == "eu-south-2"  # 0.5% < the 1% minimum: home
    cap = 0.5 * (free.expected_g + window_plan(CarePolicy(**kw, min_savings_pct=0), forecasts, idx[0]).expected_g)
    capped = window_plan(CarePolicy(**kw, max_g_per_run=cap), forecasts, idx[0])
    assert capped.region == "eu-north-1" and capped.expected_g <= cap
    assert capped.warnings and "kept: running now in the home region breaks a hard constraint" in capped.warnings[0]
    assert window_plan(CarePolicy(**kw, priorities=["carbon"]), forecasts, idx[0]).warnings == []


def test_the_window_planner_weighs_a_partial_last_slot_by_the_part_the_run_uses(forecast, t0):
    """A 90 min job on 100 then 400 emits 200 g/kWh, not (100 + 400) / 2: with equal weights the window
    planner chose 04:00 (245) over 02:00 and its run emitted 22 % more than the greenest (review 46a M3)."""
    from care_flows.accounting import mean_intensity
    from care_flows.planning import decide

    s = forecast(t0, [500.0, 500, 100, 400, 240, 250, 500, 500])
    policy = pol(expected_duration="90min")
    p = window_plan(policy, {"eu-south-2": s}, t0)
    assert p.start == t0 + 2 * H and p.expected_g_per_kwh == pytest.approx(200.0)
    assert p.expected_g_per_kwh == pytest.approx(mean_intensity(s, p.start, p.end))
    assert p.start == decide(policy, {"eu-south-2": s}, t0).chosen.start
