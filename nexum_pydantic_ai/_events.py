"""Durable waits for external events: the `ExternalEventWaiter` `NexumDurability` installs for each run.

`RequestInput` (approvals, external results) and `wait_for_external_event` wait through it. Each
part is recorded in the session, so a replay neither makes a second token nor asks again:

- the wait is one row on the server, keyed by the session and the wait's place in the run (its
  name, the pending calls and its occurrence, like every key): the token is made there once, and
  the same key gives the same token to every replay;
- `ask(token)` runs once, inside a recorded unit of the session; an answer it gives resolves the
  wait (`by ask`), unless someone resolved it first;
- otherwise the run holds a long-poll on the wait (no CPU, no worker slot) and goes on the moment
  it is resolved; the timeout is counted by the server from when the wait was made, across
  restarts, and ends it with `ExternalEventError`, as does a resolution with a failure reason.

A run killed while it waits loses nothing: the wait stays on the server, whoever resolves it
meanwhile is recorded, and the same command with the same session replays up to the wait and goes
on at once with the recorded answer (or waits again). With `detach=True` a run does not hold its
process while it waits: it stops with `WaitDetached`, naming the token.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import JsonValue, TypeAdapter
from pydantic_ai.external_events import ExternalEventError, ExternalEventWaiter
from pydantic_ai.tools import DeferredToolRequests

from nexum_server.client import reconnecting
from nexum_server.errors import NexumError, RequestRejected
from nexum_server.models import PendingCall, Wait, WaitRequest, WaitStatus

# The integration's run state and unit runner; `durability` until the package holds them.
from ._durability import Run, run_unit
from ._keys import digest

ASKED_BY = "ask"
"""`resolved_by` of a wait that `ask` answered in place."""
CREATE_SECONDS = 60.0
"""How long making the wait may wait out a server that is away."""

_REQUESTS = TypeAdapter(DeferredToolRequests)


class WaitDetached(NexumError):
    """The run stopped instead of holding its process while it waits; the wait stays on the server."""

    code = "wait_detached"

    def __init__(self, wait: Wait) -> None:
        super().__init__(
            f"the run waits for an answer on token {wait.token} (session {wait.session_id}); "
            "resolve it, then run the same command with the same session to go on"
        )
        self.wait = wait


class NexumEventWaiter(ExternalEventWaiter):
    """Waits of one run in a session, recorded on the Nexum server (see the module docstring)."""

    def __init__(self, run: Run, *, on_wait: Callable[[Wait], None] | None = None, detach: bool = False) -> None:
        self.run = run
        self.on_wait = on_wait
        """Called when the run is about to wait for a person (not when `ask` answered, nor on a replay of an answer)."""
        self.detach = detach

    async def wait(
        self, name: str, *, ask: Callable[[str], Awaitable[JsonValue]], timeout: timedelta | None
    ) -> JsonValue:
        run = self.run
        request = wait_request(pending_requests(ask))
        described = request.model_dump(mode="json")
        occurrence = run.next_occurrence(digest("wait", name, described))
        key = digest("wait", run.identity.base, run.chain.last, name, described, occurrence)
        session_id = run.session.session_id
        seconds = None if timeout is None else timeout.total_seconds()
        wait = await reconnecting(
            lambda: run.client.create_wait(session_id, key, name, timeout_seconds=seconds, request=request),
            time.monotonic() + CREATE_SECONDS,
        )
        if wait.status is WaitStatus.WAITING:
            wait = await self._ask(wait, ask)
        if wait.status is WaitStatus.WAITING:
            await run.hold.settle()
            if self.on_wait is not None:
                self.on_wait(wait)
            if self.detach:
                raise WaitDetached(wait)
            wait = await run.client.wait_over(wait.token)
        return outcome(wait)

    async def _ask(self, wait: Wait, ask: Callable[[str], Awaitable[JsonValue]]) -> Wait:
        """Call `ask` once, as a recorded unit; resolve the wait with its answer if it gave one."""

        async def body() -> dict[str, Any]:
            return {"answer": await ask(wait.token)}

        recorded, _ = await run_unit(
            self.run, digest("ask", wait.key), {"unit": "ask", "wait": wait.name, "token": wait.token}, body
        )
        # Recorded before anything waits: a run stopped while it waits must not ask again.
        await self.run.hold.settle()
        answer = recorded.get("answer") if isinstance(recorded, dict) else None
        if answer is None:
            return wait
        try:
            return await self.run.client.resolve_wait(wait.token, payload=answer, by=ASKED_BY)
        except RequestRejected as e:
            if e.status != 409:
                raise
            return await self.run.client.get_wait(wait.token)  # resolved first by someone else: theirs stands


def outcome(wait: Wait) -> JsonValue:
    """The payload of a resolved wait; `ExternalEventError` for one that failed or timed out."""
    if wait.status is WaitStatus.RESOLVED:
        return wait.payload
    raise ExternalEventError(wait.error or f"the wait ended {wait.status.value}")


def pending_requests(ask: Callable[..., Any]) -> DeferredToolRequests | None:
    """The deferred tool calls a `RequestInput` wait asks about, or None for a direct wait.

    `ExternalEventWaiter.wait` is not given them: `RequestInput` binds them to the `ask` it passes
    (a `functools.partial` of its `_ask`, inside `wait_for_external_event`'s wrapper). A version
    that binds them otherwise only loses the calls from the wait's description and key.
    """
    for cell in getattr(ask, "__closure__", None) or ():
        inner = cell.cell_contents
        if isinstance(inner, functools.partial):
            for value in (*inner.args, *inner.keywords.values()):
                if isinstance(value, DeferredToolRequests):
                    return value
    return None


def wait_request(requests: DeferredToolRequests | None) -> WaitRequest:
    """What the server shows and lists of a wait: its pending calls with their arguments."""
    if requests is None:
        return WaitRequest()
    calls = [
        PendingCall(
            tool_call_id=call.tool_call_id,
            tool_name=call.tool_name,
            args=call.args_as_dict(),
            kind=requests.kind(call.tool_call_id),
        )
        for call in (*requests.approvals, *requests.calls)
    ]
    return WaitRequest(calls=calls, detail=_REQUESTS.dump_python(requests, mode="json"))
