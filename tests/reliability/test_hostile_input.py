"""Hostile input on both backends: what JSON or a store cannot carry gets a 4xx in the one error shape.

A number too large for a float (`1e999999`), a NUL character, a lone surrogate, deep nesting, in
any field of any route: never a 500 (clients retry those for ever), and the answer is always
`{"error": {"code", "message"}}`, as the OpenAPI document says of every 4xx and 5xx. The same
input gets the same answer from SQLite and PostgreSQL (which refuses NUL in text).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from nexum_devtools.postgres import ThrowawayPostgres
from nexum_devtools.procs import NexumServer, server_env
from nexum_server.models import ErrorBody
from tests.server.conftest import IR, REF, poll_body, start_body

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NexumServer]:
    """One server per backend for the module, with the test workflow registered."""
    inherited = {name: "" for name in os.environ if name.startswith("NEXUM_")}
    url = None
    cluster: ThrowawayPostgres | None = None
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    db: Any = url or tmp_path_factory.mktemp("hostile") / "nexum.db"
    server = NexumServer(db, 0, {**inherited, **server_env(max_wait_seconds=0.2, lease_seconds=5)})
    try:
        with server.http() as http:
            http.post("/v1/workflows", json={**REF, "ir": IR}).raise_for_status()
        yield server
    finally:
        server.stop()
        if cluster is not None and url is not None:
            cluster.drop_database(url)


@pytest.fixture
def http(hostile_server: NexumServer) -> Iterator[httpx2.Client]:
    with hostile_server.http() as client:
        yield client


def refused(response: httpx2.Response, status: int | tuple[int, ...] = 422) -> dict[str, Any]:
    """The error of a refusal in the documented shape; its `error` object."""
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.text
    return ErrorBody.model_validate_json(response.content).error.model_dump()


def post_text(http: httpx2.Client, path: str, text: str) -> httpx2.Response:
    return http.post(path, content=text.encode("utf-8", "surrogatepass"), headers={"content-type": "application/json"})


# Every POST route, with a body that is valid but for the field the case spoils.
POSTS: dict[str, tuple[str, dict[str, Any]]] = {
    "register": ("/v1/workflows", {**REF, "ir": IR}),
    "start": ("/v1/executions", start_body("s-hostile", "k")),
    "cancel": ("/v1/executions/nope/cancel", {}),
    "poll": ("/v1/tasks/poll", poll_body()),
    "heartbeat": ("/v1/tasks/nope/heartbeat", {"lease_token": "t"}),
    "complete": ("/v1/tasks/nope/complete", {"lease_token": "t", "output": 1}),
    "fail": ("/v1/tasks/nope/fail", {"lease_token": "t", "error": "e"}),
    "release": ("/v1/tasks/nope/release", {"lease_token": "t"}),
    "take-session": ("/v1/sessions/s-hostile/runs", {"holder": "h"}),
    "renew-session": ("/v1/sessions/s-hostile/runs/nope/heartbeat", {}),
}
HOSTILE = {
    "huge-number": "1e999999",
    "negative-huge": "-1e999999",
    "nan": "NaN",
    "nul": json.dumps("a\x00b"),
    "surrogate": '"\\ud800"',
    "deep": "[" * 300 + "]" * 300,
}


@pytest.mark.parametrize("route", sorted(POSTS))
@pytest.mark.parametrize("value", sorted(HOSTILE))
def test_a_hostile_value_in_any_field_of_any_post_route_is_a_4xx_in_the_error_shape(
    http: httpx2.Client, route: str, value: str
) -> None:
    path, body = POSTS[route]
    fields = [*body, "extra"]  # an unknown field too: FastAPI's 422 used to echo its value
    for field in fields:
        text = json.dumps({**body, field: "@@"}).replace('"@@"', HOSTILE[value])
        response = post_text(http, path, text)
        assert response.status_code < 500, f"{field}: {response.text}"
        if response.status_code >= 400:
            error = refused(response, response.status_code)
            assert "inf" not in error["message"].split() and error["message"], error


def test_a_huge_number_where_a_number_is_expected_names_the_field(http: httpx2.Client) -> None:
    error = refused(
        post_text(http, "/v1/executions", json.dumps(start_body("s", "k")).replace('"wait": 0.0', '"wait": 1e999999'))
    )
    assert error["code"] == "invalid_request"
    assert "too large for a float" in error["message"], error


def test_a_huge_number_in_a_value_to_store_is_refused_on_the_fast_path_too(http: httpx2.Client) -> None:
    execution = http.post("/v1/executions", json=start_body("s-fast", "k-fast")).json()
    [task] = http.post("/v1/tasks/poll", json=poll_body(max_tasks=100, wait=0.2)).json()["tasks"][-1:]
    text = json.dumps({"lease_token": task["lease_token"], "output": "@@"}).replace('"@@"', "1e999999")
    error = refused(post_text(http, f"/v1/tasks/{task['task_id']}/complete", text))
    assert "too large for a float" in error["message"], error
    assert http.get(f"/v1/executions/{execution['id']}").status_code == 200


@pytest.mark.parametrize(
    "method, path, params, field",
    [
        ("GET", "/v1/executions/a\x00b", None, "execution_id"),
        ("POST", "/v1/executions/a\x00b/cancel", None, "execution_id"),
        ("GET", "/v1/executions", {"key": "a\x00b"}, "key"),
        ("GET", "/v1/executions", {"id_prefix": "a\x00"}, "id_prefix"),
        ("GET", "/v1/executions", {"session_id": "a\x00"}, "session_id"),
        ("GET", "/v1/sessions", {"contains": "a\x00"}, "contains"),
        ("GET", "/v1/sessions", {"cursor": "a\x00"}, "cursor"),
        ("GET", "/v1/calls", {"session_id": "a\x00"}, "session_id"),
        ("GET", "/v1/sessions/a%00b", None, "session_id"),
        ("DELETE", "/v1/sessions/a%00b", None, "session_id"),
    ],
)
def test_nul_in_a_path_or_query_parameter_is_a_422_naming_it(
    http: httpx2.Client, method: str, path: str, params: dict[str, str] | None, field: str
) -> None:
    error = refused(http.request(method, path.replace("\x00", "%00"), params=params))
    assert field in {str(part) for d in error["details"] for part in d["loc"]}, error


@pytest.mark.parametrize("action", ["heartbeat", "complete", "fail", "release"])
def test_nul_in_a_lease_token_is_a_422_naming_it(http: httpx2.Client, action: str) -> None:
    extra = {"complete": {"output": 1}, "fail": {"error": "e"}}.get(action, {})
    body: dict[str, Any] = {"lease_token": "t\x00", **extra}
    for task_id, field in (("nope", "lease_token"), ("a%00b", "task_id")):
        error = refused(http.post(f"/v1/tasks/{task_id}/{action}", json=body))
        assert field in {str(part) for d in error["details"] for part in d["loc"]}, error


def test_nul_in_an_error_text_is_stored_escaped_the_same_on_both_backends(http: httpx2.Client) -> None:
    execution = http.post("/v1/executions", json=start_body("s-nul", "k-nul")).json()
    tasks = http.post("/v1/tasks/poll", json=poll_body(max_tasks=100, wait=0.2)).json()["tasks"]
    [task] = [t for t in tasks if t["execution_id"] == execution["id"]]
    failed = http.post(
        f"/v1/tasks/{task['task_id']}/fail",
        json={"lease_token": task["lease_token"], "error": "bad url http://x/\x00y", "retryable": False},
    )
    assert failed.status_code == 200, failed.text
    assert http.get(f"/v1/executions/{execution['id']}").json()["error"] == "bad url http://x/\\u0000y"


def test_nul_in_a_stored_json_value_round_trips(http: httpx2.Client) -> None:
    started = http.post("/v1/executions", json=start_body("s-nulv", "k-nulv", {"url": "http://x/\x00"}))
    assert started.status_code == 201, started.text
    assert http.get(f"/v1/executions/{started.json()['id']}").json()["input"] == {"url": "http://x/\x00"}


@pytest.mark.parametrize("session_id", ["a/runs/b", "a/b", "x" * 129, " ", "a b", "tab\there", "", "ü" * 129, "ü-日本"])
def test_session_ids_breaking_the_rule_are_refused_on_every_route_naming_it(
    http: httpx2.Client, session_id: str
) -> None:
    from urllib.parse import quote

    quoted = quote(session_id, safe="")
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
        ("POST", "/v1/executions", start_body(session_id, "k"), None),
        ("GET", "/v1/executions", None, {"session_id": session_id}),
        ("GET", "/v1/calls", None, {"session_id": session_id}),
    ]
    if quoted:
        requests += [
            ("POST", f"/v1/sessions/{quoted}/runs", {"holder": "h"}, None),
            ("POST", f"/v1/sessions/{quoted}/runs/t/heartbeat", None, None),
            ("DELETE", f"/v1/sessions/{quoted}/runs/t", None, None),
            ("GET", f"/v1/sessions/{quoted}", None, None),
            ("DELETE", f"/v1/sessions/{quoted}", None, None),
        ]
    for method, path, body, params in requests:
        error = refused(http.request(method, path, json=body, params=params))
        assert error["code"] == "invalid_session_id", (method, path, error)
        assert "letter, a digit or one of . _ : - @" in error["message"], error


@pytest.mark.parametrize("session_id", ["demo", "a.b_c:d-e@f", "A-Z_0.9", "x" * 128])
def test_session_ids_following_the_rule_are_taken(http: httpx2.Client, session_id: str) -> None:
    assert http.post("/v1/executions", json=start_body(session_id, "k-ok")).status_code in (200, 201)
    assert http.get("/v1/calls", params={"session_id": session_id}).status_code == 200


def test_every_error_response_in_the_openapi_document_is_the_error_shape(http: httpx2.Client) -> None:
    document = http.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
                    checked += 1
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], (method, path)
    assert checked > 50


def test_every_operation_answers_its_errors_in_the_shape(http: httpx2.Client) -> None:
    """From the document: each operation, sent a wrong method, a bad parameter and a bad body."""
    document = http.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        for method, operation in operations.items():
            wrong = "PUT"
            refused(http.request(wrong, concrete), 405)
            if operation.get("requestBody"):
                error = refused(
                    http.request(method.upper(), concrete, content=b"{}", headers={"content-type": "application/json"}),
                    (404, 422),
                )
                assert error["code"] in ("invalid_request", "not_found"), (method, path, error)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] in ("limit", "wait"):
                    error = refused(http.request(method.upper(), concrete, params={parameter["name"]: "abc"}))
                    assert error["code"] == "invalid_request" and parameter["name"] in error["message"]


def test_a_server_with_a_token_refuses_in_the_shape_and_takes_a_lower_case_scheme(start_server: Any) -> None:
    server = start_server(env={"NEXUM_TOKEN": "s3cret"})
    with httpx2.Client(base_url=server.url, timeout=10) as plain:
        assert refused(plain.get("/v1/executions"), 401)["code"] == "unauthorized"
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = plain.get("/v1/executions", headers={"Authorization": f"{scheme} s3cret"})
            assert answer.status_code == 200, (scheme, answer.text)
        assert plain.get("/v1/executions", headers={"Authorization": "Basic s3cret"}).status_code == 401


def test_lists_never_carry_results_only_their_length(http: httpx2.Client) -> None:
    session = f"s-big-{os.getpid()}"
    big = {"result": "x" * 200_000}
    ids = []
    for i in range(5):
        started = http.post("/v1/executions", json=start_body(session, f"big-{i}")).json()
        tasks = http.post("/v1/tasks/poll", json=poll_body(max_tasks=100, wait=0.2)).json()["tasks"]
        [task] = [t for t in tasks if t["execution_id"] == started["id"]]
        done = http.post(
            f"/v1/tasks/{task['task_id']}/complete", json={"lease_token": task["lease_token"], "output": big}
        )
        assert done.status_code == 200, done.text
        ids.append(started["id"])
    listed = http.get("/v1/executions", params={"session_id": session, "limit": 1000})
    assert len(listed.content) < 20_000, "a list of five 200 KB results is a small answer"
    executions = listed.json()["executions"]
    assert {e["id"] for e in executions} == set(ids)
    assert all(
        e["result"] is None and e["result_chars"] == len(json.dumps(big, separators=(",", ":"))) for e in executions
    ), executions[0]
    one = http.get(f"/v1/executions/{ids[0]}").json()
    assert one["result"] == big and one["result_chars"] is None
