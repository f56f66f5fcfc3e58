"""Load one of the repository's scripts (benchmarks/, scripts/, examples/) as a module, for tests
that check what it prints or call its functions. It is not a package, so it is loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, name: str) -> ModuleType:
    """The module at ``ROOT / relative_path``, registered as ``name`` in ``sys.modules`` (so that
    its dataclasses and pickles resolve) and loaded once per name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    assert spec is not None and spec.loader is not None, relative_path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
