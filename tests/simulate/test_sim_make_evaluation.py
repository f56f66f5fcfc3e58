"""scripts/make_evaluation.py (the generator of docs/EVALUATION.md), run in its --quick mode.

The script is the only source of the evaluation page's figures, so it is run here end to end (about
15 s): its tables must hold what the simulator's definitions promise, its headline must be the mean
of its own table, a row must be reproducible with `care simulate` as the page says, and its section
structure must still be the committed page's (a stale docs/EVALUATION.md shows up as a diff).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from care_flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_evaluation.py"


@pytest.fixture(scope="module")
def quick_page(tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("evaluation-quick")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return (out / "EVALUATION.md").read_text(), out


def _zone_table(page: str, zone: str) -> dict[str, list[str]]:
    section = page.split(f"### {zone} (home region ", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()[2:]]
    return {r[0]: r[1:] for r in rows}


def _headings(page: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith("#")]


def test_the_quick_page_has_the_committed_pages_sections_and_both_plots(quick_page) -> None:
    page, out = quick_page
    assert _headings(page) == _headings((ROOT / "docs" / "EVALUATION.md").read_text())
    for name in ("eval_savings_vs_slack.png", "eval_pareto_es_se.png"):
        assert (out / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"img/{name}" in page
    assert "QUICK smoke run" in page  # never mistaken for the committed full run


@pytest.mark.parametrize("zone", ["ES", "SE", "DE", "FR", "GB"])
def test_each_zone_table_keeps_the_definitions(quick_page, zone) -> None:
    table = _zone_table(quick_page[0], zone)
    assert {"now", "oracle", "care", "care-once", "care-check", "threshold", "carbonaware-prefect", "lets-wait-awhile", "gaia-carbon-time"} <= set(table)
    savings = {name: float(row[0]) for name, row in table.items()}
    assert savings["now"] == 0.0 and table["now"][1] == "0%" and table["oracle"][1] == "100%"
    assert all(s <= savings["oracle"] for s in savings.values())  # the oracle is an upper bound on real data too
    assert all(row[4] == "0" for row in table.values())  # no policy misses a deadline
    assert len({row[6] for row in table.values()}) == 1  # one region: cost does not depend on time


def test_the_headline_is_the_mean_of_its_own_table(quick_page) -> None:
    page = quick_page[0]
    headline = float(re.search(r"1 h jobs with 24 h slack\): \*\*([\d.]+)% - ", page).group(1))
    care_row = re.search(r"^\| care \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| \*\*([\d.]+)%\*\*", page, re.M)
    per_zone = [float(x) for x in care_row.groups()[:4]]
    assert float(care_row.group(5)) == headline
    assert abs(sum(per_zone) / 4 - headline) <= 0.06  # the per-zone shares are rounded to 0.1


def test_a_row_is_reproduced_by_care_simulate(quick_page, tmp_path, capsys) -> None:
    """'Reproduce one row with the CLI': the same jobs through `care simulate` give the page's figures."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import make_evaluation
    finally:
        sys.path.pop(0)
    from care_flows.simulate.jobs import write_jobs_csv

    jobs = tmp_path / "JOBS.csv"
    write_jobs_csv(make_evaluation.hourly_jobs(1.0, 24.0, aligned=False, every_h=6), jobs)
    table = _zone_table(quick_page[0], "ES")
    for policy in ("now", "lets-wait-awhile"):
        assert main(["simulate", "--zone", "ES", "--jobs", str(jobs), "--policy", policy, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert f"{doc['savings_pct']:.1f}" == table[policy][0]
        assert f"{doc['mean_delay_h']:.2f}" == table[policy][2]
        assert f"{doc['carbon_g'] / 1000:.2f}" == table[policy][5] and f"{doc['cost_usd']:.2f}" == table[policy][6]
