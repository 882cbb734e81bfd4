"""The HTTP API over real loopback connections to a `nexum dev` subprocess.

Long-poll tests wait for the server's own `nexum_held_requests` gauge before acting (a readiness
signal, not a sleep), then measure how soon the held request answers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from nexum_devtools.procs import NexumServer
from tests.server.conftest import REF, Api, poll_body, start_body

Connect = Callable[..., Api]
StartServer = Callable[..., NexumServer]
WAKE_LIMIT = 0.5
"""A held request must answer this soon after the event it waits for (it typically takes ~5 ms)."""


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for requests the test holds open while it acts; all are joined at the end."""
    with ThreadPoolExecutor(4) as executor:
        yield executor


def timed(call: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    """Wrap `call` to also return the monotonic time at which it returned."""
    return lambda: (call(), time.monotonic())


def error_code(response: httpx2.Response) -> str:
    return response.json()["error"]["code"]


# --- idempotent starts ---------------------------------------------------------------------------


async def test_fifty_concurrent_starts_of_one_key_make_one_execution(
    server: NexumServer, api: Api, session_id: str
) -> None:
    limits = httpx2.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx2.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/executions", json=start_body(session_id, "same-key", {"n": n})) for n in range(50))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [201]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    listed = api.list(session_id=session_id)
    assert [e["id"] for e in listed] == list(ids)
    created = next(r for r in responses if r.status_code == 201).json()
    assert all(r.json()["input"] == created["input"] for r in responses)


def test_a_completed_start_is_served_cached_and_counted(api: Api, session_id: str) -> None:
    first = api.start(session_id, "k", expect=201)
    task = api.poll_one()
    api.complete(task, {"answer": 42})
    again = api.start(session_id, "k", expect=200)
    assert again["id"] == first["id"]
    assert again["cached"] is True and again["status"] == "COMPLETED" and again["result"] == {"answer": 42}
    assert api.get(first["id"])["cached"] is False
    assert api.metric("nexum_cache_hits_total") == 1.0
    assert api.metric("nexum_executions_started_total") == 1.0
    assert api.metric("nexum_executions_completed_total") == 1.0
    assert api.metric("nexum_executions", 'status="COMPLETED"') == 1.0


def test_a_failed_call_starts_anew_and_the_old_one_stays_listed(api: Api, session_id: str) -> None:
    old = api.start(session_id, "k", expect=201)
    task = api.poll_one()
    failed = api.fail(task, "invalid arguments", retryable=False)
    assert failed["status"] == "FAILED" and failed["attempts"] == 1 and failed["error"] == "invalid arguments"
    assert api.poll() == []
    new = api.start(session_id, "k", expect=201)
    assert new["id"] != old["id"] and new["status"] == "PENDING" and new["attempts"] == 0
    history = api.list(key="k", session_id=session_id)
    assert [(e["id"], e["status"]) for e in history] == [(new["id"], "PENDING"), (old["id"], "FAILED")]
    assert api.poll_one()["execution_id"] == new["id"]


def test_starting_an_unregistered_version_is_404(api: Api, session_id: str) -> None:
    response = api.http.post("/v1/executions", json={**start_body(session_id, "k"), "version_hash": "sha256:nope"})
    assert response.status_code == 404
    assert error_code(response) == "workflow_not_found"
    assert "sha256:nope" in response.json()["error"]["message"]
    assert api.list(session_id=session_id) == []


def test_register_answers_new_identical_changed(server: NexumServer, connect: Connect) -> None:
    api = connect(server, register=False)
    assert api.register() == "NEW"
    assert api.register() == "IDENTICAL"
    assert api.register({**REF, "version_hash": "sha256:v2"}) == "CHANGED"
    response = api.http.post("/v1/workflows", json={**REF, "ir": {"nodes": []}})
    assert response.status_code == 422
    assert "nodes" in response.json()["error"]["message"]


# --- long-polls ----------------------------------------------------------------------------------


def test_a_held_poll_wakes_within_milliseconds_of_a_start(
    server: NexumServer, api: Api, connect: Connect, pool: ThreadPoolExecutor, session_id: str
) -> None:
    worker = connect(server, register=False)
    held = pool.submit(timed(lambda: worker.poll("worker-held", wait=10)))
    api.wait_held("task_poll")
    started = time.monotonic()
    execution = api.start(session_id, "k", expect=201)
    tasks, returned = held.result(timeout=15)
    assert [t["execution_id"] for t in tasks] == [execution["id"]]
    assert returned - started < WAKE_LIMIT


def test_a_poll_with_nothing_to_do_answers_204_after_its_wait(api: Api) -> None:
    started = time.monotonic()
    response = api.http.post("/v1/tasks/poll", json=poll_body(wait=0.3))
    elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert 0.3 <= elapsed < 3


@pytest.mark.parametrize("how", ["get", "start"])
def test_a_held_wait_returns_as_soon_as_the_task_completes(
    server: NexumServer, api: Api, connect: Connect, pool: ThreadPoolExecutor, session_id: str, how: str
) -> None:
    execution = api.start(session_id, "k", expect=201)
    task = api.poll_one()
    waiter = connect(server, register=False)
    if how == "get":
        held = pool.submit(timed(lambda: waiter.http.get(f"/v1/executions/{execution['id']}", params={"wait": 10})))
    else:
        held = pool.submit(timed(lambda: waiter.http.post("/v1/executions", json=start_body(session_id, "k", wait=10))))
    api.wait_held("execution_wait")
    completed = time.monotonic()
    api.complete(task, {"done": True})
    response, returned = held.result(timeout=15)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == execution["id"]
    assert body["status"] == "COMPLETED" and body["result"] == {"done": True}
    assert returned - completed < WAKE_LIMIT


def test_a_released_task_goes_at_once_to_a_held_poll(
    server: NexumServer, api: Api, connect: Connect, pool: ThreadPoolExecutor, session_id: str
) -> None:
    api.start(session_id, "k")
    task = api.poll_one("worker-stopping")
    other = connect(server, register=False)
    held = pool.submit(timed(lambda: other.poll("worker-2", wait=10)))
    api.wait_held("task_poll")
    released_at = time.monotonic()
    released = api.report(task, "release")
    assert released.status_code == 200 and released.json()["status"] == "PENDING"
    tasks, returned = held.result(timeout=15)
    assert returned - released_at < WAKE_LIMIT
    assert [(t["execution_id"], t["attempt"]) for t in tasks] == [(task["execution_id"], 1)]
    assert tasks[0]["lease_token"] != task["lease_token"]
    assert api.report(task, "complete", output="from the old holder").status_code == 409


async def test_concurrent_polls_split_the_tasks_without_double_leases(
    server: NexumServer, api: Api, session_id: str
) -> None:
    ids = {api.start(session_id, f"k{i}")["id"] for i in range(10)}
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/tasks/poll", json=poll_body(f"w{n}", max_tasks=2)) for n in range(20))
        )
    tasks = [t for r in responses if r.status_code == 200 for t in r.json()["tasks"]]
    assert sorted(t["execution_id"] for t in tasks) == sorted(ids)
    assert len({t["lease_token"] for t in tasks}) == len(ids)


# --- leases and reports --------------------------------------------------------------------------


def test_an_expired_lease_is_claimed_again_and_the_stale_report_refused(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    server = start_server(lease_seconds=1)
    api = connect(server)
    execution = api.start(session_id, "k")
    first = api.poll_one("worker-hung")
    # Held until the lease runs out: the server wakes the poll at the expiry, nothing sleeps here.
    second = api.poll_one("worker-2", wait=10)
    assert second["execution_id"] == execution["id"]
    assert second["attempt"] == 2 and first["attempt"] == 1
    assert second["lease_token"] != first["lease_token"]
    assert second["lease_expires_at"] - 1 >= first["lease_expires_at"] - 1e-6  # claimed at or after expiry

    stale = api.report(first, "complete", output="late result")
    assert stale.status_code == 409 and error_code(stale) == "lease_lost"
    running = api.get(execution["id"])
    assert running["status"] == "RUNNING" and running["result"] is None and running["attempts"] == 2
    assert api.report(first, "heartbeat").status_code == 409

    api.complete(second, "fresh result")
    assert api.report(first, "complete", output="late result").status_code == 409
    assert api.get(execution["id"])["result"] == "fresh result"
    assert api.metric("nexum_lease_expiries_total") == 1.0
    assert api.metric("nexum_stale_reports_total") == 2.0  # heartbeats are not reports


def test_an_abandoned_last_attempt_fails_on_time_with_no_worker_polling(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    server = start_server(lease_seconds=0.5, max_attempts=1)
    api = connect(server)
    execution = api.start(session_id, "k")
    api.poll_one("worker-that-dies")
    # No further poll: the server's own lease timer must end the execution, and wake the waiter.
    started = time.monotonic()
    response = api.http.get(f"/v1/executions/{execution['id']}", params={"wait": 10}, timeout=30)
    assert response.status_code == 200
    done = response.json()
    assert done["status"] == "FAILED" and "lease expired on attempt 1 of 1" in done["error"]
    assert time.monotonic() - started < 5
    assert api.metric("nexum_lease_expiries_total") == 1.0


def test_the_first_valid_completion_is_the_one_result(api: Api, session_id: str) -> None:
    execution = api.start(session_id, "k")
    task = api.poll_one()
    heartbeat = api.report(task, "heartbeat")
    assert heartbeat.status_code == 200 and heartbeat.json()["lease_expires_at"] >= task["lease_expires_at"]
    assert api.complete(task, {"n": 1})["status"] == "COMPLETED"
    second = api.report(task, "complete", output={"n": 2})
    assert second.status_code == 409 and error_code(second) == "lease_lost"
    assert api.report(task, "fail", error="late", retryable=True).status_code == 409
    assert api.get(execution["id"])["result"] == {"n": 1}
    assert api.start(session_id, "k")["result"] == {"n": 1}


def test_retries_back_off_doubling_then_fail_with_the_last_error(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    server = start_server(max_attempts=3, retry_backoff_seconds=0.05)
    api = connect(server)
    execution = api.start(session_id, "k")
    delays = []
    not_before = 0.0
    for attempt in (1, 2):
        task = api.poll_one(wait=10)
        assert task["attempt"] == attempt
        claimed_at = task["lease_expires_at"] - 30  # the default lease
        assert claimed_at >= not_before - 1e-3
        pending = api.fail(task, f"timeout {attempt}")
        assert pending["status"] == "PENDING" and pending["error"] == f"timeout {attempt}"
        delays.append(pending["next_attempt_at"] - pending["updated_at"])
        not_before = pending["next_attempt_at"]
    assert delays == [pytest.approx(0.05, abs=1e-6), pytest.approx(0.1, abs=1e-6)]
    task = api.poll_one(wait=10)
    assert task["attempt"] == 3 and task["lease_expires_at"] - 30 >= not_before - 1e-3
    final = api.fail(task, "timeout 3")
    assert final["status"] == "FAILED" and final["error"] == "timeout 3" and final["attempts"] == 3
    assert final["next_attempt_at"] is None
    assert api.poll() == []
    assert api.get(execution["id"])["status"] == "FAILED"
    assert api.metric("nexum_retries_total") == 2.0


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_wakes_a_held_wait_and_the_task_is_never_claimed(
    server: NexumServer, api: Api, connect: Connect, pool: ThreadPoolExecutor, session_id: str
) -> None:
    execution = api.start(session_id, "k")
    waiter = connect(server, register=False)
    held = pool.submit(timed(lambda: waiter.http.get(f"/v1/executions/{execution['id']}", params={"wait": 10})))
    api.wait_held("execution_wait")
    cancelled_at = time.monotonic()
    response = api.http.post(f"/v1/executions/{execution['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    waited, returned = held.result(timeout=15)
    assert waited.json()["status"] == "CANCELLED"
    assert returned - cancelled_at < WAKE_LIMIT
    assert api.poll() == []
    again = api.http.post(f"/v1/executions/{execution['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"


def test_a_worker_report_after_cancel_is_refused(api: Api, session_id: str) -> None:
    execution = api.start(session_id, "k")
    task = api.poll_one()
    assert api.http.post(f"/v1/executions/{execution['id']}/cancel").json()["status"] == "CANCELLED"
    for action, body in (
        ("complete", {"output": "too late"}),
        ("heartbeat", {}),
        ("fail", {"error": "x", "retryable": True}),
    ):
        response = api.report(task, action, **body)
        assert response.status_code == 409, (action, response.text)
        assert error_code(response) == "lease_lost"
    after = api.get(execution["id"])
    assert after["status"] == "CANCELLED" and after["result"] is None


def test_cancel_of_a_completed_execution_is_409(api: Api, session_id: str) -> None:
    execution = api.start(session_id, "k")
    api.complete(api.poll_one(), "done")
    response = api.http.post(f"/v1/executions/{execution['id']}/cancel")
    assert response.status_code == 409
    assert "COMPLETED" in response.json()["error"]["message"]
    assert api.get(execution["id"])["status"] == "COMPLETED"


# --- restarts ------------------------------------------------------------------------------------


def test_a_restart_on_the_same_database_keeps_executions_and_results(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    first = start_server()
    api = connect(first)
    done = api.start(session_id, "done")
    api.complete(api.poll_one(), {"kept": True})
    failed = api.start(session_id, "failed")
    api.fail(api.poll_one(), "broken", retryable=False)
    pending = api.start(session_id, "pending")
    before = api.list(session_id=session_id)
    first.stop()
    # A graceful stop closes the store, and SQLite folds the WAL back into the file.
    assert not Path(f"{first.db}-wal").exists()

    second = start_server(db=first.db)
    api = connect(second, register=False)
    assert api.list(session_id=session_id) == before
    assert [e["id"] for e in before] == [pending["id"], failed["id"], done["id"]]
    cached = api.start(session_id, "done", expect=200)
    assert cached["cached"] is True and cached["result"] == {"kept": True}
    assert api.start(session_id, "pending", expect=200)["id"] == pending["id"]
    assert api.poll_one()["execution_id"] == pending["id"]


def test_sigkill_keeps_every_acknowledged_completion(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    first = start_server()
    api = connect(first)
    for i in range(40):
        api.start(session_id, f"k{i}")
    tasks = api.poll(max_tasks=40)
    assert len(tasks) == 40
    acknowledged: list[str] = []
    enough = threading.Event()

    def complete_until_killed() -> None:
        try:
            with first.http() as http:
                for task in tasks:
                    try:
                        response = http.post(
                            f"/v1/tasks/{task['task_id']}/complete",
                            json={"lease_token": task["lease_token"], "output": task["task_id"]},
                        )
                    except httpx2.TransportError:
                        return
                    assert response.status_code == 200, response.text
                    acknowledged.append(task["task_id"])
                    if len(acknowledged) == 10:
                        enough.set()
        finally:
            enough.set()  # also on an error, which `completing.result()` then raises

    with ThreadPoolExecutor(1) as executor:
        completing = executor.submit(complete_until_killed)
        assert enough.wait(15), "the first 10 completions were not acknowledged"
        first.kill()  # while completions are still being sent
        completing.result(timeout=15)
    assert len(acknowledged) >= 10

    second = start_server(db=first.db)
    api = connect(second, register=False)
    executions = {e["id"]: e for e in api.list(session_id=session_id, limit=100)}
    assert len(executions) == 40
    for task_id in acknowledged:
        assert executions[task_id]["status"] == "COMPLETED"
        assert api.get(task_id)["result"] == task_id  # lists carry no results
    unacknowledged = [e for e in executions.values() if e["id"] not in acknowledged]
    assert all(e["status"] in ("RUNNING", "COMPLETED") for e in unacknowledged)


# --- auth, limits, validation --------------------------------------------------------------------


def test_a_token_is_required_everywhere_but_health(start_server: StartServer, connect: Connect) -> None:
    server = start_server(token="s3cret")
    with server.http() as anonymous, server.http(token="wrong") as wrong:
        for client in (anonymous, wrong):
            for method, path in (
                ("GET", "/v1/executions"),
                ("POST", "/v1/workflows"),
                ("GET", "/metrics"),
                ("GET", "/openapi.json"),
                ("POST", "/v1/tasks/poll"),
            ):
                response = client.request(method, path, json={})
                assert response.status_code == 401, (method, path)
                assert error_code(response) == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/health").json()["status"] == "ok"
    api = connect(server, token="s3cret")  # registers the workflow, so the token is accepted
    assert api.list() == []
    assert "nexum_executions" in api.metrics()


def test_unknown_execution_or_task_is_404(api: Api) -> None:
    for method, path, body in (
        ("GET", "/v1/executions/nope", None),
        ("POST", "/v1/executions/nope/cancel", None),
        ("POST", "/v1/tasks/nope/complete", {"lease_token": "t", "output": 1}),
        ("POST", "/v1/tasks/nope/fail", {"lease_token": "t", "error": "x"}),
        ("POST", "/v1/tasks/nope/heartbeat", {"lease_token": "t"}),
        ("POST", "/v1/tasks/nope/release", {"lease_token": "t"}),
    ):
        response = api.http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert error_code(response) == "not_found"
        assert "nope" in response.json()["error"]["message"]


def test_an_oversized_body_is_413_with_or_without_content_length(
    start_server: StartServer, connect: Connect, session_id: str
) -> None:
    server = start_server(max_body_bytes=2048)
    api = connect(server)
    big = json.dumps(start_body(session_id, "big", "x" * 4000)).encode()
    response = api.http.post("/v1/executions", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and error_code(response) == "body_too_large"

    def chunks(body: bytes) -> Iterator[bytes]:
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    chunked = api.http.post("/v1/executions", content=chunks(big), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and error_code(chunked) == "body_too_large"
    assert api.list(session_id=session_id) == []

    small = json.dumps(start_body(session_id, "small", "x" * 100)).encode()
    accepted = api.http.post("/v1/executions", content=chunks(small), headers={"content-type": "application/json"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["input"] == "x" * 100


def _locations(response: httpx2.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"
    return [d["loc"] for d in response.json()["error"]["details"]]


def test_validation_errors_are_422_naming_the_field(api: Api, session_id: str) -> None:
    body = start_body(session_id, "k")
    del body["key"]
    assert ["body", "key"] in _locations(api.http.post("/v1/executions", json=body))
    wrong = {**start_body(session_id, "k"), "wait": "soon"}
    assert ["body", "wait"] in _locations(api.http.post("/v1/executions", json=wrong))
    extra = {**poll_body(), "surprise": 1}
    assert ["body", "surprise"] in _locations(api.http.post("/v1/tasks/poll", json=extra))
    assert ["query", "limit"] in _locations(api.http.get("/v1/executions", params={"limit": 0}))
    assert ["body", "lease_token"] in _locations(api.http.post("/v1/tasks/x/complete", json={"output": 1}))
    assert api.list(session_id=session_id) == []


@pytest.mark.parametrize("raw", [b'{"workflow_id": "wf",', b"not json at all", b"{'single': 'quotes'}"])
def test_malformed_json_is_422_not_500(api: Api, raw: bytes) -> None:
    response = api.http.post("/v1/executions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "code"),
    [
        ("POST", "/v1/executions", b"\xff\xfe\x00", 400, "bad_request"),  # not decodable as any JSON encoding
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("DELETE", "/v1/executions/x/cancel", None, 405, "method_not_allowed"),
    ],
)
def test_framework_errors_use_the_error_shape(
    api: Api, method: str, path: str, raw: bytes | None, status: int, code: str
) -> None:
    response = api.http.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert response.json()["error"]["message"]


def test_openapi_lists_the_paths(api: Api) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    assert {
        "/health",
        "/metrics",
        "/v1/workflows",
        "/v1/executions",
        "/v1/executions/{execution_id}",
        "/v1/executions/{execution_id}/cancel",
        "/v1/tasks/poll",
        "/v1/tasks/{task_id}/heartbeat",
        "/v1/tasks/{task_id}/complete",
        "/v1/tasks/{task_id}/fail",
        "/v1/tasks/{task_id}/release",
    } <= set(paths)
