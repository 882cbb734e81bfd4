"""Dynamic and MCP toolsets journaled as the peers journal them: a replay in another process charges
no card again, and needs no MCP server.

Ported from pydantic-ai's durable-engine scenarios (`DynamicToolset`, `MCPToolset` over stdio with a
small server of the tests' own, `tests/durable/mcp_server.py`).
"""

from __future__ import annotations

from tests.durable.conftest import Conformance


async def test_a_dynamic_toolset_is_journaled(conformance: Conformance) -> None:
    plain, _, _ = await conformance.check("dynamic_toolset")
    assert plain.output == "Done: charged 10 EUR"
    assert plain.entries.effects == ["charge 10 in Mexico"]


async def test_an_mcp_toolset_is_journaled_and_a_replay_starts_no_mcp_server(conformance: Conformance) -> None:
    plain, durable, replay = await conformance.check("mcp")
    assert plain.output == "Pydantic AI: charged 10 EUR"
    assert sorted(durable.entries.effects) == ["mcp charge 10", "mcp get_product_name"]
    # One MCP session for the run; the replay lists the tools and calls them from the store.
    assert durable.entries.other == ["mcp start"]
    assert replay.entries.other == []


async def test_an_mcp_run_killed_before_its_answer_resumes_calling_no_mcp_tool_again(conformance: Conformance) -> None:
    plain = await conformance.plain("mcp")
    resumed = conformance.crash_and_resume("mcp", at=2, plain=plain)
    assert resumed.entries.other == []
