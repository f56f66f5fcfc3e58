"""Planning: pure, vectorised decisions on when, where and on what to run (no I/O)."""

from care_flows.planning.windows import (
    Segment,
    TimePlan,
    best_contiguous_starts,
    best_contiguous_starts_rows,
    plan_contiguous,
    plan_interruptible,
    plan_threshold,
    run_now_means,
    window_means,
)
from care_flows.planning.decide import Decision, Option, decide
from care_flows.planning.sizing import SizingChoice, UsageSummary, right_size
from care_flows.planning.spatial import choose

__all__ = [
    "Segment",
    "TimePlan",
    "best_contiguous_starts",
    "best_contiguous_starts_rows",
    "plan_contiguous",
    "plan_interruptible",
    "plan_threshold",
    "run_now_means",
    "window_means",
    "Decision",
    "Option",
    "decide",
    "SizingChoice",
    "UsageSummary",
    "right_size",
    "choose",
]
