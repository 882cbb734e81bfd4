"""Submit one tool call to the Nexum server and wait for its result: the agent's side of durability.

A call already completed in this session comes back from the server in one HTTP round trip, with
no re-execution. A new call is started and awaited in the same request (the server holds it until
a worker has written the result back); nothing here sleeps or polls.

Run with:
    nexum dev & python worker.py &
    python submit_task.py web_search '{"query": "durable execution"}' --session demo

Exit codes: 0 the result is printed; 1 the call failed (or bad input); 2 cannot start (a bad
setting, no server at the URL, a refused token); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from nexum_server.client import NexumClient, NexumSyncClient
from nexum_server.client import run as client_run
from nexum_server.config import DEFAULT_URL
from nexum_server.errors import ConfigError, NexumError, RequestRejected, ServerUnavailable, WaitTimeout
from nexum_server.ids import InvalidSessionId, validate_session_id
from nexum_server import models
from nexum_server.models import Execution, Status
from nexum_server.retry import retry_async, retry_sync
from tools import PermanentToolError, check_tool_args
from workflow import IR, TOOL_NAMES, VERSION_HASH, WORKFLOW_ID, ToolCallInput, ToolCallOutput, tool_call_key

log = logging.getLogger("nexum.submit")

DEFAULT_TIMEOUT = 120.0
NO_WORKER_WARNING_SECONDS = 5.0
"""A call still unclaimed after this long gets a warning that no worker seems to be running."""


class ToolCallFailed(NexumError):
    """The tool call ended FAILED (all attempts used, or a permanent error) or was CANCELLED."""

    def __init__(self, execution: Execution) -> None:
        reason = execution.error or execution.status.value.lower()
        attempts = f"{execution.attempts} attempt{'' if execution.attempts == 1 else 's'}"
        super().__init__(f"{execution.input.get('tool_name')} failed after {attempts}: {reason}")
        self.execution = execution


def ran_seconds(execution: Execution) -> float:
    """How long an execution ran: its last attempt alone (`nexum_server.models.ran_seconds`)."""
    return models.ran_seconds(execution)


@dataclass(frozen=True)
class ToolCallOutcome:
    """What one submitted call gave back, and how."""

    result: str
    """The tool's output text."""
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


class InvalidToolCall(NexumError, ValueError):
    """The tool name or its arguments do not match the toolset: nothing was submitted."""

    code = "invalid_tool_call"


class _Call:
    """One submission's fixed parts, shared by the async and the blocking path."""

    def __init__(self, tool_name: str, tool_args: dict[str, Any], session_id: str, timeout: float,
                 occurrence: int = 0) -> None:
        try:
            check_tool_args(tool_name, tool_args)
        except PermanentToolError as e:
            # Caught here, not by the worker: a typo must not wait for a worker to store a failure.
            raise InvalidToolCall(str(e)) from e
        self.tool_name = tool_name
        self.args = (WORKFLOW_ID, VERSION_HASH, session_id, tool_call_key(tool_name, tool_args, occurrence),
                     ToolCallInput(tool_name=tool_name, tool_args=tool_args).model_dump())
        self.timeout = timeout
        self.first_wait = min(timeout, NO_WORKER_WARNING_SECONDS)
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + timeout

    def remaining(self) -> float:
        return self.timeout - (time.perf_counter() - self.started)

    def warn_if_unclaimed(self, execution: Execution, url: str) -> None:
        if _unclaimed(execution) and self.timeout > self.first_wait:
            log.warning("no worker has picked up %s after %g s: is `python worker.py` running against %s? "
                        "Still waiting (timeout %.0f s).", self.tool_name, self.first_wait, url, self.timeout)

    def timed_out(self, error: WaitTimeout, execution: Execution, url: str) -> WaitTimeout:
        latest = error.execution if isinstance(error.execution, Execution) else execution
        hint = f"; no worker picked it up: is `python worker.py` running against {url}?"
        hint = hint if _unclaimed(latest) else ""
        return WaitTimeout(f"{self.tool_name} did not finish within its timeout of {self.timeout:g} s "
                           f"(execution {execution.id}); it stays queued on the server{hint}", latest)

    def outcome(self, execution: Execution) -> ToolCallOutcome:
        if execution.status is not Status.COMPLETED:
            raise ToolCallFailed(execution)
        output = ToolCallOutput.model_validate(execution.result)
        return ToolCallOutcome(output.result, execution.cached, time.perf_counter() - self.started, execution)


def _unclaimed(execution: Execution) -> bool:
    return execution.status is Status.PENDING and execution.attempts == 0


async def call_tool(tool_name: str, tool_args: dict[str, Any], session_id: str = "default",
                    timeout: float = DEFAULT_TIMEOUT, *, client: NexumClient | None = None,
                    occurrence: int = 0) -> ToolCallOutcome:
    """Run one tool call durably; raises `ToolCallFailed`, `ServerUnavailable` or `WaitTimeout`.

    `occurrence` tells apart identical calls of one run: 0 for the first, 1 for the second...
    """
    client = client or shared_client()
    call = _Call(tool_name, tool_args, session_id, timeout, occurrence)

    async def start() -> Execution:
        try:
            return await client.start(*call.args, wait=call.first_wait)
        except RequestRejected as e:
            if e.error_code != "workflow_not_found":
                raise
            # First call against a fresh server: register the workflow, then start as usual.
            await client.register_workflow(WORKFLOW_ID, VERSION_HASH, IR)
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


def call_tool_sync(tool_name: str, tool_args: dict[str, Any], session_id: str = "default",
                   timeout: float = DEFAULT_TIMEOUT, *, client: NexumSyncClient | None = None) -> ToolCallOutcome:
    """The blocking twin of `call_tool`, safe from any number of threads at once."""
    client = client or shared_sync_client()
    call = _Call(tool_name, tool_args, session_id, timeout)

    def start() -> Execution:
        try:
            return client.start(*call.args, wait=call.first_wait)
        except RequestRejected as e:
            if e.error_code != "workflow_not_found":
                raise
            client.register_workflow(WORKFLOW_ID, VERSION_HASH, IR)
            return client.start(*call.args, wait=call.first_wait)

    execution = retry_sync(start, deadline=call.deadline)
    if not execution.status.terminal:
        call.warn_if_unclaimed(execution, client.url)
        try:
            execution = client.wait(execution, call.remaining())
        except WaitTimeout as e:
            raise call.timed_out(e, execution, client.url) from e
    return call.outcome(execution)


async def submit_tool_call_async(tool_name: str, tool_args: dict[str, Any], session_id: str = "default",
                                 timeout: float = DEFAULT_TIMEOUT, *, client: NexumClient | None = None) -> str:
    """The tool's result text; the async twin used by the agent's tools."""
    return (await call_tool(tool_name, tool_args, session_id, timeout, client=client)).result


def submit_tool_call(tool_name: str, tool_args: dict[str, Any], session_id: str = "default",
                     timeout: float = DEFAULT_TIMEOUT, *, client: NexumSyncClient | None = None) -> str:
    """Blocking form for scripts and sync tools; safe from any number of threads at once."""
    return call_tool_sync(tool_name, tool_args, session_id, timeout, client=client).result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"Reads NEXUM_URL (default {DEFAULT_URL}) and NEXUM_TOKEN from the environment or from .env "
               "in the current directory. Exit codes: 0 done, 1 the call failed, 2 cannot start (bad setting, "
               "no server, token refused), 130 Ctrl-C.")
    parser.add_argument("tool_name", metavar="TOOL", help="the tool to run: " + ", ".join(TOOL_NAMES))
    parser.add_argument("tool_args", metavar="ARGS",
                        help='its arguments as a JSON object, e.g. \'{"query": "durable execution"}\'')
    parser.add_argument("--session", default="default",
                        help="session id: the same call in the same session runs once (default: default)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the result (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--url", help=f"server URL (NEXUM_URL, default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    try:
        tool_args = json.loads(args.tool_args)
    except json.JSONDecodeError as e:
        parser.error(f"ARGS is not valid JSON ({e}); pass an object like '{{\"query\": \"...\"}}'")
    if not isinstance(tool_args, dict):
        parser.error("ARGS must be a JSON object, like '{\"query\": \"...\"}'")
    try:
        validate_session_id(args.session)
    except InvalidSessionId as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        print(client_run(_submit(args, tool_args)))
    except NexumError as e:
        print(f"error: {e}", file=sys.stderr)
        refused = isinstance(e, RequestRejected) and e.status == 401
        sys.exit(2 if isinstance(e, ServerUnavailable | ConfigError) or refused else 1)
    except KeyboardInterrupt:
        print("interrupted: the call stays on the server; the same command gets its result later", file=sys.stderr)
        sys.exit(130)


async def _submit(args: argparse.Namespace, tool_args: dict[str, Any]) -> str:
    async with NexumClient(args.url) as client:
        await client.check()
        return (await call_tool(args.tool_name, tool_args, args.session, args.timeout, client=client)).result


if __name__ == "__main__":
    main()
