"""Review 43c L1 (rest): a paused job with no continuation run at all is not told to "retry that run":
there is none; a retry of the run that paused does the rest of the work (decorator._continued_by_earlier_attempt
finds no continuation and runs it there)."""

import pandas as pd

from care_flows.orchestration.report import render_report, summarize

T = pd.Timestamp("2026-03-02T00:00:00Z")


def _paused(job, continuation):
    return {"flow": "etl", "job": job, "outcome": "continued", "started": T, "continuation": continuation}


def _line(segments):
    (line,) = [ln for ln in render_report({"total": summarize(segments)["total"]}) if ln.startswith("unfinished:")]
    return line


def test_a_missing_continuation_is_told_to_retry_the_run_that_paused():
    line = _line([_paused("r1", {"name": None, "state": None, "type": None})])
    assert "job r1 (no continuation run: retry the run that paused, which then does the rest)" in line
    assert "retry that run" not in line and "stopped or is missing" in line


def test_a_stopped_continuation_is_named_and_retried():
    line = _line([_paused("r1", {"name": "etl-r1-part1", "state": "Cancelled", "type": "CANCELLED"})])
    assert "etl: etl-r1-part1 (Cancelled)" in line and line.endswith("retry that run to do the rest of the work")
    both = _line([_paused("r1", {"name": "etl-r1-part1", "state": "Cancelled", "type": "CANCELLED"}),
                  _paused("r2", {"name": None, "state": None, "type": None})])
    assert both.startswith("unfinished: 2 jobs") and both.endswith(
        "retry the stopped continuation, or the run that paused where there is none, to do the rest of the work")
