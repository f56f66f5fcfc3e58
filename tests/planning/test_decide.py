"""decide(): region x time x type under a policy, with the now-here fallbacks."""

import json
import types

import numpy as np
import pandas as pd
import pytest

import care_flows.planning.decide as decide_mod
from care_flows.errors import DeadlineError
from care_flows.planning.decide import decide
from care_flows.policy import CarePolicy

NOW = pd.Timestamp("2023-06-01T00:00Z")
IDX = pd.date_range(NOW, periods=24, freq="h")


def _standin_windows():
    """Tiny contiguous-only stand-in for care_flows.planning.windows (used only if it is missing)."""

    def plan_contiguous(forecast, duration, earliest, deadline):
        n = int(pd.Timedelta(duration) / (forecast.index[1] - forecast.index[0]))
        last = forecast.index.searchsorted(pd.Timestamp(deadline) - pd.Timedelta(duration), side="right")
        means = forecast.rolling(n).mean().shift(-(n - 1)).iloc[: max(last, 1)]
        i = int(np.nanargmin(means.to_numpy()))
        start = forecast.index[i]
        return types.SimpleNamespace(
            start=start, end=start + pd.Timedelta(duration), segments=((start, start + pd.Timedelta(duration)),),
            expected_g_per_kwh=float(means.iloc[i]), run_now_g_per_kwh=float(means.iloc[0]), warnings=(), data_source=None,
        )

    return types.SimpleNamespace(plan_contiguous=plan_contiguous, plan_interruptible=None, plan_threshold=None)


try:
    import care_flows.planning.windows  # noqa: F401

    HAVE_WINDOWS = True
except ImportError:  # pragma: no cover - until the temporal planner lands
    HAVE_WINDOWS = False


@pytest.fixture(autouse=True)
def _windows(monkeypatch):
    if not HAVE_WINDOWS:  # pragma: no cover
        monkeypatch.setattr(decide_mod, "_windows", _standin_windows)


def _flat(**values):
    return {r: pd.Series(float(v), index=IDX) for r, v in values.items()}


def _policy(**kw):
    base = dict(home_region="eu-south-2", regions=["eu-north-1"], vcpu=1.5, memory_gib=6, deadline_within="6h")
    base.update(kw)
    return CarePolicy(**base)


def test_greener_cheaper_region_wins_and_json():
    # at 30 % CPU a t3.large runs at its baseline: no CPU-credit surcharge, the study's list prices
    # (at the default 50 % the 0.02 USD/h of credits make m7i-flex.large cheaper: review 30 #6)
    d = decide(_policy(cpu_utilisation=0.3), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert (d.chosen.region, d.chosen.instance_type, d.chosen.zone) == ("eu-north-1", "t3.large", "SE-SE3")
    assert d.baseline.region == "eu-south-2" and d.baseline.instance_type == "t3.large"
    assert d.savings_pct == pytest.approx(100 * (206 - 20) / 206)
    assert d.savings_usd == pytest.approx(0.0912 - 0.0864)
    assert d.abatement_usd_per_tco2 < 0 and not d.is_now_here
    doc = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert doc["chosen"]["start"] == "2023-06-01T00:00:00+00:00"
    assert {"region", "zone", "instance_type", "start", "usd_per_hour", "g_per_kwh", "expected_g", "expected_usd",
            "latency_ms", "waste_vcpu", "feasible", "reason"} <= set(doc["options"][0])
    assert set(d.data_source) == {"eu-south-2", "eu-north-1"}


def test_temporal_shift_at_home():
    fc = pd.Series(200.0, index=IDX)
    fc.iloc[3] = 50.0
    d = decide(_policy(regions=["eu-south-2"]), {"eu-south-2": fc}, NOW)
    assert d.chosen.region == "eu-south-2" and d.chosen.start == NOW + pd.Timedelta("3h")
    assert d.chosen.expected_g_per_kwh == 50.0 and not d.is_now_here
    assert d.chosen.kind == "planned-contiguous" and d.baseline.kind == "now" and d.to_dict()["chosen"]["kind"] == "planned-contiguous"
    assert d.savings_pct == pytest.approx(75.0)
    now_rows = d.options[d.options["kind"] == "now"]
    assert len(now_rows) == 1 and now_rows.iloc[0]["g_per_kwh"] == 200.0


def test_a_green_slot_minutes_away_is_a_deferral_not_now():
    """Review 11 #1: at 00:10 the best 1 h start is 01:00 (50 g/kWh after 400): that is a deferral of
    50 minutes. Calling it "now here" made @care run at once in the dirty slot while reporting 50 g/kWh."""
    fc = pd.Series(400.0, index=IDX)
    fc.iloc[1:] = 50.0
    at = NOW + pd.Timedelta(minutes=10)
    d = decide(_policy(regions=["eu-south-2"]), {"eu-south-2": fc}, at)
    assert d.chosen.start == NOW + pd.Timedelta("1h") and d.chosen.expected_g_per_kwh == 50.0
    assert not d.is_now_here
    # a plan that does start now is still "now here"
    flat = decide(_policy(regions=["eu-south-2"]), {"eu-south-2": pd.Series(100.0, index=IDX)}, at)
    assert flat.is_now_here and flat.chosen.start == at


def test_below_min_savings_runs_now_here():
    # 3% greener: chosen under zero tolerance, then rejected by min_savings_pct
    d = decide(_policy(min_savings_pct=5, tolerance_pct=0), _flat(**{"eu-south-2": 100, "eu-north-1": 97}), NOW)
    assert d.is_now_here and d.chosen.region == "eu-south-2" and d.chosen.start == NOW
    assert d.savings_pct == 0 and any("saves 3.0% carbon, short of min_savings_pct 5%" in w for w in d.warnings)
    d = decide(_policy(min_savings_pct=2, tolerance_pct=0), _flat(**{"eu-south-2": 100, "eu-north-1": 97}), NOW)
    assert d.chosen.region == "eu-north-1"


def test_nothing_feasible_falls_back_to_now_here():
    d = decide(_policy(budget_usd_per_run=0.01), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert d.is_now_here and d.chosen.region == "eu-south-2"
    assert not d.options["feasible"].any()
    assert all("budget 0.01" in r for r in d.options["reason"])
    assert any("no feasible option" in w for w in d.warnings)


def test_latency_sla_and_missing_carbon_and_type_not_offered():
    fc = _flat(**{"eu-south-2": 206, "eu-north-1": 20})
    d = decide(_policy(origin_region="eu-south-2", max_latency_ms=20), fc, NOW)
    north = d.options[d.options["region"] == "eu-north-1"].iloc[0]
    assert not north["feasible"] and north["reason"].startswith("latency 54.7 ms > max 20 ms")  # the measured p50 (CloudPing)
    assert d.chosen.region == "eu-south-2"
    d = decide(_policy(regions=["eu-north-1", "eu-central-1"]), {**fc}, NOW)
    central = d.options[d.options["region"] == "eu-central-1"].iloc[0]
    assert central["reason"] == "no carbon data for zone DE" and d.data_source["eu-central-1"] == "none"
    d = decide(_policy(instance_type="im4gn.large", architecture=None), fc, NOW)
    north = d.options[d.options["region"] == "eu-north-1"].iloc[0]
    assert north["reason"] == "type not offered" and d.chosen.region == "eu-south-2"


def test_resources_override_and_cost_priority():
    fc = _flat(**{"eu-south-2": 206, "eu-north-1": 20})
    d = decide(_policy(priorities=["cost", "carbon"], tolerance_pct=0), fc, NOW, vcpu=3, memory_gib=12)
    assert d.chosen.instance_type.endswith("xlarge")
    assert d.chosen.expected_usd == d.options.loc[d.options["feasible"], "expected_usd"].min()


def test_deadline_before_now_raises():
    with pytest.raises(DeadlineError):
        decide(_policy(), _flat(**{"eu-south-2": 206}), NOW, deadline=NOW - pd.Timedelta("1h"))


def test_interruptible_and_impossible_deadline():
    if not HAVE_WINDOWS:  # the stand-in is contiguous only
        return
    fc = pd.Series([300.0, 50.0, 300.0, 60.0, 300.0, 300.0] * 4, index=IDX)
    d = decide(_policy(regions=["eu-south-2"], interruptible=True, expected_duration="2h"), {"eu-south-2": fc}, NOW)
    assert len(d.chosen.segments) == 2 and d.chosen.expected_g_per_kwh == pytest.approx(55.0)
    assert d.mode == "interruptible"
    d = decide(_policy(regions=["eu-south-2"]), {"eu-south-2": fc}, NOW, duration="3h", deadline=NOW + pd.Timedelta("2h"))
    assert d.is_now_here and d.warnings


def test_usage_summary_sizes_and_sets_utilisation():
    fc = _flat(**{"eu-south-2": 206, "eu-north-1": 20})
    d = decide(_policy(), fc, NOW, usage={"peak_vcpu": 1.5, "peak_memory_gib": 6, "mean_vcpu": 0.2})
    assert d.chosen.instance_type == "t3.large"
    # t3.large at 0.2/2 = 10% CPU -> 7.0 W (power table) x 1.135 / 1000 kWh for 1 h
    assert d.chosen.kwh == pytest.approx(7.0 * 1.135 / 1000)
    assert d.chosen.expected_g == pytest.approx(7.0 * 1.135 / 1000 * 20)


def test_home_region_without_carbon_data_is_a_clear_error_not_a_silent_stay():
    # review 4 #1: us-east-1 (no embedded trace) as home kept the run there "saving unknown carbon"
    from care_flows.errors import DataError

    with pytest.raises(DataError, match=r"home region us-east-1 \(zone US-MIDA-PJM\).*electricitymaps.*ES, SE, DE, FR, GB"):
        decide(_policy(home_region="us-east-1"), _flat(**{"eu-north-1": 20}), NOW)


def test_sizing_failures_name_the_largest_type_and_no_policy_reprs():
    from care_flows.errors import PlanningError

    d = decide(_policy(regions=["eu-north-1"], vcpu=300, memory_gib=4), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    north = d.options[d.options["region"] == "eu-north-1"].iloc[0]
    assert north["reason"] == "no instance type fits 300 vCPU / 4 GiB; largest allowed: r7a.48xlarge (192 vCPU, 1536 GiB)"
    with pytest.raises(PlanningError, match="home region eu-south-2: no instance type in eu-south-2 fits 500") as err:
        decide(_policy(vcpu=500, memory_gib=4), _flat(**{"eu-south-2": 206, "eu-north-1": 20}), NOW)
    assert "families=None" not in str(err.value) and "eu-north-1" not in str(err.value)
