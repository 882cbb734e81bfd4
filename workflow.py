"""The research example's names: its workflow, its tools, and the key of a tool call.

The research tools run in the worker as the workflow `pydantic-tool-call.research` (one EFFECT node,
`tool_call`: its input names a tool and its arguments, its output is the tool's result). Every other
script imports these names from here; the library (`nexum_pydantic_ai`) defines what they stand for.

Run with:
    python workflow.py        # prints the workflow id, its version hash and its IR
"""

from __future__ import annotations

import json
from typing import Any

from nexum_pydantic_ai import (
    AGENT_WORKFLOW_ID,
    ToolCallInput,
    ToolCallOutput,
    canonical_json,
    standalone_tool_key,
    tool_ir,
    tool_workflow_id,
    version_hash,
)
from nexum_research import AGENT_NAME, TOOL_NAMES, VISIT_WEBPAGE, WEB_SEARCH

TOOLSET_ID = "research"
"""The research toolset's id: it names the workflow its worker serves."""
WORKFLOW_ID = tool_workflow_id(TOOLSET_ID)
NODE_ID = "tool_call"
IR: dict[str, Any] = tool_ir(TOOLSET_ID)
VERSION_HASH = version_hash(IR)

__all__ = [
    "AGENT_NAME",
    "AGENT_WORKFLOW_ID",
    "IR",
    "NODE_ID",
    "TOOLSET_ID",
    "TOOL_NAMES",
    "VERSION_HASH",
    "VISIT_WEBPAGE",
    "WEB_SEARCH",
    "WORKFLOW_ID",
    "ToolCallInput",
    "ToolCallOutput",
    "canonical_json",
    "tool_call_key",
]


def tool_call_key(tool_name: str, tool_args: dict[str, Any], occurrence: int = 0) -> str:
    """The full sha256 hex digest that keys a research tool call submitted on its own (`submit_task.py`):
    the same tool with the same arguments in the same session runs once."""
    return standalone_tool_key(TOOLSET_ID, tool_name, tool_args, occurrence)


def main() -> None:
    print(f"workflow  {WORKFLOW_ID}\nversion   {VERSION_HASH}")
    print(json.dumps(IR, indent=2))


if __name__ == "__main__":
    main()
