"""Forgetting a session as a user does it: a real agent run, `nexum forget --yes`, and the re-run.

A re-run of a forgotten session executes every call again, model requests and tool calls alike;
before the forget the same re-run is served from the store.
"""

from __future__ import annotations

import subprocess
import sys

from nexum_devtools.procs import ROOT, NexumServer, Proc
from tests.e2e.helpers import CACHED, EXECUTED, WebRequests, run_demo

COMMAND_TIMEOUT = 30


def test_a_forgotten_session_runs_every_call_again(
    server: NexumServer, worker: Proc, web_requests: WebRequests, session_id: str
) -> None:
    query = f"What is durable execution {session_id}?"
    first = run_demo(server.url, "--model", "offline", "--session", session_id, query)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 tool calls: 0 cached, 3 executed, 0 failed" in first.stdout

    forget = subprocess.run(
        [sys.executable, "-m", "nexum_server", "forget", session_id, "--yes", "--url", server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert forget.returncode == 0, forget.stdout + forget.stderr
    assert f"session {session_id} forgotten: 6 executions deleted" in " ".join(forget.stdout.split())

    mark = web_requests.mark()
    again = run_demo(server.url, "--model", "offline", "--session", session_id, query)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 model requests: 0 replayed, 3 made" in again.stdout
    assert "3 tool calls: 0 cached, 3 executed, 0 failed" in again.stdout
    assert len(EXECUTED.findall(again.stdout)) == 3 and not CACHED.findall(again.stdout)
    assert len(web_requests.since(mark)) == 3  # the search and both pages fetched again
