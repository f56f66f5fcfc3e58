"""Review 48a L3: the benchmark, experiment and scenario scripts took any argument they did not know, ``--help`` and
typos included, as "run in full" (minutes of CPU; a Prefect test server for some). Each now parses its flags."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

from tests.repo_scripts import ROOT, load_script

SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name not in ("_args.py", "_infra.py"))


def test_the_flag_parser_reads_quick_and_its_doctests_hold():
    args = load_script("benchmarks/_args.py", "bench_args_under_test")
    assert doctest.testmod(args).failed == 0
    with pytest.raises(SystemExit) as exit_:
        args.parse("Plans per second.", argv=["--quik"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_parses_its_arguments(script):
    text = script.read_text(encoding="utf-8")
    assert "parse(__doc__" in text or "argparse" in text, f"{script.name} reads sys.argv by hand: use benchmarks/_args.parse"


def test_a_typo_is_an_error_not_a_full_run():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_planning.py"), "--quik"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "unrecognized arguments: --quik" in done.stderr
    assert done.stdout == ""  # not a line of the benchmark's table
