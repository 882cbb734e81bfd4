"""How a tool's failure reads, and the errors of a durable tool call.

ToolError                a tool raises these (or anything: the worker classifies it)
├── TransientToolError   may succeed on retry: timeouts, connection errors, HTTP 5xx/408/429
└── PermanentToolError   will fail the same way again: bad arguments, unknown tool, refused input
NexumError (engine)
├── ToolCallFailed       the call ended FAILED (all attempts used, or permanent) or CANCELLED
└── InvalidToolCall      the tool name or its arguments do not match the toolset: nothing was submitted
UserError (Pydantic AI)
└── NotRecorded          a test's run asked a recorded session (`testing.py`) what it never answered
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_ai.exceptions import UserError

from nexum_server.errors import NexumError
from nexum_server.models import Execution


def describe_validation(error: ValidationError) -> str:
    """A tool call's argument errors on one line: `query: Field required; max_results: ...`."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in error.errors())


class ToolError(Exception):
    """A tool call failed; the subclass says whether trying again can help."""


class TransientToolError(ToolError):
    """The same call may succeed later: the server retries it with backoff."""


class PermanentToolError(ToolError):
    """The same call will fail the same way: it fails at once, and the model is told why."""


class ToolCallFailed(NexumError):
    """The tool call ended FAILED (all attempts used, or a permanent error) or was CANCELLED."""

    def __init__(self, execution: Execution) -> None:
        reason = execution.error or execution.status.value.lower()
        attempts = f"{execution.attempts} attempt{'' if execution.attempts == 1 else 's'}"
        super().__init__(f"{execution.input.get('tool_name')} failed after {attempts}: {reason}")
        self.execution = execution


class InvalidToolCall(NexumError, ValueError):
    """The tool name or its arguments do not match the toolset: nothing was submitted."""

    code = "invalid_tool_call"


class NotRecorded(UserError):
    """A run against a recorded session asked for a model request or a tool call it never recorded."""
