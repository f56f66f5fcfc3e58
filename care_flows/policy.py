"""``CarePolicy``: what an application cares about, and the hard limits it sets.

A policy names the candidate regions and the home region, the objectives in priority order
(or weights), the hard constraints (deadline, latency, budget, carbon), how the job runs
(duration, interruptible, resources) and where each region's runs go (``targets``).

>>> p = CarePolicy(home_region="eu-south-2", regions=["eu-south-2", "eu-north-1"], priorities=["carbon", "cost"])
>>> p.priorities
[<Objective.carbon: 'carbon'>, <Objective.cost: 'cost'>]
>>> p.deadline_within
datetime.timedelta(days=1)
>>> p.tie_break
['home', 'carbon', 'earliest']
>>> CarePolicy(tie_break=["earliest", "cost"]).tie_break
['earliest', 'cost']
>>> CarePolicy(regions=["eu-nowhere-1"])
Traceback (most recent call last):
...
care_flows.errors.ConfigError: invalid CaRE policy: regions: unknown region 'eu-nowhere-1'...
>>> SOURCE_SIGNALS["gb"], SOURCE_SIGNALS["watttime"][0]   # the signal kinds a source serves, its default first
(('direct',), 'marginal')
"""

from __future__ import annotations

import difflib
import functools
import math
import json
import os
import re
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from care_flows.errors import ConfigError
from care_flows.regions import region_info
from care_flows.timeutil import format_duration, parse_duration

__all__ = ["Objective", "TieBreak", "TIE_BREAK_KEYS", "SOURCE_SIGNALS", "RegionTarget", "CarePolicy", "load_policy",
           "policy_reference_markdown"]


class Objective(str, Enum):
    """Something a policy can minimise.

    >>> [o.value for o in Objective]
    ['carbon', 'cost', 'latency', 'resource']
    """

    carbon = "carbon"
    """expected gCO2eq of the run"""
    cost = "cost"
    """expected USD of the run"""
    latency = "latency"
    """network round trip from ``origin_region``, ms"""
    resource = "resource"
    """idle capacity paid for: (vCPU + memory) provisioned beyond the need"""


TieBreak = Literal["home", "earliest", "carbon", "cost", "latency", "resource"]
"""A tie-break key: ``home`` (the home region first), ``earliest`` (the earliest start) or an objective's exact value."""

TIE_BREAK_KEYS: tuple[str, ...] = ("home", "earliest", *(o.value for o in Objective))
"""Every name ``CarePolicy.tie_break`` accepts, in a fixed order."""

DEFAULT_TIE_BREAK: tuple[str, ...] = ("home", "carbon", "earliest")
"""Tied options: the home region first, then the least forecast gCO2eq, then the earliest start. Within
one region every start costs the same, so a deferral within the tolerance of running now ties with it;
ordered by the earliest start (the default before 2026-11-30) it ran now, and most jobs of a day or
more, whose best window is rarely 5% below running now, lost their saving (review 43a M1). Waiting
must still save ``min_savings_pct`` against starting now in the same region (review 43d M2)."""

SOURCE_SIGNALS: dict[str, tuple[str, ...]] = {
    "embedded": ("lifecycle", "direct"),
    "csv": ("lifecycle", "direct"),
    "electricitymaps": ("lifecycle", "direct"),
    "watttime": ("marginal",),
    "gb": ("direct",),
}
"""The signal kinds each carbon source serves, its default first (as ``care_flows.signals.registry``
builds them; the module's example shows two)."""


class RegionTarget(BaseModel):
    """Where a region's runs execute: a Prefect work pool and/or per-run job variables.

    >>> RegionTarget(work_pool="care-eu-north-1", job_variables={"subnet_id": "subnet-0abc"}).work_pool
    'care-eu-north-1'
    """

    model_config = ConfigDict(extra="forbid")

    work_pool: str | None = Field(None, description="Prefect work pool that runs this region's flow runs.")
    deployment: str | None = Field(
        None, description="Deployment ('flow-name/deployment-name') to dispatch to in this region; default: the triggering one."
    )
    job_variables: dict[str, Any] = Field(
        default_factory=dict, description="Extra job variables for runs in this region (e.g. subnet_id, image_id)."
    )

    def __init__(self, **data: Any) -> None:
        """Build a target; a bad field is a one-line :class:`ConfigError` (not a pydantic report).

        >>> RegionTarget(work_pool="se-workers").work_pool
        'se-workers'
        >>> RegionTarget(work_poo="se-workers")
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: invalid region target: unknown field 'work_poo'; did you mean 'work_pool'?
        """
        try:
            super().__init__(**data)
        except ValidationError as exc:
            error = _invalid("region target", exc, RegionTarget)
            error.details = exc.errors()  # type: ignore[attr-defined]  # a policy's targets report them with their place
            raise error from None


class CarePolicy(BaseModel):
    """A CaRE policy. Every duration is a ``timedelta`` (or a string such as ``"2h"``).

    >>> p = CarePolicy(home_region="eu-south-2", regions=["eu-north-1"], deadline_within="12h", expected_duration="90m")
    >>> p.candidate_regions, str(p.deadline_within), p.signal, [o.value for o in p.priorities]
    (['eu-south-2', 'eu-north-1'], '12:00:00', 'lifecycle', ['carbon', 'cost', 'latency', 'resource'])
    >>> CarePolicy(carbon_source="watttime").signal   # the kind the source serves
    'marginal'
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, **data: Any) -> None:
        """Build a policy; a bad field is a one-line :class:`ConfigError` naming it, as from
        :func:`load_policy` (not pydantic's multi-line report).

        >>> CarePolicy(deadlin_within="12h")
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: invalid CaRE policy: unknown field 'deadlin_within'; did you mean 'deadline_within'?
        """
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _invalid("CaRE policy", exc) from None
        except (OverflowError, TypeError) as exc:  # e.g. a duration of 1e15 seconds
            raise ConfigError(f"invalid CaRE policy: {' '.join(str(exc).split())}; {_GIVE}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        """Set a field, checked with the rest of the policy; a refused value leaves the policy as it
        was and is a one-line :class:`ConfigError`.

        >>> p = CarePolicy(expected_duration="2h", deadline_within="12h")
        >>> p.deadline_within = "1h"
        Traceback (most recent call last):
        ...
        care_flows.errors.ConfigError: invalid CaRE policy: ...
        >>> str(p.deadline_within)
        '12:00:00'
        """
        if name not in type(self).model_fields:
            super().__setattr__(name, value)
            return
        before = dict(self.__dict__)
        try:
            super().__setattr__(name, value)
        except (ValidationError, OverflowError, TypeError) as exc:
            self.__dict__.clear()  # the checks after the field's own run once it is set: put every field back
            self.__dict__.update(before)
            if isinstance(exc, ValidationError):
                raise _invalid("CaRE policy", exc) from None
            raise ConfigError(f"invalid CaRE policy: {' '.join(str(exc).split())}") from None

    # where
    home_region: str = Field("eu-south-2", description="Region the run would use without CaRE (the baseline).")
    regions: list[str] = Field(
        default_factory=lambda: ["eu-south-2", "eu-north-1"],
        description="Candidate AWS regions; the home region is always a candidate ([] plans at home only).",
    )
    targets: dict[str, RegionTarget] = Field(
        default_factory=dict, description="Per-region work pool / job variables; regions without one use the deployment's own pool."
    )
    # what matters
    priorities: list[Objective] = Field(
        default_factory=lambda: [Objective.carbon, Objective.cost, Objective.latency, Objective.resource],
        description="Objectives in priority order (lexicographic, with tolerance_pct). Ignored when weights are given.",
    )
    weights: dict[Objective, float] | None = Field(
        None, description="Weights of the objectives, each divided by its largest value over the feasible options (a weighted sum instead of the priority order)."
    )
    tolerance_pct: float = Field(5.0, ge=0, le=100, description="Values within this % of the best count as equal (lexicographic ties).")
    tie_break: list[TieBreak] = Field(
        default_factory=lambda: list(DEFAULT_TIE_BREAK),
        description="How to order tied options, first key first: 'home' (home region first), 'earliest' (earliest start) "
        "or an objective name (its exact value, lower first). Tied means within tolerance_pct on every priority "
        "(lexicographic) or an equal weighted score (weights). The objectives not listed then decide by exact value, "
        "then the option order; [] skips straight to those. Default: home first, then the least gCO2eq, then the earliest "
        "start; ['home', 'earliest'] runs now whenever now is within tolerance_pct of the best window (less delay, less "
        "saving), ['earliest', 'home'] prefers an earlier start elsewhere.",
    )
    min_savings_pct: float = Field(
        1.0, ge=0, le=100, description=(
            "Defer or move only if it saves at least this % of carbon against run-now-at-home, whatever the priorities: "
            "options that save less are excluded (if run-now-at-home breaks a hard constraint, the minimum is lowered to the most "
            "a feasible option saves)."),
    )
    # hard constraints
    deadline_within: timedelta = Field(
        timedelta(hours=24), description="The run must *finish* within this time of its trigger (slack = this - duration)."
    )
    start_margin: timedelta = Field(
        timedelta(minutes=2), description=(
            "Time a run that does not start now (deferred, or checked again at its start) needs between its planned start and "
            "its body starting: the worker's poll and the process, container or instance starting. Such plans end this long "
            "before the deadline, and a checkpoint pauses only if the rest fits after it; starting now in the trigger's process "
            "needs none. The default covers a process worker (19-32 s measured); raise it for EC2 (boot and install take "
            "minutes, e.g. 6m); 0 plans up to the deadline itself."),
    )
    origin_region: str | None = Field(
        None, description="Where the data/users are; latency is measured from here. None: the home region (filled in when max_latency_ms is set)."
    )
    max_latency_ms: float | None = Field(None, gt=0, description="Exclude regions farther than this round trip from origin_region.")
    budget_usd_per_run: float | None = Field(None, gt=0, description="Exclude options whose expected cost exceeds this, USD per run.")
    budget_usd_per_hour: float | None = Field(None, gt=0, description=(
        "Exclude instance types dearer than this, USD per hour: the list price plus the CPU credits a burstable type uses."))
    max_g_per_run: float | None = Field(None, gt=0, description="Exclude options that emit more than this, gCO2eq per run (a region whose right-sized type breaks it at every start also offers its cheapest type that meets it).")
    # the job
    expected_duration: timedelta = Field(timedelta(hours=1), description=(
        "Expected run time of the flow body: the planned window and the expected gCO2eq/USD use it until the flow's "
        "run history replaces it (duration_from_history); the realized figures use the measured run time."))
    duration_from_history: bool = Field(True, description=(
        "Record each completed run's duration and, once 3 are recorded, plan with the p90 of the last 20 instead of "
        "expected_duration (kept with the usage history); False always plans with expected_duration."))
    interruptible: bool = Field(False, description="The flow calls care.checkpoint() and may run in several segments.")
    min_segment: timedelta | None = Field(None, description=(
        "Shortest segment worth resuming for (interruptible only). A run's plan uses at least 5 x start_margin (at most the "
        "whole work), so the margin never comes back as a segment of a few minutes."))
    replan_every: timedelta | None = Field(
        timedelta(hours=1),
        description="The controller plans a deferred run again this often with a fresh forecast until it starts "
        "(receding horizon; same deadline and baseline), and a run a @care trigger deferred by at least this much "
        "checks its plan again when it starts; None plans once.",
    )
    max_segments: int | None = Field(None, ge=1, description="At most this many segments (each resume costs something).")
    threshold_g_per_kwh: float | None = Field(
        None, gt=0, description="Run in any slot below this intensity (threshold mode: green segments, so interruptible must be true); not with threshold_percentile."
    )
    threshold_percentile: float | None = Field(
        None, gt=0, lt=100, description="Run in any slot below this percentile of the forecast (threshold mode: green segments, so interruptible must be true); not with threshold_g_per_kwh."
    )
    # resources (the flow's usage history replaces vcpu/memory_gib once it holds 10 minutes of runs)
    vcpu: float = Field(2.0, gt=0, description="vCPUs the run needs at peak (until the usage history replaces it).")
    memory_gib: float = Field(4.0, gt=0, description="Memory the run needs at peak, GiB (until the usage history replaces it).")
    size_from_usage: bool = Field(
        True,
        description="Record each run's CPU/memory and size later runs from that history (p95 of its recent runs, a forecast for a flow that never stops, + headroom) "
        "once it holds 10 minutes of runs; False sizes from vcpu/memory_gib.",
    )
    usage_key: str | None = Field(None, min_length=1, description="Name of the usage history (default: the flow's name).")
    max_vcpu: float | None = Field(
        None, gt=0, description="Largest CPU need, vCPUs, the usage history may ask for, before headroom_pct as vcpu "
        "(default 4 x vcpu; at least vcpu; a run's care_overrides vcpu above it drops it): a flow that uses every core it "
        "gets (a pool sized by the cores it finds) peaks at the cores of whatever type ran it, and would otherwise ask "
        "for the next size up after every run.")
    cpu_utilisation: float = Field(0.5, ge=0, le=1, description="Mean CPU use while running, as a fraction of `vcpu` (the peak need): the job keeps cpu_utilisation x vcpu vCPUs busy on average, whichever type runs it. Each candidate type's utilisation is that mean over its own vCPUs; it drives the power model and, above a burstable type's baseline, its CPU credits. A learned usage history replaces it with the measured mean vCPU.")
    headroom_pct: float = Field(20.0, ge=0, le=400, description="Capacity kept above the forecast need when right-sizing.")
    instance_type: str | None = Field(None, description="Pin an instance type (no right-sizing); any type of the embedded price table.")
    instance_families: list[str] | None = Field(None, description="Allow only these families (e.g. ['t3', 'm6i']).")
    exclude_families: list[str] = Field(default_factory=list, description="Never use these families.")
    architecture: Literal["x86_64", "arm64"] | None = Field(
        "x86_64", description="CPU architecture; None allows both. Not given with a pinned instance_type: that type's architecture."
    )
    allow_burstable: bool = Field(True, description="Allow burstable families (t2, t3, t3a, t4g) when right-sizing; they are ranked at list price plus the CPU credits the expected utilisation uses above their baseline.")
    instance_choice: Literal["cheapest", "priorities"] = Field(
        "cheapest",
        description="Which fitting types each region offers. 'cheapest': the right-sized (cheapest fitting) type only, so the "
        "priorities weigh regions and times. 'priorities': also each fitting type that draws less power than every cheaper one "
        "(e.g. m7i-flex.xlarge, 13 W, besides t3.xlarge, 19 W, for 2 vCPU / 8 GiB), and the priorities choose the type too: "
        "carbon first takes the lower-power type unless the cheaper one emits within tolerance_pct of it. Applies where the run can be "
        "started on the type it is planned on (a care-ec2 deployment's runs, care regions, decide); elsewhere the "
        "right-sized type. A pinned instance_type is never swapped.",
    )
    # data
    carbon_source: str = Field("embedded", description="Carbon source: embedded, electricitymaps, watttime, gb (with fallback).")
    signal: Literal["lifecycle", "direct", "marginal"] | None = Field(
        None,
        description="Carbon signal kind. Not given: the source's own (embedded, electricitymaps: lifecycle; gb: direct; "
        "watttime: marginal). A kind the source does not serve is an error when the policy loads.",
    )

    @field_validator("deadline_within", "expected_duration", "min_segment", "replan_every", "start_margin", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any, info: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        if isinstance(value, str) and value.strip().upper().startswith(("P", "-P")):  # ISO 8601 (model_dump_json)
            try:
                value = pd.Timedelta(value.strip()).to_pytimedelta()
            except ValueError:
                raise ConfigError(f"{info.field_name} {value!r} is not an ISO 8601 duration; use e.g. PT2H or 2h") from None
            if value.total_seconds() < 0:
                raise ConfigError(f"{info.field_name} {format_duration(value)} is negative; give a positive duration such as 1h")
            return value
        return parse_duration(value, name=info.field_name)

    @field_validator("carbon_source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        from care_flows.signals.registry import SOURCES

        key = str(value).strip().lower()
        if key == "csv":
            raise ConfigError("carbon_source 'csv' needs a file path, which a policy cannot hold; give the flow "
                              "signal=TraceSignal.from_csv(path) (e.g. @care(signal=...)) and keep carbon_source 'embedded'")
        if key not in SOURCES:
            known = [name for name in sorted(SOURCES) if name != "csv"]
            raise ConfigError(f"unknown carbon source {value!r}{_did_you_mean(key, known)} (known sources: {', '.join(known)})")
        return key

    @field_validator("regions", "priorities", "instance_families", "exclude_families", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """A list field may be given as one comma-separated string, as ``tie_break`` and the CLI take it
        (``regions="eu-south-2,eu-north-1"``, ``priorities="carbon,cost"``)."""
        if isinstance(value, str):
            return [v for v in (t.strip() for t in value.split(",")) if v]
        return value

    @field_validator("tie_break", mode="before")
    @classmethod
    def _valid_tie_break(cls, value: Any) -> Any:
        if value is None:
            return list(DEFAULT_TIE_BREAK)
        if isinstance(value, str):
            value = [v for v in (t.strip() for t in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{value!r} is not a list; give names from {', '.join(TIE_BREAK_KEYS)}, e.g. ['home', 'earliest']")
        names = [str(getattr(v, "value", v)).strip().lower() for v in value]
        if "none" in names and len(names) > 1:  # the CLI's word for "no tie-break keys"
            raise ConfigError(f"'none' means no tie-break keys and cannot be combined with others ({', '.join(names)}); give none alone, or only keys")
        for name in names:
            if name not in TIE_BREAK_KEYS:
                raise ConfigError(f"unknown key {name!r}{_did_you_mean(name, list(TIE_BREAK_KEYS))} "
                                  f"(allowed: {', '.join(TIE_BREAK_KEYS)})")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{', '.join(dup)} given twice in {names}; give each key at most once, e.g. ['home', 'earliest']")
        return names

    @field_validator("home_region", "origin_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()  # "eu-north-1 " from JSON or an override is eu-north-1 (review 50b L1)
            region_info(value)
        return value

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        value = [region.strip() for region in value]
        for region in value:  # [] -> home only (the home region is always added)
            region_info(region)
        return list(dict.fromkeys(value))

    @field_validator("targets")
    @classmethod
    def _known_target_regions(cls, value: dict[str, RegionTarget]) -> dict[str, RegionTarget]:
        value = {region.strip(): target for region, target in value.items()}
        for region in value:
            region_info(region)
        return value

    @field_validator("weights")
    @classmethod
    def _valid_weights(cls, value: dict[Objective, float] | None) -> dict[Objective, float] | None:
        if value is not None:
            if not value or any(not math.isfinite(w) or w < 0 for w in value.values()) or sum(value.values()) <= 0:
                given = {getattr(k, "value", k): w for k, w in value.items()}
                raise ConfigError(f"{given} must be >= 0 and finite with a positive sum, e.g. {{'carbon': 0.7, 'cost': 0.3}}")
        return value

    @field_validator("priorities")
    @classmethod
    def _distinct_priorities(cls, value: list[Objective]) -> list[Objective]:
        names = [o.value for o in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{', '.join(dup)} given twice in {names}; give each objective at most once, e.g. ['carbon', 'cost']")
        return value

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if value not in _catalogue_types():
                close = difflib.get_close_matches(value, sorted(_catalogue_types()), n=3, cutoff=0.5)
                hint = (f"did you mean {', '.join(map(repr, close[:-1]))} or {close[-1]!r}?" if len(close) > 1
                        else f"did you mean {close[0]!r}?" if close else "give an EC2 type such as 't3.large'")
                raise ConfigError(f"{value!r} is in no region of the embedded price table; {hint}")
        return value

    @field_validator("instance_families", "exclude_families")
    @classmethod
    def _known_families(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value is not None:
            families = sorted(_catalogue_families())
            for family in value:
                if family not in families:
                    raise ConfigError(f"unknown instance family {family!r}{_did_you_mean(family, families)}; "
                                      "give the part before the dot of an EC2 type, e.g. 't3' or 'm6i'")
        return value

    @field_validator("deadline_within", "expected_duration", "replan_every")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ConfigError(f"duration {format_duration(value)} must be positive, e.g. '1h'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "CarePolicy":
        served = SOURCE_SIGNALS[self.carbon_source]
        if self.signal is None or "signal" not in self.model_fields_set:  # not given: the source's own kind
            self.__dict__["signal"] = served[0]
        elif self.signal not in served:
            raise ConfigError(f"carbon_source {self.carbon_source!r} does not serve the {self.signal} signal (it serves "
                              f"{' and '.join(served)}); set signal to {' or '.join(repr(k) for k in served)} or leave it out")
        if self.threshold_g_per_kwh is not None and self.threshold_percentile is not None:
            raise ConfigError(f"threshold_g_per_kwh {self.threshold_g_per_kwh:g} and threshold_percentile {self.threshold_percentile:g} "
                              "are both set; give exactly one of them")
        threshold = ("threshold_g_per_kwh", self.threshold_g_per_kwh) if self.threshold_g_per_kwh is not None else (
            ("threshold_percentile", self.threshold_percentile) if self.threshold_percentile is not None else None)
        if threshold is not None and not self.interruptible:
            # threshold mode runs in green segments; a body that cannot pause would run straight through the dirty ones
            raise ConfigError(f"{threshold[0]} {threshold[1]:g} runs the job in green segments, which needs interruptible: true "
                              "(the flow calls care.checkpoint() between steps); set it, or drop the threshold")
        if threshold is not None and (self.min_segment is not None or self.max_segments is not None):
            # the threshold rule runs every green stretch; segment limits are the interruptible planner's
            raise ConfigError(f"min_segment/max_segments do not apply to threshold mode ({threshold[0]} {threshold[1]:g}); drop one")
        if self.instance_type is not None:
            arch = _catalogue_types()[self.instance_type]
            if "architecture" not in self.model_fields_set:
                self.__dict__["architecture"] = arch
            elif self.architecture is not None and self.architecture != arch:
                raise ConfigError(f"instance_type {self.instance_type!r} is {arch} but architecture is {self.architecture!r}; "
                                  f"set architecture {arch!r} (or None), or pin a {self.architecture} type")
        elif "architecture" not in self.model_fields_set:
            self.__dict__["architecture"] = "x86_64"
        if self.home_region not in self.regions:
            self.__dict__["regions"] = [self.home_region, *self.regions]
        if self.expected_duration > self.deadline_within:
            raise ConfigError(
                f"expected_duration {format_duration(self.expected_duration)} exceeds deadline_within "
                f"{format_duration(self.deadline_within)}; "
                "raise deadline_within or shorten the job"
            )
        if self.max_latency_ms is not None and self.origin_region is None:
            self.__dict__["origin_region"] = self.home_region
        if self.max_vcpu is not None and self.max_vcpu < self.vcpu:
            raise ConfigError(f"max_vcpu {self.max_vcpu:g} is below vcpu {self.vcpu:g}; the usage history may ask for up to "
                              f"max_vcpu, the declared need is vcpu: raise max_vcpu, lower vcpu"
                              f"{' (the default, ' + format(self.vcpu, 'g') + ')' if 'vcpu' not in self.model_fields_set else ''}"
                              ", or leave max_vcpu out (4 x vcpu)")
        return self

    @property
    def candidate_regions(self) -> list[str]:
        """Home region first, then the others in the order given."""
        return [self.home_region, *[r for r in self.regions if r != self.home_region]]


@functools.lru_cache(maxsize=1)
def _catalogue_types() -> dict[str, str]:
    """instance type -> architecture, for every type priced in any region of the embedded table."""
    from care_flows.data import price_table

    table = price_table()
    return {str(t): str(a) for t, a in zip(table["instance_type"], table["architecture"])}


@functools.lru_cache(maxsize=1)
def _catalogue_families() -> frozenset[str]:
    """Instance families (the part before the dot) priced in any region of the embedded table."""
    return frozenset(t.split(".")[0] for t in _catalogue_types())


def _did_you_mean(word: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``.

    >>> _did_you_mean("deadlin_within", ["deadline_within", "home_region"])
    "; did you mean 'deadline_within'?"
    """
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _invalid(what: str, exc: ValidationError, root: type[BaseModel] | None = None) -> ConfigError:
    """Pydantic's report ``exc`` on a ``what`` as one :class:`ConfigError` line: ``invalid <what>:
    <field>: <message>; ...`` (unknown fields with a did-you-mean against ``root``'s fields)."""
    return ConfigError(f"invalid {what}: " + "; ".join(_error_text(e, root) for e in exc.errors()))


def _error_text(err: dict[str, Any], root: type[BaseModel] | None = None) -> str:
    """One pydantic error as ``"<field>: <message>"``, with a did-you-mean for unknown fields."""
    loc = [str(p) for p in err["loc"]]
    inner = getattr(err.get("ctx", {}).get("error"), "details", None)
    if inner:  # a RegionTarget inside targets: its own errors, placed under targets.<region>
        return "; ".join(_error_text({**e, "loc": (*err["loc"], *e["loc"])}, root) for e in inner)
    if err.get("type") == "extra_forbidden" and loc:
        model = RegionTarget if loc[0] == "targets" and len(loc) == 3 else (root or CarePolicy)
        name = loc[-1]
        where = f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else ""
        return f"unknown field {name!r}{where}{_did_you_mean(name, list(model.model_fields))}"
    own = err.get("ctx", {}).get("error")  # a validator's own message names the value already
    # (model_validate runs CarePolicy.__init__, whose one-line error already says what it is)
    msg = str(own if own is not None else err["msg"]).removeprefix("invalid CaRE policy: ")
    if own is None and "input" in err and not isinstance(err["input"], dict):
        given = repr(err["input"])
        msg += f" (got {given if len(given) <= 60 else given[:57] + '...'})"
        expected = err.get("ctx", {}).get("expected")
        if err.get("type") == "enum" and isinstance(expected, str) and isinstance(err["input"], str):
            msg += _did_you_mean(err["input"], re.findall(r"'([^']+)'", expected))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


@functools.lru_cache(maxsize=1)
def _yaml_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader without YAML 1.1's base-60 numbers: ``deadline_within: 12:00`` stays the
    string "12:00" (a one-line "not a duration" error) instead of silently becoming 720 seconds."""
    class Loader(yaml.SafeLoader):
        pass

    numbers = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in numbers] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
    return Loader


_POLICY_SUFFIXES = (".json", ".yaml", ".yml")
_GIVE = "give JSON text, a dict, or a path to a .json/.yaml file"


def _looks_like_path(text: str) -> bool:
    """A string meant as a file name rather than JSON text: a policy suffix, or a path without JSON brackets."""
    t = text.strip()
    if not t or t[0] in "{[\"" or "\n" in t:
        return False
    return bool(t.lower().endswith(_POLICY_SUFFIXES) or "/" in t or os.sep in t or t.startswith("~")
                or re.fullmatch(r"[^\s{}\[\]:,]+\.[A-Za-z0-9]{1,5}", t))


def _read_policy_file(path: Path) -> dict[str, Any]:
    """The policy object in a ``.json`` / ``.yaml`` / ``.yml`` file (any other suffix is read as JSON)."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"invalid CaRE policy: policy file {str(path)!r} not found; {_GIVE}") from None
    except IsADirectoryError:
        raise ConfigError(f"invalid CaRE policy: {str(path)!r} is a folder; {_GIVE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid CaRE policy: policy file {str(path)!r} cannot be read ({type(exc).__name__}); {_GIVE}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"invalid CaRE policy: reading {str(path)!r} needs PyYAML, which is not installed; "
                              "install pyyaml or give the policy as a .json file") from None
        try:
            doc = yaml.load(text, Loader=_yaml_loader(yaml))  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise ConfigError(f"invalid CaRE policy: policy file {str(path)!r} is not valid YAML{where}; "
                              "give a mapping such as 'home_region: eu-south-2'") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid CaRE policy: policy file {str(path)!r} is not valid JSON (line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}); give a JSON object, or name a .yaml file") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(doc), "a number")
        raise ConfigError(f"invalid CaRE policy: policy file {str(path)!r} holds {kind}, not a mapping of policy fields; "
                          'give an object such as {"home_region": "eu-south-2"}')
    return doc


def load_policy(
    value: CarePolicy | dict[str, Any] | str | os.PathLike[str] | None = None, **overrides: Any
) -> CarePolicy:
    """A :class:`CarePolicy` from a policy, a dict, JSON text, or a ``.json`` / ``.yaml`` file; errors
    become :class:`ConfigError`.

    A string ending in ``.json``, ``.yaml`` or ``.yml`` (or a ``pathlib.Path``) is read as a file;
    YAML needs PyYAML (installed with Prefect).

    >>> load_policy({"home_region": "eu-north-1"}).home_region
    'eu-north-1'
    >>> load_policy({"carbon_source": "gb"}).signal
    'direct'
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "policy.yaml"
    >>> _ = path.write_text("home_region: eu-north-1\\ndeadline_within: 12h\\n")
    >>> load_policy(path).deadline_within, load_policy(str(path)).home_region
    (datetime.timedelta(seconds=43200), 'eu-north-1')
    >>> load_policy({"deadline_within": "-1h"})
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: invalid CaRE policy: deadline_within: ...
    >>> load_policy({"deadlin_within": "1h"})
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: invalid CaRE policy: unknown field 'deadlin_within'; did you mean 'deadline_within'?
    >>> load_policy('{bad json')
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: invalid CaRE policy: the policy text is not valid JSON (line 1, column 2: ...); ...
    """
    try:
        if isinstance(value, CarePolicy):
            # only the fields given or derived from them: defaults that follow other fields (signal,
            # architecture) follow the overrides too
            base: dict[str, Any] = value.model_dump(exclude_unset=True)
        elif isinstance(value, os.PathLike):
            base = _read_policy_file(Path(value))
        elif isinstance(value, str) and _looks_like_path(value) and value.strip().lower().endswith(_POLICY_SUFFIXES):
            base = _read_policy_file(Path(value.strip()))
        elif isinstance(value, str):
            try:
                doc = json.loads(value)
            except json.JSONDecodeError as exc:
                if _looks_like_path(value):
                    raise ConfigError(f"invalid CaRE policy: {value.strip()!r} is neither JSON text nor a .json/.yaml path; {_GIVE}") from None
                raise ConfigError(
                    f"invalid CaRE policy: the policy text is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                    'give a JSON object such as {"home_region": "eu-south-2", "deadline_within": "12h"}'
                ) from None
            if not isinstance(doc, dict):
                kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(doc), "a number")
                raise ConfigError(f"invalid CaRE policy: the policy JSON is {kind}, not an object; "
                                  'give a JSON object such as {"home_region": "eu-south-2"}')
            base = doc
        else:
            base = dict(value or {})
        return CarePolicy.model_validate({**base, **overrides})
    except (OverflowError, TypeError) as exc:  # e.g. a duration of 1e15 seconds, a non-mapping
        raise ConfigError(f"invalid CaRE policy: {' '.join(str(exc).split())}; {_GIVE}") from None
    except ValidationError as exc:
        raise _invalid("CaRE policy", exc) from None


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    for noise in ("typing.", "datetime.", "care_flows.policy.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list):
        value = [v.value if isinstance(v, Enum) else v for v in value]
    if isinstance(value, timedelta):
        secs = int(value.total_seconds())
        value = f"{secs // 3600}h" if secs % 3600 == 0 else f"{secs // 60}m" if secs % 60 == 0 else f"{secs}s"
    return "`" + repr(value).replace("|", "\\|") + "`"


def policy_reference_markdown() -> str:
    """The policy reference (``docs/POLICY.md``) rendered from the pydantic model.

    >>> text = policy_reference_markdown()
    >>> "| `home_region` | `str` | `'eu-south-2'` |" in text, "| `start_margin` | `timedelta` | `'2m'` |" in text
    (True, True)
    """
    lines = [
        "# CaRE policy reference",
        "",
        "<!-- Generated by care_flows.policy.policy_reference_markdown(); do not edit by hand. -->",
        "<!-- Regenerate: .venv/bin/python -c \"from care_flows.policy import policy_reference_markdown as m; open('docs/POLICY.md','w').write(m())\" -->",
        "",
        (CarePolicy.__doc__ or "").strip(),
        "",
        "Load a policy with `care_flows.policy.load_policy(dict | JSON text | path | CarePolicy, **overrides)`; a path",
        "(`pathlib.Path`, or a string ending in `.json`, `.yaml` or `.yml`) is read from the file (YAML needs PyYAML,",
        "which Prefect installs). Any invalid field, or a combination no run could plan with (a `signal` the",
        "`carbon_source` does not serve, both thresholds, an architecture that contradicts the pinned `instance_type`),",
        "raises `ConfigError` with one line naming the field and the fix. Durations accept `timedelta`",
        "or strings such as `\"2h\"`, `\"90m\"`, `\"1h30m\"`.",
        "",
        "Any field can be overridden for the runs of one deployment or for one run, without changing the flow's",
        "policy: a `care_overrides` job variable holding the fields to change (docs/PREFECT.md, \"Priorities per",
        "deployment and per run\").",
        "",
        "Objectives (`priorities`, `weights` keys): "
        + ", ".join(f"`{o.value}`" for o in Objective)
        + ". Lexicographic priorities count values within `tolerance_pct` of the best as equal and let the next",
        "objective decide; remaining ties (or equal weighted scores) are ordered by `tie_break` (default: the home",
        "region, then the least gCO2eq, then the earliest start), then by the other objectives' exact values, then by",
        "the option order. Moving or waiting must save `min_savings_pct` against running now at home, and waiting",
        "must also save it against starting now in the same region, when starting now there saves it too.",
        "A list field (`regions`, `priorities`, `tie_break`, `instance_families`, `exclude_families`) may also be",
        "given as one comma-separated string (`\"carbon,cost\"`).",
        "",
        "| field | type | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in CarePolicy.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default_text(field)} | {desc} |")
    lines += ["", "## RegionTarget (values of `targets`)", "", "| field | type | default | description |", "|---|---|---|---|"]
    for name, field in RegionTarget.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default_text(field)} | {desc} |")
    return "\n".join(lines) + "\n"
