"""Durable Pydantic AI agents on a Nexum server.

    from nexum_pydantic_ai import NexumDurability, RUN_IN_WORKER, WorkerToolset

    agent = Agent(model, name="files", toolsets=[WorkerToolset(TOOLSET)],
                  capabilities=[NexumDurability(session_id="my-session")])

`NexumDurability` journals every model request, tool call and tool listing of a run as one keyed
execution of the session; `WorkerToolset` sends the tools marked `RUN_IN_WORKER` to a worker
(`python -m nexum_pydantic_ai.worker module:TOOLSET`); `call_tool` submits one call on its own.
`RecordedModel` and `RecordedTools` (`testing.py`) answer an agent from a file `nexum export` wrote:
a test with no server, no network and no API key.
"""

from ._durability import NexumBackend, NexumDurability, Run, RunStats, UnitEvent, current_run
from ._errors import InvalidToolCall, NotRecorded, PermanentToolError, ToolCallFailed, ToolError, TransientToolError
from ._events import NexumEventWaiter, WaitDetached
from ._keys import KEY_SCHEME, canonical_json, standalone_tool_key
from ._protocol import AGENT_WORKFLOW_ID, ToolCallInput, ToolCallOutput, tool_ir, tool_workflow_id, version_hash
from ._tool_call import (
    DEFAULT_TIMEOUT,
    ToolCallOutcome,
    call_tool,
    call_tool_sync,
    ran_seconds,
    shared_client,
    shared_sync_client,
)
from ._worker_toolset import RUN_IN_WORKER, WorkerToolset, runs_in_worker
from .testing import RecordedModel, RecordedTools

__all__ = [
    "AGENT_WORKFLOW_ID",
    "DEFAULT_TIMEOUT",
    "KEY_SCHEME",
    "RUN_IN_WORKER",
    "InvalidToolCall",
    "NexumBackend",
    "NexumDurability",
    "NexumEventWaiter",
    "NotRecorded",
    "PermanentToolError",
    "RecordedModel",
    "RecordedTools",
    "Run",
    "RunStats",
    "ToolCallFailed",
    "ToolCallInput",
    "ToolCallOutcome",
    "ToolCallOutput",
    "ToolError",
    "TransientToolError",
    "UnitEvent",
    "WaitDetached",
    "WorkerToolset",
    "call_tool",
    "call_tool_sync",
    "canonical_json",
    "current_run",
    "ran_seconds",
    "runs_in_worker",
    "shared_client",
    "shared_sync_client",
    "standalone_tool_key",
    "tool_ir",
    "tool_workflow_id",
    "version_hash",
]
