"""Experiment: how many carbon-signal calls one run of a ``@care`` flow makes (docs/OPERATIONS.md,
"API calls and caching").

Run: ``.venv/bin/python benchmarks/experiment_signal_calls.py`` (30-50 s; no network: the
embedded data and Prefect's temporary local server on 127.0.0.1).

A wrapper around the signal given as ``@care(signal=...)`` counts every ``forecast`` and
``history`` call by zone; with a live source these are the calls that reach its disk cache, so
they are the provider calls on a miss. The flows' policy is a nightly one (home eu-south-2, 1 h
due within 12 h), on an injected clock at 2023-06-01 02:00 UTC (the embedded data have history
there); each body advances the clock by its hour. Cases:

1. a local call of a flow that may also run in eu-north-1 (it runs now, at home);
2. the same flow deployed: the trigger run plans and dispatches (moved to eu-north-1), then the
   dispatched run executes, as a worker would run it;
3. a home-only flow deployed: the trigger defers it at home, then the dispatched run executes.

Usage recording is off and the Prefect home, cache and usage folders are temporary.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

_TMP = tempfile.mkdtemp(prefix="care-signal-calls-")
atexit.register(shutil.rmtree, _TMP, True)
for _name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
    os.environ.pop(_name, None)
os.environ.update(PREFECT_HOME=f"{_TMP}/prefect", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                  CARE_CACHE_DIR=f"{_TMP}/cache", CARE_USAGE_DIR=f"{_TMP}/usage")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from prefect import flow, get_client  # noqa: E402
from prefect.flow_engine import run_flow_sync  # noqa: E402
from prefect.states import Scheduled  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from care_flows import care  # noqa: E402
from care_flows.signals import get_signal  # noqa: E402

CALLS: Counter[str] = Counter()
NOW = [pd.Timestamp("2023-06-01T02:00Z")]
BASE = {"home_region": "eu-south-2", "deadline_within": "12h", "expected_duration": "1h", "vcpu": 2, "memory_gib": 8}


class Counting:
    """The embedded signal, counting the calls made to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "counting")

    def forecast(self, zone: str, *args: Any, **kwargs: Any) -> Any:
        CALLS[f"forecast {zone}"] += 1
        return self.inner.forecast(zone, *args, **kwargs)

    def history(self, zone: str, *args: Any, **kwargs: Any) -> Any:
        CALLS[f"history {zone}"] += 1
        return self.inner.history(zone, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


SIGNAL = Counting(get_signal("embedded"))


@care(policy={**BASE, "regions": ["eu-north-1"], "targets": {"eu-north-1": {"deployment": "north"}}},
      signal=SIGNAL, clock=lambda: NOW[0], sample_usage=False)
@flow
def nightly_two_regions() -> None:
    NOW[0] += pd.Timedelta(hours=1)  # the body runs its expected hour


@care(policy={**BASE, "regions": []}, signal=SIGNAL, clock=lambda: NOW[0], sample_usage=False)
@flow
def nightly_home_only() -> None:
    NOW[0] += pd.Timedelta(hours=1)


def _run_existing(fl: Any, run_id: Any) -> Any:
    """Run an existing flow run in this process, as a worker would."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Scheduled(scheduled_time=pd.Timestamp.now(tz="UTC").to_pydatetime()), force=True)
        fr = client.read_flow_run(run_id)
    return run_flow_sync(fl, flow_run=fr, parameters=fr.parameters, return_type="state")


def _report(label: str) -> int:
    total = sum(CALLS.values())
    print(f"{label}: {total} call{'' if total == 1 else 's'} ({', '.join(f'{k} x{v}' for k, v in sorted(CALLS.items()))})", flush=True)
    CALLS.clear()
    return total


def main() -> None:
    from _args import parse  # the script's own folder is on sys.path

    parse(__doc__, quick=False)  # --help, and no flag taken for "run in full"
    rows = []
    with prefect_test_harness(server_startup_timeout=180):  # 2 shared cores: startup took up to 57 s
        NOW[0] = pd.Timestamp("2023-06-01T02:00Z")
        nightly_two_regions()
        rows.append(("local call", _report("1. local call, runs now at home")))
        for n, (fl, names) in enumerate(((nightly_two_regions, ("home", "north")), (nightly_home_only, ("home",))), start=2):
            ids = {name: fl.to_deployment(name=name).apply() for name in names}
            NOW[0] = pd.Timestamp("2023-06-01T02:00Z")
            with get_client(sync_client=True) as client:
                trigger = client.create_flow_run_from_deployment(ids["home"], parameters={})
            _run_existing(fl, trigger.id)
            planned = _report(f"{n}. {fl.name}: the trigger run plans and dispatches")
            with get_client(sync_client=True) as client:
                [child] = [r for r in client.read_flow_runs() if r.deployment_id in ids.values() and r.id != trigger.id]
            NOW[0] = pd.Timestamp(child.expected_start_time.isoformat()).tz_convert("UTC")
            _run_existing(fl, child.id)
            ran = _report(f"   the dispatched run in {child.job_variables.get('region')} from {NOW[0] - pd.Timedelta(hours=1):%H:%M} (after its body)")
            print(f"   in all: {planned + ran} calls")


if __name__ == "__main__":
    main()
