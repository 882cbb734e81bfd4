"""The journal over HTTP and from the CLI, against real `nexum dev` servers on SQLite and PostgreSQL:
a start carrying messages (on the fast path), what a model request was sent, the journal in one
request, fork, export and import into a fresh server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nexum_devtools.journal_sim import conversation, start_fields
from nexum_devtools.procs import NexumServer
from nexum_server.journal import message_hash
from tests.server.conftest import REF, Api
from tests.server.test_cli import nexum, said

StartServer = Callable[..., NexumServer]
SCRIPT = "<script>window.__xss = 1</script>"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, start_server: StartServer, connect: Callable[..., Api]) -> Api:
    """A server on each backend, with the test workflow registered."""
    db = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return connect(start_server(db=db))


def model_run(api: Api, session_id: str, turns: int, result_bytes: int = 64) -> list[dict[str, Any]]:
    """`turns` model requests through HTTP starts that carry their new messages, each completed."""
    done = []
    for turn, (sent, new, response) in enumerate(conversation(turns, result_bytes, session_id)):
        hashes, messages = start_fields(sent, new)
        body = {
            **REF,
            "session_id": session_id,
            "key": f"request-{turn}",
            "input": {"unit": "model_request", "model": "test", "sent": hashes},
            "messages": messages,
        }
        started = api.http.post("/v1/executions", json=body)
        assert started.status_code == 201, started.text
        done.append(api.complete(api.poll_one(), response))
    return done


def test_a_start_stores_its_messages_and_the_request_reads_back_what_was_new(backend: Api, session_id: str) -> None:
    done = model_run(backend, session_id, 3)
    assert "sent" not in done[0]["input"]
    view = backend.http.get(f"/v1/executions/{done[2]['id']}/sent").json()
    sent, _, _ = list(conversation(3, 64, session_id))[2]
    assert [m["hash"] for m in view["messages"]] == [message_hash(m) for m in sent]
    assert [m["body"] for m in view["messages"]] == sent
    assert [m["new"] for m in view["messages"]] == [False, False, False, True, True]
    assert view["previous_id"] == done[1]["id"] and view["complete"]
    # A tool call has no list; a start whose hash is not its body's is refused, storing nothing.
    tool = backend.start(session_id, "tool", {"tool_name": "web_search", "tool_args": {"query": "q"}})
    assert backend.http.get(f"/v1/executions/{tool['id']}/sent").json()["messages"] == []
    bad = {
        **REF,
        "session_id": session_id,
        "key": "bad",
        "input": {"sent": ["0" * 64]},
        "messages": [{"hash": "0" * 64, "body": {"kind": "request"}}],
    }
    refused = backend.http.post("/v1/executions", json=bad)
    assert refused.status_code == 422 and "canonical JSON" in refused.text
    unknown = {**bad, "messages": None, "key": "unknown"}
    assert backend.http.post("/v1/executions", json=unknown).status_code == 422


def test_the_journal_is_every_unit_in_recorded_order_in_one_request(backend: Api, session_id: str) -> None:
    done = model_run(backend, session_id, 2)
    backend.start(session_id, "tool", {"tool_name": "web_search", "tool_args": {"query": "q"}})
    journal = backend.http.get(f"/v1/sessions/{session_id}/journal").json()
    assert journal["session_id"] == session_id and journal["forked_from"] is None
    units = journal["units"]
    assert [(u["step"], u["key"], u["status"]) for u in units] == [
        (1, "request-0", "COMPLETED"),
        (2, "request-1", "COMPLETED"),
        (3, "tool", "PENDING"),
    ]
    assert units[1]["result"] == done[1]["result"] and units[2]["input"]["tool_name"] == "web_search"
    assert set(units[0]) == {
        "step",
        "id",
        "workflow_id",
        "version_hash",
        "key",
        "status",
        "input",
        "result",
        "error",
        "attempts",
        "created_at",
        "started_at",
        "attempt_started_at",
        "completed_at",
    }
    assert backend.http.get("/v1/sessions/nothing-here/journal").json()["units"] == []


def test_fork_until_copies_the_first_completed_units_and_records_its_origin(backend: Api, session_id: str) -> None:
    model_run(backend, session_id, 5)
    new = f"{session_id}-fork"
    forked = backend.http.post(f"/v1/sessions/{session_id}/fork", json={"new_session_id": new, "until": 3})
    assert forked.status_code == 201, forked.text
    assert forked.json() == {"session_id": new, "forked_from": session_id, "fork_until": 3, "copied": 3}
    journal = backend.http.get(f"/v1/sessions/{new}/journal").json()
    assert (journal["forked_from"], journal["fork_until"]) == (session_id, 3)
    assert [u["key"] for u in journal["units"]] == ["request-0", "request-1", "request-2"]
    run = backend.http.post(f"/v1/sessions/{new}/runs", json={"holder": "test"}).json()
    assert (run["forked_from"], run["fork_until"]) == (session_id, 3)
    summary = backend.http.get(f"/v1/sessions/{new}").json()
    assert (summary["forked_from"], summary["fork_until"], summary["completed"]) == (session_id, 3, 3)
    # The copy's requests read back what they were sent, as the source's did.
    copy = journal["units"][2]["id"]
    assert len(backend.http.get(f"/v1/executions/{copy}/sent").json()["messages"]) == 5
    again = backend.http.post(f"/v1/sessions/{session_id}/fork", json={"new_session_id": new})
    assert again.status_code == 409
    assert backend.http.post("/v1/sessions/none/fork", json={"new_session_id": "x"}).status_code == 404


def test_export_then_import_into_a_fresh_server_with_the_cli(
    start_server: StartServer, connect: Callable[..., Api], session_id: str, tmp_path: Path
) -> None:
    first = connect(start_server(db=tmp_path / "first.db"))
    model_run(first, session_id, 3)
    first.start(session_id, "tool", {"tool_name": "web_search", "tool_args": {"query": SCRIPT}})
    first.complete(first.poll_one(), {"result": f"found {SCRIPT}"})
    path = tmp_path / "run.json"
    exported = nexum("export", "--url", first.server.url, session_id, "-o", str(path))
    assert exported.returncode == 0, said(exported)
    document = json.loads(path.read_text())
    assert (document["format"], document["version"], document["session_id"]) == ("nexum-session", 1, session_id)
    assert [u["key"] for u in document["units"]] == ["request-0", "request-1", "request-2", "tool"]
    assert len(document["units"][2]["sent"]) == 5 and document["units"][3]["sent"] is None
    assert len(document["messages"]) == 5 and document["workflows"][0]["workflow_id"] == REF["workflow_id"]

    fresh = connect(start_server(db=tmp_path / "fresh.db"), register=False)
    loaded = nexum("import", "--url", fresh.server.url, str(path), "--as", "replayed")
    assert loaded.returncode == 0, said(loaded)
    assert "replayed imported: 4 units" in said(loaded)
    units = fresh.http.get("/v1/sessions/replayed/journal").json()["units"]
    assert [(u["key"], u["result"]) for u in units] == [(u["key"], u["result"]) for u in document["units"]]
    # Replayed: a start of a recorded unit is answered from the store, nothing runs.
    again = fresh.start("replayed", "tool", {"tool_name": "web_search", "tool_args": {"query": SCRIPT}}, expect=200)
    assert again["cached"] and again["result"] == {"result": f"found {SCRIPT}"}
    twice = nexum("import", "--url", fresh.server.url, str(path), "--as", "replayed")
    assert twice.returncode == 1 and "already has stored calls" in said(twice)
    forked = nexum("fork", "--url", fresh.server.url, "replayed", "branch", "--until", "2")
    assert forked.returncode == 0 and "2 units copied (the first 2 are served in order)" in said(forked)


def test_show_prints_what_a_model_request_was_sent_and_its_response(
    server: NexumServer, api: Api, session_id: str
) -> None:
    done = model_run(api, session_id, 3, result_bytes=2000)
    shown = nexum("show", "--url", server.url, done[2]["id"])
    assert shown.returncode == 0, said(shown)
    text = said(shown)
    assert "sent 5 messages, 2 new since the session's previous model request" in text
    assert "instructions: You are a research assistant." in text
    assert f"user: What is durable execution? {session_id}" in text
    assert "+ tool result visit_webpage: result 2" in text and "more characters; --full shows them" in text
    assert "response tool call: visit_webpage(" in text and "usage: input tokens 300, output tokens 20" in text
    full = said(nexum("show", "--url", server.url, "--full", done[2]["id"]))
    assert "more characters" not in full
    as_json = json.loads(nexum("show", "--url", server.url, "--json", done[2]["id"]).stdout)
    assert as_json["id"] == done[2]["id"] and len(as_json["sent"]["messages"]) == 5
