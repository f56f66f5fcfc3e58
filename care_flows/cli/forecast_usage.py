"""``care forecast-usage``: rolling-origin usage forecast (persistence + anomaly fallback) of a CSV column.

Example::

    care forecast-usage --csv usage.csv --column cpu --timestamp-column timestamp \\
        --horizon 12 --out pred.csv --json

``PRED.csv`` has one row per (origin, step): ``origin_index,step,target_index,prediction,anomalous``;
it is written to a temporary file in the same folder and renamed, so an error never leaves half a
file. Bad input (malformed CSV, unknown column, non-numeric or negative values, timestamps that
mix times with and without a UTC offset or look like milliseconds, a series shorter than one
period) is a one-line ``error:`` and exit code 2. Timestamp gaps (a spacing over 1.5 steps) are
reported, not refused: a ``warning:`` line on stderr (with or without ``--json``; the JSON lists the
warnings in ``warnings`` and the gaps in ``gaps``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from care_flows.atomic import atomic_open

from care_flows.cli import emit_json, refuse_overwriting_input, warn, warnings_reported_here
from care_flows.errors import ConfigError, DataError

__all__ = ["register", "write_atomic_csv", "origins_across_gaps", "check_out_path"]


def write_atomic_csv(frames, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write a frame, or pieces of one (the header once), to ``path`` via a temporary file in the
    same folder and an atomic rename."""
    import pandas as pd

    with atomic_open(path) as fh:
        for k, frame in enumerate([frames] if isinstance(frames, pd.DataFrame) else frames):
            frame.to_csv(fh, index=False, header=k == 0, float_format="%.10g")


def check_out_path(out: Path) -> None:
    """A one-line error when ``--out`` cannot be written (its folder missing or read-only, or a
    folder given as the file), checked as :func:`care_flows.atomic.atomic_open` will, before any work.

    >>> check_out_path(Path("/nonexistent-care-folder/pred.csv"))
    Traceback (most recent call last):
    ...
    care_flows.errors.ConfigError: --out /nonexistent-care-folder/pred.csv: output folder '/nonexistent-care-folder' does not exist; create it or choose another path
    """
    from care_flows.atomic import output_target

    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {Path(out) / 'pred.csv'}")
    try:
        output_target(out)
    except ConfigError as exc:  # the same checks as the write, named by the option
        raise ConfigError(f"--out {out}: {exc}") from None


def _cli_words(message: str) -> str:
    """The Python API's argument names (``period=N``, ``horizon=12``) as this command's options.

    >>> _cli_words("give more data or a shorter period=N")
    'give more data or a shorter --period N'
    """
    return message.replace("period=", "--period ").replace("horizon=", "--horizon ")


def origins_across_gaps(origins, gap_rows, horizon: int, period: int | None) -> int:  # type: ignore[no-untyped-def]
    """How many origins have a forecast that copies a value from across a timestamp gap.

    The persistent forecast of target ``t + k`` copies ``t + k - P`` (``t`` without a period); with a
    gap just before row ``g`` the two lie a gap apart instead of ``P`` steps when
    ``t + 1 - P < g <= t + horizon`` (``t < g <= t + horizon`` without a period).

    >>> import numpy as np
    >>> origins_across_gaps(np.arange(300, 700), [500], 12, 288)   # origins 488..786 are touched: 488..699
    212
    >>> origins_across_gaps(np.arange(300, 700), [500], 12, None)  # origins 488..499
    12

    Counted with binary searches in the sorted gap rows, O((origins + gaps) log gaps): comparing
    every origin with every gap took minutes and tens of GB for a year of 5-minute data with a gap
    a day (review 39b M1).
    """
    import numpy as np

    t = np.asarray(origins, dtype=int)
    g = np.sort(np.asarray(list(gap_rows), dtype=int))
    if g.size == 0 or t.size == 0:
        return 0
    lo = t + 1 - period if period else t
    # gaps g with lo < g <= t + horizon: those <= t + horizon minus those <= lo
    return int((np.searchsorted(g, t + horizon, side="right") > np.searchsorted(g, lo, side="right")).sum())


def _pct(value: float | None) -> str:
    """``12.3%``, or ``n/a`` when the score is undefined (every actual value 0)."""
    return "n/a" if value is None else f"{value:g}%"


def register(app: typer.Typer) -> None:
    @app.command("forecast-usage")
    def forecast_usage(
        csv: Path = typer.Option(..., "--csv", help="Usage CSV (',' or Bitbrains ';'+tab separated), one row per step."),
        column: str = typer.Option(..., "--column", help="Name of the numeric usage column to forecast (e.g. cpu_usage)."),
        timestamp_column: str = typer.Option(
            None,
            "--timestamp-column",
            help="Optional time column: ISO 8601 strings (naive = UTC; all with a UTC offset or none) or Unix epoch seconds "
            "(values above 1e11 are read as ms). Without it rows are consecutive steps.",
        ),
        step: str = typer.Option(
            None, "--step", help="Step between rows, e.g. 300s or 5m. Default: the median timestamp difference, or 300s without timestamps. "
            "With --timestamp-column it must agree with that difference (within 5%), and is then used as the step.",
        ),
        period: str = typer.Option(
            "auto",
            "--period",
            help="Period in steps for the persistent forecast, or 'auto' (autocorrelation at 1 day / 1 week; "
            "no period found -> last-value forecast, period_steps null).",
        ),
        horizon: int = typer.Option(12, "--horizon", min=1, help="Steps ahead forecast at each origin (1..horizon)."),
        out: Path = typer.Option(
            None, "--out", help="Write PRED.csv (origin_index,step,target_index,prediction,anomalous), atomically."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (scores, period, anomalies, gaps, warnings)."),
    ) -> None:
        """Forecast a usage column at every origin (honest rolling origin) and score it against persistence."""
        from care_flows.forecast.usage import evaluate_usage
        from care_flows.forecast.usage_io import StepMismatchError, load_usage_csv
        from care_flows.timeutil import parse_duration

        refuse_overwriting_input(out, {"--csv": csv})
        if out is not None:
            check_out_path(out)  # before the evaluation, which may take minutes: not an error only at the end
        step_s = parse_duration(step, name="--step", subsecond=True).total_seconds() if step is not None else None
        if step_s is not None and step_s <= 0:
            raise ConfigError(f"--step {step!r} is zero; give a positive step such as 300s")
        # the reader's and the forecaster's warnings (timestamp gaps, no period found) are this command's warning: lines
        with warnings_reported_here("care_flows.forecast.usage_io", "care_flows.forecast.usage") as said:
            # with timestamps a --step must agree with their spacing (it is then the step: the median of jittered times may
            # be a second off); one that disagrees is an error in this command's words
            try:
                series = load_usage_csv(csv, column, timestamp_column=timestamp_column, step_s=step_s)
            except StepMismatchError as exc:
                raise ConfigError(f"--step {step} contradicts the {exc.inferred_s:g} s spacing of the {timestamp_column!r} timestamps; "
                                  f"omit --step (it is read from the timestamps) or give --step {exc.inferred_s:g}s") from None
            per: int | str = period.strip().lower()
            if per != "auto":
                try:
                    per = int(per)
                except ValueError as exc:
                    raise ConfigError(f"--period {period!r} is neither 'auto' nor a whole number of steps; use e.g. --period 288") from exc
            try:
                ev = evaluate_usage(series.values, horizon=horizon, period=per, step_s=series.step_s)
            except DataError as exc:
                raise DataError(_cli_words(f"{csv}: {exc}")) from exc
            except ConfigError as exc:
                raise ConfigError(_cli_words(str(exc))) from exc
        warnings = warn(list(dict.fromkeys(said)))  # stderr, in text and --json mode alike; the JSON lists them too
        if out is not None:
            write_atomic_csv(ev.to_frames(), out)  # in pieces: a year at h=288 is 15 M rows
        doc = ev.summary()
        doc.update({"csv": str(csv), "column": column, "step_s": series.step_s, "n_rows": len(series), "warnings": warnings})
        # rows are consecutive steps even across a gap (filling would invent usage): say where, and what it touches
        doc["gaps"] = [{"row_index": i, "gap_s": g} for i, g in series.gaps]
        doc["origins_across_gaps"] = origins_across_gaps(ev.origins, [i for i, _ in series.gaps], horizon, ev.period_steps)
        if out is not None:
            doc["out"] = str(out)
        if json_out:
            emit_json(doc)
            return
        period_text = "none (last-value forecast)" if doc["period_steps"] is None else f"{doc['period_steps']} steps"
        typer.echo(
            f"{column}: period {period_text}, horizon {horizon} steps, {doc['n_origins']} origins from origin_index {doc['first_origin_index']}  "
            f"WAPE {_pct(doc['wape_pct'])} vs persistence {_pct(doc['persistence_wape_pct'])}, last value {_pct(doc['last_value_wape_pct'])}  "
            f"anomalous {100 * (doc['anomalous_fraction'] or 0):.1f}% of origins, {len(doc['anomalies'])} anomaly interval(s)"
            + (f"  {len(doc['gaps'])} timestamp gap(s) used as consecutive rows: {doc['origins_across_gaps']} origin(s) forecast across one"
               if doc["gaps"] else "")
        )
