"""One durable tool call run by a worker: submit it to the Nexum server and wait for its result.

A call already completed in its session comes back in one HTTP round trip, with no re-execution. A
new call is started and awaited in the same request (the server holds it until a worker has written
the result back), then with held GETs; nothing here sleeps or polls. `call_tool` is the async form,
`call_tool_sync` the blocking one, safe from any number of threads at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from nexum_server import models
from nexum_server.client import NexumClient, NexumSyncClient
from nexum_server.errors import RequestRejected, WaitTimeout
from nexum_server.models import Execution, Status
from nexum_server.retry import retry_async, retry_sync

from ._errors import ToolCallFailed
from ._keys import standalone_tool_key
from ._protocol import ToolCallInput, ToolCallOutput, tool_ir, tool_workflow_id, version_hash

log = logging.getLogger("nexum.submit")

DEFAULT_TIMEOUT = 120.0
NO_WORKER_WARNING_SECONDS = 5.0
"""A call still unclaimed after this long gets a warning that no worker seems to be running."""


def ran_seconds(execution: Execution) -> float:
    """How long an execution ran: its last attempt alone (`nexum_server.models.ran_seconds`)."""
    return models.ran_seconds(execution)


@dataclass(frozen=True)
class ToolCallOutcome:
    """What one submitted call gave back, and how."""

    result: Any
    """What the tool returned, as JSON."""
    cached: bool
    """True when the session already had this call completed: nothing ran."""
    seconds: float
    """Wall time of this submission, as the agent saw it."""
    execution: Execution
    """The stored execution, with its timings and attempts."""

    @property
    def tool_seconds(self) -> float:
        """How long the tool itself took when it ran (for a cached call: the time saved)."""
        return ran_seconds(self.execution)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, NexumClient] = weakref.WeakKeyDictionary()
_sync_client: NexumSyncClient | None = None
_sync_client_lock = threading.Lock()


def shared_client() -> NexumClient:
    """The process's keep-alive client for the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = NexumClient()
    return client


def shared_sync_client() -> NexumSyncClient:
    """The process's blocking keep-alive client, shared by every thread (created on first use)."""
    global _sync_client
    with _sync_client_lock:
        if _sync_client is None:
            _sync_client = NexumSyncClient()
        return _sync_client


class _Call:
    """One submission's fixed parts, shared by the async and the blocking path."""

    def __init__(
        self,
        toolset_id: str | None,
        tool_name: str,
        tool_args: dict[str, Any],
        session_id: str,
        timeout: float,
        key: str | None,
        ctx: dict[str, Any] | None,
    ) -> None:
        self.tool_name = tool_name
        self.ir = tool_ir(toolset_id)
        self.workflow = (tool_workflow_id(toolset_id), version_hash(self.ir))
        key = key or standalone_tool_key(toolset_id, tool_name, tool_args)
        payload = ToolCallInput(tool_name=tool_name, tool_args=tool_args, toolset_id=toolset_id, ctx=ctx)
        self.args = (*self.workflow, session_id, key, payload.model_dump(exclude_none=True))
        self.timeout = timeout
        self.first_wait = min(timeout, NO_WORKER_WARNING_SECONDS)
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + timeout

    def remaining(self) -> float:
        return self.timeout - (time.perf_counter() - self.started)

    def warn_if_unclaimed(self, execution: Execution, url: str) -> None:
        if _unclaimed(execution) and self.timeout > self.first_wait:
            log.warning(
                "no worker has picked up %s after %g s: is `python worker.py` running against %s? "
                "Still waiting (timeout %.0f s).",
                self.tool_name,
                self.first_wait,
                url,
                self.timeout,
            )

    def timed_out(self, error: WaitTimeout, execution: Execution, url: str) -> WaitTimeout:
        latest = error.execution if isinstance(error.execution, Execution) else execution
        hint = f"; no worker picked it up: is `python worker.py` running against {url}?"
        hint = hint if _unclaimed(latest) else ""
        return WaitTimeout(
            f"{self.tool_name} did not finish within its timeout of {self.timeout:g} s "
            f"(execution {execution.id}); it stays queued on the server{hint}",
            latest,
        )

    def outcome(self, execution: Execution) -> ToolCallOutcome:
        if execution.status is not Status.COMPLETED:
            raise ToolCallFailed(execution)
        output = ToolCallOutput.model_validate(execution.result)
        return ToolCallOutcome(output.result, execution.cached, time.perf_counter() - self.started, execution)


def _unclaimed(execution: Execution) -> bool:
    return execution.status is Status.PENDING and execution.attempts == 0


async def call_tool(
    toolset_id: str | None,
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumClient | None = None,
    key: str | None = None,
    ctx: dict[str, Any] | None = None,
) -> ToolCallOutcome:
    """Run one tool call durably in a worker that serves `toolset_id`; raises `ToolCallFailed`,
    `ServerUnavailable` or `WaitTimeout`.

    `key` identifies the call in its session (a run's unit key); without one, the call is keyed by
    its tool and arguments, so the same call in the same session runs once.
    """
    client = client or shared_client()
    call = _Call(toolset_id, tool_name, tool_args, session_id, timeout, key, ctx)

    async def start() -> Execution:
        try:
            return await client.start(*call.args, wait=call.first_wait)
        except RequestRejected as e:
            if e.error_code != "workflow_not_found":
                raise
            # First call against a fresh server: register the workflow, then start as usual.
            await client.register_workflow(*call.workflow, call.ir)
            return await client.start(*call.args, wait=call.first_wait)

    # A start is keyed, so repeating it while the server restarts finds the same execution.
    execution = await retry_async(start, deadline=call.deadline)
    if not execution.status.terminal:
        call.warn_if_unclaimed(execution, client.url)
        try:
            execution = await client.wait(execution, call.remaining())
        except WaitTimeout as e:
            raise call.timed_out(e, execution, client.url) from e
    return call.outcome(execution)


def call_tool_sync(
    toolset_id: str | None,
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumSyncClient | None = None,
    key: str | None = None,
) -> ToolCallOutcome:
    """The blocking twin of `call_tool`, safe from any number of threads at once."""
    client = client or shared_sync_client()
    call = _Call(toolset_id, tool_name, tool_args, session_id, timeout, key, None)

    def start() -> Execution:
        try:
            return client.start(*call.args, wait=call.first_wait)
        except RequestRejected as e:
            if e.error_code != "workflow_not_found":
                raise
            client.register_workflow(*call.workflow, call.ir)
            return client.start(*call.args, wait=call.first_wait)

    execution = retry_sync(start, deadline=call.deadline)
    if not execution.status.terminal:
        call.warn_if_unclaimed(execution, client.url)
        try:
            execution = client.wait(execution, call.remaining())
        except WaitTimeout as e:
            raise call.timed_out(e, execution, client.url) from e
    return call.outcome(execution)
