"""``care.checkpoint()``: where an interruptible flow may stop and continue later.

Between tasks, an interruptible flow calls :func:`checkpoint`. When the current time is no
longer inside a green segment of the plan (or the segment ends before half of a task as long as
the last one would be done), a later segment exists, and the remaining work still
fits before the deadline, it dispatches a *continuation* run of the same deployment at the next
segment (same parameters, idempotency key per segment) and ends the current run cleanly
(*Completed*, in a state named ``Continued``, with a "continued in <run>" artifact). Tasks already finished are not recomputed:
decorate them with :func:`resumable_task` (persisted results keyed by inputs and source) so the
continuation reads their results from the result storage both runs share. When the slack has
run out (or there is no later segment, or no deployment to continue in) it returns and the flow
runs to the end: the deadline wins. Once the run has worked longer than its expected duration,
the estimate is proven short and it no longer pauses (with a warning). In a subflow of the CaRE run it does nothing: only
the ``@care`` flow's own body pauses.

Outside a CaRE run, or for a policy that is not interruptible, it does nothing:

>>> checkpoint()
False
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from care_flows.orchestration.clock import Clock, system_clock
from care_flows.orchestration.plan import Plan
from care_flows.policy import CarePolicy
from care_flows.timeutil import format_duration, iso

__all__ = ["RunState", "current_run", "checkpoint", "resumable_task", "Continued"]

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What the running body of a ``@care`` flow knows about its plan (one per flow run)."""

    policy: CarePolicy
    plan: Plan | None
    region: str
    clock: Clock = system_clock
    segment: int = 0
    root: str = ""
    work_done_s: float = 0.0
    segment_started: pd.Timestamp = field(default_factory=system_clock)
    deployment_id: Any = None
    # a deployment run's: the JSON it was given (secrets in clear, for the continuation), so never in repr()
    parameters: dict[str, Any] = field(default_factory=dict, repr=False)
    dispatcher: Callable[..., Any] | None = None
    checkpoints: int = 0
    last_checkpoint: pd.Timestamp | None = None
    flow_name: str = ""  # names the usage history the run's samples go to
    duration_given: bool = False  # care_overrides gave expected_duration: this run's time is not the flow's
    run_id: str = ""  # the flow run this segment runs in ("" outside one): a checkpoint in a subflow of it does nothing
    overrun_warned: bool = False  # the checkpoint said once that the work outgrew its estimate
    retried: bool = False  # this segment or an earlier one of the job was retried: its run time is not the flow's
    # the idempotency key of a continuation whose dispatch failed with no answer and could not be looked up:
    # the server may have created it, so the run that goes on cancels it if it completes (review 46e L1)
    unconfirmed_continuation: str = ""

    def remaining_s(self, now: pd.Timestamp) -> float:
        """Expected work left: expected duration minus the work done in all segments so far."""
        done = self.work_done_s + (now - self.segment_started).total_seconds()
        return max(0.0, self.policy.expected_duration.total_seconds() - done)


_CURRENT: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("care_run_state", default=None)


def current_run() -> RunState | None:
    """The CaRE state of the flow body running in this context, if any."""
    return _CURRENT.get()


class Continued(BaseException):
    """Raised by :func:`checkpoint` to end the current segment (caught by ``@care``).

    A ``BaseException`` so that a flow's ``except Exception`` does not swallow it.
    """

    def __init__(self, flow_run: Any, start: pd.Timestamp) -> None:
        super().__init__(f"continued in {getattr(flow_run, 'name', flow_run)} at {iso(start)}")
        self.flow_run = flow_run
        self.start = start


def checkpoint() -> bool:
    """Stop here and continue at the next green segment, if that is what the plan says.

    Returns False when the run goes on (it never returns when it continues elsewhere: the
    ``@care`` wrapper ends the run *Completed*). Outside an interruptible ``@care`` run it is a
    no-op, so a flow's code runs the same locally and in tests:

    >>> checkpoint()
    False
    """
    state = _CURRENT.get()
    if state is None or not state.policy.interruptible or state.plan is None:
        return False
    if state.run_id and _flow_run_id() not in ("", state.run_id):
        # a subflow of the CaRE run (a @care one runs as part of it): ending it would leave the subflow
        # run crashed and the parent's remaining work unplanned; only the @care flow's own body pauses
        log.info("CaRE checkpoint: inside a subflow of CaRE run %s; only the @care flow's own body can pause", state.run_id)
        return False
    task = _task_name()
    if task:  # ending the run from inside a task would leave that task run Crashed in the UI
        log.warning("CaRE checkpoint: called inside task %s; call care.checkpoint() between tasks, in the flow body "
                    "(this one does not pause the run)", task)
        return False
    state.checkpoints += 1
    now = state.clock()
    plan = state.plan
    # the stretch of work since the last checkpoint estimates how long the next task will take
    last_task = now - (state.last_checkpoint or state.segment_started)
    state.last_checkpoint = now
    current = plan.segment_at(now)
    if current is not None and plan.segments[current][1] - now >= last_task / 2:
        return False  # still green, and the next task mostly fits in this green segment
    nxt = plan.next_segment(now)
    if nxt is None:
        log.info("CaRE checkpoint: no later green segment; running to the end")
        return False
    start = plan.segments[nxt][0]
    done_s = state.work_done_s + (now - state.segment_started).total_seconds()
    expected = state.policy.expected_duration
    if done_s >= expected.total_seconds():  # the estimate is proven short: what is left is unknown (review 42b M1)
        from care_flows.orchestration.decorator import _logger  # the run's own log (late: decorator imports this)

        if state.overrun_warned:
            return False
        state.overrun_warned = True  # once per segment, not at every later checkpoint (review 42d L3)
        _logger().warning("CaRE checkpoint: the work has run %s, more than the %s it was planned for; not pausing, so the "
                          "deadline %s holds (raise expected_duration, or let the run history learn it)",
                          format_duration(pd.Timedelta(seconds=round(done_s))), format_duration(expected), iso(plan.deadline))
        return False
    ran = now - state.segment_started
    began_in = plan.segment_at(state.segment_started)
    planned_len = plan.segments[began_in][1] - plan.segments[began_in][0] if began_in is not None else None
    min_segment = pd.Timedelta(state.policy.min_segment) if state.policy.min_segment is not None else None
    # only for a segment that was planned at least min_segment long (a planner that made it shorter is followed)
    if min_segment is not None and ran < min_segment and (planned_len is None or planned_len >= min_segment):
        # picked up late (no worker for a while): a pause now would make a segment shorter than min_segment, the
        # cost of each resume the policy set it to avoid; running on never endangers the deadline (review 42b L1)
        log.info("CaRE checkpoint: this segment has run %s, under min_segment %s; running on", format_duration(ran),
                 format_duration(min_segment))
        return False
    # at least one more task like the last one is left, whatever the estimate says
    remaining = max(pd.Timedelta(seconds=state.remaining_s(now)), last_task)
    # a continuation is a run that does not start now: it needs the policy's start_margin to be picked up (review 49b M1)
    margin = pd.Timedelta(state.policy.start_margin)
    if start + margin + remaining > plan.deadline:
        log.info("CaRE checkpoint: not enough slack to pause (resume %s + start_margin %s + %s > deadline %s); running to the end",
                 iso(start), format_duration(margin), format_duration(remaining), iso(plan.deadline))
        return False
    if state.policy.max_segments is not None and state.segment + 1 >= state.policy.max_segments:
        log.info("CaRE checkpoint: max_segments reached; running to the end")
        return False
    if state.dispatcher is None or state.deployment_id is None:
        why = ("this run has no deployment to continue in" if state.deployment_id is None
               else "a continuation could not be dispatched at an earlier checkpoint of this run")  # review 47d L3
        log.info("CaRE checkpoint: slot no longer green but %s; running on", why)
        return False
    done = state.work_done_s + (now - state.segment_started).total_seconds()
    try:
        run = state.dispatcher(state, start, nxt, done)
    except Exception as exc:  # noqa: BLE001 - the deadline wins: a continuation that cannot be dispatched means running on
        from care_flows.orchestration.decorator import _logger  # the run's own log where there is one (late: decorator imports this)

        _logger().warning("CaRE checkpoint: cannot continue later (%s); running on to the end", " ".join(str(exc).split())[:300])
        state.dispatcher = None  # later checkpoints do not try again
        return False
    raise Continued(run, start)


def _task_name() -> str:
    """The name of the task run this code runs in ("" outside one)."""
    try:
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
    except Exception:  # noqa: BLE001 - no Prefect context
        return ""
    return str(getattr(ctx.task_run, "name", "") or getattr(ctx.task, "name", "") or "a task") if ctx is not None else ""


def _flow_run_id() -> str:
    """The id of the flow run this code runs in ("" outside one)."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
    except Exception:  # noqa: BLE001 - no Prefect context: not a subflow
        return ""
    flow_run = getattr(ctx, "flow_run", None)
    return str(flow_run.id) if flow_run is not None else ""


def _care_root_key(context: Any, parameters: dict[str, Any]) -> str:
    """The cache-key part that ties a result to one CaRE run: the root run of its segments.

    The continuation runs of one trigger share the root (it rides in the ``care`` marker), so they
    read each other's results; tomorrow's run of the same flow has a new root and computes afresh.
    Outside ``@care`` the flow run's own id plays the root.
    """
    state = current_run()
    if state is not None and state.root:
        return f"care-root-{state.root}"
    task_run = getattr(context, "task_run", None)
    flow_run_id = getattr(task_run, "flow_run_id", None)
    # outside any flow each call is its own run (Prefect's RUN_ID policy does the same)
    return f"flow-run-{flow_run_id}" if flow_run_id else f"task-run-{getattr(task_run, 'id', None)}"


def resumable_task(fn: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
    """``@task`` whose result is persisted and keyed by inputs + source + the CaRE run's root: a
    continuation segment of the same run reads it back instead of recomputing, while a later,
    separate run of the flow (same parameters, new root) computes it again.

    Extra keyword arguments go to :func:`prefect.task` (e.g. ``result_storage``, or your own
    ``cache_policy`` to share results across runs on purpose).
    """
    from prefect import task
    from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

    task_kwargs.setdefault("persist_result", True)
    task_kwargs.setdefault("cache_policy", INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_care_root_key))
    if fn is None:
        return lambda f: task(f, **task_kwargs)
    return task(fn, **task_kwargs)
