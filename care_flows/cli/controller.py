"""``care controller``: keep upcoming Scheduled runs of CaRE deployments in their green windows."""

from __future__ import annotations

import sys

import typer

from care_flows.cli import emit_json, warn

__all__ = ["register", "PassReport", "summary_line", "Terminated", "usable_sources"]


def register(app: typer.Typer) -> None:
    @app.command("controller")
    def controller(
        once: bool = typer.Option(False, "--once", help="Run one pass and exit (default: loop until interrupted)."),
        interval: str = typer.Option("30s", "--interval", help="Time between passes, e.g. 30s, 5m."),
        lookahead: str = typer.Option("24h", "--lookahead", help="Consider Scheduled runs starting within this time, e.g. 24h."),
        policy_block: str = typer.Option(
            None, "--policy-block",
            help="Name of a saved CarePolicyBlock (or inline policy JSON) used for 'care'-tagged deployments without a "
            "care-policy:<block> tag or care_policy parameter (save one with CarePolicyBlock(policy={...}).save(NAME)); CARE_TARGETS_BLOCK is merged in.",
        ),
        source: str = typer.Option(
            None, "--source", help="Carbon source for all plans: embedded, electricitymaps, watttime or gb (live ones need credentials), "
            "in each policy's own signal kind (default: each policy's carbon_source).",
        ),
        max_replans: int = typer.Option(
            25, "--max-replans", help="Re-plans per pass at most (the most overdue first; the rest wait for the next pass)."
        ),
        json_out: bool = typer.Option(
            False, "--json", help="Print each pass as one JSON document on stdout ({\"actions\": [...]}; a failed pass of the loop: "
            "{\"error\": ...}; waiting for another controller's lease: {\"waiting\": ...}, once per holder), in the loop as JSON Lines "
            "(one document per line). With --once a pass that fails (API unreachable, lease held) is an error: line on stderr, exit 2, "
            "nothing on stdout."
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v",
            help="List every run on every pass (default: only runs whose plan or start changed, new failures and skips, "
            "and one time-stamped summary line per pass).",
        ),
    ) -> None:
        """Move upcoming Scheduled runs of deployments tagged 'care' into their green windows, and re-plan the runs @care triggers deferred.

        For each run: plan from its scheduled time, set its state to Scheduled at the window
        start and its job variables (region, instance_type, target variables) before a worker
        picks it up. While it waits, plan it again every replan_every of its policy (default
        1 h) over the same window, with a fresh forecast. A run in a care-ec2 pool may move to
        any candidate region; a run in any other pool is shifted in time only, in the region
        that pool runs in (Prefect cannot move a run to another pool). Deploy @care flows
        without the 'care' tag: they plan themselves; the runs their triggers deferred (tag
        care:dispatched) are re-planned here with the policy each trigger recorded, never
        --policy-block. A run rescheduled by hand after it was
        planned is left where it was put. A planned run of a flow without @care is accounted
        once it has ended: a care-realized artifact (what care report sums) per attempt is
        published on it, from its Running time in Prefect ('accounted'; its two times, old_start
        and new_start in --json, are when the attempt began and ended). One controller per Prefect server: a second one
        waits for the first one's lease (the Prefect variable care-controller-lease). Ctrl-C
        exits 130, SIGTERM (a service stop) exits 0. Uses the Prefect API in PREFECT_API_URL.
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
        if source is not None:
            source = _check_source(source)  # a usage error, before anything contacts an API
        _no_api_url(once)
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
        if source is not None:
            from care_flows.orchestration.plan import SourceForEveryPolicy

            signal = SourceForEveryPolicy(source)  # each policy's kind (its `signal`), from this source

        report = PassReport(json_out=json_out, verbose=verbose, json_lines=not once)
        previous = _stop_on_sigterm()
        try:
            run_controller(interval=every, lookahead=ahead, once=once, default_policy=default, signal=signal, on_pass=report.end_of_pass,
                           on_action=report.action, on_error=report.error, on_wait=report.waiting, on_recover=report.recovered,
                           max_replans=max_replans)
        except Terminated:
            return  # a clean stop (systemd stop, docker stop): exit 0, the lease released on the way out
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            _restore_sigterm(previous)


def _no_api_url(once: bool) -> None:
    """Without PREFECT_API_URL Prefect starts a temporary server on this machine's database, whose runs
    are not the user's (review 51b M2: the pass said "no upcoming Scheduled runs" and exited 0): a loop
    is refused (exit 2), one pass says so on stderr."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    fix = "set it to your Prefect server's API, e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api"
    if not once:
        from care_flows.errors import ConfigError

        raise ConfigError(f"PREFECT_API_URL is not set, so the controller would plan the runs of a temporary server on this "
                          f"machine's Prefect database (PREFECT_HOME), not your server's; {fix}")
    warn([f"PREFECT_API_URL is not set, so this pass checks a temporary server on this machine's Prefect database "
          f"(PREFECT_HOME): runs on other servers are not seen; {fix}"])


def usable_sources() -> list[str]:
    """The carbon sources ``--source`` takes: every registry source but ``csv``, which needs a file
    path the controller has no option for.

    >>> usable_sources()
    ['electricitymaps', 'embedded', 'gb', 'watttime']
    """
    from care_flows.signals.registry import known_sources

    return [name for name in known_sources() if name != "csv"]


def _check_source(source: str) -> str:
    """``source`` as the registry spells it, or a one-line error naming the sources ``--source`` takes.

    >>> _check_source(" Embedded ")
    'embedded'
    >>> _check_source("csv")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --source 'csv' needs a CSV file, which care controller cannot take; use one of electricitymaps, embedded, gb, watttime
    """
    from care_flows.errors import ConfigError

    key = source.strip().lower()
    usable = usable_sources()
    if key in usable:
        return key
    if key == "csv":
        raise ConfigError(f"--source {source!r} needs a CSV file, which care controller cannot take; use one of {', '.join(usable)}")
    raise ConfigError(f"unknown --source {source!r}; use one of {', '.join(usable)}")


def _whole_seconds(text: str | None) -> str:
    """An ISO time of an action as the text lines show it, to the second (``-`` when there is none).

    >>> _whole_seconds("2026-11-29T23:32:06.304423+00:00"), _whole_seconds(None)
    ('2026-11-29T23:32:06+00:00', '-')
    """
    if not text:
        return "-"
    import pandas as pd

    from care_flows.timeutil import iso

    return iso(pd.Timestamp(text).floor("s"))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the loop stops as on Ctrl-C (a KeyboardInterrupt, so nothing catches it on
    the way), and the command exits 0: a service manager's stop is a clean stop."""


def _stop_on_sigterm() -> object:
    """SIGTERM (systemd stop, docker stop) ends the loop like Ctrl-C: the lease is released and the
    lines of the actions done so far are written; the exit code is 0 (Ctrl-C: 130). The previous
    handler, to restore (None: not the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    return signal.signal(signal.SIGTERM, stop)


def _restore_sigterm(previous: object) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


class PassReport:
    """What ``care controller`` writes: each action as it is done, one summary line per pass.

    Text (stderr): lines start with an ISO UTC time stamp. By default an action is written when it
    is news (:attr:`ControllerAction.news`: a move, a first plan, a failure, a skip that needs the
    operator) and, for failures and skips, only when its reason differs from the one last written
    for that run (a block that stays broken is said once, not every pass); ``verbose`` writes every
    action. ``--json``: one document per pass on stdout (``{"actions": [...]}``), a failed pass of the
    loop ``{"error": "..."}``, waiting for another controller's lease ``{"waiting": "..."}`` (once per
    holder); ``json_lines`` (the loop) writes each on one line, so the stream is JSON Lines. With
    ``--once`` a failed pass is not reported here: it is the command's ``error:`` line on stderr and
    exit 2, with nothing on stdout, as for every ``care`` command.
    """

    def __init__(self, *, json_out: bool, verbose: bool, stream: object = None, now: object = None, json_lines: bool = False) -> None:
        from care_flows.timeutil import utcnow

        self.json_out, self.verbose, self.json_lines = json_out, verbose, json_lines
        self.stream = stream
        self.now = now or utcnow
        self.said: dict[str, tuple[str, str]] = {}  # run id -> (action, reason) last written for it

    def _write(self, line: str) -> None:
        from care_flows.timeutil import iso

        stream = self.stream or sys.stderr
        stream.write(f"{iso(self.now().floor('s'))} {line}\n")
        stream.flush()

    def action(self, a: object) -> None:
        """One action, written as soon as it is done (a killed pass leaves its record)."""
        if self.json_out:
            return
        key = (a.action, a.reason)
        if not self.verbose:
            if not a.news:
                return
            if a.action in ("failed", "skipped") and self.said.get(a.flow_run_id) == key:
                return
        self.said[a.flow_run_id] = key
        label = "waiting" if a.action == "skipped" and a.waiting else a.action  # as the pass's summary counts it (review 48c L3)
        self._write(f"{label:9s} {a.flow_run_name} ({a.deployment}) {_whole_seconds(a.old_start)} -> {_whole_seconds(a.new_start)} "
                    f"{a.region or ''} {a.reason}")

    def end_of_pass(self, actions: list) -> None:
        """The pass's summary line (text) or its JSON document."""
        if self.json_out:
            emit_json({"actions": [a.to_dict() for a in actions]}, one_line=self.json_lines)
            return
        seen = {a.flow_run_id for a in actions}
        self.said = {k: v for k, v in self.said.items() if k in seen}  # runs gone (started, deleted) are forgotten
        self._write(summary_line(actions, now=self.now()))

    def error(self, line: str) -> None:
        """A pass that failed: one line, no summary."""
        if self.json_out:
            emit_json({"error": line}, one_line=self.json_lines)
        else:
            self._write(f"error: {line}")

    def recovered(self, line: str) -> None:
        """A pass works again after failed ones (the Prefect API is back)."""
        if self.json_out:
            emit_json({"recovered": line}, one_line=self.json_lines)
        else:
            self._write(f"recovered: {line}")

    def waiting(self, line: str) -> None:
        """This controller waits for another's lease (said once per holder)."""
        if self.json_out:
            emit_json({"waiting": line}, one_line=self.json_lines)
        else:
            self._write(f"waiting: {line}")


def summary_line(actions: list, now: object = None) -> str:
    """``pass: 2 moved, 0 re-planned, ...`` for one pass; the next re-plan in whole seconds, and
    "on the next pass" when one is already due (``now``: the time of the line). A run rescheduled by
    hand counts as skipped, not waiting: CaRE does nothing more with it.

    >>> from care_flows.orchestration.controller import ControllerAction as A
    >>> summary_line([A("1", "a", "f/d", "moved"), A("2", "b", "f/d", "skipped", "already planned (next re-plan at x)",
    ...               waiting=True, replan_at="2026-11-29T12:18:00+00:00"), A("3", "c", "f/d", "failed", "bad block")])
    'pass: 1 moved, 0 re-planned, 0 kept, 1 failed, 0 skipped, 1 waiting; next re-plan 2026-11-29T12:18:00+00:00'
    >>> summary_line([A("4", "d", "f/d", "accounted", "completed, ran 52m: 3.1 gCO2eq ...")])
    'pass: 0 moved, 0 re-planned, 0 kept, 0 failed, 0 skipped, 0 waiting, 1 accounted'
    >>> summary_line([])
    'pass: no upcoming Scheduled runs of CaRE deployments'
    """
    if not actions:
        return "pass: no upcoming Scheduled runs of CaRE deployments"
    count = {k: 0 for k in ("moved", "replanned", "kept", "failed", "skipped", "waiting", "accounted")}
    for a in actions:
        count["failed" if a.action == "failed" else "waiting" if a.waiting else a.action if a.action in count else "skipped"] += 1
    line = (f"pass: {count['moved']} moved, {count['replanned']} re-planned, {count['kept']} kept, {count['failed']} failed, "
            f"{count['skipped']} skipped, {count['waiting']} waiting" + (f", {count['accounted']} accounted" if count["accounted"] else ""))
    import pandas as pd

    from care_flows.timeutil import iso, to_timestamp

    due = []
    for a in actions:
        if a.replan_at and a.action != "failed":
            try:
                due.append(to_timestamp(pd.Timestamp(a.replan_at)))
            except (TypeError, ValueError):
                continue
    if not due:
        return line
    first = min(due).floor("s")
    if now is not None and first <= to_timestamp(pd.Timestamp(now)):
        return f"{line}; next re-plan on the next pass"
    return f"{line}; next re-plan {iso(first)}"
