"""CaRE: carbon- and resource-efficient orchestration for Prefect 3.

The public API, importable from ``care_flows`` (imported lazily, so ``import care_flows`` is
cheap and does not start Prefect):

>>> import care_flows
>>> p = care_flows.CarePolicy(home_region="eu-south-2", regions=["eu-north-1"])
>>> p.candidate_regions
['eu-south-2', 'eu-north-1']

Decorating a flow (``care`` wraps a Prefect ``@flow``; see docs/TUTORIAL.md)::

    from prefect import flow
    from care_flows import care, CarePolicy

    @care(policy=CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="12h"))
    @flow
    def nightly_etl(day: str) -> int: ...

Data flows one way: signals -> forecast -> planning -> orchestration -> aws -> accounting.
Beyond these names: :mod:`care_flows.simulate` (trace-driven evaluation, the engine of
``care simulate``), :mod:`care_flows.blocks` (Prefect blocks), :mod:`care_flows.aws` (the
``care-ec2`` worker, launches, reaper, IAM) and :mod:`care_flows.orchestration.controller`
(``care controller``). Every error CaRE raises on purpose is a :class:`CareError`
(:mod:`care_flows.errors` draws the hierarchy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # policy and errors
    "CarePolicy": "care_flows.policy",
    "RegionTarget": "care_flows.policy",
    "Objective": "care_flows.policy",
    "load_policy": "care_flows.policy",
    "CareError": "care_flows.errors",
    "ConfigError": "care_flows.errors",
    "DataError": "care_flows.errors",
    "NoBaselineDataError": "care_flows.errors",
    "ProviderError": "care_flows.errors",
    "ProviderAuthError": "care_flows.errors",
    "ProviderRateLimitError": "care_flows.errors",
    "ProviderUnavailableError": "care_flows.errors",
    "ProviderResponseError": "care_flows.errors",
    "PlanningError": "care_flows.errors",
    "UnknownRegionError": "care_flows.errors",
    "UnknownZoneError": "care_flows.errors",
    "DeadlineError": "care_flows.errors",
    "OrchestrationError": "care_flows.errors",
    "AwsError": "care_flows.errors",
    # regions and data
    "region_info": "care_flows.regions",
    "known_regions": "care_flows.regions",
    "embedded_intensity": "care_flows.data",
    # signals (carbon intensity sources, cache, fallback)
    "get_signal": "care_flows.signals",
    "TraceSignal": "care_flows.signals",
    "CarbonSignal": "care_flows.signals",
    # forecasts
    "forecast_carbon": "care_flows.forecast.carbon",
    "forecast_usage": "care_flows.forecast.usage",
    # planning
    "decide": "care_flows.planning",
    "Decision": "care_flows.planning",
    "plan_contiguous": "care_flows.planning",
    "plan_interruptible": "care_flows.planning",
    "plan_threshold": "care_flows.planning",
    "right_size": "care_flows.planning",
    # accounting and prices
    "footprint": "care_flows.accounting",
    "EmbeddedPrices": "care_flows.pricing",
    # Prefect
    "care": "care_flows.orchestration",
    "checkpoint": "care_flows.orchestration",
    "CarePolicyBlock": "care_flows.blocks",
    "RegionTargets": "care_flows.blocks",
    # usage histories (what runs record and right-sizing learns from)
    "UsageStore": "care_flows.usage_capture",
    "PrefectVariableUsageStore": "care_flows.usage_variables",
    "default_usage_store": "care_flows.usage_capture",
    # AWS
    "CareEC2Worker": "care_flows.aws.worker",
    "AwsPriceList": "care_flows.aws.pricing",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'care_flows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from care_flows.data import embedded_intensity
    from care_flows.errors import CareError, ConfigError, DataError, PlanningError, ProviderError
    from care_flows.forecast.carbon import forecast_carbon
    from care_flows.policy import CarePolicy, Objective, RegionTarget, load_policy
    from care_flows.regions import known_regions, region_info
    from care_flows.signals import CarbonSignal, TraceSignal, get_signal
    from care_flows.forecast.usage import forecast_usage
    from care_flows.planning import Decision, decide, plan_contiguous, plan_interruptible, plan_threshold, right_size
    from care_flows.accounting import footprint
    from care_flows.pricing import EmbeddedPrices
    from care_flows.orchestration import care, checkpoint
    from care_flows.aws.worker import CareEC2Worker
    from care_flows.aws.pricing import AwsPriceList
