"""Trace-driven evaluation of scheduling policies (``care simulate``).

- :mod:`care_flows.simulate.jobs`: JOBS.csv, the GAIA converter, Poisson arrivals;
- :mod:`care_flows.simulate.engine`: carbon traces, forecasts made at each arrival, the
  vectorised simulation and its per-job outcome;
- :mod:`care_flows.simulate.policies`: ``now``, ``oracle``, ``care``, ``threshold`` and the peers'
  decision rules (carbonaware-prefect, Let's Wait Awhile, GAIA Carbon-Time);
- :mod:`care_flows.simulate.report`: the JSON summary and PLAN.csv.
"""

from __future__ import annotations

__all__ = ["jobs", "engine", "policies", "report"]
