"""The realized intensity comes from data that cover all of the run, and says what they are (review 46a
M1, M2): a history published for only part of the run was averaged over that part and called observed
(a 2 h run with its first hour published read 60 g/kWh and 88 % saved); the GB API's history fills the
half hours without a published ``actual`` with its forecast, and was called observed too."""

from __future__ import annotations

import types

import pandas as pd
import pytest
from prefect import flow, get_client

from care_flows.orchestration import care
from care_flows.orchestration.artifacts import artifact_key, parse_realized
from care_flows.orchestration.decorator import CareConfig, _realized_intensity
from care_flows.signals.base import CarbonSignal

H = pd.Timedelta(hours=1)


def _series(start, values):
    s = pd.Series([float(v) for v in values], index=pd.date_range(start, periods=len(values), freq="h"), name="g_per_kwh")
    s.attrs.update(source="fake", signal="lifecycle")
    return s


class _Published(CarbonSignal):
    """A forecast, and a history published up to some hour (what really happened)."""

    name = "fake"

    def __init__(self, fc, hist):
        self.fc, self.hist = fc, hist

    def forecast(self, zone, start, horizon):
        s = self.fc
        return s[(s.index >= pd.Timestamp(start).floor("h")) & (s.index < pd.Timestamp(start) + pd.Timedelta(horizon))]

    def history(self, zone, start, end):
        s = self.hist
        return s[(s.index >= pd.Timestamp(start).floor("h")) & (s.index < pd.Timestamp(end))]


def _realized_of(flow_run_id, name):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [art] = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                     key=ArtifactFilterKey(any_=[artifact_key("care-realized", name)])))
    return parse_realized(str(art.data))


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(("published", "realized", "source", "baseline"), [
    (7, 230.0, "fake history", 500.0),  # all of the run is published: observed, against the observed run-now hours
    (3, 170.0, "fake forecast", 300.0),  # 02:00-03:00 only: the plan's forecast stands for the run, and for its baseline
])
def test_a_run_longer_than_the_published_history_is_realized_on_the_forecast(monkeypatch, published, realized, source, baseline):
    import care_flows.orchestration.decorator as deco

    now = pd.Timestamp.now(tz="UTC").floor("h")
    sig = _Published(_series(now, [300, 300, 40, 300, 300, 300, 300]), _series(now, [500, 500, 60, 400, 400, 400, 400][:published]))
    clock = [now]
    monkeypatch.setattr(deco, "time", types.SimpleNamespace(sleep=lambda s: clock.__setitem__(0, clock[0] + pd.Timedelta(seconds=s))))
    name = f"realized-coverage-{published}"

    @care(policy=dict(home_region="eu-south-2", regions=["eu-south-2"], expected_duration="1h", deadline_within="6h"),
          signal=sig, clock=lambda: clock[0], sample_usage=False, wait_locally=True)
    @flow(name=name)
    def body() -> str:
        clock[0] = clock[0] + 2 * H  # the body takes 2 h, 02:00-04:00
        return "ran"

    state = body(return_state=True)
    assert state.is_completed()
    f = _realized_of(state.state_details.flow_run_id, name)
    assert f["started"] == now + 2 * H and f["finished"] == now + 4 * H
    assert f["realized_from"] == source
    assert f["realized_g_per_kwh"] == pytest.approx(realized)
    assert f["baseline_realized_g_per_kwh"] == pytest.approx(baseline)


def test_the_realized_label_says_when_the_history_holds_forecast_values():
    class Filled(CarbonSignal):
        name = "gb"

        def forecast(self, zone, start, horizon):
            raise AssertionError("not asked")

        def history(self, zone, start, end):
            s = _series(pd.Timestamp(start), [200.0] * 4)
            s.attrs["forecast_model"] = "gb-carbon-intensity (where no actual is published)"
            return s

    config = CareConfig({"home_region": "eu-west-2", "regions": ["eu-west-2"]}, signal=Filled(), sample_usage=False)
    series, label = _realized_intensity(config, config.policy(), "eu-west-2", pd.Timestamp("2024-05-01T10:10Z"),
                                        pd.Timestamp("2024-05-01T11:40Z"))
    assert label == "history+forecast" and series is not None


@pytest.mark.parametrize("finished, label", [("2024-05-01T11:00Z", "history"), ("2024-05-01T11:01Z", "history+forecast")])
def test_the_realized_label_looks_only_at_the_runs_own_half_hours(finished, label):
    """Review 46d L5: the history asked for runs an hour past the run's end, and the GB API has no actual for the
    half hour after the run when it ends; a run whose own half hours all have actuals was labelled history+forecast."""
    class Published(CarbonSignal):
        name = "gb"

        def forecast(self, zone, start, horizon):
            raise AssertionError("not asked")

        def history(self, zone, start, end):
            s = pd.Series([200.0] * 4, index=pd.date_range(start, periods=4, freq="30min"), name="g_per_kwh")
            s.attrs.update({"source": "gb", "signal": "direct", "forecast_model": "gb-carbon-intensity (where no actual is published)",
                            "unmeasured": [t.isoformat() for t in s.index[2:]]})
            return s

    config = CareConfig({"home_region": "eu-west-2", "regions": ["eu-west-2"]}, signal=Published(), sample_usage=False)
    series, got = _realized_intensity(config, config.policy(), "eu-west-2", pd.Timestamp("2024-05-01T10:00Z"), pd.Timestamp(finished))
    assert got == label and series is not None
