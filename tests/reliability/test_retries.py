"""Transient tool failures are retried with backoff; a call that never succeeds fails visibly, once per run."""

from __future__ import annotations

from collections.abc import Callable

from pydantic_ai.messages import ModelRequest, RetryPromptPart, ToolReturnPart

from demo import build_agent
from nexum_devtools.procs import NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_research.offline_model import planned_model
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import call_tool
from tests.reliability.faults import executions_of, hits, token
from workflow import VISIT_WEBPAGE

MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.05
CALL_TIMEOUT = 60.0


async def test_flaky_page_succeeds_on_the_third_attempt_after_backoff(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server(max_attempts=MAX_ATTEMPTS, retry_backoff_seconds=BACKOFF_SECONDS)
    start_worker(server)
    client = client_of(server)
    path = f"/flaky/{token('flaky')}"
    args = {"url": f"{web.url}{path}?fail={MAX_ATTEMPTS - 1}"}

    outcome = await call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client)

    assert (outcome.execution.status, outcome.execution.attempts) == (Status.COMPLETED, MAX_ATTEMPTS)
    assert outcome.execution.error is None, "the earlier 503s are not left on a success"
    assert hits(web, path) == MAX_ATTEMPTS
    # Each retry waited its backoff: 0.05 s, then 0.1 s; the last attempt's own time is apart from that.
    e = outcome.execution
    assert (e.completed_at or 0) - (e.started_at or 0) >= BACKOFF_SECONDS * (1 + 2)
    assert outcome.tool_seconds < (e.completed_at or 0) - (e.started_at or 0)
    assert [e.id for e in await executions_of(client, session_id, VISIT_WEBPAGE, args)] == [outcome.execution.id]


async def test_always_failing_page_fails_after_max_attempts_shows_the_agent_why_and_is_retried_on_rerun(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
) -> None:
    server = start_server(max_attempts=MAX_ATTEMPTS, retry_backoff_seconds=BACKOFF_SECONDS)
    start_worker(server)
    client = client_of(server)
    path = f"/always-503/{token('down')}"
    args = {"url": f"{web.url}{path}"}
    agent = build_agent(planned_model([(VISIT_WEBPAGE, args)]), session_id, client=client)

    first = await agent.run("Read the page.")

    assert "0 returned, 1 failed" in first.output
    seen = [
        part
        for message in first.all_messages()
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart | RetryPromptPart)
    ]
    [told] = [
        part.model_response() if isinstance(part, RetryPromptPart) else part.model_response_str()
        for part in seen
        if part.tool_name == VISIT_WEBPAGE
    ]
    assert f"failed after {MAX_ATTEMPTS} attempts" in told
    assert "503" in told
    assert hits(web, path) == MAX_ATTEMPTS
    [failed] = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert (failed.status, failed.attempts) == (Status.FAILED, MAX_ATTEMPTS)
    assert "503" in (failed.error or "")

    second = await agent.run("Read the page again.")

    assert "0 returned, 1 failed" in second.output
    assert hits(web, path) == 2 * MAX_ATTEMPTS, "a FAILED call is tried again by a later run"
    executions = await executions_of(client, session_id, VISIT_WEBPAGE, args)
    assert len(executions) == 2
    assert {e.status for e in executions} == {Status.FAILED}
