"""Trace-driven evaluation of scheduling policies (``care simulate``).

- :func:`simulate`: one call, what ``care simulate`` does, from Python;
- :mod:`care_flows.simulate.jobs`: JOBS.csv, the GAIA converter, Poisson arrivals;
- :mod:`care_flows.simulate.engine`: carbon traces, forecasts made at each arrival, the
  vectorised simulation and its per-job outcome;
- :mod:`care_flows.simulate.policies`: ``now``, ``oracle``, ``care``, ``threshold`` and the peers'
  decision rules (carbonaware-prefect, Let's Wait Awhile, GAIA Carbon-Time);
- :mod:`care_flows.simulate.report`: the JSON summary and PLAN.csv.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

if TYPE_CHECKING:
    import pandas as pd

    from care_flows.simulate.engine import CarbonTrace, Outcome
    from care_flows.simulate.jobs import JobSet

__all__ = ["simulate", "jobs", "engine", "policies", "report"]

DEFAULT_REGION_OF_A_PATH = "eu-south-2"
"""The region a carbon CSV given without ``REGION=`` and without a home region stands for."""


def simulate(
    jobs: Union[str, "os.PathLike[str]", "pd.DataFrame", "JobSet"],
    carbon: Union[str, "os.PathLike[str]", Sequence[str], Mapping[str, "pd.Series"], "CarbonTrace"],
    policy: str = "care",
    *,
    home_region: str | None = None,
    forecast_model: str = "default",
) -> "Outcome":
    """Replay ``jobs`` on real carbon traces under one ``policy``: ``care simulate`` from Python.

    - ``jobs``: a JOBS.csv path or its text, a DataFrame with JOBS.csv's columns (``job_id``,
      ``arrival``, ``duration_h``, ``deadline`` or ``slack_h``, optional ``cpus``,
      ``interruptible``, ``instance_type``, ``region``), or a validated
      :class:`~care_flows.simulate.jobs.JobSet`.
    - ``carbon``: trace specs as ``care simulate --carbon-csv`` takes them (``"embedded:ES"``,
      ``"eu-north-1=trace.csv"``; one string or path, or a list), a ``{region: Series}`` dict (gCO2eq/kWh
      on a regular, timezone-aware index), or a :class:`~care_flows.simulate.engine.CarbonTrace`.
    - ``policy``: a name of :data:`care_flows.simulate.policies.POLICIES` (``now``, ``oracle``,
      ``care``, ``care-once``, ``care-check``, ``threshold``, ``carbonaware-prefect``,
      ``lets-wait-awhile``, ``gaia-carbon-time``).
    - ``home_region``: where every job would run without CaRE (the baseline); default: the
      region of the first trace.
    - ``forecast_model``: the forecast every forecast-driven policy plans on, made at each arrival
      from earlier rows only (``default`` = ridge; see ``care simulate --help``).

    Returns an :class:`~care_flows.simulate.engine.Outcome`: per-job arrays (``carbon_g``,
    ``cost_usd``, ``delay_h``, ``missed`` ...), ``segments`` (PLAN.csv's rows), ``summary()`` (the
    ``--json`` document) and ``notes`` (warnings about the input, one line each).

    >>> import pandas as pd
    >>> from care_flows.simulate import simulate
    >>> from care_flows.simulate.jobs import poisson_jobs
    >>> jobs = poisson_jobs(48, window_h=24, start=pd.Timestamp("2023-06-01", tz="UTC"), slack_h=24)
    >>> out = simulate(jobs, ["embedded:ES", "embedded:SE"], "care")
    >>> out  # doctest: +ELLIPSIS
    Outcome(policy='care', jobs=48, carbon_g=6.408 vs baseline 82.97 (92.3% saved), cost_usd=2.448 vs 2.568, deadline_misses=0, segments=48)
    >>> doc = out.summary()
    >>> doc["jobs"], doc["deadline_misses"], doc["savings_pct"] > 50
    (48, 0, True)
    >>> sorted(out.segments.columns)
    ['end', 'job_id', 'region', 'start']
    """
    import pandas as pd

    from care_flows.errors import ConfigError
    from care_flows.regions import region_info
    from care_flows.simulate.engine import CarbonTrace, SimContext, check_forecast_model, evaluate, first_spec_region, load_trace
    from care_flows.simulate.jobs import JobSet, jobs_from_frame, read_jobs_csv
    from care_flows.simulate.policies import POLICIES, run_policy

    if not isinstance(policy, str) or policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    check_forecast_model(forecast_model, name="forecast_model")
    if home_region is not None:
        region_info(home_region)  # an unknown region: one line with a did-you-mean
    if isinstance(carbon, CarbonTrace):
        trace = carbon
    elif isinstance(carbon, Mapping):
        for region in carbon:
            region_info(region)
        trace = CarbonTrace.from_series(dict(carbon))
    else:
        specs = [carbon] if isinstance(carbon, (str, os.PathLike)) else list(carbon) if isinstance(carbon, (list, tuple)) else []
        specs = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in specs]
        if not specs or not all(isinstance(s, str) for s in specs):
            raise ConfigError(
                f"carbon {carbon!r} is not a trace: give specs such as 'embedded:ES' or 'eu-north-1=trace.csv', "
                "a {region: Series} dict or a CarbonTrace"
            )
        home_region = home_region or first_spec_region(specs, DEFAULT_REGION_OF_A_PATH)
        trace = load_trace(specs, default_region=home_region)
    home = home_region or trace.regions[0]
    if isinstance(jobs, JobSet):
        jobset = jobs  # SimContext.build checks its regions against the trace
    elif isinstance(jobs, pd.DataFrame):
        jobset = jobs_from_frame(jobs, known_regions=trace.regions, source="jobs")
    elif isinstance(jobs, (str, os.PathLike)):
        jobset = read_jobs_csv(jobs, known_regions=trace.regions)
    else:
        raise ConfigError(f"jobs of type {type(jobs).__name__} cannot be read; give a JOBS.csv path or text, a DataFrame or a JobSet")
    sctx = SimContext.build(trace, jobset, home_region=home, forecast_model=forecast_model)
    outcome = evaluate(sctx, run_policy(sctx, policy))
    short = sctx.short_history_note(policy)
    outcome.notes = [*trace.notes, *jobset.notes, *sctx.notes, *([short] if short else [])]
    return outcome
