"""Ctrl-C during the agent's first model request: nothing is left looking live.

The model request the run held is INTERRUPTED (resumable by the session's next run, no worker's
work): the session counts no running or waiting call, `nexum ps` says INTERRUPTED, `nexum forget`
is not refused, and the next run of the session claims the same execution.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from nexum_devtools.procs import ROOT, NexumServer, Proc
from nexum_server.client import NexumClient
from nexum_server.models import Execution, Status
from tests.e2e.helpers import demo_env
from tests.reliability.faults import until
from workflow import AGENT_WORKFLOW_ID

EXITED = 30.0


def nexum(server: NexumServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexum_server", *args, "--url", server.url],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=EXITED,
    )


async def test_ctrl_c_in_the_first_model_request_leaves_it_interrupted_not_running(
    server: NexumServer, session_id: str
) -> None:
    env = {**demo_env(server.url), "NEXUM_OFFLINE_THINK_SECONDS": "30"}
    demo = Proc([sys.executable, "demo.py", "--model", "offline", "--session", session_id, "what is durable?"], env=env)
    async with NexumClient(server.url) as client:
        try:

            async def model_request_running() -> list[Execution]:
                return [
                    e
                    for e in await client.list(session_id, limit=10)
                    if e.workflow_id == AGENT_WORKFLOW_ID and e.status is Status.RUNNING
                ]

            [held] = await until(model_request_running, EXITED, "the demo's first model request running")
            demo.signal(signal.SIGINT)
            assert demo.popen.wait(EXITED) == 130
        finally:
            demo.stop()
        assert "Nothing had completed, so there is nothing to resume." in demo.output

        async def interrupted() -> object:
            counts = await client.session(session_id)
            return counts if counts.interrupted == 1 else None

        counts = await until(interrupted, EXITED, "the gone run's model request interrupted")
        assert (counts.running, counts.pending, counts.calls) == (0, 0, 1)
        execution = await client.get(held.id)
        assert execution.status is Status.INTERRUPTED and execution.lease_expires_at is None

    ps = nexum(server, "ps", "--session", session_id)
    assert ps.returncode == 0 and re.search(r"\bINTERRUPTED\b", ps.stdout), ps.stdout + ps.stderr
    forget = nexum(server, "forget", session_id, "--yes")
    assert forget.returncode == 0, forget.stdout + forget.stderr
    assert "1 execution deleted" in forget.stdout


async def test_the_next_run_of_the_session_claims_the_interrupted_model_request(
    server: NexumServer, session_id: str
) -> None:
    env = {**demo_env(server.url), "NEXUM_OFFLINE_THINK_SECONDS": "30"}
    args = [sys.executable, "demo.py", "--model", "offline", "--session", session_id, "what is durable?"]
    first = Proc(args, env=env)
    async with NexumClient(server.url) as client:
        try:

            async def model_request_running() -> list[Execution]:
                return [
                    e
                    for e in await client.list(session_id, limit=10)
                    if e.workflow_id == AGENT_WORKFLOW_ID and e.status is Status.RUNNING
                ]

            [held] = await until(model_request_running, EXITED, "the demo's first model request running")
            first.signal(signal.SIGINT)
            assert first.popen.wait(EXITED) == 130
        finally:
            first.stop()

        async def interrupted() -> bool:
            return (await client.session(session_id)).interrupted == 1

        await until(interrupted, EXITED, "the gone run's model request interrupted")
        second = Proc(args, env={**env, "NEXUM_OFFLINE_THINK_SECONDS": "0"})
        try:

            async def claimed_again() -> bool:
                execution = await client.get(held.id)
                return execution.attempts == 2 and execution.status is not Status.INTERRUPTED

            await until(claimed_again, EXITED, "the next run claiming the interrupted model request")
        finally:
            second.stop()
