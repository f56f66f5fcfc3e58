"""Artifacts explaining every CaRE decision, and the realized figures after the run.

Each kind's key names the run's flow (:func:`artifact_key`: ``care-realized-nightly-training``),
so the Prefect UI's Artifacts page keeps one key per flow and kind, whose latest version and
history are that flow's:

- ``care-options``: the options considered (region, option, start, end, instance type,
  expected gCO2eq, USD, latency, feasible, reason, below_min_saving (excluded only or also by ``min_savings_pct``) and rank (the built-in ``window`` planner: why),
  chosen: the row that runs);
- ``care-decision``: a markdown summary with a text sparkline of the forecast, the chosen window
  marked underneath, and the expected gCO2eq and USD saved against running now at home, with the
  abatement cost (USD per tCO2eq avoided);
- ``care-realized``: after the body ran, the actual duration and the realized intensity over
  the actual interval when the source has data for it; the realized kWh and USD are the instance's
  at the run's measured mean CPU when its samples cover the run (:func:`measured_vcpu`), else at
  the plan's utilisation; next to them, the same run time on the home-sized instance at home
  (``baseline_realized_usd``), the USD saved against it and the realized abatement cost.

>>> import pandas as pd
>>> s = pd.Series([400.0, 300, 100, 120, 380], index=pd.date_range("2026-01-01", periods=5, freq="1h", tz="UTC"))
>>> line, marks = sparkline(s, [(s.index[2], s.index[4])])
>>> line
'█▆▁▁█'
>>> marks
'  ^^ '
>>> sparkline(s, [(s.index[1] + pd.Timedelta("30min"), s.index[2] + pd.Timedelta("30min"))])[1]  # a window starting mid-slot
' ^^  '
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from care_flows.accounting import format_sig
from care_flows.errors import ConfigError
from care_flows.orchestration.plan import Plan
from care_flows.timeutil import iso

__all__ = ["sparkline", "decision_markdown", "decision_table", "publish_decision", "publish_realized", "publish_note",
           "artifact_key", "measured_vcpu", "parse_realized", "is_realized_key", "REALIZED_KIND", "MIN_USAGE_SAMPLES", "MIN_USAGE_COVERAGE"]

_BARS = "▁▂▃▄▅▆▇█"
MIN_USAGE_SAMPLES = 3
"""CPU samples a run needs before its realized kWh and USD use its measured utilisation."""
MIN_USAGE_COVERAGE = 0.5
"""Share of the run's duration the samples must span (first to last) for the same."""
log = logging.getLogger(__name__)


REALIZED_KIND = "care-realized"
"""The realized-figures artifacts' kind: their key is ``care-realized-<flow>`` (older CaRE: ``care-realized``)."""
_NUMERIC = frozenset({
    "duration_s", "realized_g_per_kwh", "realized_kwh", "realized_g", "realized_usd", "realized_utilisation", "expected_g_per_kwh",
    "expected_g", "expected_usd", "baseline_g", "baseline_g_per_kwh", "baseline_realized_g_per_kwh", "usage_samples", "cpu_vcpu_mean", "cpu_vcpu_peak", "memory_gib_peak",
    "baseline_usd", "baseline_realized_kwh", "baseline_realized_usd", "realized_savings_usd", "realized_abatement_usd_per_tco2",
})
_REQUIRED = ("region", "started", "finished", "outcome")
_LINE = re.compile(r"^\s*[-*]\s+\*\*(?P<key>[A-Za-z0-9_]+)\*\*:\s*(?P<value>.*?)\s*$")
_UNKNOWN = frozenset({"n/a", "na", "none", "null", "-", ""})


def parse_realized(markdown: Any) -> dict[str, Any]:
    """The figures of a ``care-realized`` artifact's markdown (``- **key**: value`` lines).

    ``n/a`` (and a non-finite number) is ``None``; numbers are floats; ``started``/``finished``
    are UTC timestamps. Raises :class:`ValueError` naming what is wrong when the text is not a
    realized-figures artifact (a required key missing, a number or time that does not parse).

    >>> f = parse_realized("# CaRE realized figures (completed)\\n\\n- **region**: eu-north-1\\n"
    ...                    "- **started**: 2026-03-02T01:00:00+00:00\\n- **finished**: 2026-03-02T02:00:00+00:00\\n"
    ...                    "- **outcome**: completed\\n- **realized_g**: 1,234.5\\n- **realized_usd**: n/a\\n- **root**: abc\\n")
    >>> f["region"], f["realized_g"], f["realized_usd"], f["root"], f["finished"].isoformat()
    ('eu-north-1', 1234.5, None, 'abc', '2026-03-02T02:00:00+00:00')
    >>> parse_realized("- **region**: eu-north-1\\n")
    Traceback (most recent call last):
    ...
    ValueError: missing started, finished, outcome
    """
    if not isinstance(markdown, str):
        raise ValueError(f"not markdown text ({type(markdown).__name__})")
    raw: dict[str, str] = {}
    for line in markdown.splitlines():
        m = _LINE.match(line)
        if m:
            raw.setdefault(m.group("key"), m.group("value"))
    missing = [k for k in _REQUIRED if raw.get(k, "").strip().lower() in _UNKNOWN]
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    out: dict[str, Any] = {}
    for key, text in raw.items():
        value = text.strip().strip("`")
        if value.lower() in _UNKNOWN:
            out[key] = None
        elif key in _NUMERIC:
            try:
                number = float(value.replace(",", ""))
            except ValueError:
                raise ValueError(f"{key} {value!r} is not a number") from None
            out[key] = number if math.isfinite(number) else None
        elif key in ("started", "finished"):
            try:
                ts = pd.Timestamp(value)
            except (ValueError, TypeError):
                raise ValueError(f"{key} {value!r} is not a time") from None
            if ts is pd.NaT:
                raise ValueError(f"{key} {value!r} is not a time")
            out[key] = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        else:
            out[key] = value
    return out


def is_realized_key(key: str | None) -> bool:
    """Whether an artifact key is a realized-figures artifact's: ``care-realized-<flow>``
    (:func:`care_flows.orchestration.artifacts.artifact_key`), or ``care-realized``, which every
    flow's runs shared before the key named the flow (still counted). Prefect's ``like_`` key filter
    matches a substring anywhere in the key, so the report reads with it and keeps these only.

    >>> [is_realized_key(k) for k in ("care-realized", "care-realized-nightly-training", "care-realizedx",
    ...                               "care-decision-care-realized-etl", "care-decision", "my-care-realized", None)]
    [True, True, False, False, False, False, False]
    """
    return key is not None and (key == REALIZED_KIND or key.startswith(f"{REALIZED_KIND}-"))


def sparkline(series: pd.Series, windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]] = (), width: int = 72) -> tuple[str, str]:
    """A one-line bar chart of ``series`` and a line of ``^`` under the points inside ``windows``.

    Longer series are averaged down to ``width`` points.
    """
    s = series.dropna().astype(float)
    if s.empty:
        return "", ""
    if len(s) > width:
        groups = np.arange(len(s)) * width // len(s)
        values = s.groupby(groups).mean().to_numpy()
        times = pd.Series(s.index).groupby(groups).first().to_numpy()
    else:
        values, times = s.to_numpy(), s.index.to_numpy()
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo or 1.0
    levels = np.clip(((values - lo) / span * (len(_BARS) - 1)).round().astype(int), 0, len(_BARS) - 1)
    line = "".join(_BARS[i] for i in levels)
    t = pd.DatetimeIndex(times)
    t = t.tz_localize("UTC") if t.tz is None else t
    ends = t[1:].append(pd.DatetimeIndex([t[-1] + (t[-1] - t[-2] if len(t) > 1 else pd.Timedelta(hours=1))]))
    marked = np.zeros(len(t), dtype=bool)
    for a, b in windows:
        marked |= (t < b) & (ends > a)  # every bar the window overlaps, including one it starts inside
    return line, "".join("^" if m else " " for m in marked)


def decision_table(plan: Plan) -> list[dict[str, Any]]:
    """Rows of the options table (JSON-ready)."""
    if plan.options is None or len(plan.options) == 0:
        return [{"region": plan.region, "start": iso(plan.start), "end": iso(plan.end), "instance_type": plan.instance_type, "expected_g": plan.expected_g, "expected_usd": plan.expected_usd, "feasible": True, "why": "", "chosen": True}]
    rows = []
    for rec in plan.options.to_dict("records"):
        row: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, (pd.Timestamp,)):
                v = iso(v)
            elif isinstance(v, float) and not np.isfinite(v):
                v = None
            elif isinstance(v, (np.generic,)):
                v = v.item()
            elif isinstance(v, (list, tuple, dict, pd.Series, pd.DataFrame)):
                continue
            row[k] = v
        row.setdefault("instance_type", plan.instance_type)
        # the row that runs (also when no option was feasible and it runs now at home, unranked; review 42f M2)
        row["chosen"] = row.get("region") == plan.region and row.get("start") == iso(plan.start) \
            and row.get("instance_type") == plan.instance_type
        rows.append(row)
    return rows


def _t(ts: pd.Timestamp) -> str:
    """ISO 8601 UTC to the second: what a reader of the UI needs (the plan keeps full precision)."""
    return iso(pd.Timestamp(ts).floor("s"))


def _fmt(v: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:,.{digits}f} {unit}"


def decision_markdown(plan: Plan, *, action: str, dispatched: str | None = None, dispatched_url: str | None = None,
                      note: str | None = None) -> str:
    """The markdown summary of a decision (what was decided, why, what it should save); ``note``: a
    line shown first (e.g. that a local call does not follow the plan)."""
    lines = [f"# CaRE decision: {action}", ""]
    if note:
        lines.append(f"- **Note**: {note}")
    lines.append(f"- **Region**: `{plan.region}` (home `{plan.home_region}`), instance type: `{plan.instance_type or 'deployment default'}`")
    lines.append(f"- **Window**: {_t(plan.start)} -> {_t(plan.end)} (decided {_t(plan.decided_at)}, deadline {_t(plan.deadline)})")
    if len(plan.segments) > 1:
        lines.append("- **Segments**: " + ", ".join(f"{_t(a)} -> {_t(b)}" for a, b in plan.segments))
    lines.append(f"- **Expected**: {format_sig(plan.expected_g, 'gCO2eq')} at {_fmt(plan.expected_g_per_kwh, 'g/kWh')}, "
                 f"cost {format_sig(plan.expected_usd, 'USD', 4)}")
    home_type = f" on `{plan.baseline_instance_type}`" if plan.baseline_instance_type else ""
    since = f" (now = the first decision, {_t(plan.baseline_start)})" if plan.baseline_start != plan.decided_at else ""
    lines.append(f"- **Baseline (now, home)**: {format_sig(plan.baseline_g, 'gCO2eq')} at {_fmt(plan.baseline_g_per_kwh, 'g/kWh')}, "
                 f"cost {format_sig(plan.baseline_usd, 'USD', 4)}{home_type}{since}")
    saved_usd = "USD n/a" if plan.savings_usd is None else format_sig(plan.savings_usd, "USD", 4)
    lines.append(f"- **Expected savings**: {format_sig(plan.savings_g, 'gCO2eq')} ({_fmt(plan.savings_pct, '%')}), {saved_usd}")
    abatement = plan.abatement_usd_per_tco2
    if abatement is not None:
        sign = " (negative: greener and cheaper)" if abatement < 0 else " (the greener choice costs more)" if abatement > 0 else ""
        lines.append(f"- **Abatement cost**: {format_sig(abatement, 'USD/tCO2eq avoided', 0)}{sign}")
    else:
        lines.append(f"- **Abatement cost**: n/a ({plan.abatement_note})")
    model = plan.forecast.attrs.get("forecast_model") if plan.forecast is not None else None
    replayed = " (the trace's last year replayed at these dates: a stand-in, not this day's grid)" if model and "+replay(" in str(model) else ""
    kind = plan.forecast.attrs.get("signal") if plan.forecast is not None else None
    lines.append(f"- **Source**: {plan.source}" + (f" ({kind} intensity)" if kind else "") + (f", forecast `{model}`{replayed}" if model else "")
                 + f", planner: {plan.planner}")
    if plan.sizing:
        lines.append(f"- **Sized from**: {plan.sizing}")
    if plan.duration_from:
        lines.append(f"- **Duration from**: {plan.duration_from}")
    if plan.overrides:
        from care_flows.orchestration.overrides import describe_overrides

        given = describe_overrides(plan.overrides).replace("`", "'")  # inside a code span: a backtick would end it
        lines.append(f"- **Policy overrides** (job variable `care_overrides`): `{given}`")
    if dispatched:
        link = f"[{dispatched}]({dispatched_url})" if dispatched_url else f"`{dispatched}`"
        lines.append(f"- **Dispatched run**: {link}")
    for w in plan.warnings:
        lines.append(f"- warning: {w}")
    if plan.forecast is not None and len(plan.forecast):
        line, marks = sparkline(plan.forecast, plan.segments)
        f = plan.forecast.dropna()
        lines += ["", f"Forecast for `{plan.region}` ({iso(f.index[0])} -> {iso(f.index[-1])}, "
                  f"{f.min():.0f}-{f.max():.0f} g/kWh; ^ = chosen):", "", "```", line, marks, "```"]
    return "\n".join(lines) + "\n"


def artifact_key(kind: str, flow_name: str | None) -> str:
    """The key of a ``kind`` artifact (``care-decision``, ``care-options``, ``care-realized``,
    ``care-continued``) of a run of the flow ``flow_name``: the kind, a dash and the flow name as
    Prefect's artifact keys allow it (lowercase letters, numbers and dashes; no length limit): accents
    dropped, lowercased, every other run of characters one dash. A name with nothing left, or whose
    slug is longer than 60 characters, gets its first 40 and 8 hex digits of its SHA-1. Outside a
    flow run (``flow_name`` None) the kind alone, the key every run had before keys named the flow.
    No kind is a prefix of another, so two flows' keys never meet (the options table was once
    ``care-decision-table-<flow>``, also the decision key of a flow named ``table-<flow>``).

    >>> artifact_key("care-realized", "nightly-training")
    'care-realized-nightly-training'
    >>> artifact_key("care-options", "ETL nightly (v2)"), artifact_key("care-decision", "Café_jobs")
    ('care-options-etl-nightly-v2', 'care-decision-cafe-jobs')
    >>> kinds, flows = ["care-options", "care-decision", "care-realized", "care-continued"], ["x", "options-x", "decision-x", "realized-x"]
    >>> len({artifact_key(kind, name) for kind in kinds for name in flows})  # 4 kinds x 4 flows, no two alike
    16
    >>> artifact_key("care-decision", "日本"), artifact_key("care-decision", None)
    ('care-decision-44da6bbc', 'care-decision')
    >>> artifact_key("care-realized", "Nightly Training Pipeline For The Big Recommendation Model v2026")
    'care-realized-nightly-training-pipeline-for-the-big-re-c9632978'
    """
    if flow_name is None:
        return kind
    ascii_name = unicodedata.normalize("NFKD", flow_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if len(slug) > 60 or not slug:
        slug = f"{slug[:40].strip('-')}-{hashlib.sha1(flow_name.encode()).hexdigest()[:8]}".strip("-")
    return f"{kind}-{slug}"


def _key(kind: str) -> str:
    """:func:`artifact_key` of ``kind`` for the flow of the current flow run (the run Prefect
    attaches the artifact to); the kind alone outside a flow run."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        name = ctx.flow.name if ctx is not None and ctx.flow_run is not None and ctx.flow is not None else None
    except Exception:  # noqa: BLE001 - an artifact's key must never fail the run
        name = None
    return artifact_key(kind, name)


def _safe(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Artifacts are explanations: failing to write one must never fail the run.

    ``_sync=True``: Prefect's dual sync/async functions would otherwise hand back an un-awaited
    coroutine inside async flows (where the decision code runs in a worker thread).
    """
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not create CaRE artifact: %s", exc)
        return None


def publish_decision(plan: Plan, *, action: str, dispatched: str | None = None, dispatched_url: str | None = None,
                     note: str | None = None, flow_run_id: Any = None, flow_name: str | None = None, client: Any = None) -> None:
    """Create the decision table and markdown artifacts (in the current flow run, if any), keyed
    ``care-options-<flow>`` and ``care-decision-<flow>`` (:func:`artifact_key`); ``flow_run_id``:
    on that run instead, keyed for ``flow_name`` (``care controller``, on the runs it plans, with its
    sync ``client``), and an API error raises."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if flow_run_id is not None:
        markdown = decision_markdown(plan, action=action, dispatched=dispatched, dispatched_url=dispatched_url, note=note)
        _create_on_run(flow_run_id, key=artifact_key("care-decision", flow_name), markdown=markdown, description=f"CaRE decision: {action}",
                       client=client)
        _create_on_run(flow_run_id, key=artifact_key("care-options", flow_name), table=decision_table(plan),
                       description=f"CaRE options considered ({action})", client=client)
        return
    _safe(create_table_artifact, table=decision_table(plan), key=_key("care-options"), description=f"CaRE options considered ({action})", _sync=True)
    _safe(
        create_markdown_artifact,
        markdown=decision_markdown(plan, action=action, dispatched=dispatched, dispatched_url=dispatched_url, note=note),
        key=_key("care-decision"),
        description=f"CaRE decision: {action}",
        _sync=True,
    )


def publish_note(markdown: str, *, key: str = "care-decision", description: str = "CaRE") -> None:
    """A free-form markdown artifact (e.g. "continued in <run>"); ``key``: its kind, keyed
    ``<key>-<flow>`` in a flow run (:func:`artifact_key`)."""
    from prefect.artifacts import create_markdown_artifact

    _safe(create_markdown_artifact, markdown=markdown, key=_key(key), description=description, _sync=True)


def _region_row(plan: Plan, region: str, *, baseline: bool = False) -> pd.Series | None:
    """The options row (its run-now row) of the instance ``plan`` sized for ``region``, else None:
    the plan's own type in the plan's region (which may be a dearer type offered for
    ``max_g_per_run``), the right-sized type elsewhere and, with ``baseline``, at home."""
    if plan.options is not None and len(plan.options) and {"region", "kwh", "expected_usd", "start", "end"} <= set(plan.options.columns):
        from care_flows.planning.decide import right_sized_rows

        opts = plan.options
        rows = opts[(opts["region"] == region) & np.isfinite(opts["kwh"].astype(float))]
        if "kind" in opts.columns:
            rows = rows[rows["kind"] == "now"]  # one segment: start..end is the expected duration
        own = rows.iloc[:0]
        if not baseline and region == plan.region and plan.instance_type and "instance_type" in rows.columns:
            own = rows[rows["instance_type"] == plan.instance_type]
        rows = own if len(own) else right_sized_rows(rows)
        if len(rows):
            return rows.iloc[0]
    return None


def _run_rates(plan: Plan | None, region: str) -> tuple[float | None, float | None]:
    """kW and USD/h of the instance ``plan`` sized for ``region`` (from its options), or (None, None).

    The options table holds each region's kWh and USD for the whole expected duration (the same
    for its run-now and planned rows); a local run executes in the home region, not the plan's.
    """
    if plan is None:
        return None, None
    row = _region_row(plan, region)
    if row is not None:
        hours = (pd.Timestamp(row["end"]) - pd.Timestamp(row["start"])).total_seconds() / 3600.0
        if hours > 0:
            return float(row["kwh"]) / hours, float(row["expected_usd"]) / hours
    # a plan rebuilt from its marker (no options), or the window planner's, whose power is the same in every region
    kwh = plan.energy_kwh
    if (region == plan.region or plan.planner == "window") and kwh:
        hours = sum((b - a).total_seconds() for a, b in plan.segments) / 3600.0
        if hours > 0:  # the window planner prices nothing: kW without USD/h
            priced = plan.expected_usd is not None and region == plan.region  # prices differ by region
            return kwh / hours, plan.expected_usd / hours if priced else None
    return None, None


def measured_vcpu(usage: pd.DataFrame | None, duration_s: float) -> float | None:
    """The run's mean CPU in vCPU from its samples, or None when they do not stand for the run.

    Each raw sample's CPU is the process tree's over the interval since the sample before it (the
    sampler's first sample is its 0-vCPU baseline and covers nothing), so the mean is weighted by
    those intervals: the CPU seconds used over the seconds sampled. Stored rows (with
    ``cpu_vcpu_mean``, what ``record_usage`` writes) each stand for one 10-second bucket from
    their time on: equal weights, the first row included. It needs at least :data:`MIN_USAGE_SAMPLES` samples spanning at least
    :data:`MIN_USAGE_COVERAGE` of ``duration_s`` (not a body of a second or two, nor a sampler
    that stopped early, nor a run timed on an injected clock the samples do not follow).

    >>> t = pd.date_range("2026-01-01", periods=4, freq="1s", tz="UTC")
    >>> usage = pd.DataFrame({"time": t, "cpu_vcpu": [0.0, 1.0, 1.0, 0.4], "memory_gib": 1.0})
    >>> round(measured_vcpu(usage, 3.0), 6)  # (1 + 1 + 0.4) / 3: the first sample is the baseline
    0.8
    >>> measured_vcpu(usage, 7.0) is None, measured_vcpu(usage.head(2), 1.0) is None  # 3 s of a 7 s run; 2 samples
    (True, True)
    >>> rows = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=3, freq="10s", tz="UTC"), "cpu_vcpu": 2.0,
    ...                      "memory_gib": 1.0, "cpu_vcpu_mean": [1.2, 0.8, 0.2]})
    >>> round(measured_vcpu(rows, 30.0), 6)  # three 10-s buckets
    0.733333
    """
    if usage is None or len(usage) < MIN_USAGE_SAMPLES or "time" not in usage.columns or not duration_s > 0:
        return None
    from care_flows.usage_capture import CPU_MEAN_COLUMN, cpu_vcpu_means

    times = pd.to_datetime(usage["time"], utc=True, errors="coerce")
    cpu = cpu_vcpu_means(usage)[0].astype(float)
    ok = times.notna().to_numpy() & np.isfinite(cpu.to_numpy())
    frame = pd.DataFrame({"t": times.to_numpy()[ok], "cpu": cpu.to_numpy()[ok]}).sort_values("t", kind="stable")
    if len(frame) < MIN_USAGE_SAMPLES:
        return None
    if CPU_MEAN_COLUMN in usage.columns:  # stored rows: one bucket each, from its time on
        from care_flows.orchestration.learned_sizing import RECORD_STEP_S

        dt = np.full(len(frame), RECORD_STEP_S)
        cpu_v = frame["cpu"].to_numpy()
    else:  # raw samples: each covers the interval since the one before; the first is the baseline
        dt = frame["t"].diff().dt.total_seconds().to_numpy()[1:]
        cpu_v = frame["cpu"].to_numpy()[1:]
    covered = float(dt.sum())
    if covered <= 0 or covered < MIN_USAGE_COVERAGE * duration_s:
        return None
    return float(np.dot(cpu_v, dt) / covered)


def _planned_type(plan: Plan | None, region: str) -> str | None:
    """The instance type ``plan`` sized for ``region`` (its options row, else the plan's own type there)."""
    if plan is None:
        return None
    row = _region_row(plan, region)
    if row is not None and "instance_type" in row.index:
        return row["instance_type"] or None
    return plan.instance_type if region == plan.region or plan.planner == "window" else None


def _measured_rates(plan: Plan | None, region: str, mean_vcpu: float, priced: bool,
                    ran_on: str | None = None) -> tuple[float, float | None, float] | None:
    """kW and USD/h of the instance that ran in ``region`` at ``mean_vcpu``, and its utilisation:
    ``min(1, mean_vcpu / its vCPU)`` in the accounting's power model, and its list price plus the
    CPU credits a burstable type costs above its baseline there (USD/h None unless ``priced``: the
    plan priced nothing there). None when the plan names no instance type for ``region`` or its
    vCPU (or, when ``priced``, its list price) is not known: for the realized figures the plan's
    rates then stand; for the baseline (:func:`_baseline_rates`) no rate does. ``ran_on``: the
    type that really ran when it is not the planned one (a capacity fallback), priced from the catalogue."""
    if plan is None:
        return None
    from care_flows.accounting import energy_kwh, instance_watts
    from care_flows.pricing import EmbeddedPrices, cpu_credit_usd_per_hour, instance_shape

    instance_type = _planned_type(plan, region)
    row = _region_row(plan, region)
    list_usd = None
    if (row is not None and {"instance_type", "usd_per_hour"} <= set(row.index) and row["usd_per_hour"] is not None
            and np.isfinite(float(row["usd_per_hour"]))):
        list_usd = float(row["usd_per_hour"])
    if ran_on and ran_on != instance_type:
        instance_type, list_usd = ran_on, None
    if not instance_type:
        return None
    shape = instance_shape(instance_type)  # vCPU and memory are the type's wherever it is priced
    if shape is None or not shape[0] > 0:
        return None
    vcpu, memory_gib = shape
    if list_usd is None and priced:
        try:
            list_usd = EmbeddedPrices().usd_per_hour(region, instance_type)
        except ConfigError:  # not priced in this region
            return None
    utilisation = min(1.0, max(0.0, mean_vcpu) / vcpu)
    watts, _ = instance_watts(instance_type, utilisation, vcpu=vcpu, memory_gib=memory_gib)
    usd_per_hour = list_usd + cpu_credit_usd_per_hour(instance_type, vcpu, utilisation) if priced and list_usd is not None else None
    return float(energy_kwh(watts, 1.0)), usd_per_hour, utilisation


def _moved(plan: Plan | None, region: str, instance_type: str | None) -> bool:
    """The run executes in ``region`` on ``instance_type`` (``CARE_REGION`` / ``CARE_INSTANCE_TYPE``
    of a CaRE instance) where ``plan`` sized nothing: a capacity fallback to another region, with a
    plan rebuilt from its marker (no options table) or a region the plan did not consider. Its
    rates come from the type that ran, priced in that region."""
    return (plan is not None and bool(instance_type) and region != plan.region and plan.planner != "window"
            and _region_row(plan, region) is None)


def _moved_rates(plan: Plan, region: str) -> tuple[float | None, float | None]:
    """kW and USD/h of the plan's own instance type moved to ``region`` at the planned utilisation:
    the plan's kW (power does not depend on the region), and ``region``'s list price plus the CPU
    credits the plan priced (the plan's USD/h less its list price in its own region; credits cost
    the same everywhere). USD/h None when either list price is not in the catalogue."""
    from care_flows.pricing import EmbeddedPrices

    kw, usd_per_hour = _run_rates(plan, plan.region)
    if usd_per_hour is None or not plan.instance_type:
        return kw, None
    try:
        prices = EmbeddedPrices()
        credits = max(0.0, usd_per_hour - prices.usd_per_hour(plan.region, plan.instance_type))
        return kw, prices.usd_per_hour(region, plan.instance_type) + credits
    except ConfigError:  # not priced in one of the regions
        return kw, None


def _baseline_type(plan: Plan) -> str | None:
    """The home-sized instance type the plan's baseline (run now at home) runs on, if known."""
    row = _region_row(plan, plan.home_region, baseline=True)
    if row is not None and "instance_type" in row.index and row["instance_type"]:
        return str(row["instance_type"])
    if plan.baseline_instance_type:
        return plan.baseline_instance_type
    return plan.instance_type if plan.region == plan.home_region or plan.planner == "window" else None


def _baseline_rates(plan: Plan | None, mean_vcpu: float | None) -> tuple[float | None, float | None]:
    """kW and USD/h of running this work now at home on the home-sized instance (the baseline of
    the plan's expected figures), at the same CPU use as the realized figures: at the run's measured
    mean CPU when it is known (its list price at home plus the CPU credits at that use), else the
    plan's baseline rates at the planned utilisation. USD/h None when the plan priced nothing (the
    window planner); (None, None) without a plan or when the plan does not say, and when the CPU was
    measured but the home-sized instance cannot be rated at it (a plan rebuilt from a marker an older
    CaRE wrote names no home-sized type): the plan's rates are at the planned utilisation, which
    would compare two CPU uses (``care report`` then takes the energy the run used)."""
    if plan is None:
        return None, None
    priced = plan.expected_usd is not None or plan.baseline_usd is not None
    if mean_vcpu is not None:
        home_type = _baseline_type(plan)
        measured = None if not home_type else _measured_rates(plan, plan.home_region, mean_vcpu, priced=priced, ran_on=home_type)
        return (None, None) if measured is None else (measured[0], measured[1])
    row = _region_row(plan, plan.home_region, baseline=True)
    if row is not None:
        hours = (pd.Timestamp(row["end"]) - pd.Timestamp(row["start"])).total_seconds() / 3600.0
        if hours > 0:
            usd = float(row["expected_usd"])
            return float(row["kwh"]) / hours, usd / hours if priced and np.isfinite(usd) else None
    hours = plan.work.total_seconds() / 3600.0
    if hours <= 0:
        return None, None
    kwh = plan.baseline_energy_kwh
    kw = None if kwh is None else kwh / hours
    return kw, None if plan.baseline_usd is None else plan.baseline_usd / hours


def _sig(value: float, digits: int = 9) -> float:
    """``value`` to ``digits`` significant digits.

    >>> _sig(0.000123456789123), _sig(12345.678912345)
    (0.000123456789, 12345.6789)
    """
    return float(f"{value:.{digits}g}")


def _plan_forecast_for(plan: Plan | None, region: str) -> pd.Series | None:
    """The plan's forecast for the region the body ran in: the chosen region's, or the home
    region's (a local run, or a run kept at home), else None."""
    if plan is None:
        return None
    if plan.region == region and plan.forecast is not None:
        return plan.forecast
    return plan.home_forecast if plan.home_region == region else None


def realized_description(figures: dict[str, Any]) -> str:
    """The ``care-realized`` artifact's one-line description (the UI's Artifacts list shows it, so
    a flow's runs can be told apart there without opening each).

    >>> realized_description({"outcome": "completed", "region": "eu-north-1", "instance_type": "t3.large",
    ...                       "realized_g": 1.23456, "realized_usd": 0.0864, "baseline_g": 12.0})
    'CaRE realized (completed) in eu-north-1 on t3.large: 1.23 gCO2eq, 0.0864 USD'
    >>> realized_description({"outcome": "failed", "region": "eu-south-2", "realized_g": None, "realized_usd": None})
    'CaRE realized (failed) in eu-south-2: gCO2eq n/a, USD n/a'
    """
    g, usd = figures.get("realized_g"), figures.get("realized_usd")
    on = f" on {figures['instance_type']}" if figures.get("instance_type") else ""
    return (f"CaRE realized ({figures.get('outcome')}) in {figures.get('region')}{on}: "
            f"{'gCO2eq n/a' if g is None else f'{g:.3g} gCO2eq'}, {'USD n/a' if usd is None else f'{usd:.4f} USD'}")


def publish_realized(
    plan: Plan | None,
    *,
    started: pd.Timestamp,
    finished: pd.Timestamp,
    region: str,
    outcome: str = "completed",
    intensity: pd.Series | None = None,
    usage: pd.DataFrame | None = None,
    intensity_label: str = "history",
    root: str | None = None,
    baseline_realized_g_per_kwh: float | None = None,
    instance_type: str | None = None,
    flow_run_id: Any = None,
    flow_name: str | None = None,
    client: Any = None,
    recorded_by: str | None = None,
) -> dict[str, Any]:
    """Create the ``care-realized`` artifact (keyed ``care-realized-<flow>``: :func:`artifact_key`);
    returns the figures.

    The artifact goes to the current flow run (failing to write it is logged, never raised);
    ``flow_run_id`` puts it on that run instead, keyed for ``flow_name`` (with the sync ``client``,
    else a new one), and an API error raises (``care controller``, which accounts runs of
    undecorated flows after they end, tries again); ``recorded_by`` (last in the figures) names who
    measured a run outside its own process.

    ``intensity``: the source's values around the run (``intensity_label`` says what they are:
    ``history`` when the source has observed data, ``forecast`` for a forecast given to ``@care``);
    without it the plan's forecast is used, labelled so. The realized g/kWh is the time-weighted
    mean over [started, finished), which the series must cover (else it is None); realized kWh,
    gCO2eq and USD are the measured duration on the instance the plan sized for ``region``. ``usage``: sampled ``cpu_vcpu``/``memory_gib`` of the
    run's process tree (rows with a ``cpu_vcpu_mean``, stored 10-second rows, give their mean CPU
    to ``cpu_vcpu_mean``; their ``cpu_vcpu`` is a maximum). When the samples cover the run
    (:func:`measured_vcpu`) and the type's vCPU is known, the instance runs at
    ``realized_utilisation`` = min(1, measured mean vCPU / its vCPU): kWh from the accounting's
    power model there, USD its list price plus the CPU credits a burstable type costs at it
    (``realized_rates_from``: ``measured CPU``); otherwise the plan's kW and USD/h, at the planned
    utilisation (``plan``). A plan that priced nothing there (the window planner) has no USD either way.
    ``root``: the CaRE root run id that ties the segments of one job together (``care report``
    counts a job's expected and baseline figures once); last in the figures. ``instance_type``: the
    type the run really executed on (``CARE_INSTANCE_TYPE`` on a CaRE instance), when a capacity
    fallback launched another than the plan sized for ``region``: its rates are the catalogue's at the
    measured CPU, and without a measured CPU the run has no realized kWh or USD (never the planned
    type's, which did not run). In a region the plan sized nothing for (a capacity fallback to another
    region, with a plan rebuilt from its marker), ``instance_type`` is the type that ran: priced from
    the catalogue there, at the measured CPU, else (the planned type) at the plan's kW and CPU credits.

    The segment's baseline is the same run time on the home-sized instance at home, at the same CPU
    use as the realized figures (:func:`_baseline_rates`): ``baseline_realized_kwh`` and
    ``baseline_realized_usd``; ``realized_savings_usd`` = ``baseline_realized_usd`` - ``realized_usd``
    and ``realized_abatement_usd_per_tco2`` its extra USD per tonne avoided against
    ``baseline_realized_kwh`` x ``baseline_realized_g_per_kwh`` (None when nothing is avoided, a figure
    is unknown or the segment failed). The figures count the body's run time only: not an instance's
    boot, install and shutdown, nor EC2's 60-second minimum charge per launch.
    """
    from prefect.artifacts import create_markdown_artifact

    from care_flows.accounting import mean_intensity

    duration_s = (finished - started).total_seconds()
    realized, realized_from = None, None
    given = intensity is not None and len(intensity.dropna())
    series = intensity if given else _plan_forecast_for(plan, region)
    if series is not None and len(series.dropna()):
        try:
            # any series must cover all of the run, or its mean stands for hours it knows nothing of (review 46a M1)
            realized = mean_intensity(series, started, finished, full=True)
            realized_from = str(series.attrs.get("source", "given")) + (f" {intensity_label}" if given else " forecast")
        except ValueError:  # the series does not reach the run's interval
            realized = None
    kw, usd_per_hour = _run_rates(plan, region)
    planned_type = _planned_type(plan, region)
    priced = usd_per_hour is not None
    moved = _moved(plan, region, instance_type)
    if moved:  # a capacity fallback to a region the plan has no rates for: the type that ran, priced where it ran
        assert plan is not None
        planned_type, priced = plan.instance_type, plan.expected_usd is not None
        kw, usd_per_hour = _moved_rates(plan, region) if instance_type == planned_type else (None, None)
    rates_from = None if kw is None and usd_per_hour is None else "plan"
    ran_on = instance_type if instance_type and planned_type and instance_type != planned_type else None
    utilisation = None
    mean_vcpu = measured_vcpu(usage, duration_s)  # None: the samples do not stand for the run
    measured = None if mean_vcpu is None else _measured_rates(plan, region, mean_vcpu, priced=priced,
                                                              ran_on=ran_on or (instance_type if moved else None))
    if measured is not None:
        kw, usd_per_hour, utilisation = measured
        rates_from = "measured CPU" + (f" on {ran_on} (planned {planned_type})" if ran_on else "")
    elif ran_on:  # the planned type's rates would describe an instance that did not run
        kw, usd_per_hour, rates_from = None, None, f"unknown: ran on {ran_on}, not the planned {planned_type}, CPU not measured"
    if moved and rates_from == "plan":
        rates_from = f"plan, {planned_type} priced in {region}"
    hours = duration_s / 3600.0
    realized_kwh = None if kw is None else kw * hours
    realized_g = None if realized_kwh is None or realized is None else realized_kwh * realized
    realized_usd = None if usd_per_hour is None else usd_per_hour * hours
    # the baseline of this segment: the same work run now at home on the home-sized instance, at the
    # same CPU use as the realized figures; its USD (and its energy, for the abatement) come from that one instance
    base_kw, base_usd_per_hour = _baseline_rates(plan, mean_vcpu if measured is not None else None)
    baseline_kwh = None if base_kw is None else base_kw * hours
    baseline_usd = None if base_usd_per_hour is None else base_usd_per_hour * hours
    done = outcome != "failed"  # a failed segment's work is not done: nothing was saved
    savings_usd = baseline_usd - realized_usd if done and baseline_usd is not None and realized_usd is not None else None
    abatement = None
    if savings_usd is not None and baseline_kwh is not None and baseline_realized_g_per_kwh is not None and realized_g is not None:
        from care_flows.accounting import abatement_usd_per_tco2

        at_home_g = baseline_kwh * baseline_realized_g_per_kwh
        avoided_g = at_home_g - realized_g
        if abs(avoided_g) <= 1e-9 * max(abs(at_home_g), abs(realized_g)):  # the same figure through two roundings: nothing avoided
            avoided_g = 0.0
        abatement = abatement_usd_per_tco2(-savings_usd, avoided_g)
    figures: dict[str, Any] = {
        "region": region,
        **({"instance_type": ran_on} if ran_on else {}),
        "started": iso(started),
        "finished": iso(finished),
        "duration_s": round(duration_s, 3),
        "outcome": outcome,
        "realized_g_per_kwh": None if realized is None else _sig(realized),
        "realized_from": realized_from,
        # significant digits, not decimals: a short run's figures keep their precision
        "realized_kwh": None if realized_kwh is None else _sig(realized_kwh),
        "realized_g": None if realized_g is None else _sig(realized_g),
        "realized_usd": None if realized_usd is None else _sig(realized_usd),
        # the instance's CPU use the kWh and USD are at: the run's measured mean (None: the plan's)
        "realized_utilisation": None if utilisation is None else round(utilisation, 4),
        "realized_rates_from": rates_from,
        "expected_g_per_kwh": None if plan is None else plan.expected_g_per_kwh,
        "expected_g": None if plan is None else plan.expected_g,
        "expected_usd": None if plan is None else plan.expected_usd,
        "baseline_g": None if plan is None else plan.baseline_g,
        "baseline_g_per_kwh": None if plan is None else plan.baseline_g_per_kwh,
        "baseline_usd": None if plan is None or plan.baseline_usd is None else _sig(plan.baseline_usd),
        # whether this segment ended by the plan's deadline (a run a worker picked up late may not)
        "deadline": None if plan is None else iso(plan.deadline),
        "deadline_met": None if plan is None else bool(finished <= plan.deadline + pd.Timedelta(minutes=1)),
    }
    if usage is not None and len(usage):
        from care_flows.usage_capture import cpu_vcpu_means

        figures.update(
            usage_samples=int(len(usage)),
            # the mean realized_utilisation uses, else the samples' plain mean (stored 10-s rows: their cpu_vcpu_mean)
            cpu_vcpu_mean=round(mean_vcpu if mean_vcpu is not None else float(cpu_vcpu_means(usage)[0].mean()), 3),
            cpu_vcpu_peak=round(float(usage["cpu_vcpu"].max()), 3),
            memory_gib_peak=round(float(usage["memory_gib"].max()), 3),
        )
    figures["root"] = root or None
    # the run-now-at-home intensity over this segment's share of the run-now window, observed the
    # way realized_g_per_kwh is (care report's baseline; None: the data do not cover it)
    figures["baseline_realized_g_per_kwh"] = None if baseline_realized_g_per_kwh is None else _sig(baseline_realized_g_per_kwh)
    figures["baseline_realized_kwh"] = None if baseline_kwh is None else _sig(baseline_kwh)
    figures["baseline_realized_usd"] = None if baseline_usd is None else _sig(baseline_usd)
    figures["realized_savings_usd"] = None if savings_usd is None else _sig(savings_usd)
    figures["realized_abatement_usd_per_tco2"] = None if abatement is None else _sig(abatement, 6)
    if recorded_by:
        figures["recorded_by"] = recorded_by
    md = [f"# CaRE realized figures ({outcome})", ""] + [f"- **{k}**: {v if v is not None else 'n/a'}" for k, v in figures.items()]
    md += ["", "realized_* are this run (segment) as measured: its duration x the power and price (list price plus CPU credits) "
           "of the instance planned for its region at the CPU use named in realized_rates_from (measured CPU: the run's sampled "
           f"mean, realized_utilisation of the instance's vCPU, when at least {MIN_USAGE_SAMPLES} samples span at least "
           f"{MIN_USAGE_COVERAGE:.0%} of the run; plan: the planned utilisation), at the intensity named in realized_from; "
           "the duration is the body's run time only: an instance's boot, install and shutdown, and EC2's 60-second minimum "
           "charge per launch, are not counted. "
           "expected_* and baseline_g, baseline_usd (run now at home) are the plan's, for the whole job; "
           "baseline_realized_g_per_kwh is what running this work now at home met, from the same data as realized_g_per_kwh; "
           "baseline_realized_kwh and baseline_realized_usd are this segment's duration on the home-sized instance at the same "
           "CPU use (n/a when that instance cannot be rated at it, as for a run planned by an older CaRE); "
           "realized_savings_usd is baseline_realized_usd - realized_usd, and realized_abatement_usd_per_tco2 its "
           "extra USD per tonne of CO2eq avoided against that instance at home (baseline_realized_kwh x "
           "baseline_realized_g_per_kwh - realized_g; negative: greener and cheaper; n/a when no carbon was avoided, a figure "
           "is unknown or the segment failed)."]
    description = realized_description({**figures, "instance_type": figures.get("instance_type") or instance_type or _planned_type(plan, region)})
    if flow_run_id is not None:
        _create_on_run(flow_run_id, key=artifact_key(REALIZED_KIND, flow_name), markdown="\n".join(md) + "\n", description=description,
                       client=client)
    else:
        _safe(create_markdown_artifact, markdown="\n".join(md) + "\n", key=_key(REALIZED_KIND), description=description, _sync=True)
    return figures


def _create_on_run(flow_run_id: Any, *, key: str, description: str, markdown: str | None = None,
                   table: list[dict[str, Any]] | None = None, client: Any = None) -> None:
    """A markdown (or table) artifact on the flow run ``flow_run_id`` (not the current one), with the
    sync ``client`` (None: a new one); API errors raise."""
    from prefect.client.schemas.actions import ArtifactCreate

    kind, data = ("markdown", markdown) if table is None else ("table", _json_table(table))
    artifact = ArtifactCreate(key=key, type=kind, data=data, description=description, flow_run_id=flow_run_id)
    if client is not None:
        client.create_artifact(artifact)
        return
    from prefect import get_client

    with get_client(sync_client=True) as own:
        own.create_artifact(artifact)


def _json_table(rows: list[dict[str, Any]]) -> str:
    """A table artifact's data as Prefect's ``create_table_artifact`` stores it: JSON, NaN as null."""
    import json
    import math

    return json.dumps([{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows])
