"""The command line is the top layer: no module of the package imports ``care_flows.cli``.

``care report``'s code once lived in ``care_flows/cli/report.py`` while the ``@care`` wrapper and
the ``care-report`` flow imported it (lazily, inside functions), so the Prefect side of CaRE
depended on the CLI's module (and on typer). Lazy imports count here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "care_flows"


def cli_imports(source: str) -> list[str]:
    """The ``care_flows.cli`` modules a source imports, at any depth (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n == "care_flows.cli" or n.startswith("care_flows.cli.")][:1]
    return found


def test_the_check_sees_a_lazy_import():
    src = "def f():\n    from care_flows.cli.report import parse_realized\n    import care_flows.cli.plan\n"
    assert cli_imports(src) == ["care_flows.cli.report", "care_flows.cli.plan"]
    assert cli_imports("from care_flows.orchestration.report import summarize\n") == []


def test_no_package_module_imports_the_cli():
    offenders = {str(p.relative_to(ROOT.parent)): cli_imports(p.read_text())
                 for p in ROOT.rglob("*.py") if "cli" not in p.relative_to(ROOT).parts[:1]}
    assert {k: v for k, v in offenders.items() if v} == {}
