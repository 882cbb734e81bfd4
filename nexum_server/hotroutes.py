"""The hot routes (start, poll, complete, heartbeat; a run's take, unit writes and end), answered
without FastAPI's request layers.

Every tool call passes through them, so each costs what a bare request costs plus the work itself:
the body is decoded straight into its model from the raw bytes (`model_validate_json`), and the
answer is written with pydantic-core, skipping routing, dependency solving and response
re-validation. The FastAPI routes in `api.py` stay the contract: they are in `/openapi.json`, and
any request the fast path is not sure of (a body that fails validation, or might contain what
`jsonbody.loads_strict` refuses, or is not `application/json`) is handed to them unchanged, so
every error keeps the documented shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .errors import NexumError
from .ids import SESSION_ID_PATTERN
from .jsonbody import MAX_JSON_DEPTH
from .models import (
    CompleteTask,
    Lease,
    LeaseBody,
    PollTasks,
    ServedHits,
    StartExecution,
    TakeSession,
    TaskBatch,
    WriteUnits,
)
from .service import QueueService

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ErrorAnswer = Callable[[NexumError], tuple[int, bytes]]

# Cheap byte tests for what the strict decoder refuses; a false alarm only costs the slow path.
_SUSPECT = (
    b"NaN",
    b"Infinity",
    b"\\ud8",
    b"\\ud9",
    b"\\uda",
    b"\\udb",
    b"\\udc",
    b"\\udd",
    b"\\ude",
    b"\\udf",
    b"\\uD8",
    b"\\uD9",
    b"\\uDA",
    b"\\uDB",
    b"\\uDC",
    b"\\uDD",
    b"\\uDE",
    b"\\uDF",
)
_JSON = (b"application/json", b"application/json; charset=utf-8")


class _Route:
    """What the latency metric reads from `scope["route"]`: the route's path template."""

    def __init__(self, path: str) -> None:
        self.path = path


START = _Route("/v1/executions")
POLL = _Route("/v1/tasks/poll")
COMPLETE = _Route("/v1/tasks/{task_id}/complete")
HEARTBEAT = _Route("/v1/tasks/{task_id}/heartbeat")
UNITS = _Route("/v1/sessions/{session_id}/runs/{run_token}/units")
TAKE = _Route("/v1/sessions/{session_id}/runs")
END = _Route("/v1/sessions/{session_id}/runs/{run_token}")
_NO_BODY = object()
"""An end with no body: the run served nothing from the journal."""


class HotRoutes:
    def __init__(self, app: Any, service: QueueService, error_answer: ErrorAnswer) -> None:
        self.app = app
        self.service = service
        self.error_answer = error_answer

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        route = _match(scope) if scope["type"] == "http" and scope["method"] in ("POST", "DELETE") else None
        if route is None:
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        model = _NO_BODY if route is END and not body else _decode(route, scope, body)
        if model is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = route
        try:
            status, answer = await self._answer(route, scope, model, receive)
        except NexumError as e:
            status, answer = self.error_answer(e)
        await _send(send, status, answer)

    async def _answer(self, route: _Route, scope: Scope, model: Any, receive: Any) -> tuple[int, bytes]:
        if route is START:
            execution, created = await self.service.start_execution(model)
            return (201 if created else 200), execution.model_dump_json().encode()
        if route is POLL:
            tasks = await self.service.poll(model, Request(scope, receive).is_disconnected)
            return (200, TaskBatch(tasks=tasks).model_dump_json().encode()) if tasks else (204, b"")
        if route is UNITS:
            _, _, _, session_id, _, run_token, _ = scope["path"].split("/")
            return 200, (await self.service.write_units(session_id, run_token, model)).model_dump_json().encode()
        if route is TAKE:
            session_id = scope["path"].split("/")[3]
            run = await self.service.take_session(session_id, model.holder, model.journal)
            return 200, run.model_dump_json().encode()
        if route is END:
            _, _, _, session_id, _, run_token = scope["path"].split("/")
            hits = None if model is _NO_BODY else model.execution_ids
            await self.service.end_session_run(session_id, run_token, hits)
            return 204, b""
        task_id = scope["path"].split("/")[3]
        if route is COMPLETE:
            return 200, (
                await self.service.complete(task_id, model.lease_token, model.output)
            ).model_dump_json().encode()
        expires = await self.service.heartbeat(task_id, model.lease_token)
        return 200, Lease(
            task_id=task_id, lease_token=model.lease_token, lease_expires_at=expires
        ).model_dump_json().encode()


def _match(scope: Scope) -> _Route | None:
    path: str = scope["path"]
    if "\x00" in path:
        return None  # the routes refuse it, naming the parameter
    if scope["method"] == "DELETE":
        return END if _in_session(path.split("/"), 6) else None
    if path == "/v1/executions":
        return START
    if path == "/v1/tasks/poll":
        return POLL
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "v1" and parts[2] == "tasks" and parts[3]:
        return COMPLETE if parts[4] == "complete" else HEARTBEAT if parts[4] == "heartbeat" else None
    if _in_session(parts, 7) and parts[6] == "units":
        return UNITS
    if len(parts) == 5 and parts[1:3] == ["v1", "sessions"] and parts[4] == "runs":
        return TAKE if SESSION_ID_PATTERN.fullmatch(parts[3]) else None
    return None


def _in_session(parts: list[str], length: int) -> bool:
    """`/v1/sessions/{session_id}/runs/{run_token}...` in `length` parts, with an id and a token the
    routes take: one they would refuse goes there, to be named."""
    return (
        len(parts) == length
        and parts[1:3] == ["v1", "sessions"]
        and parts[4] == "runs"
        and SESSION_ID_PATTERN.fullmatch(parts[3]) is not None
        and 0 < len(parts[5]) <= 200
    )


_MODELS: dict[int, type[BaseModel]] = {
    id(START): StartExecution,
    id(POLL): PollTasks,
    id(COMPLETE): CompleteTask,
    id(HEARTBEAT): LeaseBody,
    id(UNITS): WriteUnits,
    id(TAKE): TakeSession,
    id(END): ServedHits,
}


def _decode(route: _Route, scope: Scope, body: bytes) -> Any:
    """The body as the route's model, or None when the slow path must decide."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
    if content_type not in _JSON or any(suspect in body for suspect in _SUSPECT):
        return None
    # Fewer brackets than the limit cannot nest deeper; a start carrying messages has many, and
    # its decoded values are measured instead, so it stays on the fast path.
    shallow = body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH
    if not shallow and route is not START and route is not UNITS:
        return None
    try:
        model = _MODELS[id(route)].model_validate_json(body)
    except ValidationError:
        return None
    # Not shallow: a start or a run's write (the check above), whose values are measured.
    if not shallow and isinstance(model, StartExecution):
        if _deeper_than(MAX_JSON_DEPTH - 3, model.input, *(m.body for m in model.messages or ())):
            return None
    elif not shallow and isinstance(model, WriteUnits):
        values = [r.output for r in model.finished] + [v for u in model.units for v in (u.input, u.output)]
        bodies = [m.body for u in model.units for m in u.messages or ()]
        if _deeper_than(MAX_JSON_DEPTH - 3, *values) or _deeper_than(MAX_JSON_DEPTH - 5, *bodies):
            return None
    return model


def _deeper_than(limit: int, *values: Any) -> bool:
    """Whether any value nests arrays and objects deeper than `limit` (the body's own levels aside)."""
    stack = [(value, 0) for value in values]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


async def _read(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
