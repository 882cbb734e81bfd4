"""`pip install` of the project's wheel into a fresh virtualenv, then the README's own agent from an empty directory.

The wheel is built once from a copy of the packaged sources (never the checkout's own `build/`) and
cached under `.pytest_cache/nexum-wheel/<hash of those sources>`, so a re-run only makes the
virtualenv and installs into it. Every process runs from an empty temporary directory with no
`PYTHONPATH`, so what is imported is the installed wheel, and the test checks that it is.

The agent reads two files through its worker tool; the second is a FIFO, so the worker's call
blocks until the test writes into it: the agent is killed (SIGKILL) once its first tool call has
ended, with the rest of its run still to come, and the second run must replay what was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2
import pytest

from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc
from tests.conftest import CI
from tests.unit.test_readme_example import readme_example

PACKAGES = ("nexum_server", "nexum_pydantic_ai", "nexum_devtools")
METADATA = ("pyproject.toml", "README.md")
WHEEL_CACHE = ROOT / ".pytest_cache" / "nexum-wheel"
BUILD_RECIPE = b"pip wheel --no-deps -v, 1"
"""Part of the cache key: a change to how the wheel is built builds it again."""
PIP_TIMEOUT = 300.0
"""Upper bound for one pip command; from a warm pip cache an install takes about 15 s."""
RUN_TIMEOUT = 60.0
OFFLINE = re.compile(
    r"No matching distribution|Could not find a version|Failed to establish|"
    r"Network is unreachable|Temporary failure in name resolution",
    re.IGNORECASE,
)
"""pip's words when it cannot reach a package index: the machine, not the project."""
MACHINE_WARNING = re.compile(r"WARNING: Location '.*' is ignored")
"""pip's word on this machine's package index configuration, not on the project."""
UNIT = re.compile(r"^\s*(ran|replayed)  (.+)$")


def warnings(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if re.search(r"warning|deprecat", line, re.IGNORECASE) and not MACHINE_WARNING.search(line)
    ]


def packaged_files() -> list[Path]:
    files = [ROOT / name for name in METADATA]
    for package in PACKAGES:
        files += sorted(
            p
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    return files


def clean_env() -> dict[str, str]:
    """This environment without what would put the checkout or another virtualenv on a child's path.

    Bytecode is written, as on a user's machine (with PYTHONDONTWRITEBYTECODE setuptools says it skips it).
    """
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def pip(config: pytest.Config, python: Path | str, *args: str, cwd: Path) -> str:
    """Run pip; its whole output. No package index reachable: a skip here, a failure in CI."""
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        if OFFLINE.search(output) and not config.stash[CI]:
            pytest.skip(f"pip cannot reach a package index: {output[-600:]}")
        pytest.fail(f"pip {' '.join(args)} exited with {done.returncode}:\n{output}")
    return output


def built_wheel(config: pytest.Config) -> tuple[Path, str]:
    """The project's wheel and the build's verbose output, built once per state of the packaged files."""
    digest = hashlib.sha256(BUILD_RECIPE)
    for path in packaged_files():
        digest.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes() + b"\0")
    folder = WHEEL_CACHE / digest.hexdigest()[:16]
    if wheels := sorted(folder.glob("*.whl")):
        return wheels[0], (folder / "build.log").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        for path in packaged_files():
            target = source / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        staged = Path(tmp) / "wheel"
        # -v shows setuptools' own output, where its warnings are.
        log = pip(
            config, sys.executable, "wheel", "--no-deps", "-v", "--wheel-dir", str(staged), str(source), cwd=Path(tmp)
        )
        (staged / "build.log").write_text(log)
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        for old in WHEEL_CACHE.iterdir():
            shutil.rmtree(old, ignore_errors=True)
        # Atomic: a concurrent run sees a whole folder or none (and the one that lost keeps its own).
        with contextlib.suppress(OSError):
            staged.rename(folder)
    return sorted(folder.glob("*.whl"))[0], (folder / "build.log").read_text()


def installed(python: Path, cwd: Path, modules: str) -> dict[str, object]:
    """What `python` imports from `cwd`: the files of `modules`, whether pydantic_ai and the example exist, sys.path."""
    code = (
        f"import importlib, importlib.util, json, sys\n"
        f"files = {{m: importlib.import_module(m).__file__ for m in {modules.split()!r}}}\n"
        "print(json.dumps({'files': files, 'path': sys.path,\n"
        "                  'pydantic_ai': importlib.util.find_spec('pydantic_ai') is not None,\n"
        "                  'nexum_research': importlib.util.find_spec('nexum_research') is not None,\n"
        "                  'loaded': sorted(sys.modules)}))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_from(venv: Path, found: dict[str, object]) -> None:
    files = found["files"]
    assert isinstance(files, dict)
    for module, file in files.items():
        assert Path(file).is_relative_to(venv), f"{module} was imported from {file}, not from the new virtualenv"
    assert not [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT)]  # type: ignore[union-attr]


def units(proc: Proc) -> list[tuple[str, str]]:
    """(ran | replayed, what) for each unit line the agent printed."""
    return [(m.group(1), m.group(2)) for line in proc.lines if (m := UNIT.match(line))]


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe; a reader still blocked on it at the end is let go, so no process hangs on it."""
    work = tmp_path / "work"
    work.mkdir()
    path = work / "b.fifo"
    os.mkfifo(path)
    yield path
    # OSError: no reader waiting (ENXIO), nothing to let go.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


# The first run builds the wheel and may fill pip's cache; later ones take about 30 s.
@pytest.mark.timeout(600)
def test_the_readme_agent_from_an_installed_wheel_survives_kill_9(
    pytestconfig: pytest.Config, tmp_path: Path, fifo: Path
) -> None:
    work = fifo.parent
    wheel, build_log = built_wheel(pytestconfig)
    assert not warnings(build_log), build_log

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], cwd=work, env=clean_env(), check=True, timeout=120)
    python = venv / "bin" / "python"

    # The engine alone: it installs, imports and serves without Pydantic AI.
    output = pip(pytestconfig, python, "install", str(wheel), cwd=work)
    assert not warnings(output), output
    engine = installed(
        python,
        work,
        "nexum_server nexum_server.api nexum_server.cli nexum_server.client nexum_devtools.procs nexum_devtools.web",
    )
    assert_from(venv, engine)
    assert engine["pydantic_ai"] is False and engine["nexum_research"] is False
    assert not [m for m in engine["loaded"] if m.startswith(("pydantic_ai", "nexum_pydantic_ai"))]  # type: ignore[union-attr]
    page = Path(engine["files"]["nexum_server"]).parent / "ui"  # type: ignore[index]
    assert {p.name for p in page.iterdir()} >= {"index.html", "app.js", "app.css"}

    # No PostgreSQL driver without the postgres extra: the server says which extra, before connecting.
    refused = subprocess.run(
        [str(venv / "bin" / "nexum"), "dev", "--db", "postgresql://nobody@127.0.0.1:9/none"],
        cwd=work,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert refused.returncode == 2 and "nexum-pydantic-ai[postgres]" in refused.stderr, refused

    with ExitStack() as stack:
        server = Proc(
            [str(venv / "bin" / "nexum"), "dev", "--port", "0", "--db", str(work / "nexum.db")],
            env={"PYTHONPATH": ""},
            ready=SERVER_READY,
            cwd=work,
        )
        stack.callback(server.stop)
        assert server.match is not None
        url = server.match.group(1)
        assert "<html" in httpx2.get(f"{url}/ui/", follow_redirects=True, timeout=10).text.lower()

        output = pip(pytestconfig, python, "install", f"{wheel}[pydantic-ai]", cwd=work)
        assert not warnings(output), output
        assert_from(venv, installed(python, work, "nexum_pydantic_ai nexum_pydantic_ai.worker"))

        (work / "own_agent.py").write_text(readme_example())
        (work / "a.txt").write_text("hello durable world\n")
        env = {"PYTHONPATH": "", "NEXUM_URL": url}
        worker = Proc(
            [str(python), "-m", "nexum_pydantic_ai.worker", "own_agent:TOOLSET"], env=env, ready=WORKER_READY, cwd=work
        )
        stack.callback(worker.stop)
        agent = [str(python), "own_agent.py", "a.txt", fifo.name]

        first = Proc(agent, env=env, cwd=work)
        stack.callback(first.stop)
        first.wait_for(re.compile(r"ran  read_text_file\('a\.txt'\)"), RUN_TIMEOUT)
        first.kill()

        second = Proc(agent, env=env, cwd=work)
        stack.callback(second.stop)
        second.wait_for(re.compile(r"replayed  read_text_file\('a\.txt'\)"), RUN_TIMEOUT)
        # The worker is (or will be) blocked opening the FIFO for its second call; writing lets it finish.
        writer = threading.Thread(target=lambda: fifo.write_text("three more words\n"), daemon=True)
        writer.start()
        writer.join(RUN_TIMEOUT)
        assert not writer.is_alive(), f"the worker never read {fifo.name}:\n{worker.output}"
        assert second.popen.wait(RUN_TIMEOUT) == 0, second.output
        worker_log = worker.output

    done_before = units(first)
    after = units(second)
    expected = [
        "model request",
        "read_text_file('a.txt')",
        "model request",
        "read_text_file('b.fifo')",
        "model request",
        "count_words('hello durable world\\n\\nthree more words\\n')",
        "model request",
    ]
    assert [what for _, what in after] == expected, second.output
    # What the killed run had done is replayed; what it never reached runs once, in the second run.
    assert all(how == "replayed" for how, _ in after[: len(done_before)]), (first.output, second.output)
    assert after[-2:] == [("ran", expected[-2]), ("ran", expected[-1])], second.output
    assert "6 words in 2 files" in second.output
    for name in ("a.txt", "b.fifo"):
        assert len(re.findall(rf"read_text_file\('{re.escape(name)}'\) completed", worker_log)) == 1, worker_log
