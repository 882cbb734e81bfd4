"""What `demo.py` tells a newcomer: a run whose every tool call failed says so and exits 1, the
resume hint appears only when something completed, `--timeout` is honoured, and Pydantic AI's
first-run banner stays out of the output."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nexum_devtools.procs import ROOT, NexumServer, Proc
from tests.e2e.helpers import DEMO_TIMEOUT, closed_port, demo_env, run_demo

BANNER_MARK = "observability: off"
"""A line of Pydantic AI's first-run banner."""


def test_a_run_whose_every_tool_call_failed_says_so_and_exits_1(
    start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc]
) -> None:
    server = start_server(retry_backoff_seconds=0.05)
    # Nothing listens where the search engine should be: every search fails, is retried, then fails for good.
    start_worker(server, env={"NEXUM_SEARXNG_URL": f"http://127.0.0.1:{closed_port()}"})
    result = run_demo(server.url, "What is durable execution?")
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "Every tool call failed (1 of 1), so the answer above has no sources behind it" in out
    assert "web_search: " in out and "nexum-web python worker.py" in out
    assert "1 tool call: 0 cached, 0 executed, 1 failed" in out
    assert "Re-run with SESSION_ID" not in out


def test_without_a_server_there_is_no_resume_hint(tmp_path: Path) -> None:
    result = run_demo(f"http://127.0.0.1:{closed_port()}", "a question")
    assert result.returncode == 2
    assert "no Nexum server answers at" in result.stdout and "SESSION_ID" not in result.stdout


def test_timeout_bounds_the_wait_for_a_worker_that_never_comes(server: NexumServer) -> None:
    # No worker: the first tool call waits for one; --timeout 2 gives up on it after 2 s.
    result = run_demo(server.url, "--timeout", "2", "What is durable execution?", timeout=DEMO_TIMEOUT)
    out = " ".join(result.stdout.split())
    assert result.returncode == 1, out
    assert "within its timeout of 2 s" in out
    assert "completed step" in out and "resume with: SESSION_ID=" in out  # the first model request completed


def test_the_pydantic_ai_banner_is_off(server: NexumServer, worker: Proc, tmp_path: Path) -> None:
    # A coding agent's variable makes Pydantic AI show its banner even to a pipe; the test runner's
    # own variables would hide it, so they are dropped.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "PYTEST_CURRENT_TEST", "CI")}
    env.update(demo_env(server.url), CLAUDECODE="1")
    control = tmp_path / "plain_agent.py"
    control.write_text(
        "from pydantic_ai import Agent\nfrom pydantic_ai.models.test import TestModel\n"
        "print(Agent(TestModel()).run_sync('hi').output)\n"
    )
    plain = subprocess.run(
        [sys.executable, str(control)], env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT
    )
    assert BANNER_MARK in plain.stdout + plain.stderr, "the banner shows here for a plain agent"

    demo = subprocess.run(
        [sys.executable, "demo.py", "What is durable execution?"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=DEMO_TIMEOUT,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert BANNER_MARK not in demo.stdout + demo.stderr


def test_the_summary_line_says_tool_and_model_time_saved_apart() -> None:
    from demo import Progress
    from nexum_pydantic_ai import UnitEvent

    progress = Progress()
    for event in (
        UnitEvent("model", "offline", None, True, 0.001, saved_seconds=1.25, tokens=10),
        UnitEvent("tool", "web_search", {"query": "q"}, True, 0.001, saved_seconds=2.5),
        UnitEvent("tool", "visit_webpage", {"url": "u"}, False, 0.5),
    ):
        progress.events.append(event)
    assert progress.summary().endswith("saved about 2.50 s of tool time and 1.25 s of model time")


def test_crash_after_prints_the_resume_line_quoted_for_the_shell(server: NexumServer, session_id: str) -> None:
    query = 'what\'s $HOME `worth` "here"?'
    crashed = run_demo(server.url, "--model", "offline", "--session", session_id, "--crash-after", "1", query)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    lines = crashed.stdout.splitlines()
    kill = next(i for i, line in enumerate(lines) if "--crash-after 1: killing this process now" in line)
    hint = lines[kill + 1]
    assert hint.startswith("1 completed step stored; resume with: "), hint
    # Pasted into a shell, the line sets the session and passes the query back exactly.
    assert shlex.split(hint.split("resume with: ", 1)[1]) == [f"SESSION_ID={session_id}", "python", "demo.py", query]


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_crash_after_needs_at_least_one_step(steps: str) -> None:
    result = run_demo(f"http://127.0.0.1:{closed_port()}", "--crash-after", steps, "q")
    assert result.returncode == 2 and "--crash-after must be 1 or more" in result.stderr
