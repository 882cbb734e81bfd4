"""Timings a user reads: a call *ran* for its last attempt alone; what came before is shown apart;
time saved counts that last attempt, tool calls and model requests apart. Real server, real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable

from nexum_devtools.procs import NexumServer
from tests.server.conftest import Api
from tests.server.test_cli import nexum, said

BACKOFF = 1.0
"""The first retry waits this long: the gap between the two attempts, never the call's running time."""


def test_ran_is_the_last_attempt_and_what_came_before_is_apart(
    start_server: Callable[..., NexumServer], connect: Callable[..., Api], session_id: str
) -> None:
    server = start_server(retry_backoff_seconds=BACKOFF)
    api = connect(server)
    tool = {"tool_name": "web_search", "tool_args": {"query": "durable"}}
    model = {"unit": "model_request", "model": "offline", "messages": 1}
    started = api.start(session_id, "tool", tool)
    api.fail(api.poll_one(), "the site timed out")
    api.complete(api.poll_one(wait=BACKOFF + 10), "pages")  # long-polled until the retry is due
    api.start(session_id, "model", model)
    api.complete(api.poll_one(), {"answer": "text"})

    done = api.get(started["id"])
    assert done["attempts"] == 2
    before = done["attempt_started_at"] - done["started_at"]
    ran = done["completed_at"] - done["attempt_started_at"]
    assert before >= BACKOFF and ran < BACKOFF

    assert api.start(session_id, "tool", tool)["cached"] and api.start(session_id, "model", model)["cached"]
    counts = api.http.get(f"/v1/sessions/{session_id}").json()
    assert counts["tool_seconds_saved"] < BACKOFF  # the retry's wait is not saved time
    assert counts["seconds_saved"] == counts["tool_seconds_saved"] + counts["model_seconds_saved"]

    ps = nexum("ps", "--url", server.url, "--session", session_id, env={"COLUMNS": "120"})
    row = next(line for line in ps.stdout.splitlines() if line.startswith(done["id"]))
    took = float(re.search(r" (\d+\.\d\d)s ", row).group(1))  # type: ignore[union-attr]
    assert took < BACKOFF, row
    show = said(nexum("show", done["id"], "--url", server.url))
    assert f"ran {ran:.2f}s (attempt 2)" in show and f"before {before:.2f}s of earlier attempts" in show
    sessions = nexum("sessions", "--url", server.url, env={"COLUMNS": "120"})
    assert "saved tools" in sessions.stdout and "model" in sessions.stdout
