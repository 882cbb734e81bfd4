"""A worker dies in the middle of a tool call: the call is run again after its lease, and counted once.

The server runs with a one-second lease; a live worker heartbeats every third of it, so only a dead
worker loses its task. Late reports from the dead worker's lease are refused and change nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx2

from nexum_devtools.procs import NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import call_tool
from tests.reliability.faults import REF, ahits, executions_of, register, token, until
from workflow import VISIT_WEBPAGE

LEASE_SECONDS = 1
PAGE_SECONDS = 3
"""Three leases long: the worker that finishes the call must keep its lease by heartbeats."""
CALL_TIMEOUT = 60.0


async def test_killed_worker_call_runs_again_after_lease_expiry_and_is_recorded_once(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server(lease_seconds=LEASE_SECONDS)
    client = client_of(server)
    slug = token("killed")
    path = f"/slow/{slug}"
    args = {"url": f"{web.url}{path}?seconds={PAGE_SECONDS}"}
    doomed = start_worker(server)

    waiting = asyncio.create_task(call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client))
    await until(lambda: ahits(web, path), 30, "the first worker fetching the page")
    doomed.kill()
    start_worker(server)
    outcome = await asyncio.wait_for(waiting, CALL_TIMEOUT)

    assert outcome.execution.status is Status.COMPLETED
    assert outcome.execution.attempts == 2, "one attempt for the dead worker, one for the live one"
    assert slug.replace("-", " ").title() in outcome.result.splitlines()[0]
    assert await ahits(web, path) == 2, "at-least-once: the page was fetched by both workers"
    executions = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert [(e.id, e.status) for e in executions] == [(outcome.execution.id, Status.COMPLETED)]


async def test_report_with_an_expired_lease_token_is_refused_and_changes_nothing(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    raw_http_of: Callable[..., httpx2.AsyncClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server(lease_seconds=LEASE_SECONDS)
    client = client_of(server)
    await register(client)
    slug = token("stale")
    path = f"/slow/{slug}"
    args = {"url": f"{web.url}{path}?seconds=1"}
    http = raw_http_of(server)

    waiting = asyncio.create_task(call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client))
    # This test plays the worker that claims the task and then dies without a word.
    poll = {"worker_id": "dead-worker", "workflows": [REF.model_dump()], "wait": 10}
    claimed = await http.post("/v1/tasks/poll", json=poll)
    assert claimed.status_code == 200, claimed.text
    [task] = claimed.json()["tasks"]
    stale = task["lease_token"]
    task_url = f"/v1/tasks/{task['task_id']}"

    start_worker(server)
    await until(lambda: ahits(web, path), 30, "the live worker fetching the page after the lease ran out")
    while_running = await http.post(f"{task_url}/complete", json={"lease_token": stale, "output": {"result": "forged"}})
    assert while_running.status_code == 409, while_running.text
    for action, body in (("heartbeat", {}), ("fail", {"error": "late failure"}), ("release", {})):
        response = await http.post(f"{task_url}/{action}", json={"lease_token": stale, **body})
        assert response.status_code == 409, f"{action}: {response.text}"
    running = await client.get(task["task_id"])
    assert (running.status, running.attempts) == (Status.RUNNING, 2)

    outcome = await asyncio.wait_for(waiting, CALL_TIMEOUT)
    assert outcome.execution.attempts == 2
    assert "forged" not in outcome.result
    after = await http.post(f"{task_url}/complete", json={"lease_token": stale, "output": {"result": "forged"}})
    assert after.status_code == 409, after.text
    assert after.json()["error"]["code"] == "lease_lost"
    stored = await client.get(task["task_id"])
    assert stored.status is Status.COMPLETED
    assert stored.result == outcome.execution.result
    assert stored.completed_at == outcome.execution.completed_at
    assert await ahits(web, path) == 1, "the dead worker never fetched; only the live one did"


async def test_a_result_whose_report_is_refused_is_logged_as_discarded_not_completed(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server()
    client = client_of(server)
    worker = start_worker(server)
    slug = token("refused")
    path = f"/slow/{slug}"
    args = {"url": f"{web.url}{path}?seconds=1"}
    await register(client)
    execution = await client.start(
        REF.workflow_id, REF.version_hash, session_id, "refused", {"tool_name": VISIT_WEBPAGE, "tool_args": args}
    )

    await until(lambda: ahits(web, path), 30, "the worker fetching the page")
    cancelled = await client.cancel(execution.id)
    assert cancelled.status is Status.CANCELLED
    line = await asyncio.to_thread(worker.wait_for, re.compile(r"INFO visit_webpage\(.*?\) (\w+)"))

    assert line.group(1) == "discarded", worker.output
    assert (await client.get(execution.id)).status is Status.CANCELLED
