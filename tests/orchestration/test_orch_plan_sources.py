"""plan_run / publish_realized with failing or fallback sources (reviews 10 and 11), no Prefect server."""

from __future__ import annotations

import pandas as pd
import pytest

from care_flows.errors import DeadlineError, ProviderUnavailableError
from care_flows.orchestration import artifacts
from care_flows.orchestration.plan import fetch_forecasts, plan_run
from care_flows.policy import CarePolicy

T0 = pd.Timestamp("2026-03-02T00:00:00Z")
H = pd.Timedelta(hours=1)


def _pol(**kw) -> CarePolicy:
    return CarePolicy(**{"home_region": "eu-south-2", "regions": ["eu-north-1", "us-east-1"], "expected_duration": "1h",
                         "deadline_within": "8h", **kw})


def _fc(value: float, **attrs) -> pd.Series:
    s = pd.Series(value, index=pd.date_range(T0, periods=12, freq="h"), name="g_per_kwh")
    s.attrs.update({"source": "embedded", "signal": "lifecycle", **attrs})
    return s


def test_a_provider_failing_for_one_region_leaves_only_that_region_out():
    """Review 11 #4a: a 429/5xx for a zone the fallback cannot serve failed the whole plan (run now at home)."""
    def signal(region, start, span):
        if region == "us-east-1":
            raise ProviderUnavailableError("no carbon source answered the forecast for zone US-MIDA-PJM", source="electricitymaps")
        return _fc(300.0 if region == "eu-south-2" else 20.0)

    plan = plan_run(_pol(), T0, signal=signal)
    assert plan.region == "eu-north-1"
    assert any(w.startswith("no carbon forecast for us-east-1 (no carbon source answered") for w in plan.warnings), plan.warnings


def test_a_fallback_source_is_named_in_the_plans_warnings():
    served = _fc(20.0, fallback_errors=["electricitymaps: ProviderUnavailableError: HTTP 500"])
    notes: list[str] = []
    fetch_forecasts(_pol(regions=["eu-north-1"]), T0, pd.Timedelta("8h").to_pytimedelta(),
                    lambda r, a, b: served if r == "eu-north-1" else _fc(300.0), notes=notes)
    assert notes == ["eu-north-1: planned on embedded (lifecycle) because electricitymaps: ProviderUnavailableError: HTTP 500"]


def test_a_deadline_before_now_is_a_deadline_error_before_any_forecast_is_fetched():
    def signal(*_):
        raise AssertionError("no forecast should be fetched")

    with pytest.raises(DeadlineError, match="is not after now"):
        plan_run(_pol(), T0, signal=signal, deadline=T0 - H)


@pytest.fixture
def written(monkeypatch):
    out: list[str] = []
    import prefect.artifacts

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda markdown, **kw: out.append(markdown))
    return out


def test_realized_figures_are_time_weighted_and_priced_on_the_instance_that_ran(written):
    """Review 11 #7: 00:00-02:00 averaged the 02:00 slot too (233 instead of 100); review 10 #6: no realized g or USD."""
    plan = plan_run(_pol(regions=["eu-north-1"]), T0, signal=lambda r, a, b: _fc(300.0) if r == "eu-south-2" else _fc(20.0))
    history = pd.Series([100.0, 100.0, 500.0, 500.0], index=pd.date_range(T0.tz_localize(None), periods=4, freq="h"))  # tz-naive
    figures = artifacts.publish_realized(plan, started=T0, finished=T0 + 2 * H, region="eu-south-2", intensity=history)
    assert figures["realized_g_per_kwh"] == 100.0 and figures["realized_from"] == "given history"
    home = plan.options[(plan.options["region"] == "eu-south-2") & (plan.options["kind"] == "now")].iloc[0]
    assert figures["realized_kwh"] == pytest.approx(2 * home["kwh"], rel=1e-6)  # 2 h on the home-sized instance (1 h planned)
    assert figures["realized_g"] == pytest.approx(2 * home["kwh"] * 100.0, rel=1e-5)
    assert figures["realized_usd"] == pytest.approx(2 * home["expected_usd"], rel=1e-5)
    half = artifacts.publish_realized(plan, started=T0 + 1.5 * H, finished=T0 + 2 * H + 10 * pd.Timedelta(minutes=1), region="eu-south-2",
                                      intensity=history)
    assert half["realized_g_per_kwh"] == pytest.approx((100 * 30 + 500 * 10) / 40)
    assert "realized_g" in written[-1]


def test_the_decision_summary_names_the_kind_and_shows_whole_seconds():
    from care_flows.orchestration.artifacts import decision_markdown

    now = T0 + pd.Timedelta(seconds=12.345678)
    plan = plan_run(_pol(regions=["eu-north-1"]), now, signal=lambda r, a, b: _fc(300.0) if r == "eu-south-2" else _fc(20.0))
    md = decision_markdown(plan, action="test")
    assert "- **Source**: embedded (lifecycle intensity)" in md
    assert f"decided {T0.isoformat().replace('00:00+00:00', '00:12+00:00')}" in md and ".345678" not in md


def test_the_signals_layers_fallback_note_is_used_as_is():
    note = "electricitymaps failed for eu-north-1 (SE) (HTTP 500); using embedded (lifecycle, 2023 replay)"
    served = _fc(20.0, fallback_errors=["electricitymaps: ProviderUnavailableError: HTTP 500"], fallback_note=note)
    plan = plan_run(_pol(regions=["eu-north-1"]), T0, signal=lambda r, a, b: served if r == "eu-north-1" else _fc(300.0))
    assert f"eu-north-1: {note}" in plan.warnings


def test_a_provider_failure_for_the_home_region_is_the_error_itself():
    """Review 12 #1: it was turned into "no carbon forecast for home region ...; use a source that covers it",
    wrong advice when the source covers the zone and only answered 503."""
    def signal(region, start, span):
        if region == "eu-south-2":
            raise ProviderUnavailableError("electricitymaps failed for ES (HTTP 503)", source="electricitymaps")
        return _fc(20.0)

    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        plan_run(_pol(regions=["eu-north-1"]), T0, signal=signal)


def test_a_local_runs_realized_figures_use_the_home_forecast(written):
    """Review 12 #3: the plan chose eu-north-1, the local body ran in eu-south-2: its figures come from the
    home region's forecast (kept in the plan), not 'n/a'."""
    plan = plan_run(_pol(regions=["eu-north-1"]), T0, signal=lambda r, a, b: _fc(300.0) if r == "eu-south-2" else _fc(20.0))
    assert plan.region == "eu-north-1"
    figures = artifacts.publish_realized(plan, started=T0, finished=T0 + H, region="eu-south-2")
    assert figures["realized_g_per_kwh"] == 300.0 and figures["realized_from"] == "embedded forecast"
    assert figures["realized_g"] == pytest.approx(plan.baseline_g, rel=1e-6)  # now, at home, home-sized: the baseline


def test_the_controllers_source_serves_each_policy_in_its_own_signal_kind(monkeypatch):
    """Review 35b #2: `care controller --source X` built get_signal(X) once, without the policy's kind: a
    policy planned by @care on direct intensity (2.3 g/kWh) was re-planned on life-cycle (25.9)."""
    from care_flows.orchestration import controller
    from care_flows.orchestration.plan import SourceForEveryPolicy

    policy = CarePolicy(home_region="eu-central-1", regions=["eu-west-3", "eu-north-1"], deadline_within="12h",
                        expected_duration="2h", vcpu=2, memory_gib=4, carbon_source="embedded", signal="direct")
    now = pd.Timestamp("2023-03-01T06:00Z")
    as_care = plan_run(policy, now)  # what @care plans on: get_signal(policy.carbon_source, kind=policy.signal)
    passed = {}
    monkeypatch.setattr(controller, "run_controller", lambda **kw: passed.update(kw))
    from care_flows.cli import main

    assert main(["controller", "--once", "--source", "embedded"]) == 0
    as_controller = plan_run(policy, now, signal=passed["signal"])
    assert isinstance(passed["signal"], SourceForEveryPolicy)
    assert as_controller.forecast.attrs["signal"] == as_care.forecast.attrs["signal"] == "direct"
    assert (as_controller.region, as_controller.start) == (as_care.region, as_care.start)
    assert as_controller.expected_g_per_kwh == pytest.approx(as_care.expected_g_per_kwh)
    # a policy naming no kind gets the source's own, and one signal per kind is kept across plans
    lifecycle = plan_run(policy.model_copy(update={"signal": None}), now, signal=passed["signal"])
    assert lifecycle.forecast.attrs["signal"] == "lifecycle"
    assert passed["signal"].for_policy(policy) is passed["signal"].for_policy(policy)
