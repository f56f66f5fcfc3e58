"""Create CaRE's block documents on the Prefect server in PREFECT_API_URL.

Usage: ``python blocks/create_blocks.py [--dry-run] [--overwrite]``. Reads ``blocks/*.json``
(``block_type_slug``, ``name``, ``data``) and, when the environment has them, creates the
Electricity Maps / WattTime credential blocks (secrets are never printed). Documents that already
exist are kept (``kept care-policy/green-batch``) unless ``--overwrite``, and the others are still
saved, so running it again after exporting a token adds the credential block.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from care_flows.blocks import BLOCK_TYPES, ElectricityMapsCredentials, WattTimeCredentials

__all__ = ["load_documents", "create_all", "main"]

HERE = Path(__file__).resolve().parent
BY_SLUG = {cls.get_block_type_slug(): cls for cls in BLOCK_TYPES}


def load_documents(directory: Path = HERE) -> list[tuple[str, Any]]:
    """(name, validated block) for every JSON document in ``directory``."""
    out = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text())
        cls = BY_SLUG.get(doc["block_type_slug"])
        if cls is None:
            raise SystemExit(f"error: {path.name}: unknown block_type_slug {doc['block_type_slug']!r}; known: {', '.join(BY_SLUG)}")
        out.append((doc["name"], cls(**doc["data"])))
    token = os.environ.get("ELECTRICITYMAPS_API_TOKEN")
    if token:
        out.append(("electricitymaps", ElectricityMapsCredentials(api_token=token)))
    user, password = os.environ.get("WATTTIME_USERNAME"), os.environ.get("WATTTIME_PASSWORD")
    if user and password:
        out.append(("watttime", WattTimeCredentials(username=user, password=password)))
    return out


def create_all(overwrite: bool = False, dry_run: bool = False, directory: Path = HERE) -> list[tuple[str, str]]:
    """Register the block types and save every document: ``("slug/name", outcome)`` for each, the
    outcome ``created``, ``kept`` (it exists and ``overwrite`` is off: an edited policy stays as the
    user left it), ``replaced`` or, with ``dry_run``, ``would create``. A document that exists does
    not stop the others (a credential block added later is still saved)."""
    docs = load_documents(directory)
    done = []
    for name, block in docs:
        item = f"{type(block).get_block_type_slug()}/{name}"
        if dry_run:
            done.append((item, "would create"))
            continue
        type(block).register_type_and_schema()
        try:
            block.save(name, overwrite=False)
            done.append((item, "created"))
        except ValueError as exc:  # Block.save refuses a name already in use for this block type
            if "already in use" not in str(exc):
                raise ValueError(f"{item}: {' '.join(str(exc).split())}") from None
            if overwrite:
                block.save(name, overwrite=True)
                done.append((item, "replaced"))
            else:
                done.append((item, "kept"))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="validate the documents; do not contact the server")
    parser.add_argument("--overwrite", action="store_true", help="replace documents that already exist (default: keep them)")
    args = parser.parse_args(argv)
    try:
        done = create_all(overwrite=args.overwrite, dry_run=args.dry_run)
    except ValueError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for item, outcome in done:
        print(f"{outcome} {item}" + (" (it exists; --overwrite replaces it)" if outcome == "kept" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
