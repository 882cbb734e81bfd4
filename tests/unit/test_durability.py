"""The keys of durable units: the same in every process for the same work, different for other work.

A model request's key is computed from what the model is sent (`model_request_key`, a hash chain over
the history): these tests capture exactly that with a `FunctionModel` and compare keys across runs
and processes. The projections are documented in `nexum_pydantic_ai/_keys.py`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from nexum_pydantic_ai import NexumDurability
from nexum_pydantic_ai._keys import MessageChain, RunIdentity, model_request_key, tool_call_key
from workflow import tool_call_key as standalone_key


def _model_key(
    messages: list[ModelMessage],
    model: str = "m",
    run: RunIdentity = RunIdentity("a"),
    chain: MessageChain | None = None,
    settings: Any = None,
    parameters: Any = None,
) -> str:
    from pydantic_ai.models import ModelRequestParameters

    return model_request_key(
        run, chain or MessageChain(), model, messages, settings, parameters or ModelRequestParameters()
    )


ROOT = Path(__file__).resolve().parents[2]


def keys_of_a_run(
    prompt: str = "What is durable execution?",
    instructions: str = "Be brief.",
    model_name: str = "scripted",
    tool_doc: str = "Look something up.",
) -> list[str]:
    """The keys of a two-request run (a tool call, then an answer), as the capability computes them."""
    toolset: FunctionToolset[Any] = FunctionToolset()

    async def lookup(topic: str) -> str:
        return f"notes on {topic}"

    lookup.__doc__ = tool_doc
    toolset.add_function(lookup)
    keys: list[str] = []
    chain = MessageChain()

    async def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        keys.append(
            _model_key(
                messages,
                model_name,
                chain=chain,
                settings=info.model_settings,
                parameters=info.model_request_parameters,
            )
        )
        if len(messages) == 1:  # a generated tool-call id, different in every run
            return ModelResponse(parts=[ToolCallPart("lookup", {"topic": "leases"})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(scripted, model_name=model_name), instructions=instructions, toolsets=[toolset])
    asyncio.run(agent.run(prompt))
    return keys


def _in_another_process(**kwargs: str) -> list[str]:
    code = (
        "import json, sys; from tests.unit.test_durability import keys_of_a_run; "
        "print(json.dumps(keys_of_a_run(**json.loads(sys.argv[1]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_same_run_in_two_processes_gives_the_same_keys() -> None:
    here = keys_of_a_run()
    assert len(here) == 2 and len(set(here)) == 2
    assert _in_another_process() == here
    assert keys_of_a_run() == here  # timestamps, run ids and generated tool-call ids are left out


def test_key_scheme_2_gives_the_keys_it_gave_when_it_was_introduced() -> None:
    # Sessions recorded under this scheme replay only while these stay the same: a change to how a
    # key is computed that changes a value needs a new KEY_SCHEME (and this test's values).
    assert keys_of_a_run() == [
        "179b729cf7cce9fcad07773cbbc2cefff27195f53170a0ab4640fca480fa7892",
        "d4f6ce6ba70112d9a316e520eb10cdf507711308657bb9cbf52d296006446c08",
    ]
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    history = [ModelRequest(parts=[UserPromptPart("q")]), ModelResponse(parts=[TextPart("a")])]
    settings = {"temperature": 0.5, "timestamp": 3}
    assert _model_key(history, settings=settings) == "b5ab1a71ec2734055e5491059b8456de3c658077a03e827692bcdbe23e317a38"


def test_an_edited_prompt_instructions_tool_or_model_gives_other_keys() -> None:
    base = keys_of_a_run()
    for edit in (
        {"prompt": "What is durable execution, really?"},
        {"instructions": "Be thorough."},
        {"tool_doc": "Look something up, carefully."},
        {"model_name": "another-model"},
    ):
        edited = keys_of_a_run(**edit)
        assert edited[0] != base[0], edit
        assert edited[1] != base[1], edit


def test_a_tool_call_key_covers_its_place_name_arguments_agent_deps_and_approval() -> None:
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    history = [
        ModelRequest(parts=[UserPromptPart("q")]),
        ModelResponse(
            parts=[
                ToolCallPart("lookup", {"topic": "a"}, tool_call_id="x1"),
                ToolCallPart("lookup", {"topic": "a"}, tool_call_id="x2"),
            ]
        ),
    ]

    def key(
        args: dict[str, Any] | None = None,
        call: str = "x1",
        run: RunIdentity = RunIdentity("a"),
        approved: bool = False,
        messages: list[ModelMessage] = history,
    ) -> str:
        return tool_call_key(run, MessageChain(), "tools", "lookup", args or {"topic": "a"}, messages, call, approved)

    first = key()
    assert len(first) == 64 and first == key()
    assert first != key(call="x2")  # the second identical call of a response is its own unit
    assert first != key({"topic": "b"})
    assert first != key(run=RunIdentity("another-agent"))
    assert first != key(run=RunIdentity("a", deps={"user": "bob"}))
    assert first != key(run=RunIdentity("a", metadata={"tenant": 2}))
    assert first != key(approved=True)  # the approval run's call runs once, not the recorded ApprovalRequired
    turn_two = [*history, ModelRequest(parts=[UserPromptPart("again")]), history[1]]
    assert first != key(messages=turn_two)  # a later turn's call is another unit
    assert standalone_key("web_search", {"query": "q"}) != standalone_key("web_search", {"query": "q"}, 1)


def test_outside_a_session_the_capability_changes_nothing() -> None:
    calls: list[str] = []

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append("asked")
        return ModelResponse(parts=[TextPart("plain")])

    # No server anywhere: a capability without a session must not try to reach one.
    durability = NexumDurability(session_id=None, url="http://127.0.0.1:9")
    agent = Agent(FunctionModel(answer), name="plain", capabilities=[durability])
    assert asyncio.run(agent.run("hello")).output == "plain"
    assert calls == ["asked"] and durability.last_stats is None


def test_a_mistyped_tool_or_bad_arguments_fail_at_submission_naming_the_tools() -> None:
    """Before any request: no server runs here, and none is needed to refuse the call."""
    import pytest

    from submit_task import InvalidToolCall, call_tool_sync

    with pytest.raises(InvalidToolCall, match="the tools are: web_search, visit_webpage"):
        call_tool_sync("web_serch", {"query": "x"}, "s")
    with pytest.raises(InvalidToolCall, match="max_results"):
        call_tool_sync("web_search", {"query": "x", "max_results": 99}, "s")


def test_parallel_tool_results_give_the_same_key_whatever_order_they_finished_in() -> None:
    from pydantic_ai.messages import ModelRequest, ToolReturnPart, UserPromptPart

    calls = ModelResponse(parts=[ToolCallPart("lookup", {"topic": t}, tool_call_id=f"id-{t}") for t in "abc"])
    returns = {t: ToolReturnPart("lookup", f"notes on {t}", tool_call_id=f"id-{t}") for t in "abc"}

    def key(order: str) -> str:
        history = [ModelRequest(parts=[UserPromptPart("q")]), calls, ModelRequest(parts=[returns[t] for t in order])]
        return _model_key(history)

    assert key("abc") == key("cab") == key("bca")
    other = [
        ModelRequest(parts=[UserPromptPart("q")]),
        calls,
        ModelRequest(parts=[ToolReturnPart("lookup", "other notes", tool_call_id="id-a"), returns["b"], returns["c"]]),
    ]
    assert _model_key(other) != key("abc")


def test_the_chain_hashes_each_message_once_and_gives_the_keys_a_fresh_hash_gives() -> None:
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    history: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart("q")])]
    chain = MessageChain()
    for step in range(30):
        history.append(ModelResponse(parts=[TextPart(f"step {step}")]))
        history.append(ModelRequest(parts=[UserPromptPart(f"more {step}")]))
        assert _model_key(history, chain=chain) == _model_key(history)
    assert len(chain._messages) == len(history)
    other = [ModelRequest(parts=[UserPromptPart("another run")])]
    assert _model_key(other, chain=chain) == _model_key(other)  # a history that is no extension starts afresh
