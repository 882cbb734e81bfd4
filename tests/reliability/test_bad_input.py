"""Bad input: property-based fuzzing of the HTTP API from its own OpenAPI document, and explicit cases.

The fuzzer (schemathesis, bounded per operation) sends valid and invalid requests to a live server
and requires a documented answer that is never a 5xx. Long-polls are capped at 0.2 s by the server
(NEXUM_MAX_WAIT_SECONDS), so a generated `wait` cannot hold the run. The explicit cases cover what
a generator does not send: broken JSON, non-UTF-8 bytes, lone surrogates, NaN, deep nesting,
oversized bodies, unknown ids, stale lease tokens, and tool results too large to store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nexum_devtools.procs import NexumServer, Proc, server_env
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import ToolCallFailed, call_tool
from tests.reliability.faults import REF, register, token
from workflow import IR, VERSION_HASH, VISIT_WEBPAGE, WORKFLOW_ID

MAX_EXAMPLES = 25
MAX_BODY_BYTES = 64 * 1024
# Not `negative_data_rejection`: pydantic's lax mode takes `"wait": true` or `"max_tasks": "3"`, which a
# strict reading of the schema calls invalid; that leniency is a choice, not a fault.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NexumServer]:
    """One server for the whole fuzzing run, with a registered workflow so starts create executions."""
    yield from _fuzz_server(tmp_path_factory.mktemp("fuzz") / "nexum.db")


@pytest.fixture(scope="module")
def fuzz_postgres_server(postgres: Any) -> Iterator[NexumServer]:
    """The same on PostgreSQL, which refuses in text what SQLite takes (NUL)."""
    url = postgres.create_database()
    try:
        yield from _fuzz_server(url)
    finally:
        postgres.drop_database(url)


def _fuzz_server(db: Any) -> Iterator[NexumServer]:
    # Module-scoped, so it starts before the per-test environment scrub: blank out inherited settings.
    inherited = {name: "" for name in os.environ if name.startswith("NEXUM_")}
    settings_env = server_env(max_wait_seconds=0.2, max_body_bytes=MAX_BODY_BYTES, lease_seconds=5)
    server = NexumServer(db, 0, {**inherited, **settings_env})
    try:
        with server.http() as http:
            http.post(
                "/v1/workflows", json={"workflow_id": WORKFLOW_ID, "version_hash": VERSION_HASH, "ir": IR}
            ).raise_for_status()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fuzzed_requests_get_documented_answers_and_never_a_server_error(
    backend: str, request: pytest.FixtureRequest, subtests: pytest.Subtests
) -> None:
    # Strings include NUL (schemathesis' `allow_x00`, on by default), which PostgreSQL cannot store;
    # numbers too large for a float, NaN and lone surrogates are in test_hostile_input.py, on every field.
    fuzz_server = request.getfixturevalue("fuzz_server" if backend == "sqlite" else "fuzz_postgres_server")
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with subtests.test(msg=f"{operation.label} {mode.value}"):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
                )
                def fuzz(case: Any) -> None:
                    response = case.call(timeout=10)
                    case.validate_response(response, checks=CHECKS)

                try:
                    fuzz()
                except Unsatisfiable:
                    # No invalid request exists for it (e.g. GET /health takes no input).
                    assert mode is GenerationMode.NEGATIVE


@pytest.fixture
def api(fuzz_server: NexumServer) -> Iterator[httpx2.Client]:
    with fuzz_server.http() as http:
        yield http


def start_body(session_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "workflow_id": WORKFLOW_ID,
        "version_hash": VERSION_HASH,
        "session_id": session_id,
        "key": token("key"),
        "input": {"n": 1},
        **fields,
    }


def post_raw(api: httpx2.Client, path: str, body: bytes | str) -> httpx2.Response:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return api.post(path, content=data, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"workflow_id": ', id="truncated"),
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array-not-object"),
        pytest.param(b'{"workflow_id": "\xff\xfe"}', id="non-utf8-in-string"),
        pytest.param(b"\xff\xfe\x00\x01", id="non-utf8-bytes"),
        pytest.param(b"[" * 50_000, id="deep-unclosed"),
    ],
)
def test_malformed_bodies_get_a_documented_4xx(api: httpx2.Client, body: bytes) -> None:
    response = post_raw(api, "/v1/executions", body)
    assert response.status_code in (400, 422), response.text
    documented = api.get("/openapi.json").json()["paths"]["/v1/executions"]["post"]["responses"]
    assert str(response.status_code) in documented


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"input": float("nan")}, id="nan"),
        pytest.param({"input": [float("inf")]}, id="infinity"),
        pytest.param({"key": "\ud800"}, id="lone-surrogate-key"),
        pytest.param({"input": {"text": "\udfff"}}, id="lone-surrogate-input"),
        pytest.param({"input": json.loads("[" * 300 + "]" * 300)}, id="nested-300-deep"),
    ],
)
def test_json_that_is_not_storable_is_refused_with_422(
    api: httpx2.Client, session_id: str, change: dict[str, Any]
) -> None:
    response = post_raw(api, "/v1/executions", json.dumps(start_body(session_id, **change)))
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["details"]
    assert (error["type"], error["loc"][0]) == ("json_invalid", "body")
    assert api.get("/v1/executions", params={"session_id": session_id}).json()["executions"] == []


@pytest.mark.parametrize(
    "path, body",
    [
        pytest.param("/v1/tasks/poll", {"worker_id": "\ud800", "workflows": [REF.model_dump()]}, id="poll-worker-id"),
        pytest.param(
            "/v1/workflows",
            {"workflow_id": "w", "version_hash": "v", "ir": {"nodes": [{"id": "\ud800"}]}},
            id="workflow-node-id",
        ),
        pytest.param(
            "/v1/workflows",
            {"workflow_id": "w", "version_hash": "v", "ir": {"nodes": [{"id": "a"}], "x": float("nan")}},
            id="workflow-nan",
        ),
        pytest.param("/v1/tasks/some-task/complete", {"lease_token": "t", "output": "\ud800"}, id="complete-output"),
    ],
)
def test_unstorable_json_is_refused_on_every_route(api: httpx2.Client, path: str, body: dict[str, Any]) -> None:
    response = post_raw(api, path, json.dumps(body))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"session_id": 42}, "session_id", id="int-for-string"),
        pytest.param({"wait": "soon"}, "wait", id="string-for-number"),
        pytest.param({"wait": -1}, "wait", id="negative-wait"),
        pytest.param({"key": ""}, "key", id="empty-key"),
        pytest.param({"key": "a\x00b"}, "key", id="control-character"),
        pytest.param({"session_id": "s" * 201}, "session_id", id="too-long"),
        pytest.param({"extra": 1}, "extra", id="unknown-field"),
    ],
)
def test_wrong_types_and_values_get_422_naming_the_field(
    api: httpx2.Client, session_id: str, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/executions", json={**start_body(session_id), **body})
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in response.json()["error"]["details"] for part in error["loc"]}


@pytest.mark.parametrize("missing", ["workflow_id", "version_hash", "session_id", "key", "input"])
def test_missing_fields_get_422(api: httpx2.Client, session_id: str, missing: str) -> None:
    body = start_body(session_id)
    del body[missing]
    response = api.post("/v1/executions", json=body)
    assert response.status_code == 422, response.text


def test_oversized_bodies_get_413_with_or_without_a_length(api: httpx2.Client, session_id: str) -> None:
    big = json.dumps(start_body(session_id, input="x" * MAX_BODY_BYTES)).encode()
    with_length = post_raw(api, "/v1/executions", big)
    assert with_length.status_code == 413
    assert with_length.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    chunked = api.post("/v1/executions", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert api.get("/v1/executions", params={"session_id": session_id}).json()["executions"] == []


def test_unknown_ids_get_404(api: httpx2.Client) -> None:
    unknown = token("nope")
    assert api.get(f"/v1/executions/{unknown}").status_code == 404
    assert api.post(f"/v1/executions/{unknown}/cancel").status_code == 404
    for action in ("heartbeat", "complete", "fail", "release"):
        body: dict[str, Any] = {"lease_token": "t", "output": 1} if action == "complete" else {"lease_token": "t"}
        if action == "fail":
            body["error"] = "x"
        response = api.post(f"/v1/tasks/{unknown}/{action}", json=body)
        assert response.status_code == 404, f"{action}: {response.text}"
        assert response.json()["error"]["code"] == "not_found"
    assert api.get("/v1/executions/%FF%FE").status_code == 404


async def test_invalid_lease_tokens_get_409_and_change_nothing(fuzz_server: NexumServer, session_id: str) -> None:
    async with NexumClient(fuzz_server.url) as client, httpx2.AsyncClient(base_url=fuzz_server.url, timeout=30) as http:
        await register(client)
        started = await client.start(WORKFLOW_ID, VERSION_HASH, session_id, token("key"), {"n": 1})
        poll = {"worker_id": token("w"), "workflows": [REF.model_dump()], "wait": 0.2, "max_tasks": 100}
        claimed = (await http.post("/v1/tasks/poll", json=poll)).json()["tasks"]
        [task] = [t for t in claimed if t["execution_id"] == started.id]
        for bad in ("0" * 32, task["lease_token"][:-1], "x" * 200):
            response = await http.post(
                f"/v1/tasks/{task['task_id']}/complete", json={"lease_token": bad, "output": "forged"}
            )
            assert response.status_code == 409, response.text
        current = await client.get(started.id)
        assert (current.status, current.result) == (Status.RUNNING, None)
        done = await http.post(
            f"/v1/tasks/{task['task_id']}/complete", json={"lease_token": task["lease_token"], "output": "real"}
        )
        assert done.status_code == 200
        assert (await client.get(started.id)).result == "real"


async def test_huge_page_is_cut_by_the_page_cap_and_says_so(
    start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    server = start_server()
    start_worker(server, env={"NEXUM_PAGE_MAX_CHARS": "5000"})
    async with NexumClient(server.url) as client:
        outcome = await call_tool(VISIT_WEBPAGE, {"url": f"{web.url}/huge"}, session_id, 60, client=client)
    assert outcome.result.endswith("[Content truncated]")
    assert len(outcome.result) < 5000 + 500


async def test_huge_result_is_cut_by_the_worker_result_cap_and_says_so(
    start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    server = start_server()
    start_worker(server, env={"NEXUM_PAGE_MAX_CHARS": "100000000"})
    async with NexumClient(server.url) as client:
        outcome = await call_tool(VISIT_WEBPAGE, {"url": f"{web.url}/huge?cap=result"}, session_id, 60, client=client)
    assert outcome.result.endswith("[result cut by the worker at 200000 characters]")
    assert len(outcome.result) < 200_000 + 100


async def test_result_larger_than_the_server_accepts_fails_the_call_at_once_with_the_reason(
    start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    server = start_server(max_body_bytes=MAX_BODY_BYTES, lease_seconds=15)
    start_worker(server, env={"NEXUM_PAGE_MAX_CHARS": "100000000"})
    mark = token("toolarge")
    async with NexumClient(server.url) as client:
        with pytest.raises(ToolCallFailed) as failed:
            await call_tool(VISIT_WEBPAGE, {"url": f"{web.url}/huge?{mark}"}, session_id, 60, client=client)
    execution = failed.value.execution
    assert (execution.status, execution.attempts) == (Status.FAILED, 1), execution.error
    assert "too large" in (execution.error or "")
    assert sum(entry["query"] == mark for entry in web.log()) == 1, "a result too large is not retried"
