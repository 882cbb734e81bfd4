"""Unit tests of `submit_task.py` against a scripted server (`httpx2.MockTransport`): the requests it sends."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

from nexum_server.client import NexumClient
from nexum_server.errors import RequestRejected, ServerUnavailable
from nexum_server.retry import FIRST_SECONDS, MAX_SECONDS, WAIT
from submit_task import ToolCallFailed, call_tool, submit_tool_call_async
from workflow import IR, VERSION_HASH, WEB_SEARCH, WORKFLOW_ID, tool_call_key

URL = "http://127.0.0.1:59999"
SESSION = "unit-session"
ARGS = {"query": "durable execution", "max_results": 5}
KEY = tool_call_key(WEB_SEARCH, ARGS)
Handler = Callable[[httpx2.Request], httpx2.Response]


def execution(status: str = "COMPLETED", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "e1",
        "workflow_id": WORKFLOW_ID,
        "version_hash": VERSION_HASH,
        "session_id": SESSION,
        "key": KEY,
        "input": {"tool_name": WEB_SEARCH, "tool_args": ARGS},
        "status": status,
        "attempts": 1,
        "max_attempts": 3,
        "created_at": 100.0,
        "updated_at": 101.0,
        "started_at": 100.5,
    }
    if status == "COMPLETED":
        body.update(result={"result": "[]"}, completed_at=101.0)
    return {**body, **fields}


class Scripted:
    """Answers requests in order from a script, and keeps every request it was sent."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url.path}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def sent(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests]

    def body(self, index: int) -> Any:
        return json.loads(self.requests[index].content)


def client_for(handler: Handler) -> NexumClient:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler), base_url=URL)
    return NexumClient(URL, http=http)


async def test_a_cached_call_is_one_request() -> None:
    server = Scripted(httpx2.Response(200, json=execution(cached=True, result={"result": "hits"})))
    async with client_for(server) as client:
        outcome = await call_tool(WEB_SEARCH, ARGS, SESSION, client=client)

    assert server.sent == [("POST", "/v1/executions")]
    assert outcome.cached and outcome.result == "hits"
    body = server.body(0)
    assert body["key"] == KEY
    assert (body["workflow_id"], body["version_hash"], body["session_id"]) == (WORKFLOW_ID, VERSION_HASH, SESSION)
    assert body["input"] == {"tool_name": WEB_SEARCH, "tool_args": ARGS, "toolset_id": "research"}
    assert body["wait"] > 0


async def test_a_new_call_completed_within_the_start_is_one_request_and_not_cached() -> None:
    server = Scripted(httpx2.Response(201, json=execution()))
    async with client_for(server) as client:
        assert await submit_tool_call_async(WEB_SEARCH, ARGS, SESSION, client=client) == "[]"

    assert server.sent == [("POST", "/v1/executions")]


async def test_workflow_not_found_registers_once_then_starts_once() -> None:
    not_found = {"error": {"code": "workflow_not_found", "message": "register it first"}}
    server = Scripted(
        httpx2.Response(404, json=not_found),
        httpx2.Response(200, json={"workflow_id": WORKFLOW_ID, "version_hash": VERSION_HASH, "outcome": "NEW"}),
        httpx2.Response(201, json=execution()),
    )
    async with client_for(server) as client:
        outcome = await call_tool(WEB_SEARCH, ARGS, SESSION, client=client)

    assert server.sent == [("POST", "/v1/executions"), ("POST", "/v1/workflows"), ("POST", "/v1/executions")]
    assert server.body(1) == {"workflow_id": WORKFLOW_ID, "version_hash": VERSION_HASH, "ir": IR}
    assert server.body(2) == server.body(0)
    assert outcome.result == "[]" and not outcome.cached


async def test_another_rejection_is_raised_without_registering() -> None:
    server = Scripted(httpx2.Response(400, json={"error": {"code": "nexum_error", "message": "bad session"}}))
    async with client_for(server) as client:
        with pytest.raises(RequestRejected, match="bad session"):
            await call_tool(WEB_SEARCH, ARGS, SESSION, client=client)

    assert server.sent == [("POST", "/v1/executions")]


async def test_a_transport_error_raises_server_unavailable_naming_the_url() -> None:
    server = Scripted(httpx2.ConnectError("connection refused"))
    async with client_for(server) as client:
        # A timeout shorter than the first reconnect pause: one attempt, then the error.
        with pytest.raises(ServerUnavailable) as raised:
            await call_tool(WEB_SEARCH, ARGS, SESSION, timeout=0.05, client=client)

    assert URL in str(raised.value)
    assert "nexum dev" in str(raised.value)
    assert isinstance(raised.value.__cause__, httpx2.ConnectError)
    assert server.sent == [("POST", "/v1/executions")]


async def test_a_start_is_repeated_unchanged_after_a_transport_error() -> None:
    server = Scripted(httpx2.ConnectError("connection refused"), httpx2.Response(201, json=execution()))
    async with client_for(server) as client:
        outcome = await call_tool(WEB_SEARCH, ARGS, SESSION, timeout=30, client=client)

    assert server.sent == [("POST", "/v1/executions"), ("POST", "/v1/executions")]
    assert server.body(1) == server.body(0)
    assert outcome.result == "[]"


async def test_a_5xx_from_the_server_itself_is_retried_like_an_unreachable_server() -> None:
    error = {"error": {"code": "internal", "message": "a bug"}}
    server = Scripted(
        httpx2.Response(500, json=error), httpx2.Response(503, json=error), httpx2.Response(201, json=execution())
    )
    async with client_for(server) as client:
        outcome = await call_tool(WEB_SEARCH, ARGS, SESSION, timeout=30, client=client)

    assert server.sent == [("POST", "/v1/executions")] * 3
    assert outcome.result == "[]"


async def test_a_4xx_is_an_answer_and_not_retried() -> None:
    server = Scripted(httpx2.Response(422, json={"detail": [{"loc": ["body", "key"], "msg": "bad"}]}))
    async with client_for(server) as client:
        with pytest.raises(RequestRejected) as raised:
            await call_tool(WEB_SEARCH, ARGS, SESSION, timeout=30, client=client)

    assert raised.value.status == 422 and server.sent == [("POST", "/v1/executions")]


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    pauses = {n: [WAIT(SimpleNamespace(attempt_number=n)) for _ in range(200)] for n in range(1, 10)}
    for n, seen in pauses.items():
        fixed = min(FIRST_SECONDS / 2 * 2 ** (n - 1), MAX_SECONDS / 2)
        assert all(fixed <= p <= 2 * fixed for p in seen), n
        assert max(seen) - min(seen) > fixed / 10, f"pause {n} has no jitter"
    assert max(pauses[9]) <= MAX_SECONDS and min(pauses[9]) >= MAX_SECONDS / 2


async def test_a_failed_execution_raises_tool_call_failed_with_the_last_error() -> None:
    failed = execution("FAILED", attempts=3, error="timed out: ReadTimeout", completed_at=105.0)
    server = Scripted(httpx2.Response(200, json=failed))
    async with client_for(server) as client:
        with pytest.raises(ToolCallFailed) as raised:
            await call_tool(WEB_SEARCH, ARGS, SESSION, client=client)

    assert "timed out: ReadTimeout" in str(raised.value)
    assert "3 attempt" in str(raised.value)
    assert raised.value.execution.error == "timed out: ReadTimeout"
    assert server.sent == [("POST", "/v1/executions")]


async def test_a_call_still_running_after_the_start_is_awaited_with_a_long_poll() -> None:
    server = Scripted(
        httpx2.Response(201, json=execution("RUNNING", result=None)), httpx2.Response(200, json=execution())
    )
    async with client_for(server) as client:
        outcome = await call_tool(WEB_SEARCH, ARGS, SESSION, timeout=30, client=client)

    assert server.sent == [("POST", "/v1/executions"), ("GET", "/v1/executions/e1")]
    assert float(server.requests[1].url.params["wait"]) > 0
    assert outcome.result == "[]"
