"""Durable waits with real processes: an agent that waits for approval through `RequestInput` is
killed while it waits, approved while no agent runs, and resumed by the same command.

The agent is `tests/e2e/approval_agent.py`: it logs every `ask`, every run of its tool and every
model request not replayed, so each test counts what ran again.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from nexum_devtools.procs import NexumServer, Proc
from tests.e2e.approval_agent import WAITING

TOKEN = re.compile(WAITING + r"(\S+)")
OUTPUT = re.compile(r"OUTPUT (.*)")
ANSWER = "answer from: the page at https://a.example/<b>page</b>"
RUN_TIMEOUT = 30


@pytest.fixture
def agent(tmp_path: Path, session_id: str) -> Iterator[Callable[..., Proc]]:
    """`agent(server, *flags)`: the approval agent as a process on the test's session; all are stopped."""
    started: list[Proc] = []

    def start(server: NexumServer, *flags: str, session: str = session_id) -> Proc:
        proc = Proc(
            [
                sys.executable,
                "-m",
                "tests.e2e.approval_agent",
                "--url",
                server.url,
                "--session",
                session,
                "--log",
                str(tmp_path),
                *flags,
            ]
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.log"
    return path.read_text().split() if path.exists() else []


def finished(proc: Proc) -> int:
    return proc.popen.wait(RUN_TIMEOUT)


def resolve(server: NexumServer, token: str, **body: object) -> httpx2.Response:
    with server.http() as http:
        return http.post(f"/v1/events/{token}", json=body)


def test_killed_while_waiting_approved_while_no_agent_runs_the_resume_goes_on_without_asking_again(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path, session_id: str
) -> None:
    first = agent(server)
    token = first.wait_for(TOKEN).group(1)
    assert calls(tmp_path) == ["model", "ask"]
    first.kill()  # SIGKILL while it holds the long-poll: nothing of it is left to clean up
    answer = resolve(server, token, decision="approve", by="ann")
    assert answer.status_code == 200, answer.text

    resumed = agent(server)
    assert finished(resumed) == 0, resumed.output
    assert OUTPUT.search(resumed.output).group(1) == ANSWER  # type: ignore[union-attr]
    # Not asked again, the tool ran once, and the model was asked only what it never answered.
    assert calls(tmp_path) == ["model", "ask", "tool", "model"]
    with server.http() as http:
        wait = http.get(f"/v1/events/{token}").json()
    assert wait["resolved_by"] == "ann"

    other = tmp_path / "uninterrupted"
    other.mkdir()
    plain = Proc(
        [
            sys.executable,
            "-m",
            "tests.e2e.approval_agent",
            "--url",
            server.url,
            "--session",
            session_id + "-2",
            "--log",
            str(other),
        ]
    )
    try:
        resolve(server, plain.wait_for(TOKEN).group(1), decision="approve")
        assert plain.popen.wait(RUN_TIMEOUT) == 0, plain.output
    finally:
        plain.stop()
    assert OUTPUT.search(plain.output).group(1) == ANSWER  # type: ignore[union-attr]


def test_a_held_run_goes_on_as_soon_as_it_is_approved_and_a_replay_of_the_session_asks_nothing(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path
) -> None:
    run = agent(server)
    assert resolve(server, run.wait_for(TOKEN).group(1), decision="approve").status_code == 200
    assert finished(run) == 0, run.output
    again = agent(server)
    assert finished(again) == 0, again.output
    assert WAITING not in again.output
    assert calls(tmp_path) == ["model", "ask", "tool", "model"]


def test_deny_tells_the_model_and_the_tool_never_runs(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path
) -> None:
    run = agent(server)
    assert resolve(server, run.wait_for(TOKEN).group(1), decision="deny", reason="not that site").status_code == 200
    assert finished(run) == 0, run.output
    assert OUTPUT.search(run.output).group(1) == "answer from: not that site"  # type: ignore[union-attr]
    assert "tool" not in calls(tmp_path)


def test_detach_stops_the_run_and_the_same_command_goes_on_once_approved(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path
) -> None:
    first = agent(server, "--detach")
    assert finished(first) == 3, first.output
    token = TOKEN.search(first.output).group(1)  # type: ignore[union-attr]
    assert "detached" in first.output
    assert resolve(server, token, decision="approve").status_code == 200
    resumed = agent(server, "--detach")
    assert finished(resumed) == 0, resumed.output
    assert calls(tmp_path) == ["model", "ask", "tool", "model"]


def test_the_timeout_counts_from_the_first_wait_across_a_restart_of_the_agent(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path
) -> None:
    first = agent(server, "--timeout", "2")
    token = first.wait_for(TOKEN).group(1)
    first.kill()
    resumed = agent(server, "--timeout", "2")
    assert finished(resumed) == 0, resumed.output
    # Whether it started before the time was up (and waited the rest) or after: the same wait.
    assert {m.group(1) for m in TOKEN.finditer(resumed.output)} <= {token}
    # RequestInput turns the timeout into a denial the model hears of.
    assert "No decision on this tool call arrived" in resumed.output
    with server.http() as http:
        wait = http.get(f"/v1/events/{token}").json()
    assert wait["status"] == "TIMED_OUT" and wait["resolved_at"] == pytest.approx(wait["created_at"] + 2)
    assert calls(tmp_path).count("ask") == 1 and "tool" not in calls(tmp_path)


def test_a_direct_wait_whose_ask_answers_at_once_is_recorded_and_not_asked_on_replay(
    server: NexumServer, agent: Callable[..., Proc], tmp_path: Path
) -> None:
    first = agent(server, "--direct")
    assert finished(first) == 0, first.output
    again = agent(server, "--direct")
    assert finished(again) == 0, again.output
    expected = 'no tools: {"answer": "at once", "token_seen": true}'
    assert OUTPUT.search(first.output).group(1) == OUTPUT.search(again.output).group(1) == expected  # type: ignore[union-attr]
    assert calls(tmp_path) == ["model", "ask"]
    assert WAITING not in first.output + again.output


DEMO_TOKEN = re.compile(r"nexum approve (\S+)")


def test_the_demo_with_approve_and_detach_stops_then_goes_on_once_each_page_is_decided(
    server: NexumServer, worker: Proc, session_id: str
) -> None:
    from tests.e2e.helpers import run_demo

    args = ("--model", "offline", "--session", session_id, "--approve", "--detach", "What is durable execution?")
    decided: list[str] = []
    for _ in range(10):  # one wait per model turn that wants pages
        result = run_demo(server.url, *args)
        if result.returncode == 0:
            break
        assert result.returncode == 3, result.stdout + result.stderr
        assert "Waiting for approval" in result.stdout and "visit_webpage" in result.stdout
        token = DEMO_TOKEN.search(result.stdout).group(1)  # type: ignore[union-attr]
        if not decided:
            assert resolve(server, token, decision="deny", reason="not this one", by="test").status_code == 200
        else:
            assert resolve(server, token, decision="approve").status_code == 200
        decided.append(token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided, "the demo never waited"
    replay = run_demo(server.url, *args)
    assert replay.returncode == 0 and "Waiting for approval" not in replay.stdout
