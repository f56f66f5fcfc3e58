"""``care usage``: what a flow's usage history says its next run needs, and the type that fits.

Example::

    care usage etl-nightly --duration 1h --region eu-north-1 --json

Reads the history ``@care`` runs record (``$CARE_USAGE_STORE`` = a folder, ``s3://bucket/prefix`` or ``prefect-variables://prefix``,
else ``$CARE_USAGE_DIR`` or ``~/.cache/care/usage``; ``--usage-dir`` takes either; see
:mod:`care_flows.orchestration.learned_sizing`) and prints the learned need (p95 vCPU and GiB over
the expected duration) and the cheapest instance type in the region with the headroom, and the
duration planning uses (the p90 of the recorded runs once there are 3,
:mod:`care_flows.orchestration.learned_duration`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from care_flows.cli import emit_json, known_region, warn, warnings_reported_here
from care_flows.errors import ConfigError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("usage")
    def usage(
        name: str = typer.Argument(..., help="Usage history name: the flow's name as Prefect shows it (e.g. etl-nightly) or a policy's usage_key."),
        duration: str = typer.Option(
            None, "--duration", help="Expected run time to size for, e.g. 30m or 2h (default: the p90 of the recorded runs once there are 3, as planning does; else 1h)."
        ),
        region: str = typer.Option("eu-north-1", "--region", help="AWS region whose embedded catalogue prices the fitting type."),
        headroom_pct: float = typer.Option(20.0, "--headroom-pct", min=0, max=400, help="Capacity above the learned need, % (the policy's headroom_pct)."),
        vcpu: float = typer.Option(2.0, "--vcpu", min=0.01, help="The policy's declared vcpu (the learned CPU need is at most --max-vcpu, default 4 x this)."),
        max_vcpu: float = typer.Option(None, "--max-vcpu", min=0.01, help="The policy's max_vcpu: the largest CPU need the history may ask for (default 4 x --vcpu)."),
        usage_dir: str = typer.Option(
            None, "--usage-dir", help="History folder, s3://bucket/prefix or prefect-variables://prefix (default: $CARE_USAGE_STORE, else $CARE_USAGE_DIR or ~/.cache/care/usage)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:
        """Show the need learned from a flow's recorded runs and the instance type it maps to."""
        from care_flows.orchestration.learned_sizing import MAX_VCPU_FACTOR, MIN_STEPS, QUANTILE, RECORD_STEP_S, SYSTEM_MEMORY_GIB, capped_need, need_from_samples
        from care_flows.policy import CarePolicy
        from care_flows.planning.sizing import right_size
        from care_flows.pricing import EmbeddedPrices
        from care_flows.orchestration.learned_duration import MIN_RUNS, learned_from_durations, usable_duration
        from care_flows.timeutil import format_duration, iso, parse_duration
        from care_flows.usage_capture import UsageStore, default_usage_store, running_seconds

        if duration is not None:
            duration_s = parse_duration(duration, name="--duration").total_seconds()
            if duration_s <= 0:
                raise ConfigError(f"--duration {duration!r} is not positive; give the expected run time, e.g. 1h")
        if max_vcpu is not None and max_vcpu < vcpu:
            raise ConfigError(f"--max-vcpu {max_vcpu:g} is below --vcpu {vcpu:g}; the history may ask for up to --max-vcpu: raise it or leave it out")
        known_region(region, name="--region")  # unknown region -> one-line error naming the option
        if usage_dir is None:
            store = default_usage_store()
        elif usage_dir.startswith("s3://"):
            from care_flows.aws.usage_store import S3UsageStore

            store = S3UsageStore(usage_dir)
        elif usage_dir.startswith("prefect-variables://"):
            from care_flows.usage_variables import PrefectVariableUsageStore

            store = PrefectVariableUsageStore(usage_dir)
        else:
            if not Path(usage_dir).expanduser().is_dir():
                raise ConfigError(f"--usage-dir {usage_dir!r} is not a folder; give the folder @care runs record to "
                                  "($CARE_USAGE_DIR, default ~/.cache/care/usage), s3://bucket/prefix or prefect-variables://prefix")
            store = UsageStore(Path(usage_dir))
        where = str(getattr(store, "directory", None) or getattr(store, "url", "?"))
        hint = ""
        with warnings_reported_here("care_flows.usage", "care_flows.aws") as said:  # e.g. malformed rows skipped
            frame = store.load(name)
            runs = store.load_runs(name) if hasattr(store, "load_runs") else []
            dashed = name.replace("_", "-")
            # the "did you mean" lookup reads another history: its warnings are this command's too
            if frame.empty and not runs and dashed != name and (
                    not store.load(dashed).empty or (hasattr(store, "load_runs") and store.load_runs(dashed))):
                hint = f" (did you mean {dashed!r}? Prefect names a flow after its function with - for _)"
        warnings = warn(list(dict.fromkeys(said)))  # stderr, in text and --json mode alike (also before an error); the JSON lists them too
        if frame.empty and not runs:
            raise ConfigError(f"no usage history named {name!r} in {where}{hint}; run the @care flow once, "
                              "or give its Prefect flow name / usage_key (or --usage-dir)")
        with warnings_reported_here("care_flows.orchestration") as skipped:  # e.g. corrupted durations skipped
            learned_run = learned_from_durations([r.duration_s for r in runs], key=name)  # the records read above, not a second read
        warnings += warn(list(dict.fromkeys(skipped)))
        usable = sum(1 for r in runs if usable_duration(r.duration_s))  # what learning counts
        if duration is None:
            duration_s, duration_from = (learned_run.duration_s, "learned") if learned_run is not None else (3600.0, "default")
        else:
            duration_from = "--duration"
        # the figure the sizing threshold reads: 10 s per stored 10-second bucket, not minute bins touched
        minutes = round(running_seconds(frame, step_s=RECORD_STEP_S) / 60.0, 2) if not frame.empty else 0.0
        doc: dict = {"name": name, "directory": where, "minutes_of_running": minutes,
                     "first": iso(frame["time"].min()) if not frame.empty else None,  # exact sample times
                     "last": iso(frame["time"].max()) if not frame.empty else None,
                     "duration_s": duration_s, "duration_from": duration_from, "runs_recorded": usable,
                     "learned_duration_s": None if learned_run is None else learned_run.duration_s, "region": region, "need": None, "instance_type": None, "usd_per_hour": None,
                     "warnings": warnings}
        with warnings_reported_here("care_flows.forecast.usage") as forecast_said:  # e.g. no daily period in a service's history
            learned = need_from_samples(frame, name, duration_s=duration_s) if not frame.empty else None  # the frame read above
        if learned is not None:  # as planning sizes it: the CPU need at most max_vcpu, a CPU-bound run noted (review 44b M3)
            learned = capped_need(learned, CarePolicy(vcpu=vcpu, max_vcpu=max_vcpu, headroom_pct=headroom_pct))
        doc["warnings"] = warnings = warnings + warn(list(dict.fromkeys(forecast_said)))
        if frame.empty:
            doc["note"] = ("no usage samples recorded (size_from_usage off, or runs that sampled nothing): "
                           "runs are sized from the policy's vcpu/memory_gib")
        elif learned is None:
            doc["note"] = f"under {MIN_STEPS} min of running recorded: runs are sized from the policy's vcpu/memory_gib"
        else:
            n = learned.need
            doc["need"] = {"peak_vcpu": n.peak_vcpu, "peak_memory_gib": n.peak_memory_gib, "mean_vcpu": n.mean_vcpu, "mean_memory_gib": n.mean_memory_gib,
                           # true: rows stored before cpu_vcpu_mean gave their 10-s maxima, mean_vcpu is an upper bound
                           "mean_vcpu_from_maxima": learned.mean_from_maxima,
                           # the vCPU the newest run could use (null: not recorded) and its peak; peak_vcpu is at most max_vcpu
                           "capacity_vcpu": learned.capacity_vcpu, "newest_peak_vcpu": learned.newest_peak_vcpu,
                           "max_vcpu": max_vcpu if max_vcpu is not None else MAX_VCPU_FACTOR * vcpu,
                           "cpu_note": learned.cpu_note or None,
                           # peak_memory_gib = what the runs used + the allowance for the OS and Prefect outside them
                           "recorded_memory_gib": round(n.peak_memory_gib - SYSTEM_MEMORY_GIB, 3), "system_memory_gib": SYSTEM_MEMORY_GIB}
            choice = right_size(region, usage=n, prices=EmbeddedPrices(), headroom_pct=headroom_pct)
            doc.update(instance_type=choice.instance_type, usd_per_hour=choice.usd_per_hour,
                       credit_usd_per_hour=choice.credit_usd_per_hour, expected_utilisation=round(choice.expected_utilisation, 4))
        if json_out:
            emit_json(doc)
            return
        span = f" ({doc['first']} .. {doc['last']})" if doc["first"] else ""
        typer.echo(f"{name}: {doc['minutes_of_running']:g} min of running recorded{span} in {doc['directory']}")
        sized = learned is not None  # "sized below" only when something is sized below
        if learned_run is not None:
            typer.echo(f"duration: {learned_run.describe()}; planning uses it instead of expected_duration"
                       + ("" if duration_from == "learned" or not sized else f" (sized below for --duration {format_duration(duration_s)})"))
        else:
            typer.echo(f"duration: {usable} of {MIN_RUNS} completed runs recorded; planning uses the policy's expected_duration"
                       + (f" (sized below for {format_duration(duration_s)})" if duration_from == "default" and sized else ""))
        if learned is None:
            typer.echo(doc["note"])
        else:
            need = doc["need"]
            typer.echo(f"need p{QUANTILE * 100:.0f} {need['peak_vcpu']:.2f} vCPU, max {need['recorded_memory_gib']:.2f} GiB "
                       f"+ {SYSTEM_MEMORY_GIB:g} GiB system = {need['peak_memory_gib']:.2f} GiB "
                       f"-> {doc['instance_type']} in {region} ({doc['usd_per_hour']:.4f} USD/h"
                       + (f" + {doc['credit_usd_per_hour']:.4f} USD/h of CPU credits at {doc['expected_utilisation']:.0%} CPU"
                          if doc.get("credit_usd_per_hour") else "")
                       + f", {headroom_pct:g}% headroom)")
            if learned.cpu_note:
                typer.echo(f"CPU: {learned.cpu_note}")
            if learned.mean_from_maxima:
                typer.echo(f"mean {need['mean_vcpu']:.2f} vCPU (sets the expected utilisation) is an upper bound: older rows "
                           "stored 10-s maxima only; runs recorded from now on store their 10-s means")
