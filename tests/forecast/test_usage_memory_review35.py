"""Review 35c M6: the per-step selection is scored on blocks of step columns to bound memory.

The blocked path must give exactly what the old all-steps-at-once code gave: the reference below
is that code (the ``(candidate, origin, step)`` stack, a DataFrame EWMA over every column, argmin),
compared bit for bit with block sizes of one column, an uneven block and the whole horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from care_flows.forecast import usage as U
from care_flows.forecast.usage import FallbackConfig


def _old_two_model(y, origins, horizon, period, det, fb_cfg):
    """The two-model matrix as computed before review 35c M6 (all steps at once)."""
    pers = U.persistence_matrix(y, origins, horizon, period)
    if period is not None and fb_cfg.anchor_span:
        pers = pers + U.level_anchor(y, period, fb_cfg.anchor_span)[origins, None]
    fb = U.fallback_matrix(y, origins, horizon, fb_cfg)
    use = det.anomalous[origins].copy()
    if fb_cfg.gate_on_fallback_error:
        use &= U._fallback_better(y, period, fb_cfg)[origins]
    k = np.arange(1, horizon + 1)
    mask = use[:, None] & (k[None, :] <= np.maximum(np.ceil(det.remaining_steps[origins]), 1)[:, None])
    if period is None and det.start_index is not None:
        level, _ = U._level_trend(y, fb_cfg)
        start = det.start_index[origins]
        before = level[np.clip(start - 1, 0, None)]
        pers = np.where((use & (start > 0))[:, None], before[:, None], pers)
    return np.where(mask, fb, pers)


def _old_selected(y, origins, horizon, period, fb_cfg=FallbackConfig()):
    """(selected, two-model) the old way: 6 x origins x steps stack, full scores, argmin."""
    y = np.asarray(y, dtype=float)
    det = U.detect_anomalies(y, period)
    first = int(period) if period else 1
    lo = max(min(first, int(origins.min())), int(origins.min()) - 8 * fb_cfg.select_error_span - horizon)
    hist = np.arange(lo, int(origins.max()) + 1)
    cands = [_old_two_model(y, hist, horizon, period, det, fb_cfg), np.repeat(y[hist, None], horizon, axis=1)]
    for w in fb_cfg.select_median_steps:
        med = pd.Series(y).rolling(int(w), min_periods=1).median().to_numpy()[hist]
        cands.append(np.repeat(med[:, None], horizon, axis=1))
    stack = np.stack(cands)
    n, m = len(y), stack.shape[1]
    k = np.arange(1, horizon + 1)
    target = hist[:, None] + k[None, :]
    actual = np.where(target < n, y[np.minimum(target, n - 1)], np.nan)
    src = np.arange(m)[:, None] - k[None, :]
    scores = np.empty_like(stack)
    for c in range(stack.shape[0]):
        ew = pd.DataFrame(np.abs(actual - stack[c])).ewm(span=fb_cfg.select_error_span, ignore_na=True,
                                                         min_periods=fb_cfg.select_min_errors).mean().to_numpy()
        scores[c] = np.where(src >= 0, np.take_along_axis(ew, np.clip(src, 0, None), axis=0), np.nan)
    scores = np.where(np.isnan(scores), np.inf, scores)
    undecided = ~np.isfinite(scores).any(axis=0) | ~np.isfinite(scores[0])
    choice = np.where(undecided, 0, np.argmin(scores, axis=0))
    rows = origins - lo
    return np.take_along_axis(stack[:, rows], choice[None, rows], axis=0)[0], stack[0, rows]


def _series(kind: str, n: int = 288 * 4) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(n)
    if kind == "spiky":  # no period; medians win at many steps
        y = np.abs(rng.normal(1.0, 0.2, n))
        y[rng.random(n) < 0.05] += 20.0
        return y
    y = 10 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, n)
    for s in (400, 700, 900):  # level shifts: anomalies, the fallback and the other candidates get used
        y[s : s + 40] += 15.0
    return y


CASES = [("daily", 288, 1), ("daily", 288, 12), ("daily", 288, 40), ("spiky", None, 12), ("spiky", None, 40)]


@pytest.mark.parametrize("kind,period,horizon", CASES)
@pytest.mark.parametrize("cells", [1, 7 * 1000, 1 << 40])  # one column per block, uneven blocks, one block
def test_blocked_selection_equals_the_old_stacked_selection(monkeypatch, kind, period, horizon, cells):
    y = _series(kind)
    origins = np.arange(300, len(y) - horizon)
    want_pick, want_two = _old_selected(y, origins, horizon, period)
    monkeypatch.setattr(U, "_SELECT_CHUNK_CELLS", cells)
    pick, two, _, _ = U._forecast_matrices(y, origins, horizon, period, None, None, None)
    assert np.array_equal(two, want_two)
    assert np.array_equal(pick, want_pick)  # bit for bit, not approximately
    assert (pick != two).any()  # the selection really chose other candidates somewhere


def test_blocked_evaluation_is_the_same_for_any_block_size(monkeypatch):
    y = _series("daily")
    whole = U.evaluate_usage(y, horizon=30, period=288)
    monkeypatch.setattr(U, "_SELECT_CHUNK_CELLS", 1)
    cols = U.evaluate_usage(y, horizon=30, period=288)
    assert np.array_equal(whole.prediction, cols.prediction)
    assert np.array_equal(whole.two_model_prediction, cols.two_model_prediction)
    assert whole.summary() == cols.summary()


def test_blocked_selection_does_not_peek(monkeypatch):
    """Changing the data after ``t`` changes no forecast made at origins ``<= t`` (one column per block)."""
    monkeypatch.setattr(U, "_SELECT_CHUNK_CELLS", 1)
    y = _series("daily")
    t = 800
    z = y.copy()
    z[t + 1 :] = 0.0
    origins = np.arange(300, t + 1)
    a = U.forecast_matrix(y, origins, 24, 288)[0]
    b = U.forecast_matrix(z, origins, 24, 288)[0]
    assert np.array_equal(a, b)


def test_wape_pct_still_takes_a_broadcast_forecast():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    last = np.array([1.0, 2.0])
    assert U.wape_pct(actual, np.broadcast_to(last[:, None], actual.shape)) == U.wape_pct(actual, np.repeat(last[:, None], 2, axis=1))
    assert U.wape_pct(np.float64(2.0), 1.0) == 50.0


def test_pred_csv_written_in_pieces_is_the_same_file(tmp_path) -> None:
    """Review 35c M6, the PRED.csv half: --out wrote one frame of every (origin, step) row; it now
    writes pieces of whole origins, and the file must not change by a byte."""
    from care_flows.cli.forecast_usage import write_atomic_csv

    t = np.arange(288 * 4)
    ev = U.evaluate_usage(3 + np.sin(2 * np.pi * t / 288) + 0.1 * np.random.default_rng(2).normal(size=t.size), horizon=12, period=288)
    write_atomic_csv(ev.to_frames(rows=100), tmp_path / "pieces.csv")  # about 8 origins a piece
    write_atomic_csv(ev.to_frame(), tmp_path / "whole.csv")
    assert len(list(ev.to_frames(rows=100))) > 10
    assert (tmp_path / "pieces.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
