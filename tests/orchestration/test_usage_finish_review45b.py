"""Review 45b: M1, when the usage store stayed down, the run's last samples were dropped without a word in the
run's log (the paced warnings were silent, or said "kept, and tried again" with no try to come); M2, stop()
replaced a short last sample by a fresh one and lost the memory peak the dropped one held."""

from __future__ import annotations

import errno
import time

import pandas as pd
import pytest
from prefect import flow

import care_flows.orchestration.learned_sizing as learned_sizing
from care_flows.orchestration import care
from care_flows.usage_capture import UsageSampler, samples_frame


class _Down:
    """A usage store that refuses every write (a full disk for the whole run)."""

    def __init__(self) -> None:
        self.calls = 0

    def append(self, deployment, samples, *, run_id=None):
        self.calls += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    def load(self, deployment):
        return samples_frame([])


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("body_s", [0.2, 2.6])
def test_samples_a_store_never_took_are_named_in_the_run_log(monkeypatch, run_log, body_s: float) -> None:
    down = _Down()
    monkeypatch.setattr(learned_sizing, "_default_store", lambda: down)
    monkeypatch.setattr(learned_sizing, "FLUSH_EVERY_S", 0.5)  # the thread flushes after each sample, as every minute in production
    t0 = pd.Timestamp("2026-03-02T00:00:00Z")
    forecasts = {"eu-north-1": pd.Series(20.0, index=pd.date_range(t0, periods=12, freq="1h"), name="g_per_kwh")}
    counted_before = set(learned_sizing._STORE_FAILURES)

    @care(policy=dict(home_region="eu-north-1", regions=["eu-north-1"]), signal=forecasts, clock=lambda: t0)
    @flow(name=f"usage-down-{int(body_s * 10)}")
    def body() -> int:
        time.sleep(body_s)
        return 1

    assert body(return_state=True).is_completed()
    messages = [r.getMessage() for r in run_log]
    lost = [m for m in messages if "usage samples of this run" in m]
    assert len(lost) == 1 and "could not be stored (" in lost[0] and "No space left on device" in lost[0], messages
    assert down.calls >= 2
    assert set(learned_sizing._STORE_FAILURES) <= counted_before  # the finished run's failure count is gone


def test_a_replaced_last_sample_keeps_the_memory_peak_it_saw() -> None:
    """A 600 MiB buffer held across the thread's sample and freed 0.1 s before the body returns."""
    for _ in range(2):  # the run ends < interval / 2 after the thread's sample, so that sample is replaced
        sampler = UsageSampler(interval_s=1.0).start()
        buf = bytearray(600 * 2**20)
        while len(sampler.samples) < 2:
            time.sleep(0.01)
        seen = sampler.samples[-1].memory_gib
        del buf
        time.sleep(0.1)
        kept = sampler.stop()
        assert seen > 0.5
        assert max(s.memory_gib for s in kept) >= seen
