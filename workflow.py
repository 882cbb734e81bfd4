"""The Nexum workflow for one durable tool call, and the names every other module imports.

`pydantic-tool-call`, with one EFFECT node, `tool_call`: its input names a tool and its arguments,
its output is the tool's result as text; `worker.py` runs it. The server stores one execution per
(workflow, session, key), where the key is `tool_call_key(tool_name, tool_args, occurrence)`, so the
same call in the same session is executed once and then served from the store.

`pydantic-agent-step`, with one EFFECT node run by the agent itself (`durability.py`): a model
request, or a tool that runs in the agent's process, keyed by `unit_key(projection)`.

Run with:
    python workflow.py        # prints the workflow id, its version hash and its IR
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

WORKFLOW_ID = "pydantic-tool-call"
NODE_ID = "tool_call"
WEB_SEARCH = "web_search"
VISIT_WEBPAGE = "visit_webpage"
TOOL_NAMES = (WEB_SEARCH, VISIT_WEBPAGE)


class ToolCallInput(BaseModel):
    """The input of one tool-call execution."""

    tool_name: str = Field(min_length=1)
    """Name of the tool to run, one of `TOOL_NAMES`."""
    tool_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the tool, as the model gave them."""


class ToolCallOutput(BaseModel):
    """The output of one tool-call execution."""

    result: str
    """What the tool returned, as the text the model will read."""


IR: dict[str, Any] = {
    "workflow_id": WORKFLOW_ID,
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


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


VERSION_HASH = "sha256:" + hashlib.sha256(canonical_json(IR).encode()).hexdigest()


def tool_call_key(tool_name: str, tool_args: dict[str, Any], occurrence: int = 0) -> str:
    """The full sha256 hex digest of the tool name, its arguments as canonical JSON and, from the
    second identical call of a run on, `#<occurrence>` (0 for the first, 1 for the second...)."""
    suffix = f"#{occurrence}" if occurrence else ""
    return hashlib.sha256((tool_name + canonical_json(tool_args) + suffix).encode()).hexdigest()


AGENT_WORKFLOW_ID = "pydantic-agent-step"
"""The executions an agent runs itself: its model requests, and tools that run in its process."""
AGENT_NODE_ID = "agent_step"
AGENT_IR: dict[str, Any] = {
    "workflow_id": AGENT_WORKFLOW_ID,
    "nodes": [{"id": AGENT_NODE_ID, "kind": "EFFECT", "runs_in": "agent"}],
    "edges": [],
}
AGENT_VERSION_HASH = "sha256:" + hashlib.sha256(canonical_json(AGENT_IR).encode()).hexdigest()


def unit_key(projection: Any) -> str:
    """The full sha256 hex digest of a unit's key projection as canonical JSON (see durability.py)."""
    return hashlib.sha256(canonical_json(projection).encode()).hexdigest()


def main() -> None:
    print(f"workflow  {WORKFLOW_ID}\nversion   {VERSION_HASH}")
    print(json.dumps(IR, indent=2))


if __name__ == "__main__":
    main()
