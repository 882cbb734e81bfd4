"""The research agent in-process, its tools going through a real server and worker to the fixture web.

Each test counts what reached the fixture web server: one request per distinct tool call on the
first run of a session, none on a re-run, and one again for a call that failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from demo import build_agent
from nexum_devtools.procs import Proc
from nexum_devtools.web import WebFixture
from nexum_research.offline_model import planned_model
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import call_tool
from tests.e2e.helpers import Calls, WebRequests
from workflow import VISIT_WEBPAGE, WEB_SEARCH, WORKFLOW_ID, canonical_json

PROMPT = "Research durable execution."
SLOW_SECONDS = 0.5
"""Long enough that two starts of the same call sent together both find it still running."""


def research_plan(web_url: str, token: str) -> list[tuple[str, dict[str, Any]]]:
    """Four distinct calls, unique to `token`, with the arguments `build_agent`'s tools pass on."""
    return [
        (WEB_SEARCH, {"query": f"durable execution {token}", "max_results": 5}),
        (VISIT_WEBPAGE, {"url": f"{web_url}/pages/{token}-a"}),
        (WEB_SEARCH, {"query": f"sqlite leases {token}", "max_results": 3}),
        (VISIT_WEBPAGE, {"url": f"{web_url}/pages/{token}-b"}),
    ]


async def run_agent(model: Model, session_id: str, client: NexumClient, calls: Calls) -> list[ModelMessage]:
    agent = build_agent(model, session_id, client=client, on_unit=calls)
    result = await agent.run(PROMPT)
    return result.all_messages()


async def tool_executions(client: NexumClient, session_id: str) -> list[Any]:
    """The session's tool-call executions (its model requests are executions of another workflow)."""
    return [e for e in await client.list(session_id=session_id) if e.workflow_id == WORKFLOW_ID]


def _text(event: Any) -> str:
    return event.execution.result["result"]


def keys(pairs: Any) -> list[str]:
    return sorted(canonical_json([name, args]) for name, args in pairs)


def final_text(messages: list[ModelMessage]) -> str:
    last = messages[-1]
    assert isinstance(last, ModelResponse)
    return "".join(p.content for p in last.parts if isinstance(p, TextPart))


async def test_first_run_executes_each_call_once_and_a_rerun_is_served_from_the_store(
    worker: Proc, client: NexumClient, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    plan = research_plan(web.url, session_id)
    mark = web_requests.mark()
    first = Calls()
    messages = await run_agent(planned_model(plan, batch=2), session_id, client, first)

    assert "4 returned, 0 failed" in final_text(messages)
    assert keys((c.tool_name, c.tool_args) for c in first) == keys(plan)
    assert [c.error for c in first] == [None] * 4
    assert not any(o.cached for o in first.outcomes)
    for name, args in plan:
        assert web_requests.for_call(name, args, since=mark) == 1, (name, args)
    assert len(web_requests.since(mark)) == len(plan)
    stored = await tool_executions(client, session_id)
    assert keys((e.input["tool_name"], e.input["tool_args"]) for e in stored) == keys(plan)
    assert {(e.status, e.attempts) for e in stored} == {(Status.COMPLETED, 1)}

    mark = web_requests.mark()
    again = Calls()
    messages = await run_agent(planned_model(plan, batch=2), session_id, client, again)

    assert "4 returned, 0 failed" in final_text(messages)
    assert web_requests.since(mark) == []
    assert len(again.outcomes) == 4
    assert all(o.cached and o.execution.cached for o in again.outcomes)
    assert {o.execution.id for o in again.outcomes} == {o.execution.id for o in first.outcomes}
    assert {_text(o) for o in again.outcomes} == {_text(o) for o in first.outcomes}
    assert len(await tool_executions(client, session_id)) == len(plan)


async def test_another_session_executes_the_same_calls_afresh(
    worker: Proc, client: NexumClient, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    plan = research_plan(web.url, session_id)
    first = Calls()
    await run_agent(planned_model(plan, batch=2), session_id, client, first)

    other_session = f"{session_id}-other"
    mark = web_requests.mark()
    other = Calls()
    await run_agent(planned_model(plan, batch=2), other_session, client, other)

    assert len(other.outcomes) == 4
    assert not any(o.cached for o in other.outcomes)
    for name, args in plan:
        assert web_requests.for_call(name, args, since=mark) == 1, (name, args)
    first_ids = {o.execution.id for o in first.outcomes}
    assert first_ids.isdisjoint(o.execution.id for o in other.outcomes)
    assert {e.session_id for e in await tool_executions(client, other_session)} == {other_session}


async def test_two_identical_calls_in_one_response_are_two_executions_replayed_in_order(
    worker: Proc, client: NexumClient, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    url = f"{web.url}/slow/{session_id}?seconds={SLOW_SECONDS}"

    async def read_twice(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(
                parts=[
                    ToolCallPart(VISIT_WEBPAGE, {"url": url}, tool_call_id="one"),
                    ToolCallPart(VISIT_WEBPAGE, {"url": url}, tool_call_id="two"),
                ]
            )
        return ModelResponse(parts=[TextPart("read it twice")])

    mark = web_requests.mark()
    calls = Calls()
    await run_agent(FunctionModel(read_twice), session_id, client, calls)

    # A deliberate second identical call is its own execution (its occurrence is part of its key).
    assert web_requests.for_call(VISIT_WEBPAGE, {"url": url}, since=mark) == 2
    assert len(calls.outcomes) == 2
    one, two = calls.outcomes
    assert one.execution.id != two.execution.id
    assert _text(one).startswith("# ") and _text(two).startswith("# ")
    assert not one.cached and not two.cached
    assert len(await tool_executions(client, session_id)) == 2

    mark = web_requests.mark()
    again = Calls()
    await run_agent(FunctionModel(read_twice), session_id, client, again)
    assert web_requests.since(mark) == []
    assert all(o.cached for o in again.outcomes)
    assert sorted(o.execution.id for o in again.outcomes) == sorted(o.execution.id for o in calls.outcomes)


async def test_two_concurrent_call_tool_make_one_request(
    worker: Proc, client: NexumClient, web_requests: WebRequests, session_id: str
) -> None:
    args = {"query": f"concurrent {session_id}", "max_results": 2}
    mark = web_requests.mark()

    one, two = await asyncio.gather(
        call_tool(WEB_SEARCH, args, session_id, timeout=30, client=client),
        call_tool(WEB_SEARCH, args, session_id, timeout=30, client=client),
    )

    assert web_requests.for_call(WEB_SEARCH, args, since=mark) == 1
    assert one.execution.id == two.execution.id
    assert _text(one) == _text(two)
    assert len(await tool_executions(client, session_id)) == 1


def tool_failures(messages: list[ModelMessage], tool_name: str) -> list[str]:
    """What the model was told about each failed call of `tool_name`."""
    told = []
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, RetryPromptPart) and part.tool_name == tool_name:
                told.append(part.model_response())
            elif isinstance(part, ToolReturnPart) and part.tool_name == tool_name and part.outcome != "success":
                told.append(part.model_response_str())
    return told


async def test_a_permanent_tool_error_reaches_the_agent_and_is_retried_only_by_a_rerun(
    worker: Proc, client: NexumClient, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    missing = {"url": f"{web.url}/missing/{session_id}"}
    plan = [(VISIT_WEBPAGE, missing)]
    mark = web_requests.mark()
    first = Calls()
    messages = await run_agent(planned_model(plan), session_id, client, first)

    assert "0 returned, 1 failed" in final_text(messages)
    told = tool_failures(messages, VISIT_WEBPAGE)
    assert len(told) == 1 and "HTTP 404" in told[0]
    assert len(first) == 1 and first[0].outcome is None
    assert first[0].error is not None and "HTTP 404" in first[0].error
    assert web_requests.for_call(VISIT_WEBPAGE, missing, since=mark) == 1
    [failed] = await tool_executions(client, session_id)
    assert failed.status is Status.FAILED
    assert failed.attempts == 1
    assert failed.error is not None and "HTTP 404" in failed.error

    mark = web_requests.mark()
    again = Calls()
    messages = await run_agent(planned_model(plan), session_id, client, again)

    assert "0 returned, 1 failed" in final_text(messages)
    assert len(again) == 1 and again[0].outcome is None
    assert web_requests.for_call(VISIT_WEBPAGE, missing, since=mark) == 1
    stored = await tool_executions(client, session_id)
    assert len({e.id for e in stored}) == 2
    assert {(e.status, e.attempts, e.cached) for e in stored} == {(Status.FAILED, 1, False)}
