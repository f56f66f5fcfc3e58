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

import numpy as np
import pytest

from care_flows.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_evaluation.py"


@pytest.fixture(scope="session")
def quick_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One quick page per test process (session scope: an xdist worker may tear a module fixture down
    between two tests of a module, and the page was built twice)."""
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


def test_the_committed_page_row_is_reproduced_with_the_written_jobs(tmp_path, capsys) -> None:
    """Review 43a L6: the page said to reproduce a row with the CLI, but no command wrote its JOBS.csv;
    `--write-jobs` does, and the committed docs/EVALUATION.md's ES row follows from it."""
    jobs = tmp_path / "JOBS.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--write-jobs", str(jobs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = _zone_table((ROOT / "docs" / "EVALUATION.md").read_text(), "ES")
    assert main(["simulate", "--zone", "ES", "--jobs", str(jobs), "--policy", "lets-wait-awhile", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["jobs"] == 8735
    assert f"{doc['savings_pct']:.1f}" == table["lets-wait-awhile"][0] and f"{doc['mean_delay_h']:.2f}" == table["lets-wait-awhile"][2]
    assert f"{doc['carbon_g'] / 1000:.2f}" == table["lets-wait-awhile"][5] and f"{doc['cost_usd']:.2f}" == table["lets-wait-awhile"][6]


def _spatial_table(page: str, pair: str) -> dict[str, list[float | None]]:
    """The '### ES + SE' style table: policy -> [savings %, kgCO2eq, cost USD, extra cost USD,
    abatement USD/tCO2eq] as numbers ('n/a' -> None)."""
    section = page.split(f"### {pair}\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()[2:]]
    num = lambda c: None if c == "n/a" else float(c.replace(",", ""))  # noqa: E731
    return {r[0]: [num(c) for c in r[1:6]] for r in rows}


@pytest.mark.parametrize("pair, moved_usd_per_h", [("ES + SE", 0.102), ("ES + FR", 0.112)])
def test_the_spatial_table_costs_and_abatement(quick_page, pair, moved_usd_per_h) -> None:
    """Extra cost = cost - run-now cost; abatement = extra USD / t avoided (negative: greener *and*
    cheaper), recomputed from the table's own rounded kgCO2eq and USD within their rounding."""
    table = _spatial_table(quick_page[0], pair)
    assert {"now", "oracle", "care", "threshold", "care (cost first, 0% tol.)"} <= set(table)
    _, base_kg, base_usd, base_extra, base_abatement = table["now"]
    assert base_extra == 0 and base_abatement is None
    for name, (savings, kg, usd, extra, abatement) in table.items():
        if name == "now":
            continue
        assert savings > 0 and base_kg - kg > 0.1, name
        assert abs((usd - base_usd) - extra) <= 0.011, name
        if abs(extra) < 0.005:  # time shifts only: same cost
            assert abs(abatement) < 0.5, name
            continue
        assert np.sign(abatement) == np.sign(extra), (name, extra, abatement)
        # |extra| +- 0.005 over (avoided kg +- 0.01) / 1000, and the abatement itself is rounded to 1
        ratios = [e * 1000 / a for e in (extra - 0.005, extra + 0.005) for a in (base_kg - kg - 0.01, base_kg - kg + 0.01)]
        assert min(ratios) - 0.5 <= abatement <= max(ratios) + 0.5, (name, extra, base_kg - kg, abatement, ratios)
    # care's 1 h m5.large jobs moved from eu-south-2 (0.107 USD/h) pay the other region's price
    _, _, usd, extra, abatement = table["care"]
    all_moved = base_usd * moved_usd_per_h / 0.107
    if pair == "ES + SE":  # SE is greener and cheaper (every job moves): negative extra cost and abatement
        assert usd == pytest.approx(all_moved, abs=0.011)
        assert extra < 0 and abatement < 0
    else:  # FR is greener but dearer (most jobs move): positive extra cost and abatement
        assert base_usd < usd <= all_moved + 0.011
        assert extra > 0 and abatement > 0
