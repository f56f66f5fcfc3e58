"""Review 39b M1: the anomaly detector's residual-life lookup and the CLI's gap count are near-linear.

``care forecast-usage`` was quadratic on long, often anomalous series (300 000 rows: 224 s; 2 million
did not finish in 20 min): at every anomalous step ``_remaining`` rebuilt an array of all past
anomaly durations and took its median. The detector now keeps them in :class:`_PastDurations`
(counts in a Fenwick tree). These tests check that the fast path gives exactly the values of the
straightforward computation on random data; speed itself is measured by hand (see the review's
report), not asserted here.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import care_flows.forecast.usage as usage
from care_flows.cli.forecast_usage import origins_across_gaps
from care_flows.forecast.usage import DetectorConfig, _PastDurations, detect_anomalies, evaluate_usage


def reference_remaining(durations: list[int], elapsed: int, prior: int) -> float:
    """The residual life as computed before review 39b (an array and ``np.median`` per call)."""
    if not durations:
        return float(max(prior - elapsed, elapsed))
    d = np.asarray(durations, dtype=float)
    longer = d[d > elapsed]
    if longer.size == 0:
        return float(max(elapsed, 1))
    return float(np.median(longer) - elapsed)


class ReferencePast:
    """:class:`_PastDurations`' interface over the reference computation."""

    def __init__(self, size: int = 64) -> None:
        self.durations: list[int] = []

    def add(self, duration: int) -> None:
        self.durations.append(int(duration))

    def remaining(self, elapsed: int, prior: int) -> float:
        return reference_remaining(self.durations, elapsed, prior)


@pytest.mark.parametrize("seed", range(20))
def test_past_durations_equal_the_reference_median_on_random_histories(seed: int) -> None:
    rng = random.Random(seed)
    longest = rng.choice([1, 3, 10, 200, 5000])
    past, durations = _PastDurations(rng.choice([1, 2, 64])), []  # small starting sizes: the tree must grow
    prior = rng.choice([0, 1, 36])
    for _ in range(80):
        if rng.random() < 0.4:
            d = rng.randint(1, longest)
            past.add(d)
            durations.append(d)
        else:  # an anomaly: elapsed 0 (the prediction at its start), then 1, 2, ... as the detector asks
            steps = [0] + list(range(1, rng.randint(1, min(longest, 300) + 5)))
            for elapsed in steps:
                assert past.remaining(elapsed, prior) == reference_remaining(durations, elapsed, prior), (durations, elapsed)
            jump = rng.randint(0, longest + 10)  # and any question out of order
            assert past.remaining(jump, prior) == reference_remaining(durations, jump, prior)


def test_past_durations_refuse_a_duration_below_one_step() -> None:
    with pytest.raises(ValueError, match="not a positive number of steps"):
        _PastDurations().add(0)


def _series_with_many_anomalies(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, n)
    for start in rng.integers(300, n - 50, size=n // 60):  # level shifts and spikes of random lengths
        y[start:start + int(rng.integers(1, 40))] *= float(rng.choice([0.2, 3.0, 8.0]))
    return np.abs(y)


@pytest.mark.parametrize("method", ["mad", "cusum"])
@pytest.mark.parametrize("period", [None, 288])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_detector_gives_exactly_what_the_reference_computation_gave(monkeypatch, method, period, seed) -> None:
    y = _series_with_many_anomalies(seed, 4000)
    cfg = DetectorConfig(method=method)
    fast = detect_anomalies(y, period, cfg)
    monkeypatch.setattr(usage, "_PastDurations", ReferencePast)
    slow = detect_anomalies(y, period, cfg)
    assert len(fast.intervals) > 10  # the median path is exercised
    assert np.array_equal(fast.anomalous, slow.anomalous)
    assert fast.remaining_steps.tobytes() == slow.remaining_steps.tobytes()  # bit for bit
    assert np.array_equal(fast.start_index, slow.start_index)
    assert [iv.as_dict() for iv in fast.intervals] == [iv.as_dict() for iv in slow.intervals]
    assert [iv.predicted_duration_steps for iv in fast.intervals] == [iv.predicted_duration_steps for iv in slow.intervals]


def test_the_forecasts_are_unchanged_bit_for_bit(monkeypatch) -> None:
    y = _series_with_many_anomalies(7, 3000)
    fast = evaluate_usage(y, horizon=12, period=288)
    monkeypatch.setattr(usage, "_PastDurations", ReferencePast)
    slow = evaluate_usage(y, horizon=12, period=288)
    assert fast.prediction.tobytes() == slow.prediction.tobytes()
    assert fast.two_model_prediction.tobytes() == slow.two_model_prediction.tobytes()  # type: ignore[union-attr]
    assert fast.summary() == slow.summary()


def test_the_detector_takes_no_median_of_past_durations_per_step(monkeypatch) -> None:
    """The quadratic cost came from one ``np.median`` per anomalous step; none is taken now."""
    calls = []
    real_median = np.median
    monkeypatch.setattr(np, "median", lambda *a, **k: calls.append(1) or real_median(*a, **k))
    det = detect_anomalies(_series_with_many_anomalies(3, 4000), None)
    assert det.anomalous.sum() > 100 and len(calls) == 0


def reference_origins_across_gaps(origins, gap_rows, horizon: int, period: int | None) -> int:  # type: ignore[no-untyped-def]
    """The count as computed before review 39b: every origin against every gap (origins x gaps)."""
    t = np.asarray(origins, dtype=int)[:, None]
    g = np.asarray(list(gap_rows), dtype=int)[None, :]
    if g.size == 0 or t.size == 0:
        return 0
    lo = t + 1 - period if period else t
    return int(((g > lo) & (g <= t + horizon)).any(axis=1).sum())


def test_origins_across_gaps_equals_the_all_pairs_count_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for i in range(1000):
        n = int(rng.integers(1, 500))
        origins = np.arange(int(rng.integers(0, n)), n)
        gaps = list(rng.choice(np.arange(1, n + 30), size=int(rng.integers(0, 20)), replace=False))  # unsorted, some past the end
        horizon = int(rng.integers(1, 40))
        period = None if i % 2 else int(rng.integers(1, 120))
        assert origins_across_gaps(origins, gaps, horizon, period) == reference_origins_across_gaps(origins, gaps, horizon, period)


def test_origins_across_gaps_does_not_compare_every_origin_with_every_gap() -> None:
    """2 million origins and 20 000 gaps made a 4e10-cell comparison (tens of GB). Checked on the
    memory used (numpy reports its arrays to tracemalloc), not on time: 200 000 origins and 2 000
    gaps took about 1.2 GB of temporaries before, a few MB now."""
    import tracemalloc

    n, gaps = 200_000, list(range(50, 200_000, 100))
    origins = np.arange(288, n - 12)
    tracemalloc.start()
    try:
        got = origins_across_gaps(origins, gaps, 12, 288)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == len(origins)  # a gap every 100 rows: every window of 288 + 12 rows holds one
    assert peak < 50e6, f"{peak / 1e6:.0f} MB"
