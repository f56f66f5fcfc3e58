"""Usage forecaster on synthetic series: period, anomalies, fallback, no peeking, sizing."""

from __future__ import annotations

import numpy as np
import pytest

from care_flows.errors import ConfigError, DataError
from care_flows.forecast import usage as U
from care_flows.forecast.usage import (
    DetectorConfig,
    detect_anomalies,
    detect_period,
    evaluate_usage,
    event_precision_recall,
    forecast_matrix,
    usage_need,
)

DAY = 288


def daily(n_days: int, *, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_days * DAY)
    return 10 + 4 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, noise * 10, t.size)


def with_anomalies(y: np.ndarray, starts: list[int], duration: int, factor: float) -> np.ndarray:
    y = y.copy()
    for s in starts:
        y[s : s + duration] *= factor
    return y


def test_all_is_explicit() -> None:
    for name in U.__all__:
        assert hasattr(U, name)


def test_daily_period_recovered_with_noise() -> None:
    assert detect_period(daily(5, noise=0.05), step_s=300) == DAY


def test_other_step_size_gives_period_in_steps() -> None:
    t = np.arange(24 * 5)  # hourly steps, 5 days
    assert detect_period(np.sin(2 * np.pi * t / 24), step_s=3600) == 24


def test_aperiodic_and_too_short_give_none() -> None:
    rng = np.random.default_rng(1)
    assert detect_period(np.cumsum(rng.normal(size=3000)) * 0 + rng.normal(size=3000), step_s=300) is None
    assert detect_period(daily(1), step_s=300) is None  # fewer than two periods: cannot be tested


def test_shorter_than_one_period_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="shorter than one daily period"):
        evaluate_usage(daily(1)[:200], horizon=12, period="auto")
    with pytest.raises(DataError, match="shorter than one period"):
        evaluate_usage(daily(1)[:200], horizon=12, period=288)
    with pytest.raises(ConfigError):
        evaluate_usage(daily(3), horizon=0, period=288)


def test_aperiodic_fallback_uses_last_value() -> None:
    rng = np.random.default_rng(3)
    y = 50 + rng.normal(0, 2.0, 3 * DAY)
    ev = evaluate_usage(y, horizon=3, period="auto")
    assert ev.period_steps is None
    np.testing.assert_allclose(ev.persistence[:, 0], y[ev.origins])


def test_injected_anomalies_detected_with_duration_and_level() -> None:
    duration, factor = 36, 1.6
    starts = [3 * DAY + 50, 4 * DAY + 100, 5 * DAY + 20, 6 * DAY + 200]
    y = with_anomalies(daily(8), starts, duration, factor)
    det = detect_anomalies(y, DAY)
    found = [iv for iv in det.intervals if iv.start_index >= 2 * DAY]
    # every injected anomaly is caught within a few steps of its start; detections end near its end
    for s in starts:
        hits = [iv for iv in found if s - 2 <= iv.start_index <= s + 6]
        assert hits, f"anomaly at {s} not detected: {[(iv.start_index, iv.end_index) for iv in found]}"
        assert abs(hits[0].actual_duration_steps - duration) <= 12
    # the predicted duration of later anomalies comes from the history of earlier ones
    last = [iv for iv in found if abs(iv.start_index - starts[-1]) <= 6][0]
    assert abs(last.predicted_duration_steps - duration) <= 12
    # inside an anomaly the fallback level is much closer than persistence (yesterday's values)
    s = starts[-1]
    origins = np.arange(s + 10, s + 20)
    pred, anomalous, _ = forecast_matrix(y, origins, 3, DAY)
    pers = U.persistence_matrix(y, origins, 3, DAY)
    actual = y[origins[:, None] + np.arange(1, 4)]
    assert anomalous.all()
    assert np.abs(pred - actual).mean() < 0.5 * np.abs(pers - actual).mean()


@pytest.mark.parametrize("method", ["mad", "cusum"])
def test_predicted_duration_is_the_median_of_past_anomalies_not_the_prior(method: str) -> None:
    # anomalies last 80 steps, far from the 36-step prior: only the first detected anomaly (no
    # history) may predict the prior; each later one predicts the median duration of the anomalies
    # that ended before it started (by the MAD detector, the last injected one about 80 steps)
    duration, prior = 80, 36
    starts = [3 * DAY + 50, 4 * DAY + 100, 5 * DAY + 20, 6 * DAY + 200]
    cfg = DetectorConfig(method=method, prior_duration_steps=prior)
    y = with_anomalies(daily(8), starts, duration, 1.6)
    det = detect_anomalies(y, DAY, cfg)
    ivs = det.intervals
    assert len(ivs) >= 4
    assert ivs[0].predicted_duration_steps == prior
    for iv in ivs[1:]:
        past = [p.actual_duration_steps for p in ivs if p.end_index < iv.start_index]
        assert iv.predicted_duration_steps == pytest.approx(np.median(past)), (iv, past)
    last = [iv for iv in ivs if abs(iv.start_index - starts[-1]) <= 6][0]
    past = np.array([p.actual_duration_steps for p in ivs if p.end_index < last.start_index], dtype=float)
    assert abs(last.predicted_duration_steps - prior) > 30
    if method == "mad":  # CUSUM's detections outlast the injected anomalies (84-173 steps here)
        assert abs(last.predicted_duration_steps - duration) <= 12
    # the remaining steps inside it: median of the past durations longer than the elapsed steps,
    # minus the elapsed steps (t - start + 1)
    for elapsed in (1, 10, 30, 60):
        t = last.start_index + elapsed - 1
        expect = np.median(past[past > elapsed]) - elapsed
        assert det.anomalous[t] and det.remaining_steps[t] == pytest.approx(expect), (elapsed, det.remaining_steps[t], expect)


def test_two_model_beats_persistence_on_anomalous_series_and_matches_on_clean() -> None:
    clean = daily(6)
    ev_clean = evaluate_usage(clean, horizon=12, period=DAY)
    assert ev_clean.wape_pct <= ev_clean.persistence_wape_pct + 1.0
    y = with_anomalies(clean, [3 * DAY + 10, 4 * DAY + 10, 5 * DAY + 10], 60, 1.8)
    ev = evaluate_usage(y, horizon=12, period=DAY)
    assert ev.wape_pct < ev.persistence_wape_pct
    assert 0 < ev.anomalous_fraction < 0.5


@pytest.mark.parametrize("method", ["mad", "cusum"])
def test_no_peeking(method: str) -> None:
    # the detector state (flag, remaining steps, current start) up to every cut t in and around
    # each detected anomalous stretch (12 steps either side), and the forecasts up to t at each
    # stretch's first and last steps (+-2) and at one mid-series cut, are the same when everything
    # after t is replaced: a one-step look-ahead changes the state only at a few such cuts
    y = with_anomalies(daily(6), [3 * DAY + 40, 4 * DAY + 90], 40, 1.7)
    cfg = DetectorConfig(method=method)
    a = detect_anomalies(y, DAY, cfg)
    stretches = [(iv.start_index, iv.end_index) for iv in a.intervals]
    assert len(stretches) >= 2 and all(DAY < s < e < len(y) - 13 for s, e in stretches), stretches
    cuts = sorted({t for s, e in stretches for t in range(s - 12, e + 13)} | {4 * DAY + 60})
    forecast_cuts = {t for s, e in stretches for edge in (s, e) for t in range(edge - 2, edge + 3)} | {4 * DAY + 60}
    origins = np.arange(DAY, max(cuts) + 1)
    pa, fa, _ = forecast_matrix(y, origins, 12, DAY, detector=cfg)
    rng = np.random.default_rng(9)
    for t in cuts:
        changed = y.copy()
        changed[t + 1 :] = rng.uniform(0, 100, len(y) - t - 1)
        if t in forecast_cuts:
            pb, fb, b = forecast_matrix(changed, origins[origins <= t], 12, DAY, detector=cfg)
            np.testing.assert_array_equal(pa[origins <= t], pb, err_msg=f"forecasts, cut {t}")
            np.testing.assert_array_equal(fa[origins <= t], fb, err_msg=f"anomalous flags, cut {t}")
        else:
            b = detect_anomalies(changed, DAY, cfg)
        np.testing.assert_array_equal(a.anomalous[: t + 1], b.anomalous[: t + 1], err_msg=f"cut {t}")
        np.testing.assert_array_equal(a.remaining_steps[: t + 1], b.remaining_steps[: t + 1], err_msg=f"cut {t}")
        np.testing.assert_array_equal(a.start_index[: t + 1], b.start_index[: t + 1], err_msg=f"cut {t}")


def test_cusum_detects_a_level_shift() -> None:
    y = with_anomalies(daily(6), [4 * DAY], 80, 1.5)
    det = detect_anomalies(y, DAY, DetectorConfig(method="cusum"))
    assert any(4 * DAY - 2 <= iv.start_index <= 4 * DAY + 30 for iv in det.intervals)


def test_pred_frame_layout() -> None:
    ev = evaluate_usage(daily(3), horizon=2, period=DAY)
    frame = ev.to_frame()
    assert list(frame.columns) == ["origin_index", "step", "target_index", "prediction", "anomalous"]
    assert len(frame) == 2 * len(ev.origins)
    assert (frame.target_index == frame.origin_index + frame.step).all()


def test_event_precision_recall() -> None:
    assert event_precision_recall([(0, 3), (10, 12)], [(11, 20)]) == (0.5, 1.0, 2, 1)


def test_usage_need_quantile_and_headroom() -> None:
    need = usage_need(np.arange(1.0, 101.0), cpu_scale_vcpu=0.04, memory_forecast=np.full(100, 3.0), quantile=0.95, headroom_pct=20)
    assert need.peak_vcpu == pytest.approx(np.quantile(np.arange(1.0, 101.0), 0.95) * 0.04 * 1.2)
    assert need.mean_vcpu == pytest.approx(50.5 * 0.04)
    assert need.peak_memory_gib == pytest.approx(3.6) and need.mean_memory_gib == pytest.approx(3.0)
    with pytest.raises(ConfigError):
        usage_need([1.0], quantile=1.5)
    with pytest.raises(DataError):
        usage_need([])


def test_choose_instance_calls_right_size_once_with_the_need() -> None:
    calls = []

    def fake_right_size(region, vcpu, memory_gib, *, prices, headroom_pct, **kw):  # type: ignore[no-untyped-def]
        calls.append((region, vcpu, memory_gib, headroom_pct))
        return type("SizingChoice", (), {"instance_type": "m7i.large"})()

    need = usage_need([1.0, 1.5], quantile=1.0, headroom_pct=0, memory_forecast=[2.0, 2.0])
    choice = U.choose_instance(need, "eu-north-1", prices=object(), right_size=fake_right_size)
    assert choice.instance_type == "m7i.large"
    assert calls == [("eu-north-1", 1.5, 2.0, 0.0)]


def test_capacity_plan_is_causal_and_covers_demand() -> None:
    y = with_anomalies(daily(8, noise=0.05), [5 * DAY + 30], 40, 1.4)
    ev = U.evaluate_usage(y, horizon=12, period=DAY)
    plan = U.capacity_plan(ev, history=y, error_quantile=0.95)
    assert plan["forecast"].shape == plan["demand"].shape == plan["peak"].shape
    under = float((plan["demand"] > plan["forecast"]).mean())
    assert under < 0.05
    over_fc = np.clip(plan["forecast"] - plan["demand"], 0, None).sum()
    over_peak = np.clip(plan["peak"] - plan["demand"], 0, None).sum()
    assert over_fc < over_peak
    # no peeking: the margin at an origin ignores errors of windows that end later
    t = ev.origins[len(ev.origins) // 2]
    changed = y.copy()
    changed[t + 1 :] *= 3.0
    ev2 = U.evaluate_usage(changed, horizon=12, period=DAY)
    m1, m2 = U.forecast_error_margin(ev), U.forecast_error_margin(ev2)
    keep = ev.origins <= t
    np.testing.assert_array_equal(m1[keep], m2[keep])
    np.testing.assert_array_equal(ev.prediction[keep], ev2.prediction[keep])


def test_choose_instance_with_embedded_prices() -> None:
    from care_flows.pricing import EmbeddedPrices

    need = usage_need([3.0, 3.5], memory_forecast=[10.0, 12.0], quantile=1.0, headroom_pct=0)
    choice = U.choose_instance(need, "eu-north-1", prices=EmbeddedPrices())
    assert choice.vcpu >= 3.5 and choice.memory_gib >= 12.0


def test_forecast_usage_matches_the_evaluated_forecast_and_follows_an_ongoing_anomaly() -> None:
    y = daily(4)
    fc = U.forecast_usage(y, 12, period=DAY)
    pred, _, _ = forecast_matrix(y, np.array([len(y) - 1]), 12, DAY)
    np.testing.assert_array_equal(fc.values, pred[0])
    assert fc.period_steps == DAY and not fc.anomalous
    # usage doubled for the last 30 steps: the forecast follows the new level, not yesterday's
    hot = y.copy()
    hot[-30:] *= 2.0
    fc = U.forecast_usage(hot, 6, period=DAY)
    assert fc.anomalous and fc.remaining_anomaly_steps > 0
    assert np.abs(fc.values - hot[-1]).max() < 0.25 * hot[-1]
    need = usage_need(fc.values, quantile=0.95, headroom_pct=20)
    assert need.peak_vcpu > 1.2 * np.quantile(y[-DAY - 6 : -DAY], 0.95)
    with pytest.raises(DataError):
        U.forecast_usage(y[:100], 12, period="auto")


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cut=st.integers(60, 230),
    method=st.sampled_from(["mad", "cusum"]),
    period=st.sampled_from([None, 24]),
)
def test_no_peeking_property(seed: int, cut: int, method: str, period: int | None) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(240)
    y = 5 + 2 * np.sin(2 * np.pi * t / 24) + rng.gamma(1.0, 0.5, t.size)
    y[rng.integers(30, 200) :][:20] *= 3  # an anomaly somewhere
    changed = y.copy()
    changed[cut + 1 :] = rng.uniform(0, 50, t.size - cut - 1)
    cfg = DetectorConfig(method=method, window_steps=96)
    origins = np.arange(30, cut + 1)
    pa, fa, da = forecast_matrix(y, origins, 6, period, detector=cfg)
    pb, fb, db = forecast_matrix(changed, origins, 6, period, detector=cfg)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(da.remaining_steps[: cut + 1], db.remaining_steps[: cut + 1])


def spiky_flat(n: int, *, seed: int = 0) -> np.ndarray:
    """A quantised idle level (0.066 / 0.132) with noise and rare tall spikes, no period."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, 0.066, 0.132) + rng.normal(0, 0.004, n)
    spikes = rng.random(n) < 0.03
    y[spikes] += rng.uniform(0.5, 2.0, spikes.sum())
    return np.abs(y)


def test_selection_beats_persistence_on_a_noisy_flat_series_with_spikes() -> None:
    y = spiky_flat(6 * DAY)
    oracle = lambda ev: U.wape_pct(ev.actual, np.full_like(ev.actual, np.median(ev.actual)))  # noqa: E731  (peeks)
    for h in (1, 12):
        ev = evaluate_usage(y, horizon=h, period="auto")
        plain = evaluate_usage(y, horizon=h, period="auto", fallback=U.FallbackConfig(select_median_steps=()))
        assert ev.period_steps is None
        # persistence (the last value) chases noise and spikes; the selected robust level does not
        assert ev.wape_pct < 0.75 * ev.persistence_wape_pct
        assert ev.wape_pct < plain.wape_pct - 5.0
        assert ev.wape_pct < oracle(ev) + 2.0  # close to the best constant level, which peeks
        np.testing.assert_array_equal(ev.two_model_prediction, plain.prediction)


def test_selection_keeps_the_two_model_on_a_clean_periodic_series() -> None:
    y = daily(6)
    ev = evaluate_usage(y, horizon=12, period=DAY)
    plain = evaluate_usage(y, horizon=12, period=DAY, fallback=U.FallbackConfig(select_median_steps=()))
    assert ev.wape_pct <= plain.wape_pct + 0.3


@pytest.mark.parametrize("period", [None, DAY])
def test_selection_never_peeks(period: int | None) -> None:
    y = spiky_flat(5 * DAY, seed=4) + (0 if period is None else 1 + np.sin(2 * np.pi * np.arange(5 * DAY) / DAY))  # usage: not negative
    t = 4 * DAY + 17
    changed = y.copy()
    changed[t + 1 :] = np.random.default_rng(5).uniform(0, 50, len(y) - t - 1)
    origins = np.arange(DAY, t + 1)
    pa, _, _ = forecast_matrix(y, origins, 12, period)
    pb, _, _ = forecast_matrix(changed, origins, 12, period)
    np.testing.assert_array_equal(pa, pb)
    # the production call, given only the history up to t, makes the same forecast at t
    fc = U.forecast_usage(y[: t + 1], 12, period=period)
    np.testing.assert_array_equal(fc.values, pa[-1])


def test_cap_at_peak_under_provisions_a_growing_series() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(10 * DAY)
    y = (10 + 3 * np.sin(2 * np.pi * t / DAY)) * (1 + 0.08 * t / DAY) + rng.normal(0, 0.3, t.size)  # +8 %/day
    ev = evaluate_usage(y, horizon=12, period=DAY)
    free = U.capacity_plan(ev, history=y)
    capped = U.capacity_plan(ev, history=y, cap_at_peak=True)
    under = lambda plan: float((plan["demand"] > plan["forecast"]).mean())  # noqa: E731
    # the historical peak lags the growth: capping at it under-provisions like peak sizing does
    assert under(capped) > 3 * under(free)
    assert under(free) < 0.05
    assert under(capped) >= 0.5 * float((free["demand"] > free["peak"]).mean())


def test_adaptive_capacity_holds_the_under_provisioning_target_through_a_shift() -> None:
    # noise sd 1 for 600 blocks, then 3: a fixed quantile of past shortfalls under-covers after the
    # shift until the window forgets the calm part; the adaptive miss level corrects itself
    rng = np.random.default_rng(3)
    sd = np.where(np.arange(1200) < 600, 1.0, 3.0)[:, None]
    demand = 10 + rng.normal(0, 1, (1200, 12)) * sd
    base = np.full(1200, 10.0)
    adaptive = U.adaptive_capacity(base, demand, target_under_fraction=0.005, adaptation_rate=0.01)
    fixed = U.adaptive_capacity(base, demand, target_under_fraction=0.005, adaptation_rate=0.0)
    under = lambda cap, sl: float((demand[sl] > cap[sl, None]).mean())  # noqa: E731
    after = slice(600, 700)
    assert under(fixed, after) > 0.02  # the fixed margin is short after the shift
    assert under(adaptive, after) < 0.5 * under(fixed, after)
    assert 0.002 < under(adaptive, slice(24, 1200)) < 0.01
    # causal: the capacity of block b depends on blocks before b only
    changed = demand.copy()
    changed[700:] *= 5.0
    again = U.adaptive_capacity(base, changed, target_under_fraction=0.005, adaptation_rate=0.01)
    np.testing.assert_array_equal(adaptive[:701], again[:701])
    assert not np.array_equal(adaptive[701:], again[701:])


def test_adaptive_capacity_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="target_under_fraction 1.5"):
        U.adaptive_capacity(np.ones(30), np.ones((30, 12)), target_under_fraction=1.5)
    with pytest.raises(ConfigError, match=r"demand shape \(29, 12\)"):
        U.adaptive_capacity(np.ones(30), np.ones((29, 12)))
    ev = U.evaluate_usage(daily(4, noise=0.05), horizon=12, period=DAY)
    with pytest.raises(ConfigError, match="margin 'peak'"):
        U.capacity_plan(ev, history=daily(4, noise=0.05), margin="peak")  # type: ignore[arg-type]
