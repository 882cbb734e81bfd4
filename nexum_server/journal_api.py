"""The journal over HTTP: a session's units in one read, what a model request was sent, forks,
export and import.

    GET  /v1/sessions/{id}/journal     every unit in recorded order, with inputs and results: a resuming
                                       run serves what was recorded from memory, after one request
    GET  /v1/executions/{id}/sent      the messages a model request was sent, in order, new ones marked
    POST /v1/sessions/{id}/fork        a new session holding copies of this one's completed units
    GET  /v1/sessions/{id}/export      the session as a file (`SessionExport`, see the README)
    POST /v1/sessions/{id}/import      such a file, loaded as session {id}

Routes here are declared before `sessions.py`'s, whose `{session_id:path}` would take these paths.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .errors import InvalidValue, NotFound
from .journal import canonical, message_hash, resolve_all
from .jsonbody import StrictJSONRoute
from .models import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ErrorBody,
    ExportedUnit,
    ExportedWorkflow,
    ForkResult,
    ForkSession,
    Journal,
    JournalUnit,
    SentMessage,
    SentView,
    SessionExport,
    Status,
)
from .store.base import CopiedUnit

if TYPE_CHECKING:
    from .service import QueueService

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Body that cannot be decoded as JSON text at all"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "Nothing is stored under that session or execution id"},
    409: {"model": ErrorBody, "description": "The new session already has stored calls"},
    422: {
        "model": ErrorBody,
        "description": "A message whose hash is not its body's, or one a unit names that the file does not hold",
    },
    413: {"model": ErrorBody, "description": "Body larger than the server accepts"},
    503: {"model": ErrorBody, "description": "The database is busy or failing; try again"},
}

router = APIRouter(route_class=StrictJSONRoute)


def _service(request: Request) -> QueueService:
    return request.app.state.service


@router.get("/v1/sessions/{session_id:path}/journal", response_model=Journal, tags=["journal"], responses=ERRORS)
async def journal(request: Request, session_id: str) -> Response:
    """The session's units in recorded order (an empty list for a session with nothing stored)."""
    answer = await _service(request).journal(session_id)
    return Response(answer.model_dump_json(), media_type="application/json")


@router.get("/v1/executions/{execution_id}/sent", response_model=SentView, tags=["journal"], responses=ERRORS)
async def sent(request: Request, execution_id: str) -> SentView:
    """What a model request was sent, in order; `new` marks what the session's previous one was not sent.
    An execution with no list of messages (a tool call) answers an empty list."""
    store = _service(request).store
    execution = await store.run(store.get_execution, execution_id)
    rows = await store.run(store.session_sent, execution.session_id)
    lists = resolve_all(rows)
    if execution_id not in lists:
        return SentView(execution_id=execution_id, messages=[])
    order = [row[0] for row in rows]
    at = order.index(execution_id)
    previous = order[at - 1] if at else None
    hashes, complete = lists[execution_id]
    before = set(lists[previous][0]) if previous else set()
    bodies = await store.run(store.messages, sorted(set(hashes)))
    return SentView(
        execution_id=execution_id,
        previous_id=previous,
        complete=complete,
        messages=[SentMessage(hash=h, body=bodies.get(h), new=h not in before) for h in hashes],
    )


@router.post(
    "/v1/sessions/{session_id:path}/fork",
    response_model=ForkResult,
    status_code=201,
    tags=["journal"],
    responses=ERRORS,
)
async def fork(request: Request, session_id: str, body: ForkSession) -> ForkResult:
    """Make `new_session_id` hold copies of this session's completed units, in order (with `until`:
    those among its first `until` steps). The new session records where it came from; with `until`
    its runs serve the copied units in order, whatever their keys (`fork_until` in the session run)."""
    store = _service(request).store
    _, units = await store.run(store.journal, session_id)
    if not units:
        raise NotFound(f"no session {session_id!r}: nothing is stored under that id")
    chosen = [u for u in (units if body.until is None else units[: body.until]) if u.status is Status.COMPLETED]
    lists = await _lists(request, session_id)
    copies = [_copy(u, lists.get(u.id)) for u in chosen]
    until = None if body.until is None else len(copies)
    copied = await store.run(store.copy_units, body.new_session_id, copies, [], [], (session_id, until), time.time())
    return ForkResult(session_id=body.new_session_id, forked_from=session_id, fork_until=until, copied=copied)


@router.get("/v1/sessions/{session_id:path}/export", response_model=SessionExport, tags=["journal"], responses=ERRORS)
async def export(request: Request, session_id: str) -> Response:
    store = _service(request).store
    origin, units = await store.run(store.journal, session_id)
    if not units:
        raise NotFound(f"no session {session_id!r}: nothing is stored under that id")
    lists = await _lists(request, session_id)
    done = [u for u in units if u.status is Status.COMPLETED]
    hashes = sorted({h for u in done for h in lists.get(u.id, ())})
    bodies = await store.run(store.messages, hashes)
    workflows = await store.run(store.workflows_of, session_id)
    forked_from, fork_until = origin or (None, None)
    document = SessionExport(
        format=EXPORT_FORMAT,
        version=EXPORT_VERSION,
        session_id=session_id,
        exported_at=time.time(),
        forked_from=forked_from,
        fork_until=fork_until,
        workflows=[ExportedWorkflow(workflow_id=w, version_hash=v, ir=ir) for w, v, ir in workflows],
        units=[
            ExportedUnit(
                workflow_id=u.workflow_id,
                version_hash=u.version_hash,
                key=u.key,
                input=u.input,
                result=u.result,
                sent=lists.get(u.id),
            )
            for u in done
        ],
        messages=bodies,
    )
    return Response(document.model_dump_json(), media_type="application/json")


@router.post(
    "/v1/sessions/{session_id:path}/import",
    response_model=ForkResult,
    status_code=201,
    tags=["journal"],
    responses=ERRORS,
)
async def import_session(request: Request, session_id: str, body: SessionExport) -> ForkResult:
    """Load an exported session as `session_id` (refused when anything is stored under it)."""
    store = _service(request).store
    bodies = []
    for given, message in body.messages.items():
        if message_hash(message) != given:
            raise InvalidValue(f"messages[{given!r}]: the key is not the sha256 of the body's canonical JSON")
        bodies.append((given, canonical(message)))
    for step, unit in enumerate(body.units, 1):
        missing = [h for h in unit.sent or () if h not in body.messages]
        if missing:
            raise InvalidValue(f"units[{step - 1}] names message {missing[0]}, which the file does not hold")
    copies = [CopiedUnit(u.workflow_id, u.version_hash, u.key, u.input, u.result, u.sent) for u in body.units]
    workflows = [(w.workflow_id, w.version_hash, w.ir) for w in body.workflows]
    origin = (body.forked_from, body.fork_until) if body.forked_from else None
    copied = await store.run(store.copy_units, session_id, copies, bodies, workflows, origin, time.time())
    return ForkResult(session_id=session_id, forked_from=body.forked_from, fork_until=body.fork_until, copied=copied)


async def _lists(request: Request, session_id: str) -> dict[str, list[str]]:
    """Every whole list of messages of the session, by execution id (incomplete ones are left out)."""
    store = _service(request).store
    rows = await store.run(store.session_sent, session_id)
    return {row_id: hashes for row_id, (hashes, whole) in resolve_all(rows).items() if whole}


def _copy(unit: JournalUnit, sent: list[str] | None) -> CopiedUnit:
    return CopiedUnit(unit.workflow_id, unit.version_hash, unit.key, unit.input, unit.result, sent)
