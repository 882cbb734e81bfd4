"""The HTTP API: a thin layer that validates, calls the store off the loop, and wakes long-polls.

Errors are mapped to status codes in one place (`ERROR_STATUS`); no store or database error text
reaches a client as a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .cache import CompletedCache
from .config import Settings
from .errors import InvalidValue, LeaseLost, NexumError, NotFound, StoreUnavailable
from .guard import Guard
from .jsonbody import StrictJSONRoute
from .metrics import Metrics
from .models import (
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
    StartExecution,
    Status,
    TaskBatch,
)
from .queue import Notifier
from .store import SCHEMA_VERSION, Store, open_store

log = logging.getLogger("nexum.api")

ERROR_STATUS: dict[type[NexumError], int] = {NotFound: 404, LeaseLost: 409, InvalidValue: 422,
                                              StoreUnavailable: 503}
ERRORS = {
    400: {"model": ErrorBody, "description": "Body that cannot be decoded as JSON text at all"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "Unknown execution, task or workflow"},
    409: {"model": ErrorBody, "description": "Stale lease token, or the execution is already over"},
    413: {"model": ErrorBody, "description": "Body larger than the server accepts"},
    503: {"model": ErrorBody, "description": "The database is busy or failing; try again"},
}


class Server:
    """The state one app instance shares between requests."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.completed = CompletedCache()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop serving requests, for wake-ups from signal handlers."""

    def cap_wait(self, wait: float) -> float:
        return min(wait, self.settings.max_wait_seconds)

    async def await_terminal(self, execution: Execution, wait: float) -> Execution:
        """Hold until the execution is terminal or `wait` runs out; never polls the store."""
        if wait <= 0 or execution.status.terminal:
            return execution
        with self.metrics.held.labels("execution_wait").track_inprogress():
            future = self.notifier.waiter(execution.id)
            done = await self.notifier.wait_terminal(future, execution.id, self.cap_wait(wait))
        if done is not None:
            return done
        return await self.store.run(self.store.get_execution, execution.id)

    def expired(self, executions: list[Execution]) -> None:
        """Count and announce tasks whose lease ran out: requeued, or FAILED on the last attempt."""
        for execution in executions:
            self.metrics.lease_expiries.inc()
            if execution.status.terminal:
                self.metrics.failed.inc()
                self.notifier.terminal(execution)
        if any(not execution.status.terminal for execution in executions):
            self.notifier.tasks_ready()

    async def reap_leases(self) -> None:
        """Expire leases on time even when no worker polls, so an abandoned call ends FAILED.

        Sleeps until the earliest lease runs out; a lease granted meanwhile runs out later than
        `lease_seconds` from now, so waking at least that often misses none.
        """
        while True:
            delay = self.settings.lease_seconds
            try:
                expired, next_expiry = await self.store.run(self.store.expire_leases, time.time())
            except Exception:  # a busy or failing disk must not stop lease expiry for good
                log.exception("expiring leases failed; trying again in %.1f s", delay)
            else:
                self.expired(expired)
                if next_expiry is not None:
                    delay = min(delay, max(next_expiry - time.time(), 0.0) + 0.01)
            await asyncio.sleep(delay)

    def report(self, execution: Execution) -> None:
        """Count and announce the outcome of a worker's report."""
        if execution.status is Status.COMPLETED:
            self.metrics.completed.inc()
            self.completed.put(execution)
        elif execution.status is Status.FAILED:
            self.metrics.failed.inc()
        elif execution.status is Status.PENDING:
            self.metrics.retries.inc()
            self.notifier.tasks_ready()
        if execution.status.terminal:
            self.notifier.terminal(execution)


def _json(model: BaseModel, status: int = 200) -> Response:
    """Serialise with pydantic-core directly: the hot paths skip FastAPI's re-validation of the
    response (the model was built by the server itself); the route's `response_model` still
    documents it."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def create_app(settings: Settings, store: Store | None = None,
               on_ready: Callable[[], None] | None = None) -> Guard:
    """The ASGI app: the API behind the auth, size-limit and latency guard."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.store = store or await asyncio.to_thread(open_store, settings)
        server.loop = asyncio.get_running_loop()
        reaper = asyncio.create_task(server.reap_leases())
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            await asyncio.to_thread(server.store.shutdown)

    app = FastAPI(title="Nexum", version=__version__, lifespan=lifespan,
                  description="Durable, idempotent executions with a long-poll task queue.")
    app.router.route_class = StrictJSONRoute
    server = Server(settings, store)  # type: ignore[arg-type]
    app.state.server = server

    @app.exception_handler(NexumError)
    async def nexum_error(request: Request, exc: NexumError) -> JSONResponse:
        status = next((code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind)), 400)
        return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes, wrong methods and undecodable bodies answer in the same shape as our errors.
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        return Health(status="ok", version=__version__, schema_version=SCHEMA_VERSION)

    @app.get("/metrics", tags=["server"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        server.metrics.set_counts(await server.store.run(server.store.count_by_status))
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/workflows", response_model=RegisterResult, tags=["workflows"], responses=ERRORS)
    async def register_workflow(body: RegisterWorkflow) -> RegisterResult:
        outcome = await server.store.run(server.store.register_workflow, body, body.ir, time.time())
        return RegisterResult(workflow_id=body.workflow_id, version_hash=body.version_hash, outcome=outcome)

    @app.post("/v1/executions", response_model=Execution, status_code=201, tags=["executions"],
              responses={200: {"model": Execution, "description": "The existing execution (cached when COMPLETED)"},
                         **ERRORS})
    async def start_execution(body: StartExecution) -> Response:
        hit = server.completed.get(body.workflow_id, body.session_id, body.key)
        if hit is not None:
            server.metrics.cache_hits.inc()
            return _json(hit.model_copy(update={"cached": True}))
        outcome = await server.store.run(
            server.store.start_execution, body, body.session_id, body.key, body.input, time.time())
        execution = outcome.execution
        if outcome.created:
            server.metrics.started.inc()
            server.notifier.tasks_ready()
        elif execution.status is Status.COMPLETED:
            server.metrics.cache_hits.inc()
            server.completed.put(execution)
            execution = execution.model_copy(update={"cached": True})
        execution = await server.await_terminal(execution, body.wait)
        return _json(execution, 201 if outcome.created else 200)

    @app.get("/v1/executions/{execution_id}", response_model=Execution, tags=["executions"], responses=ERRORS)
    async def get_execution(execution_id: str,
                            wait: Annotated[float, Query(ge=0, le=3600)] = 0.0) -> Response:
        execution = await server.store.run(server.store.get_execution, execution_id)
        return _json(await server.await_terminal(execution, wait))

    @app.get("/v1/executions", response_model=ExecutionList, tags=["executions"], responses=ERRORS)
    async def list_executions(session_id: str | None = None, status: Status | None = None,
                              key: str | None = None,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                              id_prefix: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                              ) -> ExecutionList:
        rows = await server.store.run(server.store.list_executions, session_id, status, key, limit, id_prefix)
        return ExecutionList(executions=rows)

    @app.post("/v1/executions/{execution_id}/cancel", response_model=Execution, tags=["executions"],
              responses=ERRORS)
    async def cancel_execution(execution_id: str) -> Execution:
        execution = await server.store.run(server.store.cancel_execution, execution_id, time.time())
        if execution.status is Status.CANCELLED:
            server.metrics.cancelled.inc()
            server.notifier.terminal(execution)
        return execution

    @app.post("/v1/tasks/poll", response_model=TaskBatch, tags=["tasks"],
              responses={204: {"description": "No task became ready within the wait"}, **ERRORS})
    async def poll_tasks(body: PollTasks, request: Request) -> Response | TaskBatch:
        with server.metrics.held.labels("task_poll").track_inprogress():
            return await _poll(body, request)

    async def _poll(body: PollTasks, request: Request) -> Response | TaskBatch:
        deadline = time.monotonic() + server.cap_wait(body.wait)
        while True:
            # Registered before the claim reads the store, so a task started after that read wakes us.
            woken = server.notifier.poller()
            outcome = await server.store.run(server.store.claim, body.worker_id, body.workflows,
                                             body.max_tasks, server.settings.lease_seconds, time.time())
            server.expired(outcome.expired)
            if outcome.tasks:
                server.notifier.drop_poller(woken)
                server.metrics.claims.inc(len(outcome.tasks))
                return _json(TaskBatch(tasks=outcome.tasks))
            timeout = deadline - time.monotonic()
            if outcome.next_due_at is not None:
                timeout = min(timeout, max(outcome.next_due_at - time.time(), 0.0) + 0.001)
            if timeout <= 0 or not await server.notifier.wait_for_tasks(woken, timeout):
                if time.monotonic() >= deadline:
                    server.notifier.drop_poller(woken)
                    return Response(status_code=204)
            if server.notifier.closing:
                return Response(status_code=204)
            if await request.is_disconnected():
                # A worker that went away must not be leased a task it will never run.
                return Response(status_code=204)

    @app.post("/v1/tasks/{task_id}/heartbeat", response_model=Lease, tags=["tasks"], responses=ERRORS)
    async def heartbeat(task_id: str, body: LeaseBody) -> Lease:
        expires = await server.store.run(server.store.heartbeat, task_id, body.lease_token,
                                         server.settings.lease_seconds, time.time())
        return Lease(task_id=task_id, lease_token=body.lease_token, lease_expires_at=expires)

    @app.post("/v1/tasks/{task_id}/complete", response_model=Execution, tags=["tasks"], responses=ERRORS)
    async def complete_task(task_id: str, body: CompleteTask) -> Response:
        execution = await _report(server.store.complete, task_id, body.lease_token, body.output, time.time())
        server.report(execution)
        return _json(execution)

    @app.post("/v1/tasks/{task_id}/fail", response_model=Execution, tags=["tasks"], responses=ERRORS)
    async def fail_task(task_id: str, body: FailTask) -> Execution:
        execution = await _report(server.store.fail, task_id, body.lease_token, body.error, body.retryable,
                                  time.time())
        server.report(execution)
        return execution

    @app.post("/v1/tasks/{task_id}/release", response_model=Execution, tags=["tasks"], responses=ERRORS)
    async def release_task(task_id: str, body: LeaseBody) -> Execution:
        execution = await _report(server.store.release, task_id, body.lease_token, time.time())
        server.notifier.tasks_ready()
        return execution

    async def _report(method, *args):  # type: ignore[no-untyped-def]
        try:
            return await server.store.run(method, *args)
        except LeaseLost:
            server.metrics.stale_reports.inc()
            raise

    return Guard(app, token=settings.token, max_body_bytes=settings.max_body_bytes, metrics=server.metrics)
