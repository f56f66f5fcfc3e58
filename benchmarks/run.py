"""Run every benchmark in this folder and print one table each.

    .venv/bin/python benchmarks/run.py            # all benchmarks, full size
    .venv/bin/python benchmarks/run.py --quick    # smaller inputs, for a smoke run
    .venv/bin/python benchmarks/run.py planning   # only bench_planning.py

Each ``bench_<topic>.py`` exposes ``run(quick: bool = False) -> list[dict]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_fmt(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "  ".join("-" * w for w in widths)
    body = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells)
    return f"{line}\n{sep}\n{body}"


def _fmt(value: object) -> str:
    """Numbers as people read them: 11,350 and 2,495,902 (not 1.135e+04), 0.1234, 3.5.

    >>> [_fmt(x) for x in (11350.2, 2495902.0, 0.12345, 3.5, 7)]
    ['11,350', '2,495,902', '0.1235', '3.5', '7']
    """
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e3 else f"{value:,.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="topics to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    for script in scripts:
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        t0 = time.perf_counter()
        rows = module.run(quick=args.quick)
        print(f"\n## {script.stem} ({time.perf_counter() - t0:.1f} s)\n")
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
