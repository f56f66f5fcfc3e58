"""``care report``: the command line of :mod:`care_flows.orchestration.report` (what CaRE saved,
per flow and in total, from the ``care-realized`` artifacts).

Example::

    care report --since 7d
    care report --start 2026-03-02T00:00:00Z --end 2026-03-09T00:00:00Z --flow etl-nightly --json
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from care_flows.cli import emit_json, warn
from care_flows.orchestration.report import (  # re-exported: the report's code lives in orchestration
    FIGURES,
    REPORT_KEY,
    _CAPTION,
    _HEADERS,
    _NO_API_URL,
    _deferred_line,
    _period,
    _table_rows,
    build_report,
    is_realized_key,
    parse_realized,
    publish_report,
    read_segments,
    render_report,
    report_flow_body,
    report_key,
    report_markdown,
    summarize,
)

__all__ = ["register", "parse_realized", "summarize", "read_segments", "build_report", "render_report", "report_markdown",
           "publish_report", "report_flow_body", "report_key", "is_realized_key", "REPORT_KEY", "FIGURES"]


def _other_flows(asked: Sequence[str] | None, in_period: Sequence[str]) -> str:
    """For an empty filtered report: the flows that do have artifacts in the period, and the one
    the user probably meant (a Python function name for its Prefect flow name, say).

    >>> _other_flows(["nightly_training"], ["etl", "nightly-training"])
    "; flows with care-realized artifacts in this period: etl, nightly-training (did you mean 'nightly-training'?)"
    """
    if not asked or not in_period:
        return ""
    import difflib

    norm = {f.lower().replace("_", "-"): f for f in in_period}
    guesses = [norm[m] for a in asked for m in difflib.get_close_matches(a.lower().replace("_", "-"), list(norm), n=1, cutoff=0.75)]
    shown = ", ".join(in_period[:20]) + (f" and {len(in_period) - 20} more" if len(in_period) > 20 else "")
    hint = f" (did you mean {guesses[0]!r}?)" if guesses else ""
    return f"; flows with care-realized artifacts in this period: {shown}{hint}"



def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        since: str | None = typer.Option(None, "--since", metavar="DURATION", help="Report the period ending at --end of this length, e.g. 7d, 24h (default 7d)."),
        start: str | None = typer.Option(None, "--start", metavar="ISO", help="Start of the period (ISO 8601 with offset), instead of --since."),
        end: str | None = typer.Option(None, "--end", metavar="ISO", help="End of the period (ISO 8601 with offset; default now)."),
        flow: list[str] | None = typer.Option(None, "--flow", metavar="NAME", help="Only this flow (its Prefect flow name); repeat for several."),
        publish: bool = typer.Option(False, "--publish", help=f"Also publish the report to the Prefect UI: a run of the flow care-report whose markdown artifact is keyed {REPORT_KEY} ({REPORT_KEY}-<flows> with --flow; Artifacts page, each publication a new version)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Sum what CaRE runs realized and saved, per flow, from the care-realized artifacts of @care runs and of runs the controller planned.

        Reads the care-realized artifacts created in the period from the Prefect API in
        PREFECT_API_URL. Per flow and in total: jobs (a job's segments share its CaRE root run),
        segments by outcome, realized kWh, gCO2eq and USD, the plans' expected gCO2eq and USD
        once per job, the baseline (the run time on the home-sized instance, now, at home) and the gCO2eq and USD saved
        against it. A figure that some jobs do not know is summed over the others and says so.
        """
        begin, until = _period(since, start, end)
        doc = publish_report(begin, until, flows=flow) if publish else build_report(begin, until, flows=flow)
        if publish:
            typer.echo(f"published as the {report_key(flow)} artifact ({doc['published_artifact_id']}) in the Prefect API at "
                       f"{doc['api_url'] or _NO_API_URL}", err=True)
        message = None
        if not doc["flows"]:
            which = f" of flow {', '.join(flow)}" if flow else ""
            skipped = f" (skipped {doc['skipped']} that could not be read)" if doc["skipped"] else ""
            message = (f"no care-realized artifacts{which} created between {doc['start']} and {doc['end']}{skipped} in the Prefect API at "
                       f"{doc['api_url'] or _NO_API_URL}; @care flow runs publish one when their body ends, the controller one for each run it planned once that run ended{_other_flows(flow, doc['flows_in_period'])}")
        if json_out:  # stdout holds the JSON only: the note is a warning: line on stderr, and in the JSON's warnings
            emit_json({**doc, "warnings": warn([message]) if message else []})
            return
        if message:
            typer.echo(message)
            deferred = _deferred_line(doc["deferred_runs"])
            if deferred:  # a first run that was deferred has no artifact yet, but is CaRE's doing (review 48c L5)
                typer.echo(deferred)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"CaRE report {doc['start']} -> {doc['end']}", caption=_CAPTION)
        for col in _HEADERS:
            table.add_column(col, justify="left" if col == "flow" else "right", no_wrap=col in ("flow", "segments"))
        for cells in _table_rows(doc):
            table.add_row(*cells)
        console = Console(width=max(Console().width, 200), soft_wrap=True)
        console.print(table)
        for line in render_report(doc):
            console.print(line, highlight=False, markup=False)
