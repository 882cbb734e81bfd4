"""Sessions over HTTP against a real `nexum dev`: counts, pages, a session's calls, forget, retention.

Retention's clock is the test's in `test_retention_sweep_*` (the sweep runs in-process on a real
SQLite store); the end-to-end retention test uses a real server with a one-second period and waits
for the deletion on a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from nexum_devtools.procs import ROOT, NexumServer
from nexum_server.config import Settings
from nexum_server.models import SessionRunInfo, Status, WorkflowRef
from nexum_server.service import QueueService
from nexum_server.sessions import RETENTION_BATCH, Retention
from nexum_server.store import SQLiteStore
from tests.server.conftest import IR, VERSION_HASH, WORKFLOW_ID, Api

StartServer = Callable[..., NexumServer]
DEADLINE = 10.0
CHECK_EVERY = 0.05
DAY = 86_400.0


def finish(api: Api, session_id: str, key: str, input: Any = None, output: Any = None) -> dict[str, Any]:
    """Start one execution and complete it through a poll; the COMPLETED execution."""
    started = api.start(session_id, key, input)
    task = api.poll_one()
    assert task["execution_id"] == started["id"]
    return api.complete(task, {"result": f"result of {key}"} if output is None else output)


def sessions(api: Api, **params: Any) -> dict[str, Any]:
    response = api.http.get("/v1/sessions", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_sessions_list_counts_calls_hits_and_time_saved(api: Api, session_id: str) -> None:
    done = finish(api, session_id, "a", {"tool": "web_search", "args": {"query": "durable"}})
    for _ in range(2):
        again = api.start(session_id, "a", expect=200)
        assert again["cached"] and again["id"] == done["id"]
    other = f"{session_id}-other"
    finish(api, other, "x")
    api.start(session_id, "b")

    listed = sessions(api)["sessions"]
    assert [s["session_id"] for s in listed] == [session_id, other]  # "b" started last
    mine = listed[0]
    assert (mine["calls"], mine["completed"], mine["cached_hits"], mine["pending"], mine["failed"]) == (2, 1, 2, 1, 0)
    ran = done["completed_at"] - done["started_at"]
    assert mine["seconds_saved"] == pytest.approx(2 * ran)

    # A cached hit is activity: the session it belongs to moves to the top.
    api.start(other, "x", expect=200)
    assert sessions(api)["sessions"][0]["session_id"] == other
    api.start(session_id, "a", expect=200)
    assert api.http.get(f"/v1/sessions/{session_id}").json()["cached_hits"] == 3
    assert [s["session_id"] for s in sessions(api, contains="other")["sessions"]] == [other]


@pytest.mark.parametrize("content_type", ["application/json", "application/json;charset=UTF-8"])
def test_a_run_takes_and_ends_its_session_alike_on_the_hot_and_the_documented_route(
    api: Api, session_id: str, content_type: str
) -> None:
    # The hot routes answer "application/json"; any other JSON type goes through FastAPI's routes.
    done = finish(api, session_id, "a")
    headers = {"content-type": content_type}
    runs = f"/v1/sessions/{session_id}/runs"

    def take() -> dict[str, Any]:
        took = api.http.post(runs, content=json.dumps({"holder": "me", "journal": True}), headers=headers)
        assert took.status_code == 200, took.text
        return took.json()

    first = take()
    assert set(first) == set(SessionRunInfo.model_fields) and first["previous_holder"] is None
    assert [unit["id"] for unit in first["journal"]["units"]] == [done["id"]]
    second = take()
    assert second["previous_holder"] == "me" and second["run_token"] != first["run_token"]

    hits = api.metric("nexum_cache_hits_total")
    served = json.dumps({"execution_ids": [done["id"]]})
    ended = api.http.request("DELETE", f"{runs}/{second['run_token']}", content=served, headers=headers)
    assert ended.status_code == 204, ended.text
    assert api.metric("nexum_cache_hits_total") == hits + 1
    third = take()
    assert third["previous_holder"] is None  # the run ended: nobody was live
    assert api.http.delete(f"{runs}/{third['run_token']}").status_code == 204  # no body: no hits
    assert api.metric("nexum_cache_hits_total") == hits + 1
    assert (
        api.metric(
            "nexum_request_seconds_count",
            f'method="DELETE",route="{runs.replace(session_id, "{session_id}")}/{{run_token}}",status="204"',
        )
        >= 2
    )


def test_sessions_come_a_page_at_a_time(api: Api, session_id: str) -> None:
    names = [f"{session_id}-{i}" for i in range(5)]
    for name in names:
        api.start(name, "k")
    first = sessions(api, limit=2)
    second = sessions(api, limit=2, cursor=first["next_cursor"])
    third = sessions(api, limit=2, cursor=second["next_cursor"])
    seen = [s["session_id"] for page in (first, second, third) for s in page["sessions"]]
    assert seen == names[::-1] and third["next_cursor"] is None

    bad = api.http.get("/v1/sessions", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["query", "cursor"]
    assert "leave it out to start from the newest" in bad.json()["error"]["message"]
    assert api.http.get("/v1/sessions", params={"limit": 0}).status_code == 422


def test_calls_show_tool_calls_and_summarise_other_workflows(api: Api, session_id: str) -> None:
    model = {"workflow_id": "model-request", "version_hash": "sha256:m"}
    api.register(model, IR)
    finish(api, session_id, "t", {"tool_name": "visit_webpage", "tool_args": {"url": "http://example.test/a"}})
    response = api.http.post(
        "/v1/executions",
        json={
            **model,
            "session_id": session_id,
            "key": "m",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
        },
    )
    assert response.status_code == 201, response.text

    calls = api.http.get("/v1/calls", params={"session_id": session_id}).json()["calls"]
    assert [c["key"] for c in calls] == ["m", "t"]
    request, visit = calls
    assert (visit["tool"], visit["args"], visit["status"]) == (
        "visit_webpage",
        {"url": "http://example.test/a"},
        "COMPLETED",
    )
    assert visit["result_chars"] > 0 and visit["worker_id"] == "worker-1" and "result" not in visit
    assert request["tool"] is None and request["workflow_id"] == "model-request"
    assert request["summary"] == 'messages: [{"role": "user", "content": "hi"}]'

    first = api.http.get("/v1/calls", params={"session_id": session_id, "limit": 1}).json()
    rest = api.http.get("/v1/calls", params={"session_id": session_id, "cursor": first["next_cursor"]}).json()
    assert [c["key"] for c in first["calls"] + rest["calls"]] == ["m", "t"]


def test_forget_refuses_a_live_session_then_deletes_it_and_its_calls_run_again(api: Api, session_id: str) -> None:
    done = finish(api, session_id, "a")
    assert api.start(session_id, "a", expect=200)["cached"]  # now held in the server's memory too
    live = api.start(session_id, "b")

    busy = api.http.delete(f"/v1/sessions/{session_id}")
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "session_busy"
    assert "1 call(s) still pending or running" in busy.json()["error"]["message"]
    assert api.get(done["id"])["status"] == "COMPLETED"  # nothing deleted

    api.complete(api.poll_one(), {"result": "b"})
    forgotten = api.http.delete(f"/v1/sessions/{session_id}")
    assert forgotten.status_code == 200, forgotten.text
    assert forgotten.json() == {"session_id": session_id, "deleted": 2}
    assert api.http.get(f"/v1/executions/{live['id']}").status_code == 404
    assert api.http.get(f"/v1/sessions/{session_id}").status_code == 404
    assert api.http.delete(f"/v1/sessions/{session_id}").status_code == 404

    again = api.start(session_id, "a", expect=201)
    assert again["id"] != done["id"] and again["status"] == "PENDING" and not again["cached"]
    assert api.poll_one()["execution_id"] == again["id"]
    assert 'nexum_executions_deleted_total{reason="forget"} 2.0' in api.metrics()


def test_session_ids_with_every_allowed_character_are_addressed_whole(api: Api) -> None:
    odd = "team.a_b:c-d@e.Z9"
    finish(api, odd, "k")
    finish(api, "team", "k")
    assert api.http.get(f"/v1/sessions/{quote(odd, safe='')}").json()["session_id"] == odd
    assert api.http.delete(f"/v1/sessions/{quote(odd, safe='')}").json()["deleted"] == 1
    assert api.http.get("/v1/sessions/team").json()["calls"] == 1


def test_a_session_id_with_a_slash_never_routes_to_the_session_run_endpoints(api: Api, session_id: str) -> None:
    finish(api, session_id, "k")
    for method in ("GET", "DELETE"):
        refused = api.http.request(method, f"/v1/sessions/{quote(session_id + '/runs/b', safe='')}")
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_session_id", refused.text
    assert api.http.get(f"/v1/sessions/{session_id}").json()["calls"] == 1


def test_the_page_and_its_files_are_served_with_a_strict_policy(server: NexumServer) -> None:
    with server.http() as http:
        page = http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/ui/app.js"' in page.text
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            response = http.get(f"/ui/{name}")
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
            assert response.headers["x-content-type-options"] == "nosniff"
        assert http.get("/ui/../pyproject.toml").status_code == 404
        assert http.get("/ui/sessions.py").status_code == 404


def test_with_a_token_the_page_is_open_and_its_data_is_not(start_server: StartServer) -> None:
    server = start_server(token="s3cret")
    with server.http() as anonymous, server.http(token="s3cret") as allowed:
        assert anonymous.get("/ui").status_code == 200
        assert anonymous.get("/ui/app.js").status_code == 200
        for path in ("/v1/sessions", "/v1/sessions/x", "/v1/calls?session_id=x"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.delete("/v1/sessions/x").status_code == 401
        assert allowed.get("/v1/sessions").status_code == 200


# --- retention -------------------------------------------------------------------------------------

REF = WorkflowRef(workflow_id=WORKFLOW_ID, version_hash=VERSION_HASH)
T0 = 1_700_000_000.0


async def test_retention_sweep_deletes_old_results_in_batches_and_their_calls_run_again(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "nexum.db"))
    store = SQLiteStore(settings)
    store.start()
    service = QueueService(settings, store)
    try:
        store.register_workflow(REF, IR, T0)
        count = RETENTION_BATCH + 3
        for i in range(count):
            store.start_execution(REF, "s", f"old{i}", None, T0)
        for task in store.claim("w", [REF], count, 30.0, T0).tasks:
            service.completed.put(store.complete(task.task_id, task.lease_token, {"result": "x"}, T0 + 1))
        store.start_execution(REF, "s", "recent", None, T0 + 20 * DAY)
        assert service.completed.get(REF.workflow_id, "s", "old0") is not None

        now = [T0 + 30 * DAY]
        retention = Retention(service, 30 * DAY, clock=lambda: now[0])
        assert await retention.sweep() == 0  # ended exactly 30 days minus a second ago

        now[0] = T0 + 31 * DAY
        assert await retention.sweep() == count
        assert service.completed.get(REF.workflow_id, "s", "old0") is None
        assert [c.key for c in store.list_calls("s", 10, None)[0]] == ["recent"]
        again = store.start_execution(REF, "s", "old0", None, now[0])
        assert again.created and again.execution.status is Status.PENDING
    finally:
        store.shutdown()


def test_a_server_with_retention_deletes_ended_calls_and_they_run_again(
    start_server: StartServer, connect: Callable[..., Api], session_id: str
) -> None:
    server = start_server(retain="1s")
    server.wait_for(re.compile(r"retain 1s"))
    api = connect(server)
    done = finish(api, session_id, "a")
    deadline = time.monotonic() + DEADLINE
    while api.http.get(f"/v1/executions/{done['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the ended execution was not retained away"
        time.sleep(CHECK_EVERY)
    again = api.start(session_id, "a", expect=201)
    assert again["id"] != done["id"]
    assert api.poll_one()["execution_id"] == again["id"]


def test_a_bad_retention_period_is_refused_naming_the_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nexum_server", "dev", "--db", str(tmp_path / "n.db"), "--retain", "30 days"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2  # a bad setting: the server cannot start
    assert "--retain='30 days' is not valid: expected a positive number and a unit, e.g. 30d" in " ".join(
        result.stderr.split()
    )


def test_forget_on_one_server_reaches_the_cache_of_another_on_the_same_postgresql(
    start_server: StartServer, connect: Callable[..., Api], postgres_url: str, session_id: str
) -> None:
    one, two = start_server(db=postgres_url), start_server(db=postgres_url)
    first, second = connect(one), connect(two)
    done = finish(first, session_id, "a")
    assert second.start(session_id, "a", expect=200)["cached"]  # now in the second server's memory too
    assert second.start(session_id, "a", expect=200)["cached"]

    assert first.http.delete(f"/v1/sessions/{session_id}").json()["deleted"] == 1
    deadline = time.monotonic() + DEADLINE
    while True:  # the deletion reaches the second server as a notification, moments after the commit
        started = second.http.post(
            "/v1/executions", json={**REF.model_dump(), "session_id": session_id, "key": "a", "input": {"key": "a"}}
        )
        if started.status_code == 201:
            break
        assert started.json()["id"] == done["id"] and time.monotonic() < deadline, "still served from memory"
        time.sleep(CHECK_EVERY)
    assert started.json()["id"] != done["id"]
