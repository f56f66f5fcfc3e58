"""Command-line flags of the benchmark, experiment and scenario scripts.

``--help`` prints the script's description and flags, and a flag the script does not know (a typo
such as ``--quik``) is an error with exit 2, not a full run of minutes (review 48a L3).

>>> parse("Plans per second.\\n\\nMore text.", argv=["--quick"]).quick
True
>>> parse("Plans per second.", argv=[]).quick
False
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["parse"]


def parse(doc: str | None, *, quick: bool = True, flags: Sequence[tuple[tuple[str, ...], dict[str, Any]]] = (),
          argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The script's arguments: ``--quick`` (smaller inputs, when ``quick``) and ``flags``, each
    ``(names, argparse keyword arguments)``; ``doc`` (the module docstring) is the ``--help`` text."""
    parser = argparse.ArgumentParser(description=(doc or "").strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick:
        parser.add_argument("--quick", action="store_true", help="smaller inputs: a smoke run")
    for names, kwargs in flags:
        parser.add_argument(*names, **kwargs)
    return parser.parse_args(list(sys.argv[1:] if argv is None else argv))
