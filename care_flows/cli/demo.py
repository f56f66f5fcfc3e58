"""``care demo``: the whole machinery on this machine, in two to three minutes, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from care_flows.demo.scenario import DAYS, DEFAULT_DAY, DEFAULT_SECONDS_PER_HOUR


def check_day(text: str) -> None:
    """A one-line error for a ``--day`` that is not a date (``YYYY-MM-DD``, or an ISO 8601 time with
    an offset, which names its day); the range is :meth:`DemoOptions.validate`'s to check.

    >>> check_day("2023-06-01"); check_day("2023-06-01T12:00:00Z")
    >>> check_day("2023-02-30")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --day '2023-02-30' is not a date; use e.g. 2023-06-01 (a day from 2023-01-02 to 2023-12-29)
    """
    import re
    from datetime import date

    from care_flows.errors import ConfigError
    from care_flows.timeutil import parse_time

    raw = str(text).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            date.fromisoformat(raw)
        else:
            parse_time(raw, name="--day")
    except (ValueError, ConfigError):
        raise ConfigError(f"--day {text!r} is not a date; use e.g. 2023-06-01 (a day from {DAYS[0]} to {DAYS[1]})") from None


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("care-report"), "--out", help="Report folder (PNG plots, index.html, summary.json, logs/)."),
        seconds_per_hour: Optional[float] = typer.Option(  # noqa: UP007 (typer reads the annotation)
            None, "--seconds-per-hour", show_default=False,
            help=f"Wall seconds per grid hour of the replayed day, 0.5-60 [default: {DEFAULT_SECONDS_PER_HOUR:g}]. The fastest rate: "
                 "the demo slows its clock (up to 15 s) when starting a flow-run process takes too long on this machine.",
        ),
        keep_ui: bool = typer.Option(False, "--keep-ui", help="Leave the Prefect server running afterwards and print its URL and PID."),
        day: str = typer.Option(DEFAULT_DAY, "--day", help="Grid day to replay, 2023-01-02 to 2023-12-29 (embedded ES and SE traces)."),
        timeout_s: float = typer.Option(0, "--timeout", help="Stop following the runs after this many seconds (0: 26 grid hours + 120 s)."),
        api_url: Optional[str] = typer.Option(  # noqa: UP007
            None, "--api-url", show_default=False,
            help="Use this Prefect API (e.g. http://127.0.0.1:4200/api) instead of starting a local server; PREFECT_API_URL is never "
                 "used. At the end the demo cancels its unfinished runs there and deletes the runs, artifacts, deployments, work "
                 "pools and care-demo-* policy blocks it created (with --keep-ui it only cancels).",
        ),
    ) -> None:
        """Run CaRE for real on a local Prefect server: deferral, a move to the greener region,
        right-sizing and a checkpointed flow, replaying a real 2023 grid day on a fast clock.

        Always starts its own local Prefect server on 127.0.0.1 (an exported PREFECT_API_URL is
        ignored; --api-url asks for an existing one), two local process
        work pools standing in for eu-south-2 and eu-north-1, and a worker per pool; prints a
        summary table and writes a report folder; stops everything it started, by PID.
        No account and no network are needed.
        """
        from rich.console import Console

        from care_flows.demo.main import DemoOptions, run_demo

        check_day(day)  # a date, in the words of a date (DemoOptions.validate checks the range)
        opts = DemoOptions(out=out, seconds_per_hour=seconds_per_hour, day=day, keep_ui=keep_ui, timeout_s=timeout_s or None,
                           api_url=api_url)
        opts.validate()
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=260)  # the summary table has 14 columns
        summary = run_demo(opts, console)
        if not summary.get("all_completed"):
            raise typer.Exit(1)
