"""What `NexumDurability` cannot journal is refused with a `UserError` before anything runs, as the
peers refuse it (pydantic-ai's `test_agent_without_name`, `test_toolset_without_id`, runtime toolsets)."""

from __future__ import annotations

import pytest
from pydantic_ai import Agent, FunctionToolset
from pydantic_ai.exceptions import UserError
from pydantic_ai.models.test import TestModel
from pydantic_ai.toolsets import DynamicToolset

from nexum_devtools.procs import NexumServer
from nexum_pydantic_ai import NexumDurability
from nexum_server.client import NexumClient


def ping() -> str:
    return "pong"


def test_an_agent_without_a_name_or_a_model_is_refused() -> None:
    with pytest.raises(UserError, match="needs to have a unique `name`"):
        Agent(TestModel(), capabilities=[NexumDurability(session_id="s")])
    with pytest.raises(UserError, match="needs to have a `model`"):
        Agent(name="no-model", capabilities=[NexumDurability(session_id="s")])


@pytest.mark.parametrize(
    "toolset",
    [FunctionToolset([ping]), DynamicToolset(lambda ctx: FunctionToolset([ping]))],
    ids=["function", "dynamic"],
)
def test_a_toolset_without_an_id_is_refused(toolset: object) -> None:
    with pytest.raises(UserError, match="need to have a unique `id`"):
        Agent(TestModel(), name="idless", toolsets=[toolset], capabilities=[NexumDurability(session_id="s")])  # type: ignore[list-item]


async def test_a_toolset_added_at_run_time_is_refused_before_anything_runs(durable_server: NexumServer) -> None:
    agent = Agent(
        TestModel(),
        name="runtime",
        capabilities=[NexumDurability(session_id="runtime-toolset", url=durable_server.url)],
    )
    with pytest.raises(UserError, match="cannot be added at runtime with Nexum"):
        await agent.run("ping", toolsets=[FunctionToolset([ping], id="late")])
    async with NexumClient(durable_server.url) as client:
        assert await client.list("runtime-toolset") == []
