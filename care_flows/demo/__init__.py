"""``care demo``: CaRE running for real on a local Prefect server, on a fast clock.

- :mod:`~care_flows.demo.clock`: the demo clock (one grid hour = a few wall seconds);
- :mod:`~care_flows.demo.scenario`: the four runs (policies in grid time) and the planner that
  plans in grid time on the embedded 2023 traces and answers in wall time;
- :mod:`~care_flows.demo.flows`: the Prefect flows the demo deploys;
- :mod:`~care_flows.demo.runner`: the local server, work pools, deployments and workers (by PID);
- :mod:`~care_flows.demo.report`: the summary (expected / realized / baseline), PNG plots, HTML;
- :mod:`~care_flows.demo.main`: :func:`run_demo`, what ``care demo`` calls.

>>> from care_flows.demo import DemoOptions
>>> DemoOptions(day="2023-01-03").validate().isoformat()
'2023-01-03T00:00:00+00:00'
"""

from __future__ import annotations

from care_flows.demo.clock import DemoClock
from care_flows.demo.main import DemoOptions, run_demo
from care_flows.demo.scenario import SCENARIOS, DemoPlanner

__all__ = ["DemoClock", "DemoOptions", "DemoPlanner", "SCENARIOS", "run_demo"]
