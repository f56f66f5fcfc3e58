"""``care simulate``: replay a job trace on real carbon traces under one policy.

::

    care simulate --carbon-csv embedded:ES --carbon-csv embedded:SE --jobs JOBS.csv --policy care --json
    care simulate --zone ES --jobs JOBS.csv --policy lets-wait-awhile --out PLAN.csv
    care simulate convert-gaia ../shared/data/workload_jobs/gaia_pai_1k_jobs.csv --start 2023-03-01T00:00Z --slack-h 24 --out JOBS.csv
    care simulate poisson --n 1000 --window-h 0.1667 --start 2023-06-01T08:00Z --out JOBS.csv
"""

from __future__ import annotations

import sys
from difflib import SequenceMatcher
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from care_flows.cli import emit_json, refuse_overwriting_input, warn, warnings_reported_here

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

__all__ = ["register"]


def _no_such_option(exc: "click_exc.NoSuchOption", command_path: str, writes_csv: bool) -> "click_exc.NoSuchOption":
    """Click's "No such option" with suggestions that resemble the typed name without the dashes
    (click compares ``--json`` with ``--n`` and finds them close, the ``--`` being most of ``--n``),
    and for ``--json`` on a command that writes JOBS.csv: what it writes instead."""
    typed = exc.option_name.lstrip("-")
    if writes_csv and typed == "json":
        return click_exc.NoSuchOption(
            exc.option_name,
            message=f"No such option: {exc.option_name}; {command_path} writes JOBS.csv (CSV on stdout, or to --out FILE), not JSON",
            ctx=exc.ctx,
        )
    kept = sorted(p for p in exc.possibilities or [] if SequenceMatcher(None, typed, p.lstrip("-")).ratio() >= 0.6)
    hint = f" (did you mean {' or '.join(kept)}?)" if kept else ""
    return click_exc.NoSuchOption(exc.option_name, message=f"No such option: {exc.option_name}{hint}", ctx=exc.ctx)


class _SuggestsByName:
    """Unknown options get suggestions that resemble the typed name (:func:`_no_such_option`)."""

    writes_csv = False

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except click_exc.NoSuchOption as exc:
            raise _no_such_option(exc, ctx.command_path, writes_csv=self.writes_csv) from None


class _Group(_SuggestsByName, TyperGroup):
    pass


class _CsvCommand(_SuggestsByName, TyperCommand):
    """A subcommand that writes JOBS.csv: ``--json`` is explained."""

    writes_csv = True


_POLICY_HELP = (
    "Policy: now (baseline), oracle (perfect knowledge of the real trace), care (CaRE: spatial + temporal + cost, "
    "default priorities, re-planning), care-once (CaRE deciding once at arrival), care-check (CaRE deciding at arrival, then checking "
    "a deferred job's plan when it starts, as a @care trigger's runs do), threshold (run below the 25th percentile of the forecast), carbonaware-prefect, "
    "lets-wait-awhile, gaia-carbon-time (peers' decision rules; sources in care_flows/simulate/policies.py)."
)


def register(app: typer.Typer) -> None:
    sim = typer.Typer(
        help=(
            "Replay JOBS.csv on real carbon traces under one policy and report carbon, cost, delay and deadline misses "
            "against running every job now in its home region. Subcommands convert a GAIA job trace or generate "
            "Poisson arrivals into JOBS.csv."
        ),
        no_args_is_help=False,
        rich_markup_mode=None,
        cls=_Group,
    )

    @sim.callback(invoke_without_command=True)
    def simulate(
        ctx: typer.Context,
        carbon_csv: Optional[list[str]] = typer.Option(
            None,
            "--carbon-csv",
            metavar="SPEC",
            help=(
                "Carbon trace, repeatable: PATH (for --home-region; an Electricity Maps export of another grid is for its "
                "Zone id's region when the home region has another trace), REGION=PATH, embedded:ZONE or REGION=embedded:ZONE. "
                "CSV: Electricity Maps export (either header schema) or time,g_per_kwh; regular step; consecutive files "
                "of one region (e.g. 2022 and 2023 exports) are joined. "
                "Embedded zones ES SE DE FR GB cover 2021-2023 hourly (Electricity Maps, ODbL)."
            ),
        ),
        zone: Optional[list[str]] = typer.Option(
            None, "--zone", metavar="ZONE", help="Shortcut for --carbon-csv embedded:ZONE (repeatable): ES, SE, DE, FR or GB."
        ),
        jobs: Optional[str] = typer.Option(
            None,
            "--jobs",
            metavar="JOBS.csv",
            help=(
                "JOBS.csv (',' or ';' separated; a ';' file may write decimals as 1,5): job_id, arrival (ISO 8601 with offset), duration_h, then deadline (ISO) or slack_h "
                "(both only if they agree: deadline = arrival + duration_h + slack_h); optional cpus "
                "(default 1), interruptible (default false), instance_type (default m5.large), region (default --home-region). "
                "Other columns are ignored with a warning; a near miss of these names (cpu, instance-type) is an error."
            ),
        ),
        policy: str = typer.Option("care", "--policy", help=_POLICY_HELP),
        home_region: Optional[str] = typer.Option(
            None, "--home-region",
            help="Region every job would run in without CaRE (baseline); default: the first trace's region "
                 "(the first --carbon-csv; --zone traces come after every --carbon-csv).",
        ),
        out: Optional[str] = typer.Option(
            None, "--out", help="Write PLAN.csv (job_id,region,start,end; one row per execution segment) here, atomically."
        ),
        forecast_model: str = typer.Option(
            "default", "--forecast-model",
            help="Forecast model for every forecast-driven policy: default (ridge), ridge, seasonal_naive, mean_7d, "
            "persistence (care_flows.forecast.carbon), or seasonal_naive_local (the simulator's own fallback).",
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (policy, jobs, carbon_g, savings_pct ..., warnings)."),
    ) -> None:
        """Simulate one policy over a job trace (see the subcommands to make JOBS.csv)."""
        if ctx.invoked_subcommand is not None:
            return
        from care_flows.errors import ConfigError
        from care_flows.simulate import simulate as simulate_jobs
        from care_flows.simulate.engine import check_forecast_model
        from care_flows.simulate.policies import POLICIES
        from care_flows.simulate.report import write_plan_csv

        specs = list(carbon_csv or []) + [f"embedded:{z}" for z in (zone or [])]
        if not specs:
            raise ConfigError("no carbon trace: give --carbon-csv PATH|REGION=PATH|embedded:ZONE or --zone ZONE")
        if jobs is None:
            raise ConfigError("no jobs: give --jobs JOBS.csv (make one with 'care simulate convert-gaia' or 'care simulate poisson')")
        _check_inputs(jobs, list(carbon_csv or []), list(zone or []))
        if policy not in POLICIES:
            raise ConfigError(f"unknown --policy {policy!r}; use one of {', '.join(POLICIES)}")
        check_forecast_model(forecast_model, name="--forecast-model")
        if home_region is not None:  # named as the option typed, as the other commands do (review 44a L2)
            from care_flows.errors import UnknownRegionError
            from care_flows.regions import region_info

            try:
                region_info(home_region)
            except UnknownRegionError as exc:
                raise UnknownRegionError(f"--home-region: {exc}") from None
        refuse_overwriting_input(out, {"--jobs": jobs, **{f"--carbon-csv {spec}": spec.split("=", 1)[-1] for spec in specs}})
        outcome = simulate_jobs(jobs, specs, policy, home_region=home_region, forecast_model=forecast_model)
        # after the work (an error stays one line); stderr in text and --json mode alike, and the JSON lists them too
        warnings = warn(outcome.notes)
        if out:
            write_plan_csv(outcome.segments, out)
        doc = outcome.summary()
        if json_out:
            emit_json({**doc, "warnings": warnings})
            return
        width = max(len(k) for k in doc)
        for key, value in doc.items():
            typer.echo(f"{key.ljust(width)}  {value}")
        if out:
            typer.echo(f"plan written to {out} ({len(outcome.segments)} segments)", err=True)

    @sim.command("convert-gaia", cls=_CsvCommand)
    def convert_gaia_cmd(
        source: str = typer.Argument(..., help="GAIA trace CSV (arrival_time,length,cpus), e.g. ../shared/data/workload_jobs/gaia_pai_1k_jobs.csv."),
        start: str = typer.Option(..., "--start", help="ISO 8601 time (with offset) that trace time 0 maps to, e.g. 2023-01-02T00:00Z."),
        slack_h: float = typer.Option(24.0, "--slack-h", min=0, help="Slack of every job, hours (deadline = arrival + length + slack)."),
        units: str = typer.Option(
            "auto", "--units",
            help=(
                "Units of arrival_time and length: seconds (PAI 1k), hours (Azure 100k) or auto: hours when the largest "
                "arrival_time is at most 8784 (a leap year of hours), some value is fractional and every value is a multiple "
                "of 1/12 (5 minutes); else seconds. The choice is printed as a note."
            ),
        ),
        interruptible: bool = typer.Option(False, "--interruptible", help="Mark every job interruptible."),
        instance_type: str = typer.Option("m5.large", "--instance-type", help="Instance type of every job (power and price)."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep only the first N jobs."),
        out: Optional[str] = typer.Option(None, "--out", help="Write JOBS.csv here (atomically); default: stdout."),
    ) -> None:
        """Convert a GAIA job trace (umassos/GAIA, MIT) to JOBS.csv anchored at --start."""
        import math

        from care_flows.errors import ConfigError
        from care_flows.simulate.jobs import MAX_HOURS, check_instance_type, convert_gaia, write_jobs_csv
        from care_flows.timeutil import parse_time

        if not (math.isfinite(slack_h) and slack_h <= MAX_HOURS):
            raise ConfigError(f"--slack-h {slack_h:g} must be at most {MAX_HOURS:g} hours")
        if units not in ("auto", "hours", "seconds"):
            raise ConfigError(f"--units {units!r} is not one of auto, hours, seconds; PAI 1k is in seconds, Azure 100k in hours")
        check_instance_type(instance_type, name="--instance-type")  # as care simulate would, before writing the file
        refuse_overwriting_input(out, {"GAIA trace": source})

        with warnings_reported_here("care_flows.simulate.jobs") as notes:  # e.g. the zero-length jobs dropped
            frame = convert_gaia(
                source,
                start=parse_time(start, name="--start"),
                slack_h=slack_h,
                units=units,
                instance_type=instance_type,
                interruptible=interruptible,
                limit=limit,
            )
        if frame.attrs.get("units_note"):  # what --units auto chose, and why
            typer.echo(f"note: {frame.attrs['units_note']}", err=True)
        _write(frame, out, write_jobs_csv)
        warn(notes)

    @sim.command("poisson", cls=_CsvCommand)
    def poisson_cmd(
        n: int = typer.Option(1000, "--n", min=1, help="Number of jobs, 1 to 1000000."),
        window_h: float = typer.Option(
            10 / 60, "--window-h", show_default="10 minutes",
            help="Arrivals span about this many hours (rate = n / window_h), > 0.",
        ),
        start: str = typer.Option("2023-06-01T08:00:00Z", "--start", help="ISO 8601 time of the first arrival."),
        duration_h: float = typer.Option(1.0, "--duration-h", help="Duration of every job, hours (> 0)."),
        slack_h: float = typer.Option(24.0, "--slack-h", min=0, help="Slack of every job, hours."),
        cpus: int = typer.Option(1, "--cpus", min=1, help="vCPUs of every job."),
        interruptible: bool = typer.Option(False, "--interruptible", help="Mark every job interruptible."),
        instance_type: str = typer.Option("m5.large", "--instance-type", help="Instance type of every job (power and price)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Random seed, a whole number >= 0 (same seed, same trace)."),
        out: Optional[str] = typer.Option(None, "--out", help="Write JOBS.csv here (atomically); default: stdout."),
    ) -> None:
        """Generate Poisson arrivals as JOBS.csv (default: the reference study's 1,000 requests in 10 minutes)."""
        import math

        from care_flows.errors import ConfigError
        from care_flows.simulate.jobs import MAX_HOURS, MAX_JOBS, check_instance_type, poisson_jobs, write_jobs_csv
        from care_flows.timeutil import parse_time

        if n > MAX_JOBS:
            raise ConfigError(f"--n {n} is more jobs than care simulate can hold; give at most {MAX_JOBS}")
        if not (math.isfinite(window_h) and 0 < window_h <= MAX_HOURS):
            raise ConfigError(f"--window-h {window_h:g} must be a positive number of hours (at most {MAX_HOURS:g}), e.g. 0.1667 for 10 minutes")
        if not (math.isfinite(duration_h) and 0 < duration_h <= MAX_HOURS):
            raise ConfigError(f"--duration-h {duration_h:g} must be a positive number of hours (at most {MAX_HOURS:g}), e.g. 1")
        if not (math.isfinite(slack_h) and slack_h <= MAX_HOURS):
            raise ConfigError(f"--slack-h {slack_h:g} must be at most {MAX_HOURS:g} hours")
        check_instance_type(instance_type, name="--instance-type")  # as care simulate would, before writing the file

        frame = poisson_jobs(
            n,
            window_h=window_h,
            start=parse_time(start, name="--start"),
            duration_h=duration_h,
            slack_h=slack_h,
            cpus=cpus,
            interruptible=interruptible,
            instance_type=instance_type,
            seed=seed,
        )
        _write(frame, out, write_jobs_csv)

    app.add_typer(sim, name="simulate")


def _write(frame, out, writer) -> None:  # type: ignore[no-untyped-def]
    if out:
        writer(frame, out)
        typer.echo(f"{len(frame)} jobs written to {out}", err=True)
    else:
        text = frame.copy()
        for col in ("arrival", "deadline"):
            if col in text.columns:
                text[col] = [t.isoformat() for t in text[col]]
        sys.stdout.write(text.to_csv(index=False, lineterminator="\n"))


def _check_inputs(jobs: str, carbon_csv: list[str], zones: list[str]) -> None:
    """The inputs that name a file or an embedded zone, checked before any work with the option typed
    in the error (review 46c L2: "zone 'XS' has no embedded data" did not say it was --zone's value)."""
    from pathlib import Path

    from care_flows.data import EMBEDDED_ZONES
    from care_flows.errors import ConfigError
    from care_flows.regions import REGIONS

    def missing(path: str) -> str | None:
        p = Path(path)
        return None if p.is_file() else "is a folder, not a file" if p.is_dir() else "does not exist"

    for z in zones:
        if z.strip().upper() not in EMBEDDED_ZONES:
            raise ConfigError(f"--zone {z!r} has no embedded data; embedded zones are {', '.join(EMBEDDED_ZONES)} "
                              "(for another grid give --carbon-csv REGION=PATH)")
    for spec in carbon_csv:
        source = spec.split("=", 1)[-1].strip()
        prefix = spec.split("=", 1)[0].strip() if "=" in spec else None
        if prefix is not None and prefix not in REGIONS:  # not REGION=PATH (review 46d L3): a path holding '='?
            if missing(spec) is None:
                raise ConfigError(f"--carbon-csv {spec!r} reads as REGION=PATH, but {prefix!r} is not a region; for a file whose "
                                  f"path holds '=' write the region first, e.g. --carbon-csv eu-south-2={spec}")
            continue  # the region's own error follows, naming the known regions
        if source.lower().startswith("embedded:"):
            zone = source.split(":", 1)[1].strip().upper()
            if zone not in EMBEDDED_ZONES:
                raise ConfigError(f"--carbon-csv {spec!r}: zone {zone!r} has no embedded data; embedded zones are "
                                  f"{', '.join(EMBEDDED_ZONES)} (or give a CSV path)")
        elif (why := missing(source)) is not None:
            named = f"--carbon-csv {spec!r}" + (f": {source!r}" if source != spec else "")
            raise ConfigError(f"{named} {why}; give an Electricity Maps export or embedded:ZONE")
    if (why := missing(jobs)) is not None:
        raise ConfigError(f"--jobs {jobs!r} {why}; give the path of a CSV file (make one with 'care simulate poisson')")
