"""Bad input on the command line: random and mutated arguments never produce a traceback.

Every call goes through ``care_flows.cli.main([...])`` in-process. The contract checked:
no exception escapes ``main``; the exit code is 0, 1 or 2; with exit code 2, stderr ends with
exactly one line ``error: ...`` and holds no traceback; ``--out`` files are written whole or
not at all (an existing file keeps its old content when the command fails).

To keep 600 examples within a few seconds, the typer app and its click command are built once
(``build_app``/``get_command`` are memoised for this module); ``main``'s own error handling is
what runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import care_flows.cli as cli

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def fast_cli():
    """Memoise app construction (about 50 ms a call) for the duration of this module."""
    app = cli.build_app()
    command = typer.main.get_command(app)
    mp = pytest.MonkeyPatch()
    real_get_command = typer.main.get_command
    mp.setenv("CARE_DEBUG", "1")  # an internal error (a bug) raises instead of becoming "error: internal error"
    mp.setattr(cli, "build_app", lambda: app)
    mp.setattr(typer.main, "get_command", lambda a: command if a is app else real_get_command(a))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-inputs")
    jobs = d / "JOBS.csv"
    jobs.write_text(
        "job_id,arrival,duration_h,slack_h,cpus\n"
        "a,2023-06-01T08:00:00Z,1,6,1\n"
        "b,2023-06-01T09:30:00Z,0.5,12,2\n"
    )
    usage = d / "usage.csv"
    rng = np.random.default_rng(0)
    vals = 50 + 20 * np.sin(np.arange(400) * 2 * np.pi / 48) + rng.normal(0, 2, 400)
    usage.write_text("cpu\n" + "\n".join(f"{v:.3f}" for v in vals) + "\n")
    carbon = d / "carbon.csv"
    carbon.write_text(
        "Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)\n"
        + "\n".join(f"2023-06-01 {h:02d}:00:00,ES,{100 + 5 * h}" for h in range(24))
        + "\n"
    )
    bad = d / "bad.csv"
    bad.write_bytes(b"\xff\xfe,,\n\x00\x00\n")
    out_dir = d / "out"
    out_dir.mkdir()
    return {"jobs": str(jobs), "usage": str(usage), "carbon": str(carbon), "bad": str(bad), "dir": str(d), "out": str(out_dir)}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def check_contract(args: list[str]) -> tuple[int, str, str]:
    code, out, err = run_cli(args)  # any exception escaping main fails the test with its traceback
    assert code in (0, 1, 2), (args, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (args, err)
    assert "internal error" not in err, (args, err)  # main's catch-all for bugs must never be reached
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines and lines[-1].startswith("error: "), (args, err)
        assert sum(ln.startswith("error:") for ln in lines) == 1, (args, err)
    return code, out, err


def baselines(f: dict[str, str]) -> dict[str, list[str]]:
    return {
        "plan": ["plan", "--zone", "ES", "--now", "2023-06-01T08:00:00Z", "--duration", "2h", "--within", "12h", "--json"],
        "regions": ["regions", "--regions", "eu-south-2,eu-north-1", "--at", "2023-06-01T08:00:00Z", "--duration", "1h", "--within", "12h", "--json"],
        "compare": ["compare", "--regions", "eu-south-2,eu-north-1", "--instance-type", "t3.large", "--hours", "2", "--json"],
        "intensity": ["intensity", "--zone", "ES", "--start", "2023-06-01T00:00:00Z", "--end", "2023-06-01T06:00:00Z", "--json"],
        "simulate": ["simulate", "--zone", "ES", "--jobs", f["jobs"], "--policy", "now", "--json"],
        "forecast-usage": ["forecast-usage", "--csv", f["usage"], "--column", "cpu", "--horizon", "3", "--json"],
    }


OPTIONS = [
    "--zone", "--region", "--now", "--duration", "--within", "--deadline", "--interruptible", "--min-segment",
    "--max-segments", "--threshold", "--percentile", "--source", "--kind", "--oracle", "--json", "--regions", "--at",
    "--vcpu", "--memory-gib", "--headroom-pct", "--instance-type", "--priorities", "--weights", "--tolerance-pct",
    "--origin-region", "--max-latency-ms", "--budget-usd", "--home-region", "--hours", "--intensity", "--energy-wh",
    "--utilisation", "--start", "--end", "--carbon-csv", "--jobs", "--policy", "--forecast-model", "--csv", "--column",
    "--timestamp-column", "--step", "--period", "--horizon", "--help", "--bogus", "-x",
]
VALUES = [
    "", " ", "0", "-1", "1e309", "nan", "inf", "-inf", "3.5", "99999999999", "2h", "-2h", "0s", "1h30m", "P1D", "10000d",
    "ES", "es", "XX", "SE-SE3", "GB-13", "41.6,-0.9", "eu-south-2", "eu-nowhere-1", "us-east-1", "eu-south-2,,", ",",
    "2023-06-01T08:00:00Z", "2023-06-01T08:00:00", "2023-06-01T08:00:00+05:00", "2023-13-45T99:00Z", "1900-01-01T00:00Z",
    "2262-04-12T00:00Z", "9999-12-31T23:59:59Z", "today", "t3.large", "t3.nano", "x9.huge", "carbon,cost", "carbon=2,cost=-1",
    "cost=", "=", "ES=206,SE=20", "ES=-5", "ES=abc", "embedded", "electricitymaps", "watttime", "gb", "csv", "lifecycle",
    "marginal", "direct", "now", "care", "oracle", "threshold", "lets-wait-awhile", "nope", "auto", "288", "-3", "1.5",
    "cpu", "missing_col", "embedded:ES", "embedded:XX", "eu-north-1=embedded:SE", "=embedded:ES", "\u00e9\u2603\U0001f600",
    "a" * 300, "--json", "-", "../nope/x.csv", "/nonexistent/file.csv",
]


@st.composite
def mutated_args(draw, f: dict[str, str]):
    base = baselines(f)
    command = draw(st.sampled_from(sorted(base)))
    args = list(base[command])
    file_values = [f["jobs"], f["usage"], f["carbon"], f["bad"], f["dir"]]
    pool = st.sampled_from(VALUES + file_values) | st.text(max_size=12)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "drop", "insert-option", "insert-value", "duplicate", "swap", "truncate"]))
        if op == "replace" and len(args) > 1:
            i = draw(st.integers(1, len(args) - 1))
            args[i] = draw(pool)
        elif op == "drop" and len(args) > 1:
            del args[draw(st.integers(1, len(args) - 1))]
        elif op == "insert-option":
            args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(OPTIONS)))
            if draw(st.booleans()):
                args.append(draw(pool))
        elif op == "insert-value":
            args.insert(draw(st.integers(1, len(args))), draw(pool))
        elif op == "duplicate" and len(args) > 2:
            i = draw(st.integers(1, len(args) - 2))
            args[i + 1 : i + 1] = args[i : i + 2]
        elif op == "swap" and len(args) > 2:
            i, j = draw(st.integers(1, len(args) - 1)), draw(st.integers(1, len(args) - 1))
            args[i], args[j] = args[j], args[i]
        elif op == "truncate" and len(args) > 2:
            args = args[: draw(st.integers(1, len(args) - 1))]
    return args


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.ERROR)


def test_baselines_succeed(fast_cli, files):
    for args in baselines(files).values():
        code, out, err = check_contract(args)
        assert code == 0, (args, err)


def test_random_and_mutated_arguments_never_crash(fast_cli, files):
    @SETTINGS
    @given(args=mutated_args(files))
    def prop(args):
        check_contract(args)

    prop()


def test_entirely_random_argument_lists_never_crash(fast_cli):
    words = st.sampled_from(["plan", "regions", "compare", "intensity", "simulate", "forecast-usage", "info"] + OPTIONS + VALUES[:40])

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(args=st.lists(words | st.text(max_size=8), max_size=8))
    def prop(args):
        check_contract(args)

    prop()


# --------------------------------------------------------------------------------------------
# Nothing half-written: --out keeps its old content (and leaves no temporary file) on error.
def _bad_jobs(tmp: Path, text: str) -> str:
    p = tmp / "JOBS-bad.csv"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "jobs_text",
    [
        "job_id,arrival,duration_h,slack_h\na,2023-06-01T08:00:00Z,-1,6\n",
        "job_id,arrival,duration_h,slack_h\na,not-a-time,1,6\n",
        "job_id,arrival\n",
        "job_id,arrival,duration_h,slack_h\na,2030-06-01T08:00:00Z,1,6\n",
    ],
)
def test_simulate_out_keeps_old_content_on_error(fast_cli, files, tmp_path, jobs_text):
    out = tmp_path / "PLAN.csv"
    out.write_text("OLD CONTENT\n")
    code, _, err = check_contract(["simulate", "--zone", "ES", "--jobs", _bad_jobs(tmp_path, jobs_text), "--out", str(out)])
    assert code == 2, err
    assert out.read_text() == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["JOBS-bad.csv", "PLAN.csv"]


def test_simulate_out_is_whole_on_success(fast_cli, files, tmp_path):
    out = tmp_path / "PLAN.csv"
    out.write_text("OLD CONTENT\n")
    code, _, err = check_contract(["simulate", "--zone", "ES", "--jobs", files["jobs"], "--policy", "care", "--out", str(out)])
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0].startswith("job_id,region,start,end") and len(lines) >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PLAN.csv"]


@pytest.mark.parametrize(
    "extra",
    [["--column", "nope"], ["--period", "abc"], ["--step", "0s"], ["--csv", "BAD"], ["--timestamp-column", "nope"]],
)
def test_forecast_usage_out_keeps_old_content_on_error(fast_cli, files, tmp_path, extra):
    out = tmp_path / "PRED.csv"
    out.write_text("OLD CONTENT\n")
    args = ["forecast-usage", "--csv", files["usage"], "--column", "cpu", "--horizon", "3", "--out", str(out)]
    for i in range(0, len(extra), 2):
        value = files["bad"] if extra[i + 1] == "BAD" else extra[i + 1]
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = value
        else:
            args += [extra[i], value]
    code, _, err = check_contract(args)
    assert code == 2, err
    assert out.read_text() == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PRED.csv"]


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--zone", "ES", "--jobs", "JOBS", "--out", "{missing}/PLAN.csv"],
        ["simulate", "poisson", "--n", "3", "--out", "{missing}/JOBS.csv"],
        ["forecast-usage", "--csv", "USAGE", "--column", "cpu", "--horizon", "3", "--out", "{missing}/PRED.csv"],
        ["simulate", "--zone", "ES", "--jobs", "JOBS", "--out", "{dir}"],
        ["simulate", "poisson", "--n", "3", "--out", "{dir}"],
    ],
    ids=["simulate-missing-dir", "poisson-missing-dir", "forecast-usage-missing-dir", "simulate-out-is-dir", "poisson-out-is-dir"],
)
def test_out_path_that_cannot_be_written_is_a_one_line_error(fast_cli, files, tmp_path, args):
    (tmp_path / "a-folder").mkdir()
    subst = {"{missing}": str(tmp_path / "no-such-folder"), "{dir}": str(tmp_path / "a-folder")}
    real = []
    for a in args:
        a = {"JOBS": files["jobs"], "USAGE": files["usage"]}.get(a, a)
        for k, v in subst.items():
            a = a.replace(k, v)
        real.append(a)
    code, _, err = check_contract(real)
    assert code == 2, err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a-folder"]  # nothing created, no temporary file left


@pytest.mark.parametrize("exc", [KeyboardInterrupt, EOFError])
def test_interrupt_is_exit_130_not_a_traceback(fast_cli, files, monkeypatch, exc):  # noqa: D103
    import care_flows.planning.windows as windows

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(windows, "plan_contiguous", boom)
    code, _, err = run_cli(baselines(files)["plan"])  # before the fix: AttributeError on click_exc.Abort
    assert code == 130 and "Traceback" not in err
    if exc is EOFError:
        assert err.strip().splitlines()[-1] == "error: interrupted"
