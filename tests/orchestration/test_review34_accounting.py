"""Review 34a #1, #3, #4: the window planner prices a pinned type on its own vCPU and memory (as
decide and care-realized do), and care-realized's CPU mean is the interval-weighted one its
realized utilisation uses (raw samples), or the 10-s buckets' (stored rows)."""

import numpy as np
import pandas as pd
import pytest

from care_flows.orchestration.artifacts import measured_vcpu
from care_flows.orchestration.plan import plan_run
from care_flows.policy import CarePolicy

T0 = pd.Timestamp("2026-03-02T00:00:00Z")


def _fc(value: float) -> pd.Series:
    s = pd.Series(value, index=pd.date_range(T0, periods=12, freq="h"))
    s.attrs["source"] = "synthetic"
    return s


@pytest.mark.parametrize("instance_type", ["c6i.xlarge", "m5.large"])  # CCF-fallback type; Teads type
def test_window_planner_prices_a_pinned_type_like_decide(instance_type):
    pol = CarePolicy(home_region="eu-north-1", regions=[], expected_duration="1h", deadline_within="8h",
                     vcpu=1, memory_gib=2, instance_type=instance_type)
    kwh = {}
    for planner in ("decide", "window"):
        p = plan_run(pol, T0, signal={"eu-north-1": _fc(20.0)}, planner=planner)
        kwh[planner] = p.expected_g / p.expected_g_per_kwh
    assert kwh["window"] == pytest.approx(kwh["decide"], rel=1e-9)  # c6i.xlarge was 4x low (the need's 1 vCPU, 2 GiB)


def test_measured_vcpu_weights_raw_samples_by_interval_and_stored_rows_by_bucket():
    t = pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:04Z"])
    raw = pd.DataFrame({"time": t, "cpu_vcpu": [0.0, 2.0, 1.0], "memory_gib": 1.0})
    assert measured_vcpu(raw, 4.0) == pytest.approx((2.0 * 1 + 1.0 * 3) / 4)  # the first sample is the baseline
    rows = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=3, freq="10s", tz="UTC"), "cpu_vcpu": 2.0,
                         "memory_gib": 1.0, "cpu_vcpu_mean": [1.2, 0.8, 0.2]})
    assert measured_vcpu(rows, 30.0) == pytest.approx(0.7333333)  # was 0.1: first bucket dropped, weights shifted


def test_care_realized_cpu_mean_is_the_weighted_mean_behind_realized_utilisation(monkeypatch):
    import prefect.artifacts

    from care_flows.orchestration import artifacts

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda markdown, **kw: None)
    pol = CarePolicy(home_region="eu-north-1", regions=[], expected_duration="1h", deadline_within="8h", vcpu=2, memory_gib=4,
                     instance_type="m5.large")
    plan = plan_run(pol, T0, signal={"eu-north-1": _fc(20.0)}, planner="decide")
    t = pd.date_range(T0, T0 + pd.Timedelta(minutes=10), freq="1s")
    cpu = np.r_[0.0, np.where(np.arange(len(t) - 1) < 300, 1.6, 0.4)]
    usage = pd.DataFrame({"time": t, "cpu_vcpu": cpu, "memory_gib": 1.0, "n_processes": 1})
    f = artifacts.publish_realized(plan, started=T0, finished=T0 + pd.Timedelta(minutes=10), region="eu-north-1", usage=usage)
    assert f["realized_rates_from"] == "measured CPU"
    assert f["cpu_vcpu_mean"] == pytest.approx(1.0, abs=1e-3)  # (300 x 1.6 + 300 x 0.4) / 600, not the plain mean with the 0
    assert f["realized_utilisation"] == pytest.approx(f["cpu_vcpu_mean"] / 2, abs=1e-3)
