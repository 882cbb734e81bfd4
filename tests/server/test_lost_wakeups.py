"""Wake-ups reach a poll that can claim the task, and deletions reach every server's cache.

A new task used to wake the oldest held poll even when that poll served another workflow, and the
wake-up was not passed on: a cold call waited out the long-poll (30 s). On PostgreSQL, a deletion
committed while another server's notification listener was reconnecting was never heard there,
and that server went on serving the forgotten result from memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from nexum_devtools.procs import NexumServer
from nexum_server.store import postgres_sql
from tests.server.conftest import Api, start_body

OTHER = {"workflow_id": "other-workflow", "version_hash": "sha256:other"}
WAKE_BOUND_SECONDS = 2.0
"""Well under the long-poll's hold (30 s here): the wake-up reached the right poll."""
DEADLINE = 10.0


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_server(request: pytest.FixtureRequest, start_server: Callable[..., NexumServer]) -> NexumServer:
    db = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return start_server(db=db, max_wait_seconds=30)


def test_a_new_task_wakes_a_poll_that_can_claim_it_not_the_oldest_one(
    backend_server: NexumServer, connect: Callable[..., Api], session_id: str
) -> None:
    api = connect(backend_server)
    api.register(OTHER)
    with ThreadPoolExecutor(2) as pool:
        # The oldest held poll serves another workflow; a younger one serves ours.
        other = pool.submit(
            lambda: api.http.post(
                "/v1/tasks/poll", timeout=60, json={"worker_id": "other", "workflows": [OTHER], "wait": 30}
            )
        )
        api.wait_held("task_poll", 1)
        ours = pool.submit(lambda: api.poll("ours", wait=30))
        api.wait_held("task_poll", 2)
        started = time.monotonic()
        execution = api.start(session_id, "cold")
        [task] = ours.result(timeout=30)
        took = time.monotonic() - started
        assert task["execution_id"] == execution["id"]
        assert took < WAKE_BOUND_SECONDS, f"the cold call waited {took:.1f} s for a poll that could take it"
        # The other poll is still held (it was never handed work it cannot run); end it with a task of its own.
        response = api.http.post("/v1/executions", json={**start_body(session_id, "for-other"), **OTHER})
        assert response.status_code == 201, response.text
        assert other.result(timeout=30).json()["tasks"][0]["workflow_id"] == OTHER["workflow_id"]


def test_a_forget_committed_while_a_listener_is_down_reaches_that_servers_cache(
    postgres_url: str, start_server: Callable[..., NexumServer], connect: Callable[..., Api], session_id: str
) -> None:
    server = start_server(db=postgres_url)
    api = connect(server)
    execution = api.start(session_id, "a")
    api.complete(api.poll_one(), {"result": "r"})
    assert api.start(session_id, "a", expect=200)["cached"]  # in the server's memory now

    with psycopg.connect(postgres_url, autocommit=True) as db, db.transaction():
        # Every server connection ends (waiting until each is gone) in the same transaction as the
        # forget: its notification is sent while no listener of that server exists to hear it.
        db.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (postgres_sql.SERVER_NAME_PREFIX + "%",),
        )
        deleted = db.execute(postgres_sql.FORGET_SESSION, {"session_id": session_id, "origin": "test"}).fetchall()
        assert len(deleted) == 1

    deadline = time.monotonic() + DEADLINE
    while True:  # the re-check after the listener reconnects drops the forgotten result from memory
        again = api.http.post("/v1/executions", json=start_body(session_id, "a"))
        if again.status_code == 201:
            break
        assert time.monotonic() < deadline, f"still served from memory: {again.text}"
        assert again.status_code in (200, 503), again.text
    assert again.json()["id"] != execution["id"]
