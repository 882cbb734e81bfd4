"""Waits over real HTTP: made once per key, held long-polls woken by a resolution (on the same server
or, with PostgreSQL, another), the first resolution wins, timeouts on the server's clock, restarts.

Held requests are started on threads and the test waits for the server's own `event_wait` gauge
before resolving (a readiness signal, not a sleep).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from nexum_devtools.procs import NexumServer
from tests.server.conftest import Api

StartServer = Callable[..., NexumServer]
WAKE_LIMIT = 0.5
"""A held long-poll answers this soon after the resolution it waits for."""
CALLS = [
    {"tool_call_id": "c1", "tool_name": "visit_webpage", "args": {"url": "https://a.example/<script>"}},
    {"tool_call_id": "c2", "tool_name": "visit_webpage", "args": {"url": "https://b.example/"}},
]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def make_wait(
    http: httpx2.Client,
    session_id: str,
    key: str = "w1",
    timeout: float | None = None,
    calls: list[dict[str, Any]] = CALLS,
    expect: int | None = None,
) -> dict[str, Any]:
    response = http.post(
        f"/v1/sessions/{session_id}/waits",
        json={"key": key, "name": "deferred_tool_calls", "timeout_seconds": timeout, "request": {"calls": calls}},
    )
    assert response.status_code in ((expect,) if expect else (200, 201)), response.text
    return response.json()


def held_get(server: NexumServer, token: str, wait: float = 10) -> tuple[dict[str, Any], float]:
    with server.http() as http:
        response = http.get(f"/v1/events/{token}", params={"wait": wait}, timeout=wait + 10)
        assert response.status_code == 200, response.text
        return response.json(), time.monotonic()


def test_a_wait_is_made_once_per_key_and_listed_while_it_waits(api: Api, session_id: str) -> None:
    first = make_wait(api.http, session_id, expect=201)
    again = make_wait(api.http, session_id, expect=200)
    assert again["token"] == first["token"] and again["created_at"] == first["created_at"]
    assert first["status"] == "WAITING" and first["request"]["calls"][0]["args"] == CALLS[0]["args"]
    listed = api.http.get("/v1/events", params={"status": "waiting"}).json()
    mine = [w for w in listed["waits"] if w["session_id"] == session_id]
    assert [w["token"] for w in mine] == [first["token"]]
    assert listed["server_time"] >= first["created_at"]


def test_a_held_long_poll_answers_as_soon_as_the_wait_is_resolved(
    server: NexumServer, api: Api, pool: ThreadPoolExecutor, session_id: str
) -> None:
    wait = make_wait(api.http, session_id)
    held = pool.submit(held_get, server, wait["token"])
    api.wait_held("event_wait")
    resolved_at = time.monotonic()
    answer = api.http.post(f"/v1/events/{wait['token']}", json={"payload": {"approvals": {"c1": True}}, "by": "ann"})
    assert answer.status_code == 200, answer.text
    body, returned = held.result(timeout=15)
    assert body["status"] == "RESOLVED" and body["payload"] == {"approvals": {"c1": True}}
    assert body["resolved_by"] == "ann" and body["resolved_at"] >= body["created_at"]
    assert returned - resolved_at < WAKE_LIMIT
    assert api.http.get("/v1/events", params={"status": "waiting", "session_id": session_id}).json()["waits"] == []


def test_two_resolutions_at_once_one_wins_one_gets_409_and_changes_nothing(
    server: NexumServer, api: Api, pool: ThreadPoolExecutor, session_id: str
) -> None:
    wait = make_wait(api.http, session_id)

    def resolve(body: dict[str, Any]) -> httpx2.Response:
        with server.http() as http:
            return http.post(f"/v1/events/{wait['token']}", json=body)

    answers = list(
        pool.map(resolve, [{"decision": "approve", "by": "ann"}, {"decision": "deny", "reason": "no", "by": "bob"}])
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = next(a for a in answers if a.status_code == 200).json()
    loser = next(a for a in answers if a.status_code == 409).json()
    assert loser["error"]["code"] == "wait_over"
    assert api.http.get(f"/v1/events/{wait['token']}").json() == winner


def test_approve_some_calls_denies_the_rest_and_deny_tells_the_model_why(api: Api, session_id: str) -> None:
    wait = make_wait(api.http, session_id, "a")
    body = api.http.post(f"/v1/events/{wait['token']}", json={"decision": "approve", "calls": ["c2"]}).json()
    assert body["resolved_by"] == "token holder"
    assert body["payload"]["approvals"] == {
        "c1": {"kind": "tool-denied", "message": "Not approved by token holder."},
        "c2": True,
    }
    denied = make_wait(api.http, session_id, "b")
    body = api.http.post(f"/v1/events/{denied['token']}", json={"decision": "deny", "reason": "off limits"}).json()
    assert body["payload"]["approvals"]["c1"] == {"kind": "tool-denied", "message": "off limits"}
    unknown = make_wait(api.http, session_id, "c")
    refused = api.http.post(f"/v1/events/{unknown['token']}", json={"decision": "approve", "calls": ["nope"]})
    assert refused.status_code == 422 and api.http.get(f"/v1/events/{unknown['token']}").json()["status"] == "WAITING"
    failed = api.http.post(f"/v1/events/{unknown['token']}", json={"error": "the user walked away"}).json()
    assert failed["status"] == "FAILED" and failed["error"] == "the user walked away"


def test_unknown_token_is_404_a_bad_body_422_and_without_the_servers_token_401(
    start_server: StartServer, session_id: str
) -> None:
    server = start_server(token="s3cret")
    with server.http() as anonymous, server.http(token="s3cret") as allowed:
        wait = make_wait(allowed, session_id)
        assert anonymous.get(f"/v1/events/{wait['token']}").status_code == 401
        assert anonymous.post(f"/v1/events/{wait['token']}", json={"payload": 1}).status_code == 401
        assert anonymous.get("/v1/events").status_code == 401
        assert anonymous.post(f"/v1/sessions/{session_id}/waits", json={"key": "k", "name": "n"}).status_code == 401
        assert allowed.get("/v1/events/no-such-token").status_code == 404
        assert allowed.post("/v1/events/no-such-token", json={"payload": 1}).status_code == 404
        assert allowed.post(f"/v1/events/{wait['token']}", json={}).status_code == 422
        assert allowed.post(f"/v1/events/{wait['token']}", json={"payload": 1, "error": "x"}).status_code == 422
        assert allowed.get(f"/v1/events/{wait['token']}").json()["status"] == "WAITING"


def test_a_wait_times_out_on_the_servers_clock_from_its_creation_across_a_restart(
    start_server: StartServer, tmp_path: Path, session_id: str
) -> None:
    db = tmp_path / "waits.db"
    server = start_server(db=db)
    with server.http() as http:
        wait = make_wait(http, session_id, timeout=2.0)
    server.stop()
    server = start_server(db=db)
    with server.http() as http:
        again = make_wait(http, session_id, timeout=2.0, expect=200)  # the same wait: its clock kept running
        assert again["token"] == wait["token"] and again["expires_at"] == wait["expires_at"]
        held = http.get(f"/v1/events/{wait['token']}", params={"wait": 30}, timeout=40).json()
    assert held["status"] == "TIMED_OUT" and held["resolved_by"] == "timeout"
    assert held["resolved_at"] == pytest.approx(wait["created_at"] + 2.0)
    assert time.time() >= wait["created_at"] + 2.0


def test_a_wait_survives_a_server_restart_and_is_resolved_after_it(
    start_server: StartServer, tmp_path: Path, session_id: str
) -> None:
    db = tmp_path / "waits.db"
    server = start_server(db=db)
    with server.http() as http:
        wait = make_wait(http, session_id)
    server.stop()
    server = start_server(db=db)
    with server.http() as http:
        assert http.get(f"/v1/events/{wait['token']}").json()["status"] == "WAITING"
        assert http.post(f"/v1/events/{wait['token']}", json={"decision": "approve"}).status_code == 200


def test_a_resolution_on_one_server_wakes_a_hold_on_another_on_the_same_postgresql(
    start_server: StartServer, connect: Callable[..., Api], postgres_url: str, pool: ThreadPoolExecutor, session_id: str
) -> None:
    one, two = start_server(db=postgres_url), start_server(db=postgres_url)
    with one.http() as http:
        wait = make_wait(http, session_id)
    held = pool.submit(held_get, two, wait["token"])
    connect(two, register=False).wait_held("event_wait")
    with one.http() as http:
        resolved_at = time.monotonic()
        assert http.post(f"/v1/events/{wait['token']}", json={"decision": "approve"}).status_code == 200
    body, returned = held.result(timeout=15)
    assert body["status"] == "RESOLVED" and body["payload"]["approvals"] == {"c1": True, "c2": True}
    assert returned - resolved_at < 1.0
