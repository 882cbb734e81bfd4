"""A unit whose result the server cannot take is recorded FAILED with the reason, not run again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from nexum_devtools.procs import NexumServer
from nexum_pydantic_ai import AGENT_WORKFLOW_ID, NexumDurability
from nexum_server.client import NexumClient
from nexum_server.models import Status

BODY_LIMIT = 64 * 1024


def _agent(session_id: str, client: NexumClient, ran: list[str]) -> Agent[None, str]:
    toolset: FunctionToolset[None] = FunctionToolset(id="big")

    @toolset.tool_plain
    def big_page() -> str:
        """A page far larger than the server takes."""
        ran.append("big_page")
        return "x" * (4 * BODY_LIMIT)

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(p, ToolReturnPart) for m in messages for p in getattr(m, "parts", [])):
            return ModelResponse(parts=[TextPart("read it")])
        return ModelResponse(parts=[ToolCallPart("big_page", {})])

    return Agent(
        FunctionModel(model),
        name="oversized",
        toolsets=[toolset],
        capabilities=[NexumDurability(session_id=session_id, client=client)],
    )


async def test_a_result_over_the_body_limit_fails_the_run_naming_it_and_a_resume_does_not_run_it_again(
    start_server: Callable[..., NexumServer], client_of: Callable[..., NexumClient], session_id: str
) -> None:
    server = start_server(max_body_bytes=BODY_LIMIT)
    client = client_of(server)
    ran: list[str] = []

    with pytest.raises(UserError, match="too large to store") as first:
        await _agent(session_id, client, ran).run("read the big page")
    assert "NEXUM_MAX_BODY_BYTES" in str(first.value)
    [unit] = [
        e
        for e in await client.list(session_id)
        if e.workflow_id == AGENT_WORKFLOW_ID and e.input.get("unit") == "tool_call"
    ]
    assert unit.status is Status.FAILED and (unit.error or "").startswith("too large to store")

    with pytest.raises(UserError, match="too large to store"):
        await _agent(session_id, client, ran).run("read the big page")
    assert ran == ["big_page"], "the resume did not run the tool again"
