"""The keys of durable units: the same in every process for the same work, different for other work.

A model request's key is computed from what the model is sent (`model_request_projection`): these
tests capture exactly that with a `FunctionModel` and compare keys across runs and processes.
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

from durability import NexumDurability, model_request_projection, tool_call_projection
from workflow import tool_call_key, unit_key

ROOT = Path(__file__).resolve().parents[2]


def keys_of_a_run(prompt: str = "What is durable execution?", instructions: str = "Be brief.",
                  model_name: str = "scripted", tool_doc: str = "Look something up.") -> list[str]:
    """The keys of a two-request run (a tool call, then an answer), as the capability computes them."""
    toolset: FunctionToolset[Any] = FunctionToolset()

    async def lookup(topic: str) -> str:
        return f"notes on {topic}"

    lookup.__doc__ = tool_doc
    toolset.add_function(lookup)
    keys: list[str] = []

    async def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        keys.append(unit_key(model_request_projection(model_name, messages, info.model_settings,
                                                      info.model_request_parameters)))
        if len(messages) == 1:  # a generated tool-call id, different in every run
            return ModelResponse(parts=[ToolCallPart("lookup", {"topic": "leases"})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(scripted, model_name=model_name), instructions=instructions, toolsets=[toolset])
    asyncio.run(agent.run(prompt))
    return keys


def _in_another_process(**kwargs: str) -> list[str]:
    code = ("import json, sys; from tests.unit.test_durability import keys_of_a_run; "
            f"print(json.dumps(keys_of_a_run(**json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_same_run_in_two_processes_gives_the_same_keys() -> None:
    here = keys_of_a_run()
    assert len(here) == 2 and len(set(here)) == 2
    assert _in_another_process() == here
    assert keys_of_a_run() == here  # timestamps, run ids and generated tool-call ids are left out


def test_an_edited_prompt_instructions_tool_or_model_gives_other_keys() -> None:
    base = keys_of_a_run()
    for edit in ({"prompt": "What is durable execution, really?"}, {"instructions": "Be thorough."},
                 {"tool_doc": "Look something up, carefully."}, {"model_name": "another-model"}):
        edited = keys_of_a_run(**edit)
        assert edited[0] != base[0], edit
        assert edited[1] != base[1], edit


def test_a_tool_call_key_covers_name_arguments_and_occurrence() -> None:
    first = unit_key(tool_call_projection("lookup", {"topic": "a", "n": 1}, 0))
    assert first == unit_key(tool_call_projection("lookup", {"n": 1, "topic": "a"}, 0))  # key order is moot
    assert first != unit_key(tool_call_projection("lookup", {"topic": "a", "n": 1}, 1))
    assert first != unit_key(tool_call_projection("lookup", {"topic": "b", "n": 1}, 0))
    assert tool_call_key("web_search", {"query": "q"}) != tool_call_key("web_search", {"query": "q"}, 1)
    assert len(first) == 64 and int(first, 16) >= 0


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
    from pydantic_ai.models import ModelRequestParameters

    calls = ModelResponse(parts=[ToolCallPart("lookup", {"topic": t}, tool_call_id=f"id-{t}") for t in "abc"])
    returns = {t: ToolReturnPart("lookup", f"notes on {t}", tool_call_id=f"id-{t}") for t in "abc"}

    def key(order: str) -> str:
        history = [ModelRequest(parts=[UserPromptPart("q")]), calls,
                   ModelRequest(parts=[returns[t] for t in order])]
        return unit_key(model_request_projection("m", history, None, ModelRequestParameters()))

    assert key("abc") == key("cab") == key("bca")
    other = [ModelRequest(parts=[UserPromptPart("q")]), calls,
             ModelRequest(parts=[ToolReturnPart("lookup", "other notes", tool_call_id="id-a"),
                                 returns["b"], returns["c"]])]
    assert unit_key(model_request_projection("m", other, None, ModelRequestParameters())) != key("abc")
