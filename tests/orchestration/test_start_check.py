"""The check at start: a run a @care trigger dispatched looks at a fresh forecast when it starts
(care_flows.orchestration.start_check), against a real Prefect server (the session harness)."""

from __future__ import annotations

import dataclasses
import logging
import pandas as pd
import pytest
from prefect import flow
from prefect.states import Scheduled

from care_flows.errors import ProviderError
from care_flows.orchestration import care
from care_flows.orchestration.decorator import dispatched_run
from care_flows.orchestration.plan import Plan
from care_flows.orchestration.start_check import MAX_START_CHECKS, START_CHECKS, check_at_start, start_check_due
from care_flows.policy import CarePolicy
from tests.prefect_queries import runs_of

H = pd.Timedelta(hours=1)
BODY: list[str] = []


def _policy(**kw):
    return {**dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="8h"), **kw}


def _run_existing(flow_obj, flow_run_id):
    """Run an existing flow run in this process, as a worker does."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(flow_run_id)
    return run_flow_sync(flow_obj, flow_run=fr, parameters=fr.parameters, return_type="state")


def _others(dep_id, *known):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [r for r in runs_of(client, dep_id) if r.deployment_id == dep_id and r.id not in known]


def _artifacts(flow_run_id, kind):
    """The run's artifacts of one kind (``care-decision``, ``care-realized``), whether keyed per flow or not."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [a for a in arts if a.key and (a.key == kind or (a.key.startswith(kind + "-") and "table" not in a.key[len(kind):]))]


class _Lines(logging.Handler):
    """What the flow run logger (``prefect.flow_runs``, which get_run_logger adapts) says."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _run_logged(flow_obj, flow_run_id):
    """:func:`_run_existing`, and what the flow run logger said meanwhile (at INFO: the session's
    logging settings may say WARNING)."""
    lines, run_logger = _Lines(), logging.getLogger("prefect.flow_runs")
    level = run_logger.level
    run_logger.addHandler(lines)
    run_logger.setLevel(logging.INFO)
    try:
        return _run_existing(flow_obj, flow_run_id), lines.lines
    finally:
        run_logger.removeHandler(lines)
        run_logger.setLevel(level)


def _body_flow(name, signal, clock, **policy):
    """A @care flow ``name`` (the test policy with ``policy`` fields, the window planner, ``signal`` and
    ``clock`` injected) whose body records its ``day`` in BODY and returns it."""

    @care(policy=_policy(**policy), signal=signal, clock=lambda: clock[0], planner="window")
    @flow(name=name)
    def body(day: str = "x") -> str:
        BODY.append(day)
        return day

    return body


def _trigger(dep_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(dep_id, parameters={"day": "d1"})


def _dispatched(flow_obj, name):
    """Deploy ``flow_obj`` as ``name``, run a trigger of it here (as a worker would) and return
    ``(deployment id, trigger run, the trigger's final state, the one run it dispatched)``."""
    dep_id = flow_obj.to_deployment(name=name).apply()
    trigger = _trigger(dep_id)
    state = _run_existing(flow_obj, trigger.id)
    (child,) = _others(dep_id, trigger.id)
    return dep_id, trigger, state, child


@pytest.mark.usefixtures("prefect_harness")
def test_a_dispatched_run_hands_its_work_on_when_a_fresh_forecast_is_greener_later(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow
    def checked_etl(day: str = "x") -> str:
        BODY.append(day)
        return f"done {day}"

    dep_id, trigger, state, child = _dispatched(checked_etl, "start-check")
    assert state.name == "Deferred"
    assert pd.Timestamp(child.expected_start_time) == now + 2 * H
    assert child.job_variables["care"][START_CHECKS] == 0 and child.name == f"{trigger.name}-care"

    # two hours later, the fresh forecast says the hour after next is much greener than now
    clock[0] = now + 2 * H
    signal["eu-south-2"] = forecast(now + 2 * H, [120, 110, 30, 300, 300, 300, 300])
    state = _run_existing(checked_etl, child.id)
    assert state.is_completed() and state.name == "Deferred" and BODY == []  # the body did not run here
    (later,) = _others(dep_id, trigger.id, child.id)
    assert pd.Timestamp(later.expected_start_time) == now + 4 * H
    marker = later.job_variables["care"]
    assert marker[START_CHECKS] == 1 and marker["root"] == str(trigger.id) and marker["segment"] == 0
    moved = Plan.from_dict(marker["plan"])
    first = Plan.from_dict(child.job_variables["care"]["plan"])
    assert moved.expected_g_per_kwh == 30.0 and moved.deadline == first.deadline and moved.baseline_g == first.baseline_g
    assert later.parameters == {"day": "d1"} and later.job_variables["region"] == "eu-south-2"
    assert dispatched_run(child).id == later.id  # care.dispatched_run follows the chain
    decision = _artifacts(child.id, "care-decision")
    assert decision and "checked at start" in decision[0].data and str(later.id) in decision[0].data

    # at the new start the forecast holds: it runs, and its figures are the moved plan's against the same baseline
    clock[0] = now + 4 * H
    state = _run_existing(checked_etl, later.id)
    assert state.is_completed() and state.result() == "done d1" and BODY == ["d1"]
    assert _artifacts(later.id, "care-realized")
    assert _others(dep_id, trigger.id, child.id, later.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_dispatched_run_starts_when_now_is_still_the_greenest_or_the_forecast_fails(forecast):
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    fc = forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])
    source = {"fail": False}

    def signal(region, start, span):
        if source["fail"]:
            raise ProviderError("electricitymaps: HTTP 503 for zone ES; try again later")
        return fc

    BODY.clear()

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow
    def steady_etl(day: str = "x") -> str:
        BODY.append(day)
        return day

    dep_id = steady_etl.to_deployment(name="start-check-steady").apply()
    for fail in (False, True):
        BODY.clear()
        source["fail"] = False
        clock[0] = now
        trigger = _trigger(dep_id)
        _run_existing(steady_etl, trigger.id)
        (child,) = [r for r in _others(dep_id, trigger.id) if r.state.is_scheduled()]
        clock[0] = now + 2 * H
        source["fail"] = fail
        state, lines = _run_logged(steady_etl, child.id)
        assert state.is_completed() and state.result() == "d1" and BODY == ["d1"]
        text = "\n".join(lines)
        if fail:
            assert "check at start skipped" in text and "HTTP 503" in text, text
        else:
            assert "checked at start: 100 g/kWh now" in text and "starting now" in text, text
        assert [r for r in _others(dep_id, trigger.id, child.id) if r.state.is_scheduled()] == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_retried_dispatched_run_does_not_check_again(forecast):
    """The first attempt checked (now was greenest) and the body failed; the retry runs the body,
    even if the forecast now favours later: the work has started once."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow(retries=1, retry_delay_seconds=0)
    def flaky_etl(day: str = "x") -> str:
        BODY.append(day)
        if len(BODY) == 1:
            signal["eu-south-2"] = forecast(now + 2 * H, [300, 300, 10, 300, 300, 300, 300])
            raise RuntimeError("first attempt fails")
        return day

    dep_id, trigger, _, child = _dispatched(flaky_etl, "start-check-retry")
    clock[0] = now + 2 * H
    state = _run_existing(flaky_etl, child.id)
    assert state.is_completed() and state.result() == "d1" and BODY == ["d1", "d1"]
    assert _others(dep_id, trigger.id, child.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_with_its_own_planner_is_not_checked_at_start(forecast):
    """A planner callable has its own forecasts (care demo's replay): the policy's source must not overrule it."""
    from care_flows.orchestration.plan import plan_run

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = signal_map = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    def own_planner(policy, at, signal=None):
        return plan_run(policy, at, signal=signal_map, planner="window")

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner=own_planner)
    @flow
    def own_etl(day: str = "x") -> str:
        BODY.append(day)
        return day

    dep_id, trigger, _, child = _dispatched(own_etl, "start-check-own")
    clock[0] = now + 2 * H
    signal["eu-south-2"] = forecast(now + 2 * H, [300, 300, 10, 300, 300, 300, 300])
    assert _run_existing(own_etl, child.id).result() == "d1" and BODY == ["d1"]
    assert _others(dep_id, trigger.id, child.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_a_worker_launched_elsewhere_than_planned_is_not_checked(forecast, monkeypatch):
    """After a capacity fallback (CARE_REGION differs from the plan's region) the plan's forecast is not the
    region's it runs in: it runs as it is, and is accounted where it runs."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300]),
              "eu-north-1": forecast(now, [25.0] * 10)}
    BODY.clear()

    moved_etl = _body_flow("moved-etl", signal, clock)

    dep_id, trigger, _, child = _dispatched(moved_etl, "start-check-fallback")
    clock[0] = now + 2 * H
    signal["eu-north-1"] = forecast(now + 2 * H, [300, 300, 10, 300, 300, 300, 300])
    signal["eu-south-2"] = forecast(now + 2 * H, [300, 300, 10, 300, 300, 300, 300])
    monkeypatch.setenv("CARE_REGION", "eu-north-1")
    assert _run_existing(moved_etl, child.id).result() == "d1" and BODY == ["d1"]
    assert _others(dep_id, trigger.id, child.id) == []


def _plan(t, start_h=2, deadline_h=8):
    return Plan("eu-north-1", t + start_h * H, t + (start_h + 1) * H, t, t + deadline_h * H, "eu-south-2", False,
                expected_g=3.0, expected_g_per_kwh=30.0, expected_usd=0.09, baseline_g=20.0, baseline_g_per_kwh=200.0)


def test_the_number_of_checks_is_bounded_and_only_a_triggers_contiguous_plan_is_checked():
    t = pd.Timestamp("2026-01-01T00:00Z")
    p, pol, at = _plan(t), CarePolicy(), t + 2 * H
    assert start_check_due(p, {START_CHECKS: MAX_START_CHECKS - 1}, pol, at)
    assert not start_check_due(p, {START_CHECKS: MAX_START_CHECKS}, pol, at)
    assert not start_check_due(p, {START_CHECKS: True}, pol, at)  # not a count
    assert not start_check_due(p, {START_CHECKS: 0, "segment": 1}, pol, at)  # a continuation follows its segments
    assert not start_check_due(p, {START_CHECKS: 0, "work_done_s": 60.0}, pol, at)
    two = Plan("eu-north-1", t + 2 * H, t + 5 * H, t, t + 8 * H, "eu-south-2", False, segments=[(t + 2 * H, t + 3 * H), (t + 4 * H, t + 5 * H)])
    assert not start_check_due(two, {START_CHECKS: 0}, pol, at)
    assert not start_check_due(p, {START_CHECKS: 0}, pol, t + 7 * H)  # at its latest start: nothing left to choose


def test_the_moved_plan_keeps_the_deadline_region_energy_and_cost_and_never_ends_after_the_deadline():
    t = pd.Timestamp("2026-01-01T00:00Z")
    p = _plan(t, deadline_h=5)
    fc = pd.Series([90.0, 80, 70, 10, 10, 10, 10], index=pd.date_range(t + 2 * H, periods=7, freq="h"))
    later, run_now = check_at_start(p, fc, t + 2 * H)
    assert run_now == 90.0
    assert later.start == t + 4 * H and later.end == p.deadline  # the greenest start that still finishes by the deadline
    assert (later.region, later.instance_type, later.work, later.expected_usd, later.baseline_g) == (p.region, p.instance_type, p.work, p.expected_usd, p.baseline_g)
    assert later.expected_g_per_kwh == 70.0 and later.expected_g == pytest.approx(p.expected_g * 70 / 30)  # same energy, new intensity
    # a forecast that starts at the next slot boundary covers the rest of this slot with its first value
    later, run_now = check_at_start(p, fc.iloc[1:], t + 2 * H + pd.Timedelta("10min"))
    assert later.start == t + 4 * H and run_now == pytest.approx(80.0)
    # a forecast not issued around now (stale or from the future) leaves the plan as it is
    assert check_at_start(p, fc, t) == (None, None)


def test_the_moved_plan_keeps_the_planned_energy_even_when_the_first_plan_was_on_a_0_g_per_kwh_forecast():
    # review 37d L3: the energy was recovered as expected_g / expected_g_per_kwh, lost at 0 g/kWh
    t = pd.Timestamp("2026-01-01T00:00Z")
    fc = pd.Series([90.0, 80, 70, 10, 10, 10, 10], index=pd.date_range(t + 2 * H, periods=7, freq="h"))
    zero = dataclasses.replace(_plan(t), expected_g=0.0, expected_g_per_kwh=0.0, expected_kwh=0.1)
    later, _ = check_at_start(zero, fc, t + 2 * H)
    assert later.expected_g_per_kwh == 10.0 and later.expected_g == pytest.approx(1.0) and later.expected_kwh == 0.1
    assert Plan.from_dict(later.to_dict()).energy_kwh == 0.1  # the marker keeps it
    older = {k: v for k, v in _plan(t).to_dict().items() if k != "expected_kwh"}  # a plan stored before the field existed
    assert Plan.from_dict(older).energy_kwh == pytest.approx(0.1)
    assert check_at_start(Plan.from_dict(older), fc, t + 2 * H)[0].expected_g == pytest.approx(1.0)


def test_both_planners_record_the_planned_energy():
    from care_flows.orchestration.plan import plan_run

    t = pd.Timestamp("2026-01-01T00:00Z")
    fc = pd.Series([90.0, 80, 70, 10, 10, 10, 10, 10], index=pd.date_range(t, periods=8, freq="h"))
    for planner in ("window", "decide"):
        pol = CarePolicy(home_region="eu-north-1", regions=["eu-north-1"], expected_duration="1h", deadline_within="6h", instance_type="t3.large")
        p = plan_run(pol, t, forecasts={"eu-north-1": fc}, planner=planner)
        assert p.expected_kwh and p.expected_kwh > 0 and p.expected_g == pytest.approx(p.expected_kwh * p.expected_g_per_kwh), planner
        assert p.baseline_kwh and p.baseline_g == pytest.approx(p.baseline_kwh * p.baseline_g_per_kwh), planner
        assert Plan.from_dict(p.to_dict()).baseline_kwh == p.baseline_kwh


def test_the_baseline_keeps_its_energy_on_a_0_g_per_kwh_home_forecast():
    """Review 38d L3: the baseline's kW was recovered as baseline_g / baseline_g_per_kwh, lost at 0 g/kWh."""
    from care_flows.orchestration.artifacts import _baseline_rates

    t = pd.Timestamp("2026-01-01T00:00Z")
    p = dataclasses.replace(_plan(t), baseline_g=0.0, baseline_g_per_kwh=0.0, baseline_kwh=0.5, baseline_usd=0.1)
    assert _baseline_rates(p, None) == (pytest.approx(0.5), pytest.approx(0.1))  # 1 h of work
    home = p.as_run_now_at_home()
    assert home.energy_kwh == 0.5 and home.baseline_energy_kwh == 0.5
    assert Plan.from_dict({k: v for k, v in _plan(t).to_dict().items() if k != "baseline_kwh"}).baseline_energy_kwh == pytest.approx(0.1)


# ------------------------------------------------------------------------------ review 37a


def _deferred_child(flow_obj, name, now, clock):
    dep_id, trigger, state, child = _dispatched(flow_obj, name)
    assert state.name == "Deferred"
    return dep_id, trigger, child


@pytest.mark.usefixtures("prefect_harness")
def test_a_handed_on_runs_realized_figures_are_on_the_forecast_it_moved_on_against_the_first_baseline(forecast):
    """Review 37a H1: with a source that has no observed data, the realized figures re-issue the plan's
    forecast; a handed-on run's must be the one issued at the check (30 g/kWh), its baseline the trigger's."""
    from care_flows.cli.report import parse_realized, summarize

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    old = forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])
    new = forecast(now, [300, 300, 120, 110, 30, 300, 300, 300, 300, 300])  # what a forecast issued at now + 2 h says

    def signal(region, start, span):  # a forecast-only source: the answer depends on when it is issued
        return old if pd.Timestamp(start) < now + 2 * H else new

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow
    def accounted_etl(day: str = "x") -> str:
        clock[0] = clock[0] + H  # the body takes its hour
        return day

    dep_id, trigger, child = _deferred_child(accounted_etl, "start-check-accounted", now, clock)
    clock[0] = now + 2 * H
    assert _run_existing(accounted_etl, child.id).name == "Deferred"
    (later,) = _others(dep_id, trigger.id, child.id)
    moved = Plan.from_dict(later.job_variables["care"]["plan"])
    assert moved.decided_at == now + 2 * H and moved.baseline_start == now and moved.start == now + 4 * H
    clock[0] = now + 4 * H
    assert _run_existing(accounted_etl, later.id).is_completed()
    (art,) = _artifacts(later.id, "care-realized")
    fig = parse_realized(art.data)
    assert fig["expected_g_per_kwh"] == 30.0 and fig["realized_g_per_kwh"] == 30.0  # not the trigger's 300
    assert fig["baseline_g_per_kwh"] == 300.0  # running now at home at the trigger's time
    total = summarize([{**fig, "flow": "accounted", "job": fig["root"]}])["total"]
    assert total["saved_pct"]["value"] == pytest.approx(90.0, abs=0.1)


@pytest.mark.usefixtures("prefect_harness")
def test_a_forecast_from_a_fallback_source_does_not_move_the_work(forecast):
    """Review 37a H2: the live source fails at the check and the chain serves the embedded replay: the
    plan was made on the live data, so the run starts as planned instead of moving on another year's numbers."""
    from care_flows.errors import ProviderUnavailableError
    from care_flows.signals.base import CarbonSignal, SignalMeta, make_series
    from care_flows.signals.fallback import FallbackSignal
    from care_flows.signals.trace import TraceSignal

    class Live(CarbonSignal):
        name, kind = "electricitymaps", "lifecycle"

        def __init__(self, series):
            self.series, self.fail = series, False

        def history(self, zone, start, end):
            raise ProviderUnavailableError("HTTP 503", source="electricitymaps", status=503)

        def forecast(self, zone, start, horizon):
            if self.fail:
                raise ProviderUnavailableError("electricitymaps: HTTP 503 for zone ES", source="electricitymaps", status=503)
            return make_series(self.series.to_numpy(), self.series.index, SignalMeta(source="electricitymaps", signal="lifecycle",
                                                                                     zone=zone, issued_at=pd.Timestamp(start), forecast_model="api"))

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    live = Live(forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300], source="electricitymaps"))
    chain = FallbackSignal([live, TraceSignal.embedded("lifecycle", replay=True)], name="fallback:electricitymaps")
    BODY.clear()

    @care(policy=_policy(), signal=chain, clock=lambda: clock[0], planner="window")
    @flow
    def fallback_etl(day: str = "x") -> str:
        BODY.append(day)
        return day

    dep_id, trigger, child = _deferred_child(fallback_etl, "start-check-fallback-source", now, clock)
    clock[0] = now + 2 * H
    live.fail = True
    state, lines = _run_logged(fallback_etl, child.id)
    assert state.result() == "d1" and BODY == ["d1"] and _others(dep_id, trigger.id, child.id) == []
    assert any("check at start skipped" in line and "embedded" in line for line in lines), lines


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_started_early_by_hand_is_not_sent_back_and_a_small_gain_does_not_move_it(forecast):
    """Review 37a M1 (the operator wins) and M2 (a hand-on is a new run: not for less than min_savings_pct)."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 300, 300, 100, 300, 300, 300, 300, 300])}
    BODY.clear()

    early_etl = _body_flow("early-etl", signal, clock)

    dep_id, trigger, child = _deferred_child(early_etl, "start-check-early", now, clock)
    assert pd.Timestamp(child.expected_start_time) == now + 4 * H
    clock[0] = now + 2 * H + pd.Timedelta("30min")  # "start now" in the UI, 1.5 h before the green hour
    assert _run_existing(early_etl, child.id).result() == "d1" and BODY == ["d1"]
    assert _others(dep_id, trigger.id, child.id) == []

    BODY.clear()
    clock[0] = now
    dep_id, trigger, child = _deferred_child(early_etl, "start-check-small-gain", now, clock)
    clock[0] = now + 4 * H
    signal["eu-south-2"] = forecast(now + 4 * H, [100, 99.5, 300, 300, 300, 300])  # 0.5 % greener an hour later: under 1 %
    assert _run_existing(early_etl, child.id).result() == "d1" and BODY == ["d1"]
    assert _others(dep_id, trigger.id, child.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_retry_after_the_work_was_handed_on_does_not_run_it_too(forecast, monkeypatch):
    """Review 37a M3: something failed after the hand-on was created; the retry finds it (its
    idempotency key) and ends Deferred instead of running the body a second time."""
    from care_flows.orchestration import decorator as decorator_module

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    @care(policy=_policy(), signal=signal, clock=lambda: clock[0], planner="window")
    @flow(retries=1, retry_delay_seconds=0)
    def once_etl(day: str = "x") -> str:
        BODY.append(day)
        return day

    dep_id, trigger, child = _deferred_child(once_etl, "start-check-retry-after-hand-on", now, clock)
    clock[0] = now + 2 * H
    signal["eu-south-2"] = forecast(now + 2 * H, [120, 110, 30, 300, 300, 300, 300])
    calls, real = [], decorator_module.publish_decision

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the API went away after the hand-on was created")
        return real(*args, **kwargs)

    monkeypatch.setattr(decorator_module, "publish_decision", fails_once)
    state = _run_existing(once_etl, child.id)
    (later,) = _others(dep_id, trigger.id, child.id)
    assert state.name == "Deferred" and str(later.id) in state.message and BODY == []
    assert later.state.is_scheduled()


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_rescheduled_later_by_hand_is_not_moved_again_at_its_start(forecast):
    """Review 37b M4: the operator moved the run from 02:00 to 03:00; at 03:00 a later hour looks greener,
    but the operator's time stands (no controller noticed it: the run's own Scheduled states tell)."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync

    now = pd.Timestamp.now(tz="UTC").floor("h") - 8 * H  # in the past, so that the run starts at once at its times
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    by_hand_etl = _body_flow("by-hand-etl", signal, clock)

    dep_id, trigger, child = _deferred_child(by_hand_etl, "start-check-by-hand", now, clock)
    assert pd.Timestamp(child.expected_start_time) == now + 2 * H
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(child.id, Scheduled(scheduled_time=(now + 3 * H).to_pydatetime()), force=True)  # the operator
        run = client.read_flow_run(child.id)
    clock[0] = now + 3 * H
    signal["eu-south-2"] = forecast(now + 3 * H, [200, 200, 20, 300, 300, 300])
    state = run_flow_sync(by_hand_etl, flow_run=run, parameters=run.parameters, return_type="state")
    assert state.result() == "d1" and BODY == ["d1"] and _others(dep_id, trigger.id, child.id) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_kept_waiting_by_the_server_is_still_checked_at_start(forecast):
    """Review 37c M1: a deployment at its concurrency limit makes the server write Scheduled states named
    AwaitingConcurrencySlot minutes after the planned start; that is no reschedule by hand: the run is checked."""
    from prefect import get_client
    from prefect.flow_engine import run_flow_sync

    now = pd.Timestamp.now(tz="UTC").floor("h") - 8 * H  # in the past, so that the run starts at once at its times
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    slot_etl = _body_flow("slot-etl", signal, clock)

    dep_id, trigger, child = _deferred_child(slot_etl, "start-check-slot", now, clock)
    waited = now + 2 * H + pd.Timedelta(minutes=3)
    with get_client(sync_client=True) as client:  # what core_policy writes when no slot is free
        client.set_flow_run_state(child.id, Scheduled(name="AwaitingConcurrencySlot", scheduled_time=waited.to_pydatetime()), force=True)
        run = client.read_flow_run(child.id)
    clock[0] = waited + pd.Timedelta(minutes=1)
    signal["eu-south-2"] = forecast(now + 2 * H, [200, 200, 50, 200, 200, 200, 200])
    state = run_flow_sync(slot_etl, flow_run=run, parameters=run.parameters, return_type="state")
    assert state.name == "Deferred" and BODY == [] and len(_others(dep_id, trigger.id, child.id)) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_a_hand_on_marks_a_region_targets_pinned_ttl_also_for_a_run_an_older_care_dispatched(forecast):
    """Review 38d L2: the care-ec2 worker keeps a region target's ttl_minutes only when the marker says ttl_pinned;
    a run dispatched before the flag existed got it back at its hand-on from the policy, not from its old marker."""
    from prefect import get_client

    now = pd.Timestamp.now(tz="UTC").floor("h")
    clock = [now]
    signal = {"eu-south-2": forecast(now, [300, 300, 100, 300, 300, 300, 300, 300, 300, 300])}
    BODY.clear()

    pinned_etl = _body_flow("pinned-etl", signal, clock, targets={"eu-south-2": {"job_variables": {"ttl_minutes": 15}}})
    dep_id, trigger, state, child = _dispatched(pinned_etl, "start-check-pinned")
    assert state.name == "Deferred"
    assert child.job_variables["ttl_minutes"] == 15 and child.job_variables["care"]["ttl_pinned"] is True
    old = {k: v for k, v in child.job_variables["care"].items() if k != "ttl_pinned"}  # as an older CaRE wrote it
    with get_client(sync_client=True) as client:
        client.update_flow_run(child.id, job_variables={**child.job_variables, "care": old})
    clock[0] = now + 2 * H
    signal["eu-south-2"] = forecast(now + 2 * H, [120, 110, 30, 300, 300, 300, 300])
    assert _run_existing(pinned_etl, child.id).name == "Deferred" and BODY == []
    (later,) = _others(dep_id, trigger.id, child.id)
    assert later.job_variables["ttl_minutes"] == 15 and later.job_variables["care"]["ttl_pinned"] is True
