"""SIGTERM to a worker mid-call: it finishes a short call, or hands a long one back at once, and exits 0."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from nexum_devtools.procs import ROOT, NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import call_tool
from tests.reliability.faults import ahits, executions_of, token, until
from workflow import VISIT_WEBPAGE

LONG_LEASE_SECONDS = 30
"""Far longer than the test: a task seen again soon was handed back, not found by lease expiry."""
EXIT_TIMEOUT = 15.0
CALL_TIMEOUT = 60.0


async def test_sigterm_lets_a_short_call_finish_then_exits_zero(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
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
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
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


async def test_ctrl_c_says_how_long_it_waits_and_a_second_one_hands_back_at_once(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server(lease_seconds=LONG_LEASE_SECONDS)
    client = client_of(server)
    worker = start_worker(server, "--grace-seconds", "30")
    path = f"/slow/{token('second-ctrl-c')}"
    args = {"url": f"{web.url}{path}?seconds=20"}

    waiting = asyncio.create_task(call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client))
    await until(lambda: ahits(web, path), 30, "the worker fetching the page")
    mark = len(worker.lines)
    worker.signal(signal.SIGINT)
    worker.wait_for(re.compile("stopping"), start=mark)
    assert "waiting up to 30 s for 1 call in flight" in worker.output
    assert "Ctrl-C again: hand back now" in worker.output

    second_at = time.monotonic()
    worker.signal(signal.SIGINT)
    assert await asyncio.to_thread(worker.popen.wait, EXIT_TIMEOUT) == 0, worker.output
    assert time.monotonic() - second_at < 10, "handed back at once, not after the 30 s grace or the 20 s page"
    assert "handing back 1 call now" in worker.output and "handed back" in worker.output
    [released] = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert released.status is Status.PENDING and released.attempts == 0
    waiting.cancel()


def test_a_worker_with_an_incomplete_search_setting_refuses_to_start(server: NexumServer) -> None:
    worker = Proc(
        [sys.executable, "worker.py", "--url", server.url],
        env={"NEXUM_SEARCH_BACKEND": "searxng", "NEXUM_SEARXNG_URL": ""},
    )
    assert worker.popen.wait(EXIT_TIMEOUT) == 2
    worker.stop()
    text = " ".join(worker.output.split())
    assert "error: NEXUM_SEARCH_BACKEND=searxng needs NEXUM_SEARXNG_URL" in text
    assert "ready" not in text and "Traceback" not in text


def test_worker_help_names_every_variable_and_default() -> None:
    result = subprocess.run(
        [sys.executable, "worker.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for text in (
        "NEXUM_URL",
        "NEXUM_TOKEN",
        "NEXUM_SEARCH_BACKEND",
        "NEXUM_SEARXNG_URL",
        "NEXUM_ALLOW_PRIVATE_URLS",
        "(default 10)",
        "(default 8)",
        "nexum-web python worker.py",
    ):
        assert text in result.stdout, text
