"""The HTTP API: routes only. Each validates its body, asks the queue service (`service.py`), and
serialises the answer.

Errors are mapped to status codes in one place (`ERROR_STATUS`); no store or database error text
reaches a client as a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, journal_api, sessions, shape, waits
from .config import Settings
from .errors import InvalidValue, LeaseLost, NexumError, NotFound, SessionBusy, StoreUnavailable, WaitOver
from .guard import Guard
from .hotroutes import HotRoutes
from .jsonbody import StrictJSONRoute
from .models import (
    NO_NUL,
    CompleteTask,
    ErrorBody,
    Execution,
    ExecutionList,
    FailTask,
    Health,
    Lease,
    LeaseBody,
    PollTasks,
    RegisterResult,
    RegisterWorkflow,
    ServedHits,
    SessionLease,
    SessionRunInfo,
    StartExecution,
    Status,
    TakeSession,
    TaskBatch,
    UnitsWritten,
    WriteUnits,
)
from .params import Id, RunToken, SessionFilter, SessionPath, Text
from .service import QueueService
from .store import SCHEMA_VERSION, Store, open_store

ERROR_STATUS: dict[type[NexumError], int] = {
    NotFound: 404,
    LeaseLost: 409,
    SessionBusy: 409,
    WaitOver: 409,
    InvalidValue: 422,
    StoreUnavailable: 503,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Body that cannot be decoded as JSON text at all"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "Unknown execution, task or workflow"},
    409: {
        "model": ErrorBody,
        "description": "Stale lease token, the execution is already over, or (code "
        "`session_taken_over`) a newer run took the session",
    },
    413: {"model": ErrorBody, "description": "Body larger than the server accepts"},
    422: {
        "model": ErrorBody,
        "description": "A field is missing or has a wrong type or value (code "
        "`invalid_request`, with `details`), or a value cannot be stored",
    },
    503: {"model": ErrorBody, "description": "The database is busy or failing; try again"},
}


def _json(model: BaseModel, status: int = 200) -> Response:
    """Serialise with pydantic-core directly: the hot paths skip FastAPI's re-validation of the
    response (the model was built by the server itself); the route's `response_model` still
    documents it."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def create_app(settings: Settings, store: Store | None = None, on_ready: Callable[[], None] | None = None) -> Guard:
    """The ASGI app: the routes behind the auth, size-limit and latency guard."""
    service = QueueService(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start(open_store)
        if on_ready is not None:
            on_ready()
        try:
            async with sessions.housekeeping(service):
                yield
        finally:
            await service.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from CDNs (blank offline, and against
    # the page's no-CDN policy). /openapi.json is the contract; any OpenAPI viewer reads it.
    app = FastAPI(
        title="Nexum",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Durable, idempotent executions with a long-poll task queue.",
    )
    app.state.service = service
    app.state.waits = waits.Waits(service)
    app.include_router(router)
    app.include_router(journal_api.router)  # before sessions.router: its {session_id:path} takes any suffix
    app.include_router(waits.router)
    app.include_router(sessions.router)
    app.add_exception_handler(NexumError, nexum_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, shape.validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, shape.http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, shape.internal_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = shape.document_errors(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi
    return Guard(
        HotRoutes(app, service, error_answer),
        token=settings.token,
        max_body_bytes=settings.max_body_bytes,
        metrics=service.metrics,
    )


async def _service(request: Request) -> QueueService:
    # async: FastAPI would run a plain function in its thread pool, on every request.
    return request.app.state.service


Service = Annotated[QueueService, Depends(_service)]
router = APIRouter(route_class=StrictJSONRoute)


def error_answer(exc: NexumError) -> tuple[int, bytes]:
    """The status and body of an error the service raised: the one mapping for every route."""
    status = next((code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind)), 400)
    return status, shape.error_json(exc.code, str(exc))


async def nexum_error(request: Request, exc: NexumError) -> Response:
    status, body = error_answer(exc)
    return Response(body, status_code=status, media_type="application/json")


@router.get("/health", response_model=Health, tags=["server"])
async def health() -> Health:
    return Health(status="ok", version=__version__, schema_version=SCHEMA_VERSION)


@router.get(
    "/metrics",
    tags=["server"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(service: Service) -> Response:
    service.metrics.set_counts(await service.counts())
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/v1/workflows", response_model=RegisterResult, tags=["workflows"], responses=ERRORS)
async def register_workflow(body: RegisterWorkflow, service: Service) -> RegisterResult:
    outcome = await service.register(body)
    return RegisterResult(workflow_id=body.workflow_id, version_hash=body.version_hash, outcome=outcome)


@router.post(
    "/v1/executions",
    response_model=Execution,
    status_code=201,
    tags=["executions"],
    responses={200: {"model": Execution, "description": "The existing execution (cached when COMPLETED)"}, **ERRORS},
)
async def start_execution(body: StartExecution, service: Service) -> Response:
    execution, created = await service.start_execution(body)
    return _json(execution, 201 if created else 200)


@router.get("/v1/executions/{execution_id}", response_model=Execution, tags=["executions"], responses=ERRORS)
async def get_execution(
    execution_id: Id, service: Service, wait: Annotated[float, Query(ge=0, le=3600)] = 0.0
) -> Response:
    return _json(await service.get_execution(execution_id, wait))


@router.get("/v1/executions", response_model=ExecutionList, tags=["executions"], responses=ERRORS)
async def list_executions(
    service: Service,
    session_id: SessionFilter = None,
    status: Status | None = None,
    key: Text = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    id_prefix: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
) -> ExecutionList:
    return ExecutionList(executions=await service.list_executions(session_id, status, key, limit, id_prefix))


@router.post("/v1/executions/{execution_id}/cancel", response_model=Execution, tags=["executions"], responses=ERRORS)
async def cancel_execution(execution_id: Id, service: Service) -> Execution:
    return await service.cancel(execution_id)


@router.post(
    "/v1/tasks/poll",
    response_model=TaskBatch,
    tags=["tasks"],
    responses={204: {"description": "No task became ready within the wait"}, **ERRORS},
)
async def poll_tasks(body: PollTasks, request: Request, service: Service) -> Response:
    tasks = await service.poll(body, request.is_disconnected)
    return _json(TaskBatch(tasks=tasks)) if tasks else Response(status_code=204)


@router.post("/v1/tasks/{task_id}/heartbeat", response_model=Lease, tags=["tasks"], responses=ERRORS)
async def heartbeat(task_id: Id, body: LeaseBody, service: Service) -> Lease:
    expires = await service.heartbeat(task_id, body.lease_token)
    return Lease(task_id=task_id, lease_token=body.lease_token, lease_expires_at=expires)


@router.post("/v1/tasks/{task_id}/complete", response_model=Execution, tags=["tasks"], responses=ERRORS)
async def complete_task(task_id: Id, body: CompleteTask, service: Service) -> Response:
    return _json(await service.complete(task_id, body.lease_token, body.output))


@router.post("/v1/tasks/{task_id}/fail", response_model=Execution, tags=["tasks"], responses=ERRORS)
async def fail_task(task_id: Id, body: FailTask, service: Service) -> Execution:
    return await service.fail(task_id, body.lease_token, body.error, body.retryable)


@router.post("/v1/tasks/{task_id}/release", response_model=Execution, tags=["tasks"], responses=ERRORS)
async def release_task(task_id: Id, body: LeaseBody, service: Service) -> Execution:
    return await service.release(task_id, body.lease_token)


@router.post("/v1/sessions/{session_id}/runs", response_model=SessionRunInfo, tags=["sessions"], responses=ERRORS)
async def take_session(session_id: SessionPath, body: TakeSession, service: Service) -> SessionRunInfo:
    """Become the session's one live run, at once: a previous run is fenced (its in-process executions
    are re-claimed by this run, its reports refused) whether it is alive or not."""
    return await service.take_session(session_id, body.holder, body.journal)


@router.post(
    "/v1/sessions/{session_id}/runs/{run_token}/units",
    response_model=UnitsWritten,
    tags=["sessions"],
    responses=ERRORS,
)
async def write_units(session_id: SessionPath, run_token: RunToken, body: WriteUnits, service: Service) -> UnitsWritten:
    """For a run that holds its session alone (it took it from no live run): completions of units it
    claimed before, then its new units in the order they began, each started, claimed by the run and,
    when it has run already, completed; one transaction, all or nothing. 409 `session_taken_over`
    once another run took the session: nothing is recorded."""
    return await service.write_units(session_id, run_token, body)


@router.post(
    "/v1/sessions/{session_id}/runs/{run_token}/heartbeat",
    response_model=SessionLease,
    tags=["sessions"],
    responses=ERRORS,
)
async def renew_session(session_id: SessionPath, run_token: RunToken, service: Service) -> SessionLease:
    return SessionLease(session_id=session_id, lease_expires_at=await service.renew_session(session_id, run_token))


@router.get(
    "/v1/sessions/{session_id}/runs/{run_token}/presence",
    status_code=204,
    tags=["sessions"],
    responses=ERRORS,
    response_class=Response,
)
async def presence(session_id: SessionPath, run_token: RunToken, request: Request, service: Service) -> Response:
    """Held open by a live run for as long as it runs. When the connection closes (the agent's process
    ended or was killed) the run is gone: what it held is claimable by the session's next run at once."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    await service.hold_presence(session_id, run_token, disconnected())
    return Response(status_code=204)


@router.delete("/v1/sessions/{session_id}/runs/{run_token}", status_code=204, tags=["sessions"], responses=ERRORS)
async def end_session_run(
    session_id: SessionPath, run_token: RunToken, service: Service, body: ServedHits | None = None
) -> Response:
    """The run ended; with a body, the executions it served from the journal count as cached hits."""
    await service.end_session_run(session_id, run_token, body.execution_ids if body is not None else None)
    return Response(status_code=204)
