"""The ``care`` command line.

Each subcommand lives in a module of this package named after it (``plan.py``, ``intensity.py``
...) that defines ``register(app)``; :func:`build_app` discovers them, so adding a command never
touches this file. Errors are one line on stderr:

- exit 0: success;
- exit 1: the command ran but its work failed (e.g. a flow run failed);
- exit 2: usage error or bad input (unknown region, malformed CSV, deadline in the past...);
- exit 130: interrupted.

A bug (any other exception) is reported as one line with exit 1; ``CARE_DEBUG=1`` re-raises it
so the traceback is shown.

With ``--json``, stdout holds only the JSON document; logs and progress go to stderr.

Warnings are one ``warning: `` line each on stderr, in text and ``--json`` mode alike; a command
that can warn also lists the same lines in its JSON document's ``warnings`` (:func:`warn`,
:func:`warnings_reported_here`). A deadline that cannot be met is a warning (the job runs now), not
an error; a deadline before the start is bad input (exit 2).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import typer

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from care_flows.errors import CareError, ConfigError
from care_flows.temporary_server import TEMPORARY_SERVER_STARTUP_S, quiet_temporary_server_telemetry

__all__ = ["build_app", "main", "emit_json", "fail", "refuse_overwriting_input", "fallbacks_reported_here", "warn",
           "warnings_reported_here", "known_region", "check_source_kind", "check_source_zone"]

HELP = (
    "CaRE: carbon- and cost-aware orchestration for Prefect flows. "
    "Shift work in time and space, right-size it, and account for it."
)


def build_app() -> typer.Typer:
    """The Typer app with every subcommand module of this package registered."""
    app = typer.Typer(
        name="care",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    def _version(value: bool) -> None:
        if value:
            import prefect

            from care_flows import __version__

            typer.echo(f"care {__version__} (prefect {prefect.__version__}, python {sys.version.split()[0]})")
            raise typer.Exit(0)

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="Print the CaRE, Prefect and Python versions and exit."),
    ) -> None:
        """CaRE: carbon- and cost-aware orchestration for Prefect flows."""

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app


def emit_json(document: Any, *, one_line: bool = False) -> None:
    """Write one JSON document to stdout (and nothing else): indented, or on ``one_line`` (JSON Lines,
    for a command that writes a stream of documents)."""
    sys.stdout.write(json.dumps(document, indent=None if one_line else 2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def warn(lines: "Iterable[str]") -> list[str]:
    r"""Print each warning as one ``warning: ...`` line on stderr (text and ``--json`` mode alike) and
    return the lines as printed, for the command's JSON document's ``warnings``.

    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     said = warn(["the data end\n  before this window"])
    >>> err.getvalue(), said
    ('warning: the data end before this window\n', ['the data end before this window'])
    """
    said = [" ".join(str(line).split()) for line in lines]
    for line in said:
        typer.echo(f"warning: {line}", err=True)
    return said


def known_region(region: str, *, name: str) -> Any:
    """:func:`care_flows.regions.region_info` of a region given with the option ``name``; an unknown
    one is a one-line error naming that option (as ``care aws`` and the policy options say it).

    >>> known_region("eu-north-1", name="--region").zone
    'SE-SE3'
    >>> known_region("eu-moon-1", name="--regions")
    Traceback (most recent call last):
    ...
    care_flows.errors.UnknownRegionError: --regions: unknown region 'eu-moon-1'; known regions: ...
    """
    from care_flows.errors import UnknownRegionError
    from care_flows.regions import region_info

    try:
        return region_info(region)
    except UnknownRegionError as exc:
        raise UnknownRegionError(f"{name}: {exc}") from None


def check_source_kind(source: str, kind: str | None, *, csv: bool = False) -> None:
    """A one-line error naming ``--source``/``--carbon-csv`` and ``--kind`` when the source does not
    serve that signal kind (:data:`care_flows.policy.SOURCE_SIGNALS`); unknown sources are left to the
    caller's own check.

    >>> check_source_kind("embedded", "direct"); check_source_kind("embedded", None)
    >>> check_source_kind("gb", "lifecycle")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --source gb does not serve --kind lifecycle (it serves direct); use --kind direct or leave --kind out
    >>> check_source_kind("csv", "marginal", csv=True)
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --carbon-csv holds lifecycle or direct intensity, not --kind marginal; use --kind lifecycle or leave --kind out
    """
    from care_flows.policy import SOURCE_SIGNALS

    if kind is None or source not in SOURCE_SIGNALS or kind in SOURCE_SIGNALS[source]:
        return
    served = SOURCE_SIGNALS[source]
    if csv:
        raise ConfigError(f"--carbon-csv holds {' or '.join(served)} intensity, not --kind {kind}; use --kind {served[0]} or leave --kind out")
    raise ConfigError(f"--source {source} does not serve --kind {kind} (it serves {' and '.join(served)}); "
                      f"use --kind {served[0]} or leave --kind out")


def check_source_zone(source: str, zone: str, *, name: str) -> None:
    """A one-line error when ``--source gb`` (the GB grid's own API) is asked for a zone off the GB
    grid: that is the user's choice of source, not a provider outage to fall back from. ``name`` is
    the option the zone came from (``--zone``, ``--region``).

    >>> check_source_zone("gb", "GB-13", name="--zone"); check_source_zone("gb", "eu-west-2", name="--region")
    >>> check_source_zone("embedded", "ES", name="--zone")
    >>> check_source_zone("gb", "ES", name="--zone")
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --source gb covers the GB grid only (--zone GB or GB-1..GB-17, --region eu-west-2), not --zone ES; use --source embedded, electricitymaps or watttime for it
    """
    if source != "gb":
        return
    from care_flows.errors import UnknownZoneError
    from care_flows.signals.gb import GBCarbonSignal

    try:
        GBCarbonSignal.target(zone)
    except UnknownZoneError:
        raise ConfigError(f"--source gb covers the GB grid only (--zone GB or GB-1..GB-17, --region eu-west-2), not {name} {zone}; "
                          "use --source embedded, electricitymaps or watttime for it") from None


def refuse_overwriting_input(out: str | os.PathLike[str] | None, inputs: dict[str, Any], *, out_name: str = "--out") -> None:
    """Raise a one-line ConfigError when ``out`` is one of the ``inputs`` (option name -> path): the
    atomic write would replace the very file the command read.

    >>> refuse_overwriting_input("a.csv", {"--csv": "./a.csv"})
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --out a.csv is the --csv file itself; writing it would overwrite the input: give another --out path
    >>> refuse_overwriting_input("pred.csv", {"--csv": "a.csv", "--jobs": None})
    """
    if not out:
        return
    from pathlib import Path

    target = Path(out).expanduser()
    for name, given in inputs.items():
        if given is None or not str(given) or str(given).lower().startswith("embedded:"):
            continue
        source = Path(given).expanduser()
        try:
            same = os.path.samefile(target, source) if target.exists() and source.exists() else target.resolve() == source.resolve()
        except OSError:
            same = False
        if same:
            raise ConfigError(
                f"{out_name} {out} is the {name} file itself; writing it would overwrite the input: give another {out_name} path"
            )


_FALLBACK_LOGGER = "care_flows.signals.fallback"
_reported_here: contextvars.ContextVar[bool] = contextvars.ContextVar("care_fallbacks_reported_here", default=False)
_install_lock = threading.Lock()


class _DropReportedFallbacks(logging.Filter):
    """Drops the fallback log's records emitted inside :func:`fallbacks_reported_here` (in the
    emitting thread's or task's context), so other threads' lines are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _reported_here.get()


_DROP_REPORTED = _DropReportedFallbacks()


@contextlib.contextmanager
def fallbacks_reported_here() -> Iterator[None]:
    """Drop the signals' fallback log lines (``care_flows.signals.fallback``) emitted in this
    context while a command that reports each fallback itself (a ``warning:`` line, its JSON
    ``warnings``) fetches data: one line per fallback, not the log line and then the command's own.

    Scoped to the current context (a :class:`contextvars.ContextVar` read by a filter on that
    logger), not process-wide: another thread's fallback lines (e.g. the controller's) are still
    logged, and blocks may nest or overlap in several threads.

    >>> import logging
    >>> fallback_log = logging.getLogger("care_flows.signals.fallback")
    >>> seen = []
    >>> class Keep(logging.Handler):
    ...     def emit(self, record): seen.append(record.getMessage())
    >>> keep = Keep(); fallback_log.addHandler(keep)
    >>> with fallbacks_reported_here():
    ...     fallback_log.warning("inside: the command reports it")
    ...     with fallbacks_reported_here():
    ...         fallback_log.warning("nested")
    ...     fallback_log.warning("inside again")
    >>> fallback_log.warning("outside: logged")
    >>> fallback_log.removeHandler(keep); seen
    ['outside: logged']
    """
    fallback_log = logging.getLogger(_FALLBACK_LOGGER)
    with _install_lock:  # once per logger (kept if logging is configured again, e.g. by Prefect)
        if _DROP_REPORTED not in fallback_log.filters:
            fallback_log.addFilter(_DROP_REPORTED)
    token = _reported_here.set(True)
    try:
        yield
    finally:
        _reported_here.reset(token)


_REPORTED_MARK = "care_reported_here"
_collecting: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("care_warnings_reported_here", default=None)


class _CollectReported(logging.Filter):
    """On a library logger: inside :func:`warnings_reported_here` (in the emitting thread's or task's
    context) a WARNING or worse is collected for the command to print as its own ``warning:`` line,
    and marked so the ``care`` console script's stderr handler does not print it too. Other handlers
    (a caller's, pytest's ``caplog``) still get the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = _collecting.get()
        if sink is not None and record.levelno >= logging.WARNING:
            sink.append(record.getMessage())
            setattr(record, _REPORTED_MARK, True)
        return True


class _SkipReported(logging.Filter):
    """On the stderr handler :func:`main` installs: skip the records a command reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, _REPORTED_MARK, False)


_COLLECT_REPORTED = _CollectReported()
_SKIP_REPORTED = _SkipReported()


@contextlib.contextmanager
def warnings_reported_here(*loggers: str) -> Iterator[list[str]]:
    """Collect the warnings the library ``loggers`` log in this context (e.g. a usage CSV's timestamp
    gaps), for the command to print as ``warning:`` lines and list in its JSON ``warnings``; the
    ``care`` script's log handler then leaves them out (said once, in the command's words).

    >>> import logging
    >>> with warnings_reported_here("care_flows.forecast.usage_io") as said:
    ...     logging.getLogger("care_flows.forecast.usage_io").warning("1 gap(s) in %r", "cpu")
    ...     logging.getLogger("care_flows.forecast.usage_io").info("not a warning")
    >>> logging.getLogger("care_flows.forecast.usage_io").warning("outside: logged as before")
    >>> said
    ["1 gap(s) in 'cpu'"]
    """
    with _install_lock:
        for name in loggers:
            logger = logging.getLogger(name)
            if _COLLECT_REPORTED not in logger.filters:
                logger.addFilter(_COLLECT_REPORTED)
    said: list[str] = []
    token = _collecting.set(said)
    try:
        yield said
    finally:
        _collecting.reset(token)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` (one line) to stderr and return an Exit to raise."""
    one_line = " ".join(str(message).split())
    typer.echo(f"error: {one_line}", err=True)
    return typer.Exit(code)


def _typed_value(argv: list[str], param: object) -> str | None:
    """What the user typed for the option ``param`` (``--n 0`` or ``--n=0``), or None.

    >>> import click
    >>> _typed_value(["plan", "--threshold", "abc"], click.Option(["--threshold"])), _typed_value(["x", "--n=0"], click.Option(["--n"]))
    ('abc', '0')
    """
    for opt in getattr(param, "opts", None) or []:
        for i, arg in enumerate(argv):
            if arg == opt and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
    return None


def _typed_command_path(command: object, argv: list[str]) -> str:
    """The command path (``care simulate poisson``) the user typed in ``argv``: the subcommand names
    before the first option. Click reports some usage errors (an option missing its argument) on
    the root context, whose help would not show that option.

    >>> import click
    >>> root = click.Group("care", commands=[click.Group("simulate", commands=[click.Command("poisson")])])
    >>> _typed_command_path(root, ["simulate", "poisson", "--n"]), _typed_command_path(root, ["--n", "simulate"])
    ('care simulate poisson', 'care')
    """
    path = ["care"]
    for arg in argv:
        commands = getattr(command, "commands", None)
        if arg.startswith("-") or not isinstance(commands, dict) or arg not in commands:
            break
        path.append(arg)
        command = commands[arg]
    return " ".join(path)


PATH_OPTIONS = frozenset({"--carbon-csv", "--csv", "--out", "--jobs", "--usage-dir"})
"""Options (and ``convert-gaia``'s trace argument) that name a file or folder."""


def refuse_empty_paths(command: Any) -> None:
    """Make every path option of ``command`` and its subcommands refuse an empty value: ``--out ""``
    (an unset shell variable in ``--out "$OUT"``) would otherwise be the current folder ("." is a
    folder, a demo report written into the working directory, an ignored ``--out``).

    >>> import typer
    >>> from click.testing import CliRunner
    >>> cmd = typer.main.get_command(build_app())
    >>> refuse_empty_paths(cmd)
    >>> CliRunner().invoke(cmd, ["forecast-usage", "--csv", " ", "--column", "x"]).exception
    ConfigError('--csv is empty; give a path (an unset shell variable?)')
    """
    for sub in getattr(command, "commands", {}).values():
        refuse_empty_paths(sub)
    for param in command.params:  # typer vendors its own click: the kind by name, not by class
        named = param.param_type_name == "option" and PATH_OPTIONS & set(param.opts)
        trace = param.param_type_name == "argument" and command.name == "convert-gaia" and param.name == "source"
        if not (named or trace) or getattr(param, "_refuses_empty", False):
            continue
        flag = next(iter(PATH_OPTIONS & set(param.opts))) if named else "the GAIA trace path"

        def process_value(ctx: Any, value: Any, _process: Any = param.process_value, _flag: str = flag) -> Any:
            given = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, str) and not v.strip() for v in given):
                raise ConfigError(f"{_flag} is empty; give a path (an unset shell variable?)")
            return _process(ctx, value)

        param.process_value = process_value  # type: ignore[method-assign]
        param._refuses_empty = True  # type: ignore[attr-defined]


def _quiet_temporary_server() -> None:
    """No telemetry from a temporary Prefect server that a command starts (``PREFECT_API_URL``
    unset; :mod:`care_flows.temporary_server`), unless ``PREFECT_SERVER_ANALYTICS_ENABLED`` says
    otherwise, and a start-up wait of ``TEMPORARY_SERVER_STARTUP_S`` unless
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` says otherwise. The wait must be set before
    Prefect is imported (Prefect reads its settings once), hence here.
    """
    quiet_temporary_server_telemetry()
    # Prefect waits 20 s for it; its first start creates the database, which took 36 s on a loaded
    # 2-core machine (review 53b M5): the command then failed. A setting of the user's own stands.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(TEMPORARY_SERVER_STARTUP_S))


def _temporary_server_timeout(exc: BaseException) -> str | None:
    """The one-line error for Prefect's "timed out ... ephemeral Prefect API server", else None."""
    if not (isinstance(exc, RuntimeError) and "ephemeral Prefect API server" in str(exc)):
        return None
    waited = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    return (f"error: the temporary Prefect server this command starts (PREFECT_API_URL is not set) did not answer within "
            f"{waited} s; run a Prefect server ('prefect server start') and set PREFECT_API_URL to it (e.g. "
            "'prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api'), or raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or try again (a first start creates its database)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``care`` console script; returns the exit code.

    Ctrl-C anywhere (also while the commands are imported) is ``error: interrupted`` and exit 130:
    an interrupt that a library turned into another error (pandas' "Error tokenizing data ...
    Calling read(nbytes) on source failed" while reading a CSV) is not reported as that error."""
    _quiet_temporary_server()
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        # (not when SIGINT is ignored: a `care controller &` of a script keeps running on the terminal's Ctrl-C)

        def on_sigint(_signum: int, _frame: Any) -> None:
            interrupted.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        message, code = _run(argv)
    except KeyboardInterrupt:
        message, code = "error: interrupted", 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        message, code = "error: interrupted", 130
    if message:
        typer.echo(message, err=True)
    if argv is None:
        sys.exit(code)
    return code


def _run(argv: list[str] | None) -> tuple[str | None, int]:
    """Run the command ``argv``: ``(the one-line message for stderr or None, exit code)``."""
    root = logging.getLogger()
    fresh = not root.handlers
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if fresh:  # the handler basicConfig just installed: a warning a command prints itself is not logged too
        for handler in root.handlers:
            handler.addFilter(_SKIP_REPORTED)
    app = build_app()
    command = typer.main.get_command(app)
    refuse_empty_paths(command)
    try:
        result = command.main(args=argv, prog_name="care", standalone_mode=False)
    except getattr(click_exc, "NoArgsIsHelpError", ()) as exc:  # bare `care` / `care aws`: show help
        typer.echo(exc.ctx.get_help())
        return None, 0
    except click_exc.UsageError as exc:
        typed_argv = sys.argv[1:] if argv is None else argv
        where = exc.ctx.command_path if exc.ctx is not None else "care"
        if where == "care":  # e.g. "Option '--n' requires an argument" comes with the root context
            where = _typed_command_path(command, typed_argv)
        hint = f" (see '{where} --help')"
        message = " ".join(exc.format_message().split())
        typed = _typed_value(typed_argv, getattr(exc, "param", None))
        if typed is not None and typed.strip().lower().lstrip("+-") == "nan":  # not "should be <= 400": NaN is no number
            opt = next(iter(getattr(exc.param, "opts", None) or ["the value"]))
            message = f"Invalid value for '{opt}': {typed!r} is not a number"
        elif typed is not None and repr(typed) not in message:  # the bad value, as typed (pydantic's words do not repeat it)
            message += f" (got {typed!r})"
        return f"error: {message}{hint}", 2
    except CareError as exc:
        return f"error: {' '.join(str(exc).split())}", 2
    except typer.Abort:  # typer 0.29's vendored click raises typer's Abort/Exit
        return "error: interrupted", 130
    except typer.Exit as exc:
        return None, exc.exit_code
    except click_exc.ClickException as exc:
        return f"error: {' '.join(exc.format_message().split())}", exc.exit_code
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = f" {exc.filename!s}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or str(exc)
        return (f"error: cannot use{where}: {' '.join(reason.split())}; check that the path exists and is a file you may read "
                "(or, for an output, a folder you may write to)"), 2
    except Exception as exc:  # a bug: say so in one line; CARE_DEBUG=1 shows the traceback
        if os.environ.get("CARE_DEBUG"):
            raise
        slow = _temporary_server_timeout(exc)  # not a bug: the machine or Prefect's first start was slow
        if slow is not None:
            return slow, 2
        return f"error: internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); rerun with CARE_DEBUG=1 for the traceback", 1
    return None, result if isinstance(result, int) else 0
