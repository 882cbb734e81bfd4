"""Waits: an agent run waiting for an answer from outside (an approval, a result), and resolving it.

    POST /v1/sessions/{id}/waits   the waiting run makes its wait (idempotent on the session and key)
    GET  /v1/events/{token}        the wait; `?wait=S` holds the answer until it is resolved
    POST /v1/events/{token}        resolve it: a payload, a failure reason, or approve/deny
    GET  /v1/events                what waits (`?status=waiting`), newest first

A wait lives in the store, not in the process that waits: the agent may be killed, restarted or
not running at all while a person resolves it; the first resolution is recorded and every later
one gets 409. A held `GET` is woken by the notifier (and, with PostgreSQL, by a resolution on
another server through `LISTEN`/`NOTIFY`); a wait with a timeout ends TIMED_OUT on the server's
clock, counted from when it was made.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .errors import InvalidValue
from .models import CreateWait, ErrorBody, ResolveWait, Wait, WaitList, WaitStatus
from .service import WAIT_PREFIX

if TYPE_CHECKING:
    from .service import QueueService

TOKEN_HOLDER = "token holder"
"""Who resolved a wait when the resolver gave no name: whoever holds the token (and the server's)."""
LIST_LIMIT = 100
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Body that cannot be decoded as JSON text at all"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "No wait has this token"},
    409: {
        "model": ErrorBody,
        "description": "The wait was resolved already, or timed out: the first resolution stands",
    },
    422: {"model": ErrorBody, "description": "A decision that does not fit the pending calls"},
    413: {"model": ErrorBody, "description": "Body larger than the server accepts"},
    503: {"model": ErrorBody, "description": "The database is busy or failing; try again"},
}

router = APIRouter()


def notifier_id(token: str) -> str:
    """A wait's name among the notifier's waited ids, apart from execution ids."""
    return WAIT_PREFIX + token


class Waits:
    """What the routes ask of waits, on the queue service's store and notifier."""

    def __init__(self, service: QueueService) -> None:
        self.service = service

    @property
    def store(self) -> Any:
        return self.service.store

    async def create(self, session_id: str, body: CreateWait) -> Wait:
        return await self.store.run(self.store.create_wait, session_id, body, time.time())

    async def get(self, token: str, wait: float = 0.0) -> Wait:
        """The wait, held up to `wait` seconds (and no longer than its timeout) until it is over."""
        notifier = self.service.notifier
        name = notifier_id(token)
        # Registered before the read: a resolution committed after it always wakes this future.
        future = notifier.waiter(name) if wait > 0 else None
        hold = 0.0
        try:
            current: Wait = await self.store.run(self.store.get_wait, token, time.time())
            if future is not None and current.status is WaitStatus.WAITING:
                hold = self.service.cap_wait(wait)
                if current.expires_at is not None:
                    hold = min(hold, max(current.expires_at - time.time(), 0.0) + 0.001)
        finally:
            if future is not None and not hold:
                notifier.drop_waiter(name, future)
        if not hold:
            return current
        with self.service.metrics.held.labels("event_wait").track_inprogress():
            await notifier.wait_terminal(future, name, hold)  # type: ignore[arg-type]
        return await self.store.run(self.store.get_wait, token, time.time())

    async def resolve(self, token: str, body: ResolveWait) -> Wait:
        by = body.by or TOKEN_HOLDER
        if body.decision is not None:
            current = await self.store.run(self.store.get_wait, token, time.time())
            status, payload, error = decision_outcome(current, body, by)
        elif "error" in body.model_fields_set:
            status, payload, error = WaitStatus.FAILED, None, body.error
        else:
            status, payload, error = WaitStatus.RESOLVED, body.payload, None
        done = await self.store.run(self.store.resolve_wait, token, status, payload, error, by, time.time())
        self.over(token)
        return done

    async def list(self, status: WaitStatus | None, session_id: str | None, limit: int) -> list[Wait]:
        return await self.store.run(self.store.list_waits, status, session_id, limit, time.time())

    def over(self, token: str) -> None:
        """The wait is over (here or on another server): its holds read it now."""
        self.service.notifier.ended_elsewhere(notifier_id(token))


def decision_outcome(wait: Wait, body: ResolveWait, by: str) -> tuple[WaitStatus, Any, str | None]:
    """Approve or deny a wait's pending approvals, as the JSON form of Pydantic AI's `DeferredToolResults`.

    Approving names the calls approved (`calls`, default all); the others are denied, so the model
    hears of each. Denying a wait that asks about no approvals fails it with the reason instead.
    """
    approvals = [call.tool_call_id for call in wait.request.calls if call.kind == "approval"]
    others = [call.tool_call_id for call in wait.request.calls if call.kind != "approval"]
    if body.decision == "deny" and not approvals:
        return WaitStatus.FAILED, None, body.reason
    if others:
        raise InvalidValue(
            f"this wait also needs results for {', '.join(others)}, not only approvals; "
            "resolve it with a JSON payload (`nexum resolve TOKEN --json ...`)"
        )
    if not approvals:
        raise InvalidValue("this wait asks about no tool calls: resolve it with a JSON payload")
    chosen = set(approvals if body.decision == "deny" or body.calls is None else body.calls)
    if unknown := chosen - set(approvals):
        raise InvalidValue(f"no pending call has id {', '.join(sorted(unknown))}; pending: {', '.join(approvals)}")
    denial = {"kind": "tool-denied", "message": body.reason or f"Not approved by {by}."}
    if body.decision == "deny":
        decided: dict[str, Any] = dict.fromkeys(approvals, denial)
    else:
        decided = {call_id: True if call_id in chosen else denial for call_id in approvals}
    return WaitStatus.RESOLVED, {"approvals": decided, "answered_by": dict.fromkeys(approvals, by)}, None


def _waits(request: Request) -> Waits:
    return request.app.state.waits


def _json(wait: Wait, status: int = 200) -> Response:
    return Response(wait.model_dump_json(), status_code=status, media_type="application/json")


@router.post(
    "/v1/sessions/{session_id:path}/waits",
    response_model=Wait,
    status_code=201,
    tags=["waits"],
    responses={200: {"model": Wait, "description": "The wait made before for this key"}, **ERRORS},
)
async def create_wait(request: Request, session_id: str, body: CreateWait) -> Response:
    """Make the session's wait for `key`, with a new token, or return the one made before."""
    wait = await _waits(request).create(session_id, body)
    return _json(wait, 201 if wait.created else 200)


@router.get("/v1/events/{token}", response_model=Wait, tags=["waits"], responses=ERRORS)
async def get_wait(request: Request, token: str, wait: Annotated[float, Query(ge=0, le=3600)] = 0.0) -> Response:
    return _json(await _waits(request).get(token, wait))


@router.post("/v1/events/{token}", response_model=Wait, tags=["waits"], responses=ERRORS)
async def resolve_wait(request: Request, token: str, body: ResolveWait) -> Response:
    """Resolve the wait with a payload, a failure reason (`error`) or a decision; the first one wins."""
    return _json(await _waits(request).resolve(token, body))


@router.get("/v1/events", response_model=WaitList, tags=["waits"], responses=ERRORS)
async def list_waits(
    request: Request,
    status: Annotated[str | None, Query(pattern="(?i)^(waiting|resolved|failed|timed_out)$")] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = LIST_LIMIT,
) -> WaitList:
    """Waits, newest first, each with its session, its pending calls and since when it waits."""
    chosen = WaitStatus(status.upper()) if status else None
    return WaitList(waits=await _waits(request).list(chosen, session_id, limit), server_time=time.time())
