"""The README's examples are files of `examples/`, character for character: "Make your own agent
durable" is `own_agent.py`, "Test your agent against a recorded session" is `test_own_agent.py`
(which `tests/e2e/test_journal_agent.py` runs with pytest against a session it recorded)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nexum_devtools.procs import ROOT

EXAMPLE = ROOT / "examples" / "own_agent.py"
SECTION = "## Make your own agent durable"
TEST_EXAMPLE = ROOT / "examples" / "test_own_agent.py"
TEST_SECTION = "## Test your agent against a recorded session"


def readme_example(readme: Path = ROOT / "README.md", section: str = SECTION) -> str:
    """The first Python block of a README section (by default, the one on a durable agent of your own)."""
    text = readme.read_text()
    begin = text.index("```python\n", text.index(section)) + len("```python\n")
    return text[begin : text.index("```\n", begin)]


@pytest.mark.parametrize(("section", "example"), [(SECTION, EXAMPLE), (TEST_SECTION, TEST_EXAMPLE)])
def test_the_readme_shows_the_example_file_verbatim(section: str, example: Path) -> None:
    assert readme_example(section=section) == example.read_text()


@pytest.mark.parametrize(("example", "beside"), [(EXAMPLE, set()), (TEST_EXAMPLE, {"own_agent"})])
def test_the_example_imports_only_installed_packages(example: Path, beside: set[str]) -> None:
    """It may be copied anywhere: nothing of the repository's own modules but the installed packages
    (and, for the test, the agent it tests, copied beside it)."""
    tree = ast.parse(example.read_text())
    imported = {
        alias.name.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.partition(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    local = {path.stem for path in ROOT.glob("*.py")} | {"nexum_research", "nexum_devtools", "tests", "bench"}
    local |= {path.stem for path in (ROOT / "examples").glob("*.py")} - beside
    assert imported & local == set()
    assert "nexum_pydantic_ai" in imported
