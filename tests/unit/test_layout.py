"""The import rules between the packages, checked twice: in the sources (`ast`), and in `sys.modules` of a fresh
process.

- the engine (`nexum_server`) imports neither the integration, Pydantic AI nor the research example;
- no package imports a top-level script, the research example, `bench/`, `scripts/` or `tests/`;
- `nexum_server.client` imports only what a client needs (settings, errors, models, the session-id rule, retry policy):
  none of the server's modules, FastAPI or a store;
- the integration (`nexum_pydantic_ai`) imports only the standard library, Pydantic, Pydantic AI and
  the engine: nothing of the research example (ddgs, bs4, its tools). aiohttp does come in, as the
  engine client's transport, never from the integration itself.

The static check sees lazy imports in functions that the dynamic one does not run; the dynamic one
sees what the imports import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nexum_devtools.procs import ROOT

ENGINE, INTEGRATION, DEVTOOLS = "nexum_server", "nexum_pydantic_ai", "nexum_devtools"
PACKAGES = (ENGINE, INTEGRATION, DEVTOOLS)
SCRIPTS = frozenset(path.stem for path in ROOT.glob("*.py"))
"""demo, worker, workflow, submit_task, benchmark: examples over the packages, never under them."""
NOT_A_LIBRARY = SCRIPTS | {"nexum_research", "bench", "scripts", "tests", "examples", "conftest"}
ENGINE_NEVER = frozenset({INTEGRATION, "pydantic_ai", "pydantic_graph", "nexum_research"})
CLIENT_MAY_USE = frozenset(
    {
        "nexum_server",
        "nexum_server.client",
        "nexum_server.config",
        "nexum_server.errors",
        "nexum_server.models",
        "nexum_server.retry",
        "nexum_server.ids",
    }
)
CLIENT_NEVER = frozenset({"fastapi", "starlette", "uvicorn", "prometheus_client", "psycopg", "sqlite3"})
INTEGRATION_MAY_USE = frozenset({"pydantic", "pydantic_core", "pydantic_ai", ENGINE, INTEGRATION})
RESEARCH = frozenset({"ddgs", "bs4", "nexum_research"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` names in an import, anywhere in it (lazy ones too), relative ones resolved.

    `from package import name` counts both `package` and `package.name`, since the name may be a module.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def sources(package: str) -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted((ROOT / package).rglob("*.py"))}


def top(names: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    """The package's own modules `start` imports, directly or through each other."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        todo += graph[module]
    return seen


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_script_the_example_bench_or_tests(package: str) -> None:
    offending = {module: sorted(top(names) & NOT_A_LIBRARY) for module, names in sources(package).items()}
    assert {m: found for m, found in offending.items() if found} == {}


def test_the_engine_imports_no_pydantic_ai_and_no_integration() -> None:
    offending = {module: sorted(top(names) & ENGINE_NEVER) for module, names in sources(ENGINE).items()}
    assert {m: found for m, found in offending.items() if found} == {}


def test_the_client_imports_none_of_the_server() -> None:
    graph = sources(ENGINE)
    used = closure("nexum_server.client", graph)
    assert used - CLIENT_MAY_USE == set()
    assert {name for module in used for name in top(graph[module])} & CLIENT_NEVER == set()


def test_the_integration_imports_only_pydantic_ai_and_the_engine() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    offending = {
        module: sorted(top(names) - stdlib - INTEGRATION_MAY_USE) for module, names in sources(INTEGRATION).items()
    }
    assert {m: found for m, found in offending.items() if found} == {}


LOAD = """
import importlib, json, pkgutil, sys
names = []
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    names.append(package)
    if hasattr(module, "__path__"):
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"files": {n: sys.modules[n].__file__ for n in names}, "loaded": sorted(sys.modules)}))
"""


def loaded_by(*modules: str) -> set[str]:
    """`sys.modules` of a new interpreter after importing `modules` (a package: all its modules) from the checkout."""
    done = subprocess.run([sys.executable, "-c", LOAD, *modules], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert all(Path(file).is_relative_to(ROOT) for file in found["files"].values()), found["files"]
    return set(found["loaded"])


def test_the_engine_runs_with_no_pydantic_ai_loaded() -> None:
    loaded = loaded_by(ENGINE)
    assert top(loaded) & (ENGINE_NEVER | NOT_A_LIBRARY) == set()


def test_a_client_loads_none_of_the_server() -> None:
    loaded = loaded_by("nexum_server.client")
    assert {m for m in loaded if m.startswith("nexum_server")} - CLIENT_MAY_USE == set()
    assert top(loaded) & CLIENT_NEVER == set()


def test_the_integration_loads_nothing_of_the_research_example() -> None:
    loaded = loaded_by(INTEGRATION)
    assert top(loaded) & (RESEARCH | NOT_A_LIBRARY) == set()


def test_the_devtools_load_no_script_and_no_test() -> None:
    assert top(loaded_by(DEVTOOLS)) & NOT_A_LIBRARY == set()
