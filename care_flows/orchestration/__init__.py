"""Prefect integration: ``@care`` policies, deferral by dispatch, checkpoints, controller, artifacts.

>>> from care_flows.orchestration import care
>>> callable(care) and callable(care.checkpoint)
True
"""

from __future__ import annotations

from care_flows.orchestration.checkpoint import checkpoint, resumable_task
from care_flows.orchestration.decorator import CareFlowSettings, care, resolve_policy
from care_flows.orchestration.plan import Plan, plan_run, window_plan
from care_flows.policy import CarePolicy

__all__ = [
    "care",
    "checkpoint",
    "resumable_task",
    "CarePolicy",
    "CareFlowSettings",
    "resolve_policy",
    "Plan",
    "plan_run",
    "window_plan",
]
