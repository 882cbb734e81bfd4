"""The README's "Make your own agent durable" is `examples/own_agent.py`, character for character."""

from __future__ import annotations

import ast
from pathlib import Path

from nexum_devtools.procs import ROOT

EXAMPLE = ROOT / "examples" / "own_agent.py"
SECTION = "## Make your own agent durable"


def readme_example(readme: Path = ROOT / "README.md") -> str:
    """The first Python block of the README's section on a durable agent of your own."""
    text = readme.read_text()
    begin = text.index("```python\n", text.index(SECTION)) + len("```python\n")
    return text[begin : text.index("```\n", begin)]


def test_the_readme_shows_the_example_file_verbatim() -> None:
    assert readme_example() == EXAMPLE.read_text()


def test_the_example_imports_only_installed_packages() -> None:
    """It may be copied anywhere: nothing of the repository's own modules but the installed packages."""
    tree = ast.parse(EXAMPLE.read_text())
    imported = {
        alias.name.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.partition(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    local = {path.stem for path in ROOT.glob("*.py")} | {"nexum_research", "nexum_devtools", "tests", "bench"}
    assert imported & local == set()
    assert "nexum_pydantic_ai" in imported
