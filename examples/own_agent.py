"""A durable agent of your own: one tool runs in a worker process, one in the agent's; a re-run replays.

Copy this file anywhere (it imports only installed packages) and run it from its directory, where
the worker imports it as the module `own_agent` and reads the files it is asked for:

Run with:
    pip install '/path/to/the/checkout[pydantic-ai]'       # once: the server and the integration
    nexum dev                                              # terminal 1: the server, on 127.0.0.1:50051
    python -m nexum_pydantic_ai.worker own_agent:TOOLSET   # terminal 2: runs the tools marked RUN_IN_WORKER
    python own_agent.py                                    # terminal 3: counts its own words (or name
                                                           # files); run it again: every unit is replayed
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from nexum_pydantic_ai import RUN_IN_WORKER, NexumDurability, UnitEvent, WorkerToolset

SESSION_ID = "own-agent"
"""The session the runs are journaled in: the same one replays, a new one starts afresh."""

# The id is required: it names the calls the worker serving this toolset takes.
TOOLSET = FunctionToolset(id="files")


@TOOLSET.tool_plain(metadata=RUN_IN_WORKER)
def read_text_file(path: str) -> str:
    """The text of a file; runs in the worker, so it reads the worker's files."""
    return Path(path).read_text()


@TOOLSET.tool_plain
def count_words(text: str) -> int:
    """How many words a text has; runs in the agent's process, journaled like the worker's calls."""
    return len(text.split())


def offline_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A stand-in for a real model, so this runs with no API key: reads each file, then counts."""
    prompt = next(p.content for m in messages for p in m.parts if isinstance(p, UserPromptPart))
    files = str(prompt).partition(":")[2].split()
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    texts = [str(p.content) for p in returns if p.tool_name == "read_text_file"]
    counts = [p.content for p in returns if p.tool_name == "count_words"]
    if len(texts) < len(files):  # one file at a time, so each read is a unit of its own
        return ModelResponse(parts=[ToolCallPart("read_text_file", {"path": files[len(texts)]})])
    if not counts:
        return ModelResponse(parts=[ToolCallPart("count_words", {"text": "\n".join(texts)})])
    return ModelResponse(parts=[TextPart(f"{counts[0]} words in {len(files)} files")])


def on_unit(event: UnitEvent) -> None:
    """Prints each model request and tool call as it ends: `replayed` came from the store."""
    args = ", ".join(repr(value) for value in (event.args or {}).values())
    label = "model request" if event.kind == "model" else f"{event.name}({args})"
    print(f"{'replayed' if event.cached else 'ran':>8}  {label}", flush=True)


def build_agent(durability: NexumDurability) -> Agent:
    """The agent, its runs journaled by `durability` (with `session_id=None`, not at all: a test's)."""
    return Agent(
        FunctionModel(offline_model),  # a real model instead: "openai:gpt-5-mini", with OPENAI_API_KEY set
        name="files",  # part of every unit's key: keep it when you edit the agent
        toolsets=[WorkerToolset(TOOLSET)],
        capabilities=[durability],
    )


def task(files: list[str]) -> str:
    """The prompt: the same files make the same prompt, which a re-run (or a test) finds recorded."""
    return "Count the words in these files: " + " ".join(files)


async def main(files: list[str]) -> None:
    durability = NexumDurability(session_id=SESSION_ID, on_unit=on_unit)  # NEXUM_URL, else 127.0.0.1:50051
    result = await build_agent(durability).run(task(files))
    print(result.output)
    stats = durability.last_stats
    assert stats is not None
    print(
        f"replayed {stats.model_replayed} model requests and {stats.tools_replayed} tool calls; "
        f"made {stats.model_made} and ran {stats.tools_run}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or [__file__]))
