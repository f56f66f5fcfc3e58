"""The docs stay true to the code: CLI reference complete, Python blocks parse, POLICY.md generated, links resolve."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


bd = load_script("scripts/build_docs.py", "care_build_docs")
MARKDOWN = bd.markdown_files(ROOT)


def _section(text: str, name: str) -> str:
    a, b = text.index(f"<!-- {name}:start -->"), text.index(f"<!-- {name}:end -->")
    return text[a:b]


def test_readme_cli_reference_lists_every_subcommand() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = _section(readme, "cli")
    paths = bd.command_paths()
    assert {"plan", "aws reap", "simulate poisson"} <= set(paths)
    missing = [p for p in paths if not re.search(rf"`care {re.escape(p)}[ `]", reference)]
    assert not missing, f"README CLI reference lacks {missing}: run .venv/bin/python scripts/build_docs.py"


def test_readme_cli_reference_is_generated_from_the_app() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert bd.cli_reference_markdown().strip() in readme, "stale CLI reference: run .venv/bin/python scripts/build_docs.py"


def test_readme_results_are_copied_from_evaluation() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = bd.eval_summary_markdown(ROOT).strip()
    assert table in readme, "README results differ from docs/EVALUATION.md: run .venv/bin/python scripts/build_docs.py"
    assert "| care |" in table


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_python_blocks_parse(path: Path) -> None:
    for line, src in bd.python_blocks(path):
        try:
            ast.parse(src)
        except SyntaxError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{path.name}:{line}: python block does not parse: {exc}")


def test_python_block_extraction_handles_doctest_prompts(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("```python\n>>> x = 1\n>>> if x:\n...     y = 2\n3\n```\n\n```bash\nnot python(\n```\n", encoding="utf-8")
    blocks = bd.python_blocks(md)
    assert len(blocks) == 1 and ast.parse(blocks[0][1])


def test_readme_decorator_example_uses_the_real_api() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [src for _, src in bd.python_blocks(ROOT / "README.md") if "@care" in src]
    assert blocks, "README has no @care example"
    tree = ast.parse(blocks[0])
    imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for module, name in imported:
        mod = importlib.import_module(module)
        assert hasattr(mod, name), f"README imports {name} from {module}, which does not exist"
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "care"]
    policy = ast.literal_eval(calls[0].keywords[0].value)
    from care_flows.policy import load_policy

    assert load_policy(policy).home_region == "eu-south-2"
    assert "@care(" in readme and "@flow" in readme


def test_policy_reference_is_generated() -> None:
    from care_flows.policy import policy_reference_markdown

    current = (ROOT / "docs" / "POLICY.md").read_text(encoding="utf-8")
    assert current == policy_reference_markdown(), "docs/POLICY.md is stale: run .venv/bin/python scripts/build_docs.py"


def test_local_links_resolve() -> None:
    assert bd.broken_links([*MARKDOWN]) == []


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x\n", encoding="utf-8")
    md = tmp_path / "probe.md"
    md.write_text("[ok](there.md#a) [bad](nowhere.md) `[code](ignored.md)` [web](https://example.org) [top](#x)\n", encoding="utf-8")
    assert bd.broken_links([md]) == [f"{md}: nowhere.md"]


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = [ln for ln in readme.splitlines() if ln.startswith("## ")]
    assert headings[0] == "## Two commands"
    first = readme.split("## Two commands", 1)[1].split("## ", 1)[0]
    assert "make demo" in first and "make test" in first
