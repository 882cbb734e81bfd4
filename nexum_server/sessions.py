"""Sessions: the JSON API behind the web page and `nexum sessions`, forgetting, retention, the page.

    GET    /v1/sessions               sessions, latest activity first, a page at a time
    GET    /v1/sessions/{id}          one session's counts
    DELETE /v1/sessions/{id}          forget: delete its executions (refused while any is live)
    GET    /v1/calls?session_id=ID    a session's executions, newest first, without their results
    GET    /ui                        the page; its files ship in the package (`ui/`), no build step

Work kept off the hot path: a cached start only counts its hit in memory (`HitCounter`), written
to the store in batches; with a retention period, terminal executions older than it are deleted
in small batches (`Retention`), so other requests get the store between batches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response

from .errors import NotFound
from .models import CallPage, ErrorBody, ForgetResult, SessionId, SessionPage, SessionSummary
from .params import SessionPath, Text
from .store.base import CallKey

if TYPE_CHECKING:
    from .service import QueueService

log = logging.getLogger("nexum.sessions")

HITS_FLUSH_SECONDS = 1.0
"""How often counted cached hits are written to the store."""
RETENTION_BATCH = 500
"""Executions deleted per store call: small enough that a hot-path request waits little behind one."""
RETENTION_SWEEP_SECONDS = 60.0
"""Longest pause between retention sweeps (shorter for a retention period of minutes)."""
PAGE_LIMIT = 50
UI_DIR = Path(__file__).with_name("ui")
UI_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Results are web pages chosen by a language model: even if some text were ever put into the page
# as markup, nothing inline or from elsewhere could run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "Nothing is stored under that session id"},
    409: {"model": ErrorBody, "description": "Forget refused: the session has pending or running calls"},
    422: {
        "model": ErrorBody,
        "description": "A parameter is missing or has a wrong type or value (code `invalid_request`, with `details`)",
    },
    503: {"model": ErrorBody, "description": "The database is busy or failing; try again"},
}

router = APIRouter()


class Retention:
    """Deletes terminal executions that ended more than `seconds` ago; `clock` gives the time."""

    def __init__(self, service: QueueService, seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.seconds = seconds
        self.clock = clock

    async def sweep(self) -> int:
        """Delete everything past the period, one batch per store call; the number deleted."""
        store = self.service.store
        cutoff = self.clock() - self.seconds
        total = 0
        while True:
            deleted = await store.run(store.delete_terminal_before, cutoff, RETENTION_BATCH)
            forgotten(self.service, deleted, "retention")
            total += len(deleted)
            if len(deleted) < RETENTION_BATCH:
                # Waits that ended before the cutoff go too; one still waiting never does.
                await store.run(store.delete_waits_before, cutoff, RETENTION_BATCH)
                return total

    async def run(self) -> None:
        interval = min(RETENTION_SWEEP_SECONDS, max(self.seconds / 4, 0.1))
        while True:
            try:
                deleted = await self.sweep()
                if deleted:
                    log.info("retention deleted %d execution(s) that ended over %g s ago", deleted, self.seconds)
            except Exception:  # a busy disk must not end retention for good
                log.exception("retention sweep failed; trying again in %.1f s", interval)
            await asyncio.sleep(interval)


def forgotten(service: QueueService, deleted: list[CallKey], reason: str) -> None:
    """Deleted executions leave the completed-results cache too: their calls run again."""
    for workflow_id, session_id, key in deleted:
        service.completed.discard(workflow_id, session_id, key)
    service.metrics.deleted.labels(reason).inc(len(deleted))


@asynccontextmanager
async def housekeeping(service: QueueService) -> AsyncIterator[None]:
    """Background tasks of one server: writing hit counts, and retention when configured."""

    async def write_hits() -> None:
        while True:
            await asyncio.sleep(HITS_FLUSH_SECONDS)
            try:
                await service.hits.flush(service.store)
            except Exception:
                log.exception("writing cached-hit counts failed; they are kept for the next try")

    tasks = [asyncio.create_task(write_hits())]
    retain = service.settings.retain_seconds
    if retain is not None:
        tasks.append(asyncio.create_task(Retention(service, retain).run()))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with suppress(Exception):
            await service.hits.flush(service.store)


def _service(request: Request) -> QueueService:
    return request.app.state.service


async def _fresh_counts(service: QueueService) -> None:
    """Hits counted but not yet written are written first, so a page shows what happened."""
    try:
        await service.hits.flush(service.store)
    except Exception:
        log.warning("cached-hit counts are not written yet; showing the stored ones", exc_info=True)


@router.get("/v1/sessions", response_model=SessionPage, tags=["sessions"], responses=ERRORS)
async def list_sessions(
    request: Request,
    contains: Text = None,
    cursor: Text = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_LIMIT,
) -> SessionPage:
    """Sessions by latest activity (a change or a cached hit), newest first, with their counts."""
    service = _service(request)
    await _fresh_counts(service)
    after = _decode_session_cursor(cursor) if cursor else None
    rows = await service.store.read(service.store.list_sessions, limit, after, contains)
    next_cursor = _encode_session_cursor(rows[-1]) if len(rows) == limit else None
    return SessionPage(sessions=rows, next_cursor=next_cursor, server_time=time.time())


@router.get("/v1/sessions/{session_id:path}", response_model=SessionSummary, tags=["sessions"], responses=ERRORS)
async def get_session(request: Request, session_id: SessionPath) -> SessionSummary:
    service = _service(request)
    await _fresh_counts(service)
    summary = await service.store.read(service.store.get_session, session_id)
    origin = await service.store.run(service.store.session_origin, session_id)
    if origin is not None:
        summary = summary.model_copy(update={"forked_from": origin[0], "fork_until": origin[1]})
    return summary


@router.delete("/v1/sessions/{session_id:path}", response_model=ForgetResult, tags=["sessions"], responses=ERRORS)
async def forget_session(request: Request, session_id: SessionPath) -> ForgetResult:
    """Delete every execution of the session: its calls run again the next time they are made.

    Refused (409, nothing deleted) while any of them is PENDING or RUNNING: the run in progress
    would lose results it is about to read. Cancel those or let them finish, then forget again.
    """
    service = _service(request)
    deleted = await service.store.run(service.store.forget_session, session_id, time.time())
    forgotten(service, deleted, "forget")
    log.info("session %r forgotten: %d execution(s) deleted", session_id, len(deleted))
    return ForgetResult(session_id=session_id, deleted=len(deleted))


@router.get("/v1/calls", response_model=CallPage, tags=["sessions"], responses=ERRORS)
async def list_calls(
    request: Request,
    session_id: Annotated[SessionId, Query()],
    cursor: Text = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> CallPage:
    """A session's executions, newest first: tool and arguments (or a summary of any other input),
    status, attempts, times, worker, error; the result is in `GET /v1/executions/{id}`."""
    service = _service(request)
    await _fresh_counts(service)
    before = _decode_call_cursor(cursor) if cursor else None
    calls, next_before = await service.store.read(service.store.list_calls, session_id, limit, before)
    return CallPage(calls=calls, next_cursor=None if next_before is None else str(next_before), server_time=time.time())


@router.get("/ui", include_in_schema=False)
async def page() -> Response:
    return _ui_file("index.html")


@router.get("/ui/{name}", include_in_schema=False)
async def page_file(name: str) -> Response:
    return _ui_file(name or "index.html")


def _ui_file(name: str) -> Response:
    if name not in UI_FILES:
        raise NotFound(f"no page file {name!r}; the page is at /ui")
    return FileResponse(UI_DIR / name, media_type=UI_FILES[name], headers=PAGE_HEADERS)


def _encode_session_cursor(last: SessionSummary) -> str:
    text = json.dumps([last.last_activity, last.session_id], ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_session_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, session_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(at), str(session_id)
    except (ValueError, TypeError, binascii.Error) as e:
        raise _bad_cursor(cursor) from e


def _decode_call_cursor(cursor: str) -> int:
    try:
        return int(cursor)
    except ValueError as e:
        raise _bad_cursor(cursor) from e


def _bad_cursor(cursor: str) -> RequestValidationError:
    # The same 422 as any other bad query parameter, so the documented answer holds.
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", "cursor"),
                "input": cursor,
                "msg": "cursor is not one this server gave; leave it out to start from the newest",
            }
        ]
    )
