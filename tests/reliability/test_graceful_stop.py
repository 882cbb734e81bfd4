"""SIGTERM to a worker mid-call: it finishes a short call, or hands a long one back at once, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import call_tool
from nexum_devtools.web import WebFixture
from nexum_devtools.procs import NexumServer, Proc
from tests.reliability.faults import ahits, executions_of, token, until
from workflow import VISIT_WEBPAGE

LONG_LEASE_SECONDS = 30
"""Far longer than the test: a task seen again soon was handed back, not found by lease expiry."""
EXIT_TIMEOUT = 15.0
CALL_TIMEOUT = 60.0


async def test_sigterm_lets_a_short_call_finish_then_exits_zero(
        start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc],
        client_of: Callable[..., NexumClient], web: WebFixture, session_id: str) -> None:
    server = start_server(lease_seconds=LONG_LEASE_SECONDS)
    client = client_of(server)
    worker = start_worker(server, "--grace-seconds", "20")
    path = f"/slow/{token('finish')}"
    args = {"url": f"{web.url}{path}?seconds=1.5"}

    waiting = asyncio.create_task(call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client))
    await until(lambda: ahits(web, path), 30, "the worker fetching the page")
    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.popen.wait, EXIT_TIMEOUT) == 0, worker.output

    # The worker reported before it exited: the result is stored, not waiting for anyone.
    [execution] = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert (execution.status, execution.attempts) == (Status.COMPLETED, 1)
    outcome = await asyncio.wait_for(waiting, CALL_TIMEOUT)
    assert outcome.execution.id == execution.id
    assert await ahits(web, path) == 1
    assert "completed" in worker.output


async def test_sigterm_hands_a_long_call_back_at_once_for_another_worker(
        start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc],
        client_of: Callable[..., NexumClient], web: WebFixture, session_id: str) -> None:
    server = start_server(lease_seconds=LONG_LEASE_SECONDS)
    client = client_of(server)
    leaving = start_worker(server, "--grace-seconds", "0.5")
    path = f"/slow/{token('handback')}"
    args = {"url": f"{web.url}{path}?seconds=4"}

    waiting = asyncio.create_task(call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client))
    await until(lambda: ahits(web, path), 30, "the first worker fetching the page")
    stopped_at = time.monotonic()
    leaving.signal(signal.SIGTERM)
    assert await asyncio.to_thread(leaving.popen.wait, EXIT_TIMEOUT) == 0, leaving.output

    [released] = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert released.status is Status.PENDING, "handed back, not left RUNNING until its lease runs out"
    assert released.attempts == 0, "an attempt handed back untried is not counted"
    assert released.worker_id is None
    assert "handed back" in leaving.output

    start_worker(server)
    await until(lambda: fetched_twice(web, path), 30, "the second worker fetching the page")
    assert time.monotonic() - stopped_at < LONG_LEASE_SECONDS / 2, "picked up long before the lease expiry"
    outcome = await asyncio.wait_for(waiting, CALL_TIMEOUT)
    assert (outcome.execution.status, outcome.execution.attempts) == (Status.COMPLETED, 1)
    assert outcome.execution.id == released.id


async def fetched_twice(web: WebFixture, path: str) -> bool:
    return await ahits(web, path) >= 2
