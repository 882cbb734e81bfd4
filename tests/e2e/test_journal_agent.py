"""The journal from the agent's side, with real servers and the real CLI: a fork re-run with another
model, a session exported and imported into a fresh server, and the same file as an offline test.

The agent asks the weather of three cities, one tool call per model request: 7 units (4 model
requests, 3 tool calls), in recorded order M1 T1 M2 T2 M3 T3 M4.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, FunctionToolset
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nexum_devtools.procs import ROOT, WORKER_READY, NexumServer, Proc, running
from nexum_pydantic_ai import NexumDurability, NotRecorded, RecordedModel, RecordedTools
from nexum_server.client import NexumClient
from nexum_server.errors import SessionTakenOver

COMMAND_TIMEOUT = 30
RUN_TIMEOUT = 60
PROMPT = "What is the weather in three cities?"


@dataclass
class Script:
    """A model that asks `lookup` for each city in turn, then answers with what it was told."""

    cities: list[str]
    signature: str
    calls: int = 0

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        asked = sum(isinstance(message, ModelResponse) for message in messages)
        if asked < len(self.cities):
            return ModelResponse(parts=[ToolCallPart("lookup", {"city": self.cities[asked]})])
        told = [str(part.content) for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
        return ModelResponse(parts=[TextPart(f"{self.signature}: {'; '.join(told)}")])


@dataclass
class Weather:
    """The agent's tool, counting its runs; `units` is the default a changed tool would have."""

    units: str = "C"
    looked_up: list[str] = field(default_factory=list)

    def toolset(self) -> FunctionToolset[Any]:
        toolset: FunctionToolset[Any] = FunctionToolset(id="weather")

        # The default is the argument a changed tool would change: the journal records validated
        # arguments, defaults filled in.
        @toolset.tool_plain
        def lookup(city: str, units: str = self.units) -> str:
            self.looked_up.append(city)
            return f"{city}: 21 {units}"

        return toolset


def weather_agent(
    script: Script, weather: Weather, session_id: str | None, client: NexumClient | None = None
) -> tuple[Agent, NexumDurability]:
    durability = NexumDurability(session_id=session_id, client=client)
    agent = Agent(FunctionModel(script), name="weather", toolsets=[weather.toolset()], capabilities=[durability])
    return agent, durability


async def nexum(*args: str) -> str:
    """One `nexum` command, as a user types it; its output with the lines joined."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "nexum_server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return " ".join(done.stdout.split())


async def record(url: str, session_id: str) -> str:
    """The 7-unit session, recorded live; its output."""
    async with NexumClient(url) as client:
        agent, durability = weather_agent(Script(["Paris", "Rome", "Oslo"], "A"), Weather(), session_id, client)
        result = await agent.run(PROMPT)
        assert durability.last_stats is not None and durability.last_stats.model_made == 4
        assert len((await client.journal(session_id)).units) == 7
    return result.output


async def test_a_fork_until_3_replays_three_units_and_runs_the_rest_live(
    server: NexumServer, client: NexumClient, session_id: str
) -> None:
    recorded = await record(server.url, session_id)
    assert recorded == "A: Paris: 21 C; Rome: 21 C; Oslo: 21 C"
    fork = f"{session_id}-fork"
    said = await nexum("fork", session_id, fork, "--until", "3", "--url", server.url)
    assert f"session {fork} forked from {session_id}: 3 units copied (the first 3 are served in order)" in said

    # Another model: M1 T1 M2 are the fork's (M2 asked for Rome), T2 runs, M3 and M4 are the new model's.
    other, weather = Script(["Lima", "Kyiv", "Hue"], "B"), Weather()
    agent, durability = weather_agent(other, weather, fork, client)
    result = await agent.run(PROMPT)
    assert result.output == "B: Paris: 21 C; Rome: 21 C; Hue: 21 C"
    assert other.calls == 2
    assert weather.looked_up == ["Rome", "Hue"]
    stats = durability.last_stats
    assert stats is not None
    assert (stats.model_replayed, stats.model_made, stats.tools_replayed, stats.tools_run) == (2, 2, 1, 2)
    assert len((await client.journal(fork)).units) == 7

    # The tool changed: at step 2 the run asks for other arguments than the fork recorded.
    divergent = f"{session_id}-divergent"
    await nexum("fork", session_id, divergent, "--until", "3", "--url", server.url)
    changed, weather = Script(["Lima"], "C"), Weather(units="F")
    agent, _ = weather_agent(changed, weather, divergent, client)
    with pytest.raises(UserError) as stopped:
        await agent.run(PROMPT)
    said = str(stopped.value)
    assert f"departs from the fork of {divergent} at step 2" in said
    assert 'recorded as a call of lookup({"city":"Paris","units":"C"})' in said
    assert 'this run asks for a call of lookup({"city":"Paris","units":"F"})' in said
    assert changed.calls == 0 and weather.looked_up == []


async def test_an_export_imported_into_a_fresh_server_replays_with_nothing_run(
    start_server: Any, tmp_path: Path, session_id: str
) -> None:
    first = start_server(db=tmp_path / "first.db")
    recorded = await record(first.url, session_id)
    run_file = tmp_path / "run.json"
    said = await nexum("export", session_id, "-o", str(run_file), "--url", first.url)
    assert f"session {session_id} written to {run_file}" in said
    first.stop()

    fresh = start_server(db=tmp_path / "fresh.db")
    imported = f"{session_id}-imported"
    said = await nexum("import", str(run_file), "--as", imported, "--url", fresh.url)
    assert f"session {imported} imported: 7 units" in said

    script, weather = Script(["Paris", "Rome", "Oslo"], "A"), Weather()
    async with NexumClient(fresh.url) as client:
        agent, durability = weather_agent(script, weather, imported, client)
        result = await agent.run(PROMPT)
    assert result.output == recorded
    assert script.calls == 0 and weather.looked_up == []
    stats = durability.last_stats
    assert stats is not None
    assert (stats.model_replayed, stats.model_made, stats.tools_replayed, stats.tools_run) == (4, 0, 3, 0)


async def test_the_recorded_model_answers_offline_and_names_the_first_unrecorded_request(
    server: NexumServer, tmp_path: Path, session_id: str
) -> None:
    recorded = await record(server.url, session_id)
    run_file = tmp_path / "run.json"
    await nexum("export", session_id, "-o", str(run_file), "--url", server.url)
    server.stop()  # from here on there is no server: the file is all the test has

    # The agent as a test builds it: no session, the recorded model; its tools run for real.
    weather = Weather()
    agent, _ = weather_agent(Script([], "unused"), weather, None)
    model = RecordedModel.from_export(run_file)
    with agent.override(model=model):
        assert (await agent.run(PROMPT)).output == recorded
        assert model.requests == 4 and weather.looked_up == ["Paris", "Rome", "Oslo"]

        # And with the tools' recorded results: nothing runs.
        tools = RecordedTools.from_export(run_file)
        assert (await agent.run(PROMPT, capabilities=[tools])).output == recorded
        assert tools.calls == 3 and weather.looked_up == ["Paris", "Rome", "Oslo"]
        # Streamed, and asked again: the same recorded answers.
        async with agent.run_stream(PROMPT, capabilities=[tools]) as streamed:
            assert await streamed.get_output() == recorded
        assert model.requests == 12 and tools.calls == 6

        with pytest.raises(NotRecorded) as changed_prompt:
            await agent.run("What is the weather in four cities?")
        assert str(changed_prompt.value).startswith(f"model request 1 of this run was never recorded in {run_file}")
        assert "its last message: the user prompt 'What is the weather in four cities?'" in str(changed_prompt.value)

    # A tool that answers otherwise: the first request never recorded is the second.
    agent, _ = weather_agent(Script([], "unused"), Weather(units="K"), None)
    with agent.override(model=RecordedModel.from_export(run_file)), pytest.raises(NotRecorded) as changed_tool:
        await agent.run(PROMPT)
    assert re.search(
        r"^model request 2 of this run was never recorded .* its last message: "
        r"the result of lookup: 'Paris: 21 K'$",
        str(changed_tool.value),
    )

    # Matched by the whole key (the deps and metadata as the recorded run had them), the same agent is
    # answered, and one with another tool is a miss although the tool it calls answers the same.
    agent, _ = weather_agent(Script([], "unused"), Weather(), None)
    with agent.override(model=RecordedModel.from_export(run_file, deps=None, metadata=None)):
        assert (await agent.run(PROMPT)).output == recorded
    agent.tool_plain(name="forecast")(lambda city: city)
    with (
        agent.override(model=RecordedModel.from_export(run_file, deps=None, metadata=None)),
        pytest.raises(NotRecorded, match=r"^model request 1 .* same unit key"),
    ):
        await agent.run(PROMPT)


async def test_the_readme_test_passes_against_a_session_the_own_agent_recorded(
    server: NexumServer, tmp_path: Path
) -> None:
    """The README's pytest example, as a user runs it: the agent recorded with its worker, the session
    exported, then pytest with nothing running but pytest."""
    for example in ("own_agent.py", "test_own_agent.py"):
        shutil.copy(ROOT / "examples" / example, tmp_path / example)
    (tmp_path / "a.txt").write_text("one two three four\n")
    (tmp_path / "b.txt").write_text("five six seven eight nine\n")
    env = {"NEXUM_URL": server.url}
    with running(
        Proc(
            [sys.executable, "-m", "nexum_pydantic_ai.worker", "own_agent:TOOLSET"],
            env=env,
            ready=WORKER_READY,
            cwd=tmp_path,
        )
    ):
        agent = Proc([sys.executable, "own_agent.py", "a.txt", "b.txt"], env=env, cwd=tmp_path)
        with running(agent):
            assert agent.popen.wait(RUN_TIMEOUT) == 0, agent.output
        assert "9 words in 2 files" in agent.output
        await nexum("export", "own-agent", "-o", str(tmp_path / "own-agent.json"), "--url", server.url)
    server.stop()

    tests = Proc([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_own_agent.py"], cwd=tmp_path)
    with running(tests):
        assert tests.popen.wait(RUN_TIMEOUT) == 0, tests.output
    assert "2 passed" in tests.output


def requests_by_route(server: NexumServer) -> dict[tuple[str, str, str], int]:
    """How many HTTP requests the server answered, by (method, route, status), from its /metrics."""
    with server.http() as http:
        text = http.get("/metrics").text
    found = re.finditer(
        r'^nexum_request_seconds_count\{method="(\w+)",route="([^"]+)",status="(\d+)"\} (\S+)$', text, re.MULTILINE
    )
    return {(m[1], m[2], m[3]): int(float(m[4])) for m in found if m[2] != "/metrics"}


async def test_a_run_that_holds_its_session_alone_records_each_unit_in_one_write_in_order(
    server: NexumServer, client: NexumClient, session_id: str
) -> None:
    """A fresh run of 10 model requests and 9 tool calls in a session nobody else holds: one write
    per unit, its start carrying the result of the unit before it and a model request's messages
    riding with it; the journal keeps the order the units began in."""
    before = requests_by_route(server)
    agent, durability = weather_agent(Script([f"city {n}" for n in range(9)], "A"), Weather(), session_id, client)
    await agent.run(PROMPT)
    assert durability.last_stats is not None and durability.last_stats.model_made == 10
    after = requests_by_route(server)
    sent = {route: after[route] - before.get(route, 0) for route in after if after[route] != before.get(route, 0)}
    # The run's presence connection (held while it lives, counted when it ends, which may be just
    # after the run) and lease renewals (by the clock) are the run's, not its units'.
    kept = {route: n for route, n in sent.items() if not route[1].endswith(("/presence", "/heartbeat"))}
    assert kept == {
        # One write per unit, its start carrying the result before it; the last result at the end.
        ("POST", "/v1/sessions/{session_id}/runs/{run_token}/units", "200"): 20,
        ("POST", "/v1/sessions/{session_id}/runs", "200"): 1,  # the run takes the session, its journal with it
        ("POST", "/v1/sessions/{session_id}/runs/{run_token}/units", "404"): 1,  # a fresh server: the
        ("POST", "/v1/workflows", "200"): 1,  # agent's workflow is registered once
        ("DELETE", "/v1/sessions/{session_id}/runs/{run_token}", "204"): 1,
    }
    units = (await client.journal(session_id)).units
    assert [unit.input["unit"] for unit in units] == ["model_request", "tool_call"] * 9 + ["model_request"]
    assert [unit.input["tool_args"]["city"] for unit in units if "tool_args" in unit.input] == [
        f"city {n}" for n in range(9)
    ]
    assert all(unit.status.value == "COMPLETED" and unit.attempts == 1 for unit in units)
    units = (await client.journal(session_id)).units
    last_request = [unit for unit in units if unit.input.get("unit") == "model_request"][-1]
    assert len((await client.sent(last_request.id)).messages) == 19  # the prompt, then 9 calls and their results


async def test_a_run_taken_over_mid_run_records_the_result_it_holds_and_starts_nothing_more(
    server: NexumServer, client: NexumClient, session_id: str
) -> None:
    """Another run takes the session while this one runs its first tool call: that call's result,
    waiting to ride with the next start, is still recorded (the unit was this run's to finish), the
    next model request is not started, and the run stops with `SessionTakenOver`."""
    toolset: FunctionToolset[Any] = FunctionToolset(id="weather")

    @toolset.tool_plain
    async def lookup(city: str) -> str:
        await client.take_session(session_id, "another run")
        return f"{city}: 21 C"

    durability = NexumDurability(session_id=session_id, client=client)
    agent = Agent(
        FunctionModel(Script(["Paris", "Rome"], "A")), name="weather", toolsets=[toolset], capabilities=[durability]
    )
    with pytest.raises(SessionTakenOver):
        await agent.run(PROMPT)
    units = (await client.journal(session_id)).units
    assert [(unit.input["unit"], unit.status.value) for unit in units] == [
        ("model_request", "COMPLETED"),
        ("tool_call", "COMPLETED"),
    ]
    assert units[1].result["result"] == "Paris: 21 C"
