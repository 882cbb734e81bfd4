"""The README's three-terminal flow, run offline exactly as written: three processes, the commands
read out of the README itself.

Only the environment differs from a newcomer's terminals: the server's port and database are
free and temporary (`NEXUM_PORT`, `NEXUM_DB`, `NEXUM_URL`), so the test never meets a developer's
own `nexum dev` on 50051. No API key is set, so the agent is the offline stand-in model.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc

FLOW_TIMEOUT = 60.0
TERMINAL = re.compile(r"^(?P<command>.+?)\s+# terminal (?P<number>\d)")


def readme_flow() -> list[str]:
    """The command lines of the README's three-terminal code block, in order, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The three-terminal flow", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def command_of(line: str) -> str:
    return line.split("  #", 1)[0].strip()


@pytest.fixture
def terminal_env(tmp_path: Path, free_port: int) -> dict[str, str]:
    """A terminal with the virtualenv active (its `python`, `nexum` and `nexum-web` first on PATH)."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "NEXUM_PORT": str(free_port),
        "NEXUM_DB": str(tmp_path / "readme.db"),
        "NEXUM_URL": f"http://127.0.0.1:{free_port}",
        "COLUMNS": "200",
        "PYTHONIOENCODING": "utf-8",
    }


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shell(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One line typed at a terminal (bash, so `VAR=value command` works as written)."""
    return subprocess.run(
        ["bash", "-c", line],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=FLOW_TIMEOUT,
    )


def test_the_three_terminal_flow_works_offline_as_written(terminal_env: dict[str, str]) -> None:
    lines = readme_flow()
    terminals = {m["number"]: m["command"].strip() for line in lines if (m := TERMINAL.match(line))}
    assert terminals == {
        "1": "nexum dev",
        "2": "nexum-web python worker.py",
        "3": 'python demo.py "What is durable execution?"',
    }, terminals

    server = Proc(shlex.split(terminals["1"]), env=terminal_env, ready=SERVER_READY)
    try:
        assert server.match is not None and server.match.group(1) == terminal_env["NEXUM_URL"]
        worker = Proc(shlex.split(terminals["2"]), env=terminal_env, ready=WORKER_READY)
        try:
            ready = next(line for line in worker.lines if WORKER_READY.search(line))
            assert "search: SearXNG at http://127.0.0.1:" in ready

            first = shell(terminals["3"], terminal_env)
            assert first.returncode == 0, first.stdout + first.stderr
            session = re.search(r"Session\s+(\S+)", first.stdout).group(1)
            assert re.search(r"web_search\('What is durable execution\?'\)\s+executed ✓", first.stdout)
            assert "visit_webpage(" in first.stdout and "failed" not in first.stdout.replace("0 failed", "")

            rerun_line = next(command_of(line) for line in lines if line.startswith("SESSION_ID="))
            rerun = shell(rerun_line.replace("<that session>", session), terminal_env)
            assert rerun.returncode == 0, rerun.stdout + rerun.stderr
            assert "executed ✓" not in rerun.stdout
            assert re.search(r"web_search\('What is durable execution\?'\)\s+cached ⚡", rerun.stdout)

            ps_line = next(command_of(line) for line in lines if line.startswith("nexum ps"))
            listed = shell(ps_line.replace("<that session>", session), terminal_env)
            assert listed.returncode == 0, listed.stdout + listed.stderr
            assert "COMPLETED" in listed.stdout and "web_search" in listed.stdout
        finally:
            worker.stop()
        assert "Traceback" not in worker.output
    finally:
        server.stop()
    assert "Traceback" not in server.output
