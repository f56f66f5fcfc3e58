"""``care controller``: keep upcoming Scheduled runs of CaRE deployments in their green windows."""

from __future__ import annotations

import sys

import typer

from care_flows.cli import emit_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("controller")
    def controller(
        once: bool = typer.Option(False, "--once", help="Run one pass and exit (default: loop until interrupted)."),
        interval: str = typer.Option("30s", "--interval", help="Time between passes, e.g. 30s, 5m."),
        lookahead: str = typer.Option("24h", "--lookahead", help="Consider Scheduled runs starting within this time, e.g. 24h."),
        policy_block: str = typer.Option(
            None, "--policy-block",
            help="Name of a saved CarePolicyBlock (or inline policy JSON) used for 'care'-tagged deployments without a "
            "care-policy:<block> tag (create the examples with python blocks/create_blocks.py); CARE_TARGETS_BLOCK is merged in.",
        ),
        source: str = typer.Option(None, "--source", help="Carbon source for all plans (default: each policy's carbon_source)."),
        max_replans: int = typer.Option(
            25, "--max-replans", help="Re-plans per pass at most (the most overdue first; the rest wait for the next pass)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print each pass as one JSON document on stdout."),
    ) -> None:
        """Move upcoming Scheduled runs of deployments tagged 'care' into their green windows.

        For each run: plan from its scheduled time, set its state to Scheduled at the window
        start and its job variables (region, instance_type, target variables) before a worker
        picks it up. While it waits, plan it again every replan_every of its policy (default
        1 h) over the same window, with a fresh forecast. A run in a care-ec2 pool may move to
        any candidate region; a run in any other pool is shifted in time only, in the region
        that pool runs in (Prefect cannot move a run to another pool). Deploy @care flows
        without the 'care' tag: they plan themselves. Uses the Prefect API in PREFECT_API_URL.
        """
        from care_flows.blocks import load_policy_block
        from care_flows.orchestration.controller import prefect_api_error, run_controller
        from care_flows.orchestration.decorator import resolve_policy
        from care_flows.timeutil import parse_duration

        every = parse_duration(interval, name="--interval")
        ahead = parse_duration(lookahead, name="--lookahead")
        if max_replans < 0:
            from care_flows.errors import ConfigError

            raise ConfigError(f"--max-replans {max_replans} must be >= 0 (0 turns re-planning off for this controller)")
        if every.total_seconds() <= 0 or ahead.total_seconds() <= 0:
            from care_flows.errors import ConfigError

            raise ConfigError(f"--interval {interval!r} and --lookahead {lookahead!r} must be positive, e.g. 30s and 24h")
        try:
            if policy_block is None:
                default = None
            elif policy_block.lstrip().startswith("{"):  # inline JSON, as the option always took
                default = resolve_policy(policy_block)
            else:  # a block name; the targets of CARE_TARGETS_BLOCK are merged, as for @care
                default = resolve_policy(load_policy_block(policy_block, given_as="--policy-block"))
        except Exception as exc:  # noqa: BLE001 - an unreachable API is a one-line error, like the pass below
            unreachable = prefect_api_error(exc)
            if unreachable is None:
                raise
            raise unreachable from None
        signal = None
        if source:
            from care_flows.signals import get_signal

            signal = get_signal(source)

        def report(actions: list) -> None:
            if json_out:
                emit_json({"actions": [a.to_dict() for a in actions]})
                return
            for a in actions:
                sys.stderr.write(f"{a.action:9s} {a.flow_run_name} ({a.deployment}) {a.old_start} -> {a.new_start or '-'} {a.region or ''} {a.reason}\n")
            if not actions:
                sys.stderr.write("no upcoming Scheduled runs of CaRE deployments\n")

        try:
            run_controller(interval=every, lookahead=ahead, once=once, default_policy=default, signal=signal, on_pass=report,
                           max_replans=max_replans)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
