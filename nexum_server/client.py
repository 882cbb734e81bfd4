"""An async client of the Nexum HTTP API, shared by the CLI, `submit_task.py` and `worker.py`.

One `httpx2.AsyncClient` with keep-alive per `NexumClient`; create one per process and pass it in.
Long-polls are held by the server, so nothing here sleeps while waiting for a result or a task; only
a server that cannot be reached (a restart) is waited out, with capped backoff (`reconnecting`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2

from .config import ClientSettings
from .errors import RequestRejected, ServerUnavailable, WaitTimeout
from .models import Execution, Lease, SessionRunInfo, Status, Task, WorkflowRef

HOLD_SECONDS = 30.0
"""How long one long-poll request asks the server to hold it."""
CONNECT_TIMEOUT = 5.0
CHECK_TIMEOUT = 1.0
"""How long an entry point's first check of the server may take before it gives up."""
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 2.0
"""Cap of the doubling pause between attempts to reach a server that went away (e.g. a restart)."""

T = TypeVar("T")


async def reconnecting(call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`call()`, again with capped backoff while the server cannot be reached, until `deadline`.

    Only for requests that are safe to repeat: a keyed start, a read, a registration. `deadline`
    is a `time.monotonic()` value; once the next attempt would pass it, `ServerUnavailable` is raised.
    """
    delay = RECONNECT_FIRST_SECONDS
    while True:
        try:
            return await call()
        except ServerUnavailable:
            if time.monotonic() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


GATEWAY_ERRORS = frozenset({502, 503, 504})


class NexumClient:
    def __init__(self, url: str | None = None, token: str | None = None, *,
                 http: httpx2.AsyncClient | None = None, max_connections: int = 100) -> None:
        settings = ClientSettings.from_env(url=url, token=token)
        self.url = settings.url
        self.url_origin = ClientSettings.origin("url", {"url": url})
        """Where the URL came from (`--url`, `NEXUM_URL in the environment`, `... in .env`, `default`)."""
        self.has_token = bool(settings.token)
        token = settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # Read timeouts are set per request from the long-poll hold; the default covers short calls.
        self.http = http or httpx2.AsyncClient(
            base_url=self.url, headers=headers, limits=limits,
            timeout=httpx2.Timeout(30.0, connect=CONNECT_TIMEOUT))

    async def __aenter__(self) -> NexumClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      hold: float = 0.0) -> httpx2.Response:
        """One request; transport errors become `ServerUnavailable`, 4xx/5xx `RequestRejected`."""
        timeout = httpx2.Timeout(hold + 30.0, connect=CONNECT_TIMEOUT) if hold else httpx2.USE_CLIENT_DEFAULT
        try:
            response = await self.http.request(method, path, json=json, params=params, timeout=timeout)
        except httpx2.TransportError as e:
            raise ServerUnavailable(
                f"cannot reach the Nexum server at {self.url} (from {self.url_origin}): {_reason(e)}; "
                "start it with `nexum dev`, or point NEXUM_URL or --url at yours") from e
        if response.status_code >= 400:
            body = _body(response)
            if response.status_code in GATEWAY_ERRORS:
                # The server's own 503 (a busy database) says so; otherwise a proxy in front of it
                # cannot reach it. Either way the same request may succeed a little later.
                reason = (body["error"]["message"] if _has_error(body)
                          else "from a proxy; is `nexum dev` running?")
                raise ServerUnavailable(f"the Nexum server at {self.url} is unavailable "
                                        f"(HTTP {response.status_code}: {reason})")
            message = body["error"]["message"] if _has_error(body) else str(body)
            raise RequestRejected(response.status_code, body,
                                  f"{method} {path} answered {response.status_code}: {message}")
        return response

    async def health(self) -> dict[str, Any]:
        return (await self.request("GET", "/health")).json()

    async def check(self, timeout: float = CHECK_TIMEOUT) -> None:
        """Fail fast, in one line, when the server is not there or will not take our token.

        Entry points call this first, so a wrong URL costs a second, not a wait in a retry loop.
        The request is an authenticated one, so a missing or wrong token shows up here too.
        """
        where = f"{self.url} (from {self.url_origin})"
        try:
            response = await self.http.get("/v1/executions", params={"limit": 1}, timeout=timeout)
        except httpx2.TransportError as e:
            raise ServerUnavailable(f"no Nexum server answers at {where}: {_reason(e)}. Start one with "
                                    "`nexum dev`, or point NEXUM_URL or --url at yours") from e
        body = _body(response)
        if response.status_code == 401:
            raise RequestRejected(401, body, f"the Nexum server at {where} refused the request (HTTP 401): "
                                  f"{body['error']['message'] if _has_error(body) else body}")
        if response.status_code >= 500:
            reason = body["error"]["message"] if _has_error(body) else "no reason given"
            raise ServerUnavailable(f"the Nexum server at {where} answers, but is in trouble "
                                    f"(HTTP {response.status_code}: {reason}); try again shortly")
        if response.status_code >= 400 or not (isinstance(body, dict) and "executions" in body):
            raise ServerUnavailable(f"something answers at {where}, but not as a Nexum server does "
                                    f"(HTTP {response.status_code}); is NEXUM_URL right?")

    async def register_workflow(self, workflow_id: str, version_hash: str, ir: dict[str, Any]) -> str:
        body = {"workflow_id": workflow_id, "version_hash": version_hash, "ir": ir}
        return (await self.request("POST", "/v1/workflows", json=body)).json()["outcome"]

    async def start(self, workflow_id: str, version_hash: str, session_id: str, key: str, input: Any,
                    wait: float = 0.0, run_token: str | None = None) -> Execution:
        """Start (or find) the execution; with `wait`, the server holds the answer until it is terminal.

        With `run_token` (see `take_session`) the execution is leased to the caller when nobody runs
        it: the answer's `claimed` task is the caller's to run and report.
        """
        body = {"workflow_id": workflow_id, "version_hash": version_hash, "session_id": session_id,
                "key": key, "input": input, "wait": wait}
        if run_token is not None:
            body["run_token"] = run_token
        response = await self.request("POST", "/v1/executions", json=body, hold=wait)
        return Execution.model_validate_json(response.content)

    async def get(self, execution_id: str, wait: float = 0.0) -> Execution:
        params = {"wait": wait} if wait else None
        response = await self.request("GET", f"/v1/executions/{execution_id}", params=params, hold=wait)
        return Execution.model_validate_json(response.content)

    async def wait(self, execution: Execution, timeout: float) -> Execution:
        """Long-poll until the execution is terminal; `WaitTimeout` after `timeout` seconds.

        The execution is stored, so a server that restarts meanwhile still has it: the long-poll
        reconnects with capped backoff until the timeout.
        """
        deadline = time.monotonic() + timeout
        execution_id = execution.id

        def held_get() -> Awaitable[Execution]:
            return self.get(execution_id, wait=min(max(deadline - time.monotonic(), 0.0), HOLD_SECONDS))

        while not execution.status.terminal:
            if deadline - time.monotonic() <= 0:
                raise WaitTimeout(f"execution {execution.id} is still {execution.status.value} "
                                  f"after {timeout:g} s")
            execution = await reconnecting(held_get, deadline)
        return execution

    async def list(self, session_id: str | None = None, status: Status | str | None = None,
                   key: str | None = None, limit: int = 50, id_prefix: str | None = None) -> list[Execution]:
        params = {"session_id": session_id, "status": Status(status).value if status else None,
                  "key": key, "limit": limit, "id_prefix": id_prefix}
        response = await self.request("GET", "/v1/executions",
                                      params={k: v for k, v in params.items() if v is not None})
        return [Execution.model_validate(e) for e in response.json()["executions"]]

    async def cancel(self, execution_id: str) -> Execution:
        response = await self.request("POST", f"/v1/executions/{execution_id}/cancel")
        return Execution.model_validate_json(response.content)

    async def poll(self, worker_id: str, workflows: list[WorkflowRef], wait: float = HOLD_SECONDS,
                   max_tasks: int = 1) -> list[Task]:
        body = {"worker_id": worker_id, "workflows": [w.model_dump() for w in workflows],
                "wait": wait, "max_tasks": max_tasks}
        response = await self.request("POST", "/v1/tasks/poll", json=body, hold=wait)
        if response.status_code == 204:
            return []
        return [Task.model_validate(t) for t in response.json()["tasks"]]

    async def heartbeat(self, task: Task) -> Lease:
        response = await self.request("POST", f"/v1/tasks/{task.task_id}/heartbeat",
                                      json={"lease_token": task.lease_token})
        return Lease.model_validate_json(response.content)

    async def complete(self, task: Task, output: Any) -> Execution:
        response = await self.request("POST", f"/v1/tasks/{task.task_id}/complete",
                                      json={"lease_token": task.lease_token, "output": output})
        return Execution.model_validate_json(response.content)

    async def fail(self, task: Task, error: str, retryable: bool) -> Execution:
        response = await self.request("POST", f"/v1/tasks/{task.task_id}/fail",
                                      json={"lease_token": task.lease_token, "error": error,
                                            "retryable": retryable})
        return Execution.model_validate_json(response.content)

    async def release(self, task: Task) -> Execution:
        response = await self.request("POST", f"/v1/tasks/{task.task_id}/release",
                                      json={"lease_token": task.lease_token})
        return Execution.model_validate_json(response.content)

    async def take_session(self, session_id: str, holder: str) -> SessionRunInfo:
        """Become the session's one live run, taking it over from any other at once."""
        response = await self.request("POST", f"/v1/sessions/{quote(session_id, safe='')}/runs",
                                      json={"holder": holder})
        return SessionRunInfo.model_validate_json(response.content)

    async def renew_session(self, run: SessionRunInfo) -> float:
        """Extend the run's lease on its session; `RequestRejected` (409) once another run took it."""
        response = await self.request(
            "POST", f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}/heartbeat")
        return response.json()["lease_expires_at"]

    async def hold_presence(self, run: SessionRunInfo) -> None:
        """Keep the run's presence request open until the server lets go of it (it is shutting
        down): while it is open the server knows the run is alive, and learns at once when the
        process ends. Transport errors become `ServerUnavailable`."""
        path = f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}/presence"
        try:
            async with self.http.stream("GET", path, timeout=httpx2.Timeout(None, connect=CONNECT_TIMEOUT)) as r:
                await r.aread()
        except httpx2.TransportError as e:
            raise ServerUnavailable(f"lost the presence connection to {self.url}: {e}") from e

    async def end_session_run(self, run: SessionRunInfo) -> None:
        await self.request("DELETE", f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}")


def _body(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _reason(error: httpx2.TransportError) -> str:
    """A transport error in a few words: `connection refused`, `host name not found`, ..."""
    if isinstance(error, httpx2.TimeoutException):
        return "no answer in time"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__


def _has_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]
