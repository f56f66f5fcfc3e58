"""Provider-fault scenario: 1,000 planned runs while the carbon source fails in 30% of calls.

A loopback HTTP server speaks the Electricity Maps v3 ``/carbon-intensity/forecast`` format
(values: the embedded Electricity Maps 2023 traces, so the "live" answers are real data). Each
request independently fails with probability ``fault_rate``, drawn uniformly from five fault
kinds:

- ``5xx``: HTTP 500/502/503/504;
- ``timeout``: the reply comes after the client's timeout;
- ``429``: rate limited, with ``Retry-After: 0``, none, or one hour (not worth waiting for);
- ``malformed``: not JSON, truncated JSON, no ``forecast`` list, points without fields,
  non-numeric / negative / null values, conflicting duplicates, off-grid times, an empty list,
  or a forecast that starts hours after the trigger time;
- ``stale``: a well-formed forecast issued three days ago (ends before now), or one issued
  20 hours ago that covers only the next few hours.

Runs are planned exactly as the ``@care`` decorator does (``care_flows.orchestration.plan.plan_run``
over ``get_signal("electricitymaps", ...)``, the cached, fallback-wrapped signal; a
``PlanningError``/``ProviderError``/``DataError`` means "run now here"), with random trigger
times (2023), durations (5 min to 8 h), deadlines (slack 0 to 36 h, a few infeasible) and modes
(contiguous, interruptible, threshold). Each run is checked: it starts no later than its latest
start (``deadline - duration``, or now when the deadline cannot be met), never before its
trigger, its segments add up to the duration, and its decision names the source that served
every region's forecast.

Three phases: ``faults`` (30% of calls fail), ``down-503`` (every call 503) and ``down-refused``
(nothing listens on the port): with the source down, runs are served by the stale cache or the
embedded forecast, and a region without embedded data runs now.

Run: ``.venv/bin/python benchmarks/scenario_provider_faults.py`` (``--quick`` for 200 runs).
"""

from __future__ import annotations

import json
import math
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from care_flows.errors import DataError, PlanningError, ProviderError  # noqa: E402
from care_flows.policy import CarePolicy  # noqa: E402

__all__ = [
    "FAULT_KINDS",
    "DemoClock",
    "FaultyElectricityMaps",
    "RunSpec",
    "random_runs",
    "plan_runs",
    "check_outcome",
    "run",
    "run_detailed",
]

FAULT_KINDS = ("5xx", "timeout", "429", "malformed", "stale")
CLIENT_TIMEOUT_S = 0.1
TIMEOUT_DELAY_S = 0.25
TOKEN = "scenario-token-not-secret"


@dataclass
class DemoClock:
    """The scenario's clock, shared by the fake provider, the client and the cache."""

    now: pd.Timestamp = pd.Timestamp("2023-06-01T00:00Z")

    def __call__(self) -> pd.Timestamp:
        return self.now


def _truth(zone: str) -> pd.Series:
    from care_flows.data import embedded_intensity

    key = "SE" if zone.upper().startswith("SE") else zone.upper()
    return embedded_intensity(key, "lifecycle")


class FaultyElectricityMaps:
    """A loopback Electricity Maps v3 forecast endpoint that fails at random.

    ``fault_rate``: probability that a request fails (kind drawn from ``kinds``, variant from 0-9
    or fixed by ``variant``); ``down``: every request answers 503.
    ``counts`` records what each request got (``ok`` or the fault kind/variant).
    """

    def __init__(
        self, clock: DemoClock, *, fault_rate: float = 0.3, seed: int = 0, down: bool = False,
        kinds: tuple[str, ...] = FAULT_KINDS, variant: int | None = None,
    ) -> None:
        self.clock = clock
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds)
        self.variant = variant
        self.down = down
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._truth: dict[str, pd.Series] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, body, headers, delay = outer._answer(self.path)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "FaultyElectricityMaps":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the replies ------------------------------------------------------------------------
    def _points(self, zone: str, start: pd.Timestamp, hours: int) -> list[dict[str, Any]]:
        if zone not in self._truth:
            self._truth[zone] = _truth(zone)
        s = self._truth[zone]
        part = s[(s.index >= start) & (s.index < start + pd.Timedelta(hours=hours))]
        return [{"carbonIntensity": round(float(v)), "datetime": t.strftime("%Y-%m-%dT%H:%M:%S.000Z")} for t, v in part.items()]

    def _doc(self, zone: str, issued: pd.Timestamp, hours: int, start: pd.Timestamp | None = None) -> dict[str, Any]:
        start = issued if start is None else start
        return {
            "zone": zone,
            "forecast": self._points(zone, start, hours),
            "updatedAt": issued.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "emissionFactorType": "lifecycle",
        }

    def _answer(self, path: str) -> tuple[int, bytes, dict[str, str], float]:
        parts = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path != "/v3/carbon-intensity/forecast" or "zone" not in q:
            return 404, b'{"error": "not found"}', {}, 0.0
        zone = q["zone"]
        hours = int(q.get("horizonHours", 24))
        now = self.clock().floor("1h")
        with self.lock:
            if self.down:
                self.counts["down-503"] += 1
                return 503, b'{"error": "down"}', {}, 0.0
            fail = self.rng.random() < self.fault_rate
            kind = self.rng.choice(self.kinds) if fail else "ok"
            variant = self.rng.randrange(10) if self.variant is None else self.variant
            self.counts[kind] += 1
        ok = json.dumps(self._doc(zone, now, hours)).encode()
        if kind == "ok":
            return 200, ok, {}, 0.0
        if kind == "5xx":
            return (500, 502, 503, 504)[variant % 4], b'{"error": "internal"}', {}, 0.0
        if kind == "timeout":
            return 200, ok, {}, TIMEOUT_DELAY_S
        if kind == "429":
            headers = ({"Retry-After": "0"}, {}, {"Retry-After": "3600"})[variant % 3]
            return 429, b'{"error": "rate limited"}', headers, 0.0
        if kind == "stale":
            if variant % 2:
                old = now - pd.Timedelta("3D")  # a forecast from three days ago, ending before now
                return 200, json.dumps(self._doc(zone, old, 24)).encode(), {}, 0.0
            old = now - pd.Timedelta("20h")  # issued 20 h ago: covers only the next 4 h
            return 200, json.dumps(self._doc(zone, old, 24)).encode(), {}, 0.0
        # malformed
        doc = self._doc(zone, now, hours)
        pts = doc["forecast"]
        v = variant
        if v == 0:
            return 200, b"<html><body>502 Bad Gateway</body></html>", {}, 0.0
        if v == 1:
            return 200, ok[: max(1, len(ok) // 2)], {}, 0.0
        if v == 2:
            return 200, json.dumps({"zone": zone, "error": "no forecast"}).encode(), {}, 0.0
        if v == 3 and pts:
            pts[len(pts) // 2].pop("carbonIntensity")
        elif v == 4 and pts:
            pts[0]["carbonIntensity"] = "n/a"
        elif v == 5 and pts:
            pts[len(pts) // 3]["carbonIntensity"] = -250
        elif v == 6 and pts:
            for p in pts[1::2]:
                p["carbonIntensity"] = None
        elif v == 7 and len(pts) > 2:
            pts.append({**pts[1], "carbonIntensity": pts[1]["carbonIntensity"] + 50})
        elif v == 8 and pts:
            pts[0]["datetime"] = pts[0]["datetime"].replace(":00:00.000Z", ":17:00.000Z")
        else:  # a forecast starting hours after now (a lagging or mis-dated feed)
            lag = 1 + v % 6
            doc = self._doc(zone, now, hours, start=now + pd.Timedelta(hours=lag))
        return 200, json.dumps(doc).encode(), {}, 0.0


@dataclass(frozen=True)
class RunSpec:
    """One planned run: trigger time, duration, deadline (absolute) and policy mode."""

    now: pd.Timestamp
    duration: pd.Timedelta
    deadline: pd.Timestamp
    mode: str

    @property
    def latest_start(self) -> pd.Timestamp:
        """The latest start meeting the deadline, or now when the deadline cannot be met."""
        return max(self.deadline - self.duration, self.now)


def random_runs(n: int, *, seed: int = 1) -> list[RunSpec]:
    """``n`` runs in time order over 2023 (Feb-Nov): trigger times on a 5-minute grid, bursts of flows."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2023-02-01T00:00Z")
    span_min = int((pd.Timestamp("2023-11-25T00:00Z") - base) / pd.Timedelta("1min"))
    triggers = np.sort(rng.integers(0, span_min // 5, size=max(1, n // 3))) * 5
    out = []
    for i in range(n):
        now = base + pd.Timedelta(minutes=int(triggers[min(i // 3, len(triggers) - 1)]) + int(rng.integers(0, 3)))
        dur = pd.Timedelta(minutes=int(rng.choice([5, 20, 45, 60, 90, 120, 180, 300, 480])))
        r = rng.random()
        if r < 0.05:  # infeasible: the deadline is before now + duration
            deadline = now + dur * float(rng.uniform(0.5, 0.99))
        elif r < 0.12:  # zero slack
            deadline = now + dur
        else:
            deadline = now + dur + pd.Timedelta(minutes=int(rng.integers(1, 36 * 60)))
        mode = str(rng.choice(["contiguous", "interruptible", "threshold"], p=[0.6, 0.2, 0.2]))
        out.append(RunSpec(now=now, duration=dur, deadline=deadline.floor("1s"), mode=mode))
    return out


def _policy(spec: RunSpec, regions: list[str], home: str) -> CarePolicy:
    extra: dict[str, Any] = {}
    if spec.mode == "interruptible":
        extra = {"interruptible": True, "max_segments": 3}
    elif spec.mode == "threshold":
        extra = {"threshold_percentile": 30.0, "interruptible": True}  # green segments: the body pauses between them
    within = max(spec.deadline - spec.now, spec.duration)
    return CarePolicy(
        home_region=home, regions=regions, expected_duration=spec.duration.to_pytimedelta(),
        deadline_within=within.to_pytimedelta(), carbon_source="electricitymaps", vcpu=2, memory_gib=4, **extra,
    )


@dataclass
class Outcome:
    """What one run got: its plan (or run-now), who served each region, how long planning took."""

    spec: RunSpec
    start: pd.Timestamp
    segments: list[tuple[pd.Timestamp, pd.Timestamp]]
    region: str
    served_by: str
    region_sources: dict[str, str]
    latency_ms: float
    cpu_ms: float = 0.0
    fallback_errors: list[str] = field(default_factory=list)
    error: str | None = None


def plan_runs(specs: list[RunSpec], signal: Any, clock: DemoClock, *, regions: list[str], home: str) -> list[Outcome]:
    """Plan every run as the ``@care`` decorator does (``plan_run``; planning failure -> run now)."""
    from care_flows.orchestration.plan import plan_run

    out = []
    for spec in specs:
        clock.now = spec.now
        policy = _policy(spec, regions, home)
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            plan = plan_run(policy, spec.now, signal=signal, duration=spec.duration.to_pytimedelta(), deadline=spec.deadline, planner="decide")
        except (PlanningError, ProviderError, DataError) as exc:  # the decorator runs now in the home region
            ms, cpu = 1000 * (time.perf_counter() - t0), 1000 * (time.thread_time() - c0)
            out.append(Outcome(spec, spec.now, [(spec.now, spec.now + spec.duration)], home, "run-now (no plan)", {}, ms, cpu, error=f"{type(exc).__name__}: {exc}"))
            continue
        ms, cpu = 1000 * (time.perf_counter() - t0), 1000 * (time.thread_time() - c0)
        sources: dict[str, str] = {}
        if plan.options is not None and "data_source" in plan.options:
            for r, s in zip(plan.options["region"], plan.options["data_source"]):
                sources[str(r)] = str(s)
        errors = list((plan.forecast.attrs.get("fallback_errors") if plan.forecast is not None else None) or [])
        out.append(Outcome(spec, pd.Timestamp(plan.start), [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in plan.segments], plan.region, str(plan.source), sources, ms, cpu, errors))
    return out


def check_outcome(o: Outcome, regions: list[str]) -> list[str]:
    """Violations of the guarantees for one run (empty: all good)."""
    bad = []
    tol = pd.Timedelta("1ms")
    if o.start > o.spec.latest_start + tol:
        bad.append(f"late start {o.start} > latest start {o.spec.latest_start}")
    if o.start < o.spec.now - tol:
        bad.append(f"start {o.start} before the trigger {o.spec.now}")
    total = sum(((b - a) for a, b in o.segments), pd.Timedelta(0))
    if abs(total - o.spec.duration) > pd.Timedelta("1s"):
        bad.append(f"segments add up to {total}, not {o.spec.duration}")
    if o.spec.deadline - o.spec.duration >= o.spec.now and o.segments and max(b for _, b in o.segments) > o.spec.deadline + tol:
        bad.append(f"feasible run ends {max(b for _, b in o.segments)} after the deadline {o.spec.deadline}")
    if not o.served_by:
        bad.append("decision does not name the source that served it")
    if o.error is None and set(o.region_sources) != set(regions):
        bad.append(f"decision records sources for {sorted(o.region_sources)}, not every region {regions}")
    return bad


def _served_label(source: str) -> str:
    s = str(source)
    for prefix in ("stale-cache:", "cache:"):
        if s.startswith(prefix):
            return prefix[:-1]
    return s


def _phase(name: str, specs: list[RunSpec], *, regions: list[str], home: str, fault_rate: float, down: str | None, seed: int) -> dict[str, Any]:
    from care_flows.signals import get_signal

    clock = DemoClock()
    with tempfile.TemporaryDirectory(prefix="care-faults-") as cache_dir, FaultyElectricityMaps(clock, fault_rate=fault_rate, seed=seed, down=down == "503") as srv:
        url = srv.url
        if down == "refused":
            srv.server.server_close()  # nothing listens any more: connection refused
        signal = get_signal(
            "electricitymaps", api_token=TOKEN, base_url=url + "/v3", timeout_s=CLIENT_TIMEOUT_S,
            sleep=lambda s: None, clock=clock, cache_dir=cache_dir,
        )
        t0 = time.perf_counter()
        outcomes = plan_runs(specs, signal, clock, regions=regions, home=home)
        wall_s = time.perf_counter() - t0
        requests = dict(srv.counts)
    violations = {i: v for i, o in enumerate(outcomes) if (v := check_outcome(o, regions))}
    served = Counter()
    for o in outcomes:
        if o.error is not None:
            served["run-now"] += 1
        else:
            for s in o.region_sources.values():
                served[_served_label(s)] += 1
    lat = np.array([o.latency_ms for o in outcomes])
    cpu = np.array([o.cpu_ms for o in outcomes])
    return {
        "phase": name,
        "runs": len(outcomes),
        "regions": ",".join(regions),
        "fault_rate": fault_rate if down is None else 1.0,
        "requests": sum(requests.values()),
        "request_faults": sum(v for k, v in requests.items() if k != "ok"),
        "served_live": served.get("electricitymaps", 0),
        "served_cache": served.get("cache", 0),
        "served_stale_cache": served.get("stale-cache", 0),
        "served_embedded": served.get("embedded", 0),
        "run_now_no_plan": served.get("run-now", 0),
        "late_starts": sum(1 for v in violations.values() if any(x.startswith("late") for x in v)),
        "violations": len(violations),
        "p50_plan_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_plan_ms": round(float(np.percentile(lat, 95)), 1),
        "p50_plan_cpu_ms": round(float(np.percentile(cpu, 50)), 1),
        "p95_plan_cpu_ms": round(float(np.percentile(cpu, 95)), 1),
        "wall_s": round(wall_s, 1),
        "_violations": violations,
        "_outcomes": outcomes,
        "_requests": requests,
    }


def run(quick: bool = False) -> list[dict]:
    """Rows of the table: one per phase (``faults-30%``, ``down-503``, ``down-refused``, ``down-no-embedded``)."""
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in run_detailed(quick)]


def run_detailed(quick: bool = False) -> list[dict]:
    """Like :func:`run`, plus ``_outcomes``, ``_violations`` and ``_requests`` per phase."""
    n = 200 if quick else 1000
    n_down = 40 if quick else 200
    regions = ["eu-south-2", "eu-north-1"]
    rows = [
        _phase("faults-30%", random_runs(n, seed=1), regions=regions, home="eu-south-2", fault_rate=0.3, down=None, seed=7),
        _phase("down-503", random_runs(n_down, seed=2), regions=regions, home="eu-south-2", fault_rate=0.0, down="503", seed=8),
        _phase("down-refused", random_runs(n_down, seed=3), regions=regions, home="eu-south-2", fault_rate=0.0, down="refused", seed=9),
        _phase("down-no-embedded", random_runs(max(10, n_down // 4), seed=4), regions=["eu-west-1"], home="eu-west-1", fault_rate=0.0, down="503", seed=10),
    ]
    return rows


COLUMNS = [
    "phase", "runs", "regions", "requests", "request_faults", "served_live", "served_cache", "served_stale_cache",
    "served_embedded", "run_now_no_plan", "late_starts", "violations", "p50_plan_ms", "p95_plan_ms", "p50_plan_cpu_ms", "p95_plan_cpu_ms", "wall_s",
]


def _table(rows: list[dict]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.rjust(widths[c]) for c in COLUMNS)]
    for r in rows:
        lines.append("  ".join(str(r[c]).rjust(widths[c]) for c in COLUMNS))
    return "\n".join(lines)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    from _args import parse  # the script's own folder is on sys.path
    rows = run_detailed(quick=parse(__doc__).quick)
    print(_table(rows))
    print("served_* count region forecasts (2 per run with two regions); run_now_no_plan counts runs.")
    print("plan_ms: wall time of plan_run (forecast fetches incl. retries/timeouts + decide); plan_cpu_ms: CPU of the planning thread.")
    for r in rows:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(r["_requests"].items()))
        print(f"{r['phase']}: requests by outcome: {kinds}")
        for i, v in list(r["_violations"].items())[:10]:
            o = r["_outcomes"][i]
            print(f"  VIOLATION run {i} ({o.spec}): {'; '.join(v)}")
    sys.exit(0 if all(r["late_starts"] == 0 and r["violations"] == 0 for r in rows) else 1)
