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
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Iterator
from typing import Any

import typer

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from care_flows.errors import CareError, ConfigError

__all__ = ["build_app", "main", "emit_json", "fail", "refuse_overwriting_input", "fallbacks_reported_here"]

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


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (and nothing else)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``care`` console script; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    app = build_app()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="care", standalone_mode=False)
    except getattr(click_exc, "NoArgsIsHelpError", ()) as exc:  # bare `care` / `care aws`: show help
        typer.echo(exc.ctx.get_help())
        code = 0
    except click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "care"
        hint = f" (see '{where} --help')"
        message = " ".join(exc.format_message().split())
        typed = _typed_value(sys.argv[1:] if argv is None else argv, getattr(exc, "param", None))
        if typed is not None and repr(typed) not in message:  # the bad value, as typed (pydantic's words do not repeat it)
            message += f" (got {typed!r})"
        typer.echo(f"error: {message}{hint}", err=True)
        code = 2
    except CareError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        code = 2
    except typer.Abort:  # typer 0.29's vendored click raises typer's Abort/Exit
        typer.echo("error: interrupted", err=True)
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except click_exc.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = 130
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = f" {exc.filename!s}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or str(exc)
        typer.echo(f"error: cannot use{where}: {' '.join(reason.split())}; check that the path exists and is a file you may read (or, for an output, a folder you may write to)", err=True)
        code = 2
    except Exception as exc:  # a bug: say so in one line; CARE_DEBUG=1 shows the traceback
        if os.environ.get("CARE_DEBUG"):
            raise
        typer.echo(f"error: internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); rerun with CARE_DEBUG=1 for the traceback", err=True)
        code = 1
    else:
        code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code
