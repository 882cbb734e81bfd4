"""The workflows Nexum runs for an agent, and the payload of a tool call.

- `pydantic-agent-step`: the units the agent runs itself (model requests, tool listings, tools
  that run in its process), claimed by the run that starts them;
- `pydantic-tool-call.<toolset id>`: tool calls of a toolset whose tools are marked
  `RUN_IN_WORKER`, claimed by a worker that serves that toolset (`nexum_pydantic_ai.worker`).

Every unit is one execution of its session, keyed by the sha256 of what produced it (`_keys.py`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, Field

from ._keys import KEY_SCHEME, canonical_json

AGENT_WORKFLOW_ID = "pydantic-agent-step"
"""The executions an agent runs itself: its model requests, and tools that run in its process."""
TOOL_WORKFLOW_PREFIX = "pydantic-tool-call"
NODE_ID = "tool_call"
AGENT_NODE_ID = "agent_step"


class ToolCallInput(BaseModel):
    """The input of one tool-call execution."""

    tool_name: str = Field(min_length=1)
    """Name of the tool to run."""
    tool_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the tool, as the model gave them."""
    toolset_id: str | None = None
    """The toolset that holds the tool."""
    ctx: dict[str, Any] | None = None
    """The run context the tool sees in the worker (`DurableRunContext`'s fields), when a run made the call."""


class ToolCallOutput(BaseModel):
    """The output of one tool-call execution."""

    result: Any
    """What the tool returned, as JSON."""


def tool_workflow_id(toolset_id: str | None) -> str:
    """The workflow of a toolset's worker tools: only workers that serve that toolset claim its calls."""
    return f"{TOOL_WORKFLOW_PREFIX}.{toolset_id}" if toolset_id else TOOL_WORKFLOW_PREFIX


def tool_ir(toolset_id: str | None) -> dict[str, Any]:
    return {
        "workflow_id": tool_workflow_id(toolset_id),
        "key_scheme": KEY_SCHEME,
        "nodes": [
            {
                "id": NODE_ID,
                "kind": "EFFECT",
                "input_schema": ToolCallInput.model_json_schema(),
                "output_schema": ToolCallOutput.model_json_schema(),
            }
        ],
        "edges": [],
    }


AGENT_IR: dict[str, Any] = {
    "workflow_id": AGENT_WORKFLOW_ID,
    "key_scheme": KEY_SCHEME,
    "nodes": [{"id": AGENT_NODE_ID, "kind": "EFFECT", "runs_in": "agent"}],
    "edges": [],
}


def version_hash(ir: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(ir).encode()).hexdigest()


AGENT_VERSION_HASH = version_hash(AGENT_IR)
