"""Helpers for the fault-injection tests: waiting on what the processes show, and counting what ran.

The fixture web server is shared by the test session, so every test puts a unique token in its
URLs and queries and counts only the requests carrying it. Waits poll an observable (the fixture's
request log, the server's executions) against a `time.monotonic()` deadline and end in a
`TimeoutError` that says what never happened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Execution, WorkflowRef
from workflow import IR, VERSION_HASH, WORKFLOW_ID

T = TypeVar("T")

POLL_INTERVAL = 0.02
"""Pause between two looks at an observable that cannot be long-polled (the fixture's log)."""
REF = WorkflowRef(workflow_id=WORKFLOW_ID, version_hash=VERSION_HASH)


def token(prefix: str) -> str:
    """A slug no other test uses, for URLs and queries on the shared fixture web server."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def until(check: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
    """`await check()` until it returns something truthy; `TimeoutError` naming `what` after `timeout` s.

    Async, so calls the test runs in the background keep going while it waits.
    """
    deadline = time.monotonic() + timeout
    while True:
        if value := await check():
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(POLL_INTERVAL)


def hits(web: WebFixture, path: str) -> int:
    """Requests the fixture web server got for exactly `path` (query ignored)."""
    return sum(entry["path"] == path for entry in web.log())


async def ahits(web: WebFixture, path: str) -> int:
    """`hits` off the event loop, so calls running in the background keep going."""
    return await asyncio.to_thread(hits, web, path)


async def executions_of(
    client: NexumClient, session_id: str, tool_name: str, tool_args: dict[str, Any]
) -> list[Execution]:
    """Every execution, live or not, of one tool call in one session (an agent run's, or a lone call's)."""
    listed = await client.list(session_id, limit=1000)
    return [
        e
        for e in listed
        if e.workflow_id == WORKFLOW_ID
        and e.input.get("tool_name") == tool_name
        and e.input.get("tool_args") == tool_args
    ]


async def register(client: NexumClient) -> None:
    await client.register_workflow(WORKFLOW_ID, VERSION_HASH, IR)
