"""Clients of the Nexum HTTP API, shared by the CLI, `submit_task.py` and `worker.py`.

`NexumClient` is async: one `httpx2.AsyncClient` with keep-alive; create one per process (per event
loop) and pass it in. `NexumSyncClient` is its blocking twin for code running in threads: one
`httpx2.Client`, whose connection pool any number of threads may share, and no event loop.
Long-polls are held by the server, so nothing here sleeps while waiting for a result or a task; only
a server that cannot be reached (a restart) is waited out, under the retry policy of `retry.py`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
import httpx2

from .config import ClientSettings
from .errors import RequestRejected, ServerUnavailable, WaitTimeout
from .ids import validate_session_id
from .models import (
    CallPage,
    Execution,
    ForgetResult,
    ForkResult,
    Journal,
    Lease,
    SentView,
    SessionExport,
    SessionPage,
    SessionRunInfo,
    SessionSummary,
    Status,
    Task,
    UnitsWritten,
    Wait,
    WaitList,
    WaitRequest,
    WaitStatus,
    WorkflowRef,
)
from .retry import retry_async, retry_sync

HOLD_SECONDS = 30.0
PRESENCE_HOLD_SECONDS = 7 * 24 * 3600.0
"""A run's presence request is held for as long as the run lives; this only bounds the read timeout."""
"""How long one long-poll request asks the server to hold it."""
CONNECT_TIMEOUT = 5.0
CHECK_TIMEOUT = 1.0
"""How long an entry point's first check of the server may take before it gives up."""
READ_SECONDS = 30.0
"""Longest wait for an answer beyond what a long-poll asked the server to hold it."""

T = TypeVar("T")
R = TypeVar("R", httpx2.Response, "Answer")
"""A response: httpx2's, or one read whole (`Answer`)."""


async def reconnecting(call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`call()`, again under the retry policy while the server is away or failing, until `deadline`.

    Only for requests that are safe to repeat: a keyed start, a read, a registration. `deadline`
    is a `time.monotonic()` value; once the next attempt would pass it, the last error is raised.
    """
    return await retry_async(call, deadline=deadline)


GATEWAY_ERRORS = frozenset({502, 503, 504})


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop where it is installed (not on Windows): each request a client
    makes costs less CPU on it, which is what bounds a busy worker."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class NexumClient:
    """The async client, on one aiohttp session with keep-alive (opened on first use, in its loop).

    aiohttp, not httpx2: under 32 concurrent connections an httpx2 request costs about 0.6 ms of
    CPU against 0.1 ms (httpx2 checks every pooled connection per request), and a worker or an
    agent making many calls spends most of its CPU there. `http=` takes an `httpx2.AsyncClient`
    instead (tests pass one with a `MockTransport`).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        http: httpx2.AsyncClient | None = None,
        max_connections: int = 100,
    ) -> None:
        settings = ClientSettings.from_env(url=url, token=token)
        self.url = settings.url
        origin = ClientSettings.origin("url", {"url": url})
        self.where = f"{self.url} (from {origin})"
        self._url_name = "--url" if origin == "--url" else "NEXUM_URL"
        """What to correct when the URL is wrong: the flag it came from, or the variable."""
        """The URL and where it came from (`--url`, `NEXUM_URL in the environment`, `... in .env`, `default`)."""
        token = settings.token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._max_connections = max_connections
        self._httpx = http
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NexumClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Read timeouts are set per request from the long-poll hold.
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
            )
        return self._session

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None, hold: float = 0.0
    ) -> Answer | httpx2.Response:
        """One request; transport errors become `ServerUnavailable`, 4xx/5xx `RequestRejected`."""
        if self._httpx is not None:
            try:
                response: Answer | httpx2.Response = await self._httpx.request(
                    method, path, json=json, params=params, timeout=_timeout(hold)
                )
            except httpx2.TransportError as e:
                raise _unreachable(self.where, e) from e
            return _checked(response, self.url, method, path)
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=hold + READ_SECONDS)
        try:
            async with self._open().request(
                method, self.url + path, json=json, params=params, timeout=timeout
            ) as reply:
                response = Answer(reply.status, await reply.read())
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _unreachable(self.where, e) from e
        return _checked(response, self.url, method, path)

    async def health(self) -> dict[str, Any]:
        return (await self.request("GET", "/health")).json()

    async def check(self, timeout: float = CHECK_TIMEOUT) -> None:
        """Fail fast, in one line, when the server is not there or will not take our token.

        Entry points call this first, so a wrong URL costs a second, not a wait in a retry loop.
        The request is an authenticated one, so a missing or wrong token shows up here too.
        """
        stranger = ServerUnavailable(
            f"something answers at {self.where}, but not as a Nexum server does; is {self._url_name} right?"
        )
        try:
            answer = await asyncio.wait_for(self.request("GET", "/v1/executions", params={"limit": 1}), timeout)
        except TimeoutError as e:
            raise ServerUnavailable(
                f"no Nexum server answers at {self.where}: no answer within {timeout:g} s "
                "(start one with `nexum dev`, or point NEXUM_URL or --url at yours)"
            ) from e
        except RequestRejected as e:
            if e.status == 401:
                raise RequestRejected(
                    401, e.body, f"the Nexum server at {self.where} refused the request (HTTP 401): {_message(e.body)}"
                ) from e
            raise stranger from e
        try:
            listed = answer.json()
        except ValueError:
            listed = None
        if not (isinstance(listed, dict) and "executions" in listed):
            raise stranger

    async def register_workflow(self, workflow_id: str, version_hash: str, ir: dict[str, Any]) -> str:
        body = {"workflow_id": workflow_id, "version_hash": version_hash, "ir": ir}
        return (await self.request("POST", "/v1/workflows", json=body)).json()["outcome"]

    async def start(
        self,
        workflow_id: str,
        version_hash: str,
        session_id: str,
        key: str,
        input: Any,
        wait: float = 0.0,
        run_token: str | None = None,
        messages: list[dict[str, Any]] | None = None,
    ) -> Execution:
        """Start (or find) the execution; with `wait`, the server holds the answer until it is terminal.

        With `run_token` (see `take_session`) the execution is leased to the caller when nobody runs
        it: the answer's `claimed` task is the caller's to run and report. `messages` carries
        `{"hash", "body"}` of messages the server may not have, named by `input["sent"]` (`journal.py`).
        """
        body: dict[str, Any] = {
            "workflow_id": workflow_id,
            "version_hash": version_hash,
            "session_id": session_id,
            "key": key,
            "input": input,
            "wait": wait,
        }
        if run_token is not None:
            body["run_token"] = run_token
        if messages:
            body["messages"] = messages
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
                raise WaitTimeout(
                    f"execution {execution.id} is still {execution.status.value} after {timeout:g} s", execution
                )
            execution = await reconnecting(held_get, deadline)
        return execution

    async def list(
        self,
        session_id: str | None = None,
        status: Status | str | None = None,
        key: str | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Execution]:
        params = {
            "session_id": session_id,
            "status": Status(status).value if status else None,
            "key": key,
            "limit": limit,
            "id_prefix": id_prefix,
        }
        response = await self.request(
            "GET", "/v1/executions", params={k: v for k, v in params.items() if v is not None}
        )
        return [Execution.model_validate(e) for e in response.json()["executions"]]

    async def cancel(self, execution_id: str) -> Execution:
        response = await self.request("POST", f"/v1/executions/{execution_id}/cancel")
        return Execution.model_validate_json(response.content)

    async def sessions(self, limit: int = 50, contains: str | None = None, cursor: str | None = None) -> SessionPage:
        params = {"limit": limit, "contains": contains, "cursor": cursor}
        response = await self.request("GET", "/v1/sessions", params={k: v for k, v in params.items() if v is not None})
        return SessionPage.model_validate_json(response.content)

    async def session(self, session_id: str) -> SessionSummary:
        response = await self.request("GET", f"/v1/sessions/{quote(session_id, safe='')}")
        return SessionSummary.model_validate_json(response.content)

    async def calls(self, session_id: str, limit: int = 200, cursor: str | None = None) -> CallPage:
        params = {"session_id": session_id, "limit": limit, "cursor": cursor}
        response = await self.request("GET", "/v1/calls", params={k: v for k, v in params.items() if v is not None})
        return CallPage.model_validate_json(response.content)

    async def forget(self, session_id: str) -> ForgetResult:
        """Delete the session's executions; refused (409) while any of them is pending or running."""
        path = f"/v1/sessions/{quote(session_id, safe='')}"
        response = await self.request("DELETE", path)
        if not response.content:
            # Only something other than a Nexum server (or an older one, which routed some ids
            # elsewhere) answers a forget without a body: say so, rather than fail to read it.
            raise RequestRejected(
                response.status_code,
                None,
                f"DELETE {path} answered {response.status_code} "
                "with no body, not with what a forget answers; nothing is known to be deleted",
            )
        return ForgetResult.model_validate_json(response.content)

    async def journal(self, session_id: str) -> Journal:
        """The session's units in recorded order, with inputs and results, in one request."""
        response = await self.request("GET", f"/v1/sessions/{quote(session_id, safe='')}/journal")
        return Journal.model_validate_json(response.content)

    async def sent(self, execution_id: str) -> SentView:
        """What a model request was sent, in order, with the message bodies."""
        response = await self.request("GET", f"/v1/executions/{execution_id}/sent")
        return SentView.model_validate_json(response.content)

    async def fork(self, session_id: str, new_session_id: str, until: int | None = None) -> ForkResult:
        body: dict[str, Any] = {"new_session_id": new_session_id}
        if until is not None:
            body["until"] = until
        response = await self.request("POST", f"/v1/sessions/{quote(session_id, safe='')}/fork", json=body)
        return ForkResult.model_validate_json(response.content)

    async def export(self, session_id: str) -> SessionExport:
        response = await self.request("GET", f"/v1/sessions/{quote(session_id, safe='')}/export")
        return SessionExport.model_validate_json(response.content)

    async def import_session(self, document: SessionExport, session_id: str | None = None) -> ForkResult:
        """Load an exported session, as `session_id` or under its own name."""
        name = session_id or document.session_id
        response = await self.request(
            "POST", f"/v1/sessions/{quote(name, safe='')}/import", json=document.model_dump(mode="json")
        )
        return ForkResult.model_validate_json(response.content)

    async def poll(
        self, worker_id: str, workflows: list[WorkflowRef], wait: float = HOLD_SECONDS, max_tasks: int = 1
    ) -> list[Task]:
        body = {
            "worker_id": worker_id,
            "workflows": [w.model_dump() for w in workflows],
            "wait": wait,
            "max_tasks": max_tasks,
        }
        response = await self.request("POST", "/v1/tasks/poll", json=body, hold=wait)
        if response.status_code == 204:
            return []
        return [Task.model_validate(t) for t in response.json()["tasks"]]

    async def heartbeat(self, task: Task) -> Lease:
        response = await self.request(
            "POST", f"/v1/tasks/{task.task_id}/heartbeat", json={"lease_token": task.lease_token}
        )
        return Lease.model_validate_json(response.content)

    async def complete(self, task: Task, output: Any) -> Execution:
        response = await self.request(
            "POST", f"/v1/tasks/{task.task_id}/complete", json={"lease_token": task.lease_token, "output": output}
        )
        return Execution.model_validate_json(response.content)

    async def fail(self, task: Task, error: str, retryable: bool) -> Execution:
        response = await self.request(
            "POST",
            f"/v1/tasks/{task.task_id}/fail",
            json={"lease_token": task.lease_token, "error": error, "retryable": retryable},
        )
        return Execution.model_validate_json(response.content)

    async def release(self, task: Task) -> Execution:
        response = await self.request(
            "POST", f"/v1/tasks/{task.task_id}/release", json={"lease_token": task.lease_token}
        )
        return Execution.model_validate_json(response.content)

    async def take_session(self, session_id: str, holder: str, journal: bool = False) -> SessionRunInfo:
        """Become the session's one live run, taking it over from any other at once; with `journal`,
        the answer carries the session's journal as it stood right after the take.

        `InvalidSessionId` before any request for an id outside the rule (`ids.py`)."""
        validate_session_id(session_id)
        body: dict[str, Any] = {"holder": holder, "journal": True} if journal else {"holder": holder}
        response = await self.request("POST", f"/v1/sessions/{quote(session_id, safe='')}/runs", json=body)
        return SessionRunInfo.model_validate_json(response.content)

    async def write_units(
        self,
        run: SessionRunInfo,
        workflow_id: str,
        version_hash: str,
        finished: list[dict[str, Any]],
        units: list[dict[str, Any]],
    ) -> UnitsWritten:
        """Record what a run that holds its session alone ran and began, in one request (`WriteUnits`)."""
        body = {"workflow_id": workflow_id, "version_hash": version_hash, "finished": finished, "units": units}
        path = f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}/units"
        response = await self.request("POST", path, json=body)
        return UnitsWritten.model_validate_json(response.content)

    async def renew_session(self, run: SessionRunInfo) -> float:
        """Extend the run's lease on its session; `RequestRejected` (409) once another run took it."""
        response = await self.request(
            "POST", f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}/heartbeat"
        )
        return response.json()["lease_expires_at"]

    async def hold_presence(self, run: SessionRunInfo) -> None:
        """Keep the run's presence request open until the server lets go of it (it is shutting
        down): while it is open the server knows the run is alive, and learns at once when the
        process ends. Transport errors become `ServerUnavailable`."""
        path = f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}/presence"
        await self.request("GET", path, hold=PRESENCE_HOLD_SECONDS)

    async def end_session_run(self, run: SessionRunInfo, hits: list[str] | None = None) -> None:
        """End the run; `hits` are the executions it served from the journal (counted as cached hits)."""
        await self.request(
            "DELETE",
            f"/v1/sessions/{quote(run.session_id, safe='')}/runs/{run.run_token}",
            json={"execution_ids": hits} if hits else None,
        )

    # Waits: a run waiting for an answer from outside, and whoever resolves it

    async def create_wait(
        self,
        session_id: str,
        key: str,
        name: str,
        *,
        timeout_seconds: float | None = None,
        request: WaitRequest | None = None,
    ) -> Wait:
        """The session's wait for `key`: made now (`created`), or the one made before, with its token."""
        body = {
            "key": key,
            "name": name,
            "timeout_seconds": timeout_seconds,
            "request": (request or WaitRequest()).model_dump(mode="json"),
        }
        response = await self.request("POST", f"/v1/sessions/{quote(session_id, safe='')}/waits", json=body)
        return Wait.model_validate_json(response.content)

    async def get_wait(self, token: str, wait: float = 0.0) -> Wait:
        """The wait; with `wait`, the server holds the answer until it is over (or `wait` runs out)."""
        params = {"wait": wait} if wait else None
        response = await self.request("GET", f"/v1/events/{quote(token, safe='')}", params=params, hold=wait)
        return Wait.model_validate_json(response.content)

    async def wait_over(self, token: str) -> Wait:
        """Long-poll until the wait is over, for as long as that takes (its own timeout, if it has
        one, ends it on the server). A server away meanwhile is waited out: the wait is stored."""
        while True:
            held = lambda: self.get_wait(token, wait=HOLD_SECONDS)  # noqa: E731
            wait = await reconnecting(held, time.monotonic() + HOLD_SECONDS + READ_SECONDS)
            if wait.status is not WaitStatus.WAITING:
                return wait

    async def resolve_wait(
        self,
        token: str,
        *,
        payload: Any = None,
        error: str | None = None,
        decision: Literal["approve", "deny"] | None = None,
        calls: list[str] | None = None,
        reason: str | None = None,
        by: str | None = None,
        with_payload: bool = False,
    ) -> Wait:
        """Resolve the wait: with `payload` (pass `with_payload=True` for a payload of None), with
        `error`, or with a `decision`. `RequestRejected` 409 when it is over already, 404 unknown."""
        body: dict[str, Any] = {}
        if decision is not None:
            body.update(decision=decision, calls=calls, reason=reason)
        elif error is not None:
            body["error"] = error
        elif payload is not None or with_payload:
            body["payload"] = payload
        if by is not None:
            body["by"] = by
        response = await self.request(
            "POST",
            f"/v1/events/{quote(token, safe='')}",
            json={k: v for k, v in body.items() if v is not None or k == "payload"},
        )
        return Wait.model_validate_json(response.content)

    async def waits(
        self, status: WaitStatus | str | None = WaitStatus.WAITING, session_id: str | None = None, limit: int = 100
    ) -> WaitList:
        params = {
            "status": WaitStatus(str(status).upper() if isinstance(status, str) else status).value if status else None,
            "session_id": session_id,
            "limit": limit,
        }
        response = await self.request("GET", "/v1/events", params={k: v for k, v in params.items() if v is not None})
        return WaitList.model_validate_json(response.content)


class NexumSyncClient:
    """The blocking twin of `NexumClient` for threads (a sync tool, a script): the calls a
    submitter needs, on one `httpx2.Client` whose pool every thread shares, with no event loop."""

    def __init__(self, url: str | None = None, token: str | None = None, *, max_connections: int = 100) -> None:
        settings = ClientSettings.from_env(url=url, token=token)
        self.url = settings.url
        origin = ClientSettings.origin("url", {"url": url})
        self.where = f"{self.url} (from {origin})"
        self._url_name = "--url" if origin == "--url" else "NEXUM_URL"
        """What to correct when the URL is wrong: the flag it came from, or the variable."""
        token = settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx2.Client(
            base_url=self.url,
            headers=headers,
            limits=limits,
            timeout=httpx2.Timeout(READ_SECONDS, connect=CONNECT_TIMEOUT),
        )

    def __enter__(self) -> NexumSyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None, hold: float = 0.0
    ) -> httpx2.Response:
        """One request; transport errors become `ServerUnavailable`, 4xx/5xx `RequestRejected`."""
        try:
            response = self.http.request(method, path, json=json, params=params, timeout=_timeout(hold))
        except httpx2.TransportError as e:
            raise _unreachable(self.where, e) from e
        return _checked(response, self.url, method, path)

    def register_workflow(self, workflow_id: str, version_hash: str, ir: dict[str, Any]) -> str:
        body = {"workflow_id": workflow_id, "version_hash": version_hash, "ir": ir}
        return self.request("POST", "/v1/workflows", json=body).json()["outcome"]

    def start(
        self,
        workflow_id: str,
        version_hash: str,
        session_id: str,
        key: str,
        input: Any,
        wait: float = 0.0,
        messages: list[dict[str, Any]] | None = None,
    ) -> Execution:
        """Start (or find) the execution; with `wait`, the server holds the answer until it is terminal.
        `messages` as for `NexumClient.start`."""
        body: dict[str, Any] = {
            "workflow_id": workflow_id,
            "version_hash": version_hash,
            "session_id": session_id,
            "key": key,
            "input": input,
            "wait": wait,
        }
        if messages:
            body["messages"] = messages
        response = self.request("POST", "/v1/executions", json=body, hold=wait)
        return Execution.model_validate_json(response.content)

    def get(self, execution_id: str, wait: float = 0.0) -> Execution:
        params = {"wait": wait} if wait else None
        response = self.request("GET", f"/v1/executions/{execution_id}", params=params, hold=wait)
        return Execution.model_validate_json(response.content)

    def wait(self, execution: Execution, timeout: float) -> Execution:
        """Long-poll until the execution is terminal; `WaitTimeout` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        execution_id = execution.id

        def held_get() -> Execution:
            return self.get(execution_id, wait=min(max(deadline - time.monotonic(), 0.0), HOLD_SECONDS))

        while not execution.status.terminal:
            if deadline - time.monotonic() <= 0:
                raise WaitTimeout(
                    f"execution {execution.id} is still {execution.status.value} after {timeout:g} s", execution
                )
            execution = retry_sync(held_get, deadline=deadline)
        return execution


class Answer:
    """A response read whole: what `NexumClient.request` returns (the parts of `httpx2.Response` used)."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _timeout(hold: float) -> httpx2.Timeout | Any:
    """A long-poll's read timeout covers the hold; the client's default covers short calls."""
    return httpx2.Timeout(hold + READ_SECONDS, connect=CONNECT_TIMEOUT) if hold else httpx2.USE_CLIENT_DEFAULT


def _unreachable(where: str, error: Exception) -> ServerUnavailable:
    return ServerUnavailable(
        f"no Nexum server answers at {where}: {_reason(error)} "
        "(start one with `nexum dev`, or point NEXUM_URL or --url at yours)"
    )


def _reason(error: BaseException) -> str:
    """A transport error in a few words: `connection refused`, `host name not found`, ..."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TimeoutError | httpx2.TimeoutException):
            return "no answer in time"
        if isinstance(cause, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return "host name not found"
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(cause):
            # TLS spoken to a plain-HTTP port: `nexum dev` serves plain HTTP.
            return "it does not speak TLS there; try http:// instead of https://"
        cause = cause.__cause__ or cause.__context__
    return f"{type(error).__name__}: {error or 'no answer'}"


def _checked(response: R, url: str, method: str, path: str) -> R:
    """The response if it succeeded; otherwise `ServerUnavailable` or `RequestRejected` saying why."""
    if response.status_code < 400:
        return response
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if response.status_code in GATEWAY_ERRORS:
        # The server's own 503 (a busy database) says so; otherwise a proxy in front of it
        # cannot reach it. Either way the same request may succeed a little later.
        reason = body["error"]["message"] if _has_error(body) else "from a proxy; is `nexum dev` running?"
        raise ServerUnavailable(f"the Nexum server at {url} is unavailable (HTTP {response.status_code}: {reason})")
    message = body["error"]["message"] if _has_error(body) else _not_ours(body)
    raise RequestRejected(response.status_code, body, f"{method} {path} answered {response.status_code}: {message}")


def _message(body: Any) -> str:
    return body["error"]["message"] if _has_error(body) else _not_ours(body)


def _not_ours(body: Any) -> str:
    """A sentence for an error body that is not a Nexum server's (a proxy's page, another server)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    text = " ".join(text.split())
    shown = text if len(text) <= 200 else text[:199] + "…"
    return f"the answer is not a Nexum error ({shown!r})" if shown else "the answer has no body"


def _has_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]
