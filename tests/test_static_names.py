"""Every name a function reads from its module's globals is defined there (or a builtin).

Rare code paths (clean-up after a 50-minute load run, error branches) are where a name left
behind by a refactor hides: ``benchmarks/_infra.py`` once called ``_alive`` after the helper
moved to ``care_flows.demo.runner``, and the load scenario died in its ``finally`` block,
losing its measurement. This is the check pyflakes makes for undefined names, with the
standard library's :mod:`symtable` (the compiler's own scopes).
"""

from __future__ import annotations

import builtins
import symtable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for d in ("care_flows", "benchmarks", "scripts", "tests", "examples", "blocks", "deployments")
               for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)
MODULE_NAMES = {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__", "__path__", "__annotations__"}


def undefined_globals(source: str, filename: str) -> list[tuple[str, str]]:
    """``(scope, name)`` for every global a nested scope reads that the module never binds."""
    top = symtable.symtable(source, filename, "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    if any(s.get_name() == "*" for s in top.get_symbols()):
        return []  # a star import: cannot tell
    known = bound | set(dir(builtins)) | MODULE_NAMES
    out = []

    def walk(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            for sym in child.get_symbols():
                if sym.is_global() and sym.is_referenced() and sym.get_name() not in known:
                    out.append((child.get_name(), sym.get_name()))
            walk(child)

    walk(top)
    return out


def test_the_check_finds_a_name_left_behind():
    src = "import os\n\ndef stop(pid):\n    if not _alive(pid):\n        return os.getpid()\n"
    assert undefined_globals(src, "x.py") == [("stop", "_alive")]
    assert undefined_globals("def f():\n    return len(g())\n\ndef g():\n    return []\n", "y.py") == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_undefined_global_names(path):
    assert undefined_globals(path.read_text(), str(path)) == []
