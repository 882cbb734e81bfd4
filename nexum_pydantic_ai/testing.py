"""Test an agent against a recorded session: no server, no network, no API key.

    nexum export SESSION -o tests/run.json          # once, from a session that went as it should

    from nexum_pydantic_ai.testing import RecordedModel, RecordedTools

    def test_the_agent_answers_as_recorded():
        with agent.override(model=RecordedModel.from_export("tests/run.json")):
            result = agent.run_sync("the prompt of the recorded run")
        assert result.output == "..."

`RecordedModel` answers each model request with the response recorded for the same request and
raises `NotRecorded`, naming the request and its last message, for one that was never recorded
(the prompt, a tool result or the agent's instructions changed). The agent's tools run for real:
add `capabilities=[RecordedTools.from_export(...)]` to the run to serve their recorded results too.

How "the same request" is judged: by the message history, with the projection of the unit keys
(`_keys.py`: timestamps, run and conversation ids left out, tool-call ids numbered in order of first
appearance, tool results in the order of their calls). The model settings, the tool definitions and
the run's deps and metadata, which the keys of a durable run also include, are not compared by
default: a test usually builds its deps anew (a fake client), and its model is this one, not the
recorded one. Pass `deps=` and `metadata=` (as the keys saw them: what `deps_key` returned) to
match by the whole key instead, so that a changed tool schema or model setting is a miss too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.durable_exec import JSON_CODEC, CallToolResult

# Private, but the one decoder of the capability's own records (Pydantic AI is pinned): it raises
# the control-flow signals (ModelRetry, ApprovalRequired...) a recorded call ended with.
from pydantic_ai.durable_exec._toolset import unwrap_tool_call_result
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import CompletedStreamedResponse, Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfileSpec
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset

from nexum_server.models import ExportedUnit, SessionExport

from ._errors import NotRecorded
from ._keys import MessageChain, RunIdentity, canonical_json, jsonable, model_request_key
from ._protocol import AGENT_WORKFLOW_ID

__all__ = ["NotRecorded", "RecordedModel", "RecordedTools", "read_export"]

SHOWN_CHARS = 200
"""How much of a message an error quotes."""
_UNSET: Any = object()


def read_export(path: str | Path) -> SessionExport:
    """A file `nexum export` wrote, checked against its format."""
    return SessionExport.model_validate_json(Path(path).read_bytes())


@dataclass
class _Recorded:
    """The recorded answers to one request, in recorded order: the n-th ask of it gets the n-th."""

    answers: list[Any] = field(default_factory=list)
    asked: int = 0

    def next(self) -> Any:
        # Asked more often than recorded (the test runs the agent twice): the same request, the last answer.
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return answer


class RecordedModel(Model):
    """A Pydantic AI model that answers with a recorded session's model responses.

    Args:
        document: The exported session (`RecordedModel.from_export(path)` reads one).
        deps: The run's deps as the keys saw them; with `metadata`, matches by the whole unit key.
        metadata: The run's metadata, likewise.
        source: Names the recording in errors.
        profile: The recorded model's profile, where the agent's requests depend on it (its
            structured output mode, say); Pydantic AI's default otherwise.
    """

    def __init__(
        self,
        document: SessionExport,
        *,
        deps: Any = _UNSET,
        metadata: Any = _UNSET,
        source: str = "the recording",
        profile: ModelProfileSpec | None = None,
    ) -> None:
        super().__init__(profile=profile)
        self.source = source
        self.requests = 0
        """Model requests answered so far."""
        units = [unit for unit in document.units if _is_model_request(unit)]
        self._by_key = deps is not _UNSET or metadata is not _UNSET
        self._identities = {
            (str(unit.input.get("agent", "agent")), str(unit.input.get("model", "default"))) for unit in units
        }
        self._deps = jsonable(None if deps is _UNSET else deps, "the run's deps")
        self._metadata = jsonable(None if metadata is _UNSET else metadata, "the run's metadata")
        self._recorded: dict[str, _Recorded] = {}
        for unit in units:
            match = unit.key if self._by_key else _chain_of(unit, document)
            self._recorded.setdefault(match, _Recorded()).answers.append(unit)
        self._count = len(units)

    @classmethod
    def from_export(
        cls, path: str | Path, *, deps: Any = _UNSET, metadata: Any = _UNSET, profile: ModelProfileSpec | None = None
    ) -> RecordedModel:
        """The model of the session `nexum export SESSION -o path` wrote."""
        return cls(read_export(path), deps=deps, metadata=metadata, source=str(path), profile=profile)

    @property
    def model_name(self) -> str:
        return "recorded"

    @property
    def system(self) -> str:
        return "nexum"

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        recorded = self._recorded.get(self._match(messages, model_settings, model_request_parameters))
        if recorded is None:
            position = 1 + sum(isinstance(message, ModelResponse) for message in messages)
            last = _describe(messages[-1]) if messages else "nothing"
            compared = "unit key (messages, settings, tools, deps, metadata)" if self._by_key else "message history"
            raise NotRecorded(
                f"model request {position} of this run was never recorded in {self.source} "
                f"(none of its {self._count} recorded "
                f"requests has the same {compared}); its last message: {last}"
            )
        self.requests += 1
        unit: ExportedUnit = recorded.next()
        response = JSON_CODEC.load(ModelResponse, unit.result)
        assert isinstance(response, ModelResponse)
        # The run stamps a response with the id of the model that made it, and later requests send
        # it stamped: the recorded model's, as the recorded run did, or they would not match.
        response.model_id = response.model_id or unit.input.get("model")
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        response = await self.request(messages, model_settings, model_request_parameters)
        yield CompletedStreamedResponse(response, model_request_parameters=model_request_parameters, replay_events=True)

    def _match(
        self, messages: list[ModelMessage], settings: ModelSettings | None, parameters: ModelRequestParameters
    ) -> str:
        chain = MessageChain()
        if not self._by_key:
            return chain.through(messages)
        for agent, model in self._identities:
            key = model_request_key(
                RunIdentity(agent, self._deps, self._metadata), chain, model, messages, settings, parameters
            )
            if key in self._recorded:
                return key
        return ""


class RecordedTools(AbstractCapability[AgentDepsT]):
    """Serves the agent's tool calls with a recorded session's results: no tool runs.

        agent.run_sync(prompt, model=RecordedModel.from_export(path), capabilities=[RecordedTools.from_export(path)])

    A call is matched by the tool's name and its arguments as recorded (validated, defaults filled
    in); calls with the same name and arguments get the recorded results in recorded order. A call
    never recorded raises `NotRecorded` naming it, unless `run_missing=True` lets the tool run.
    """

    def __init__(self, document: SessionExport, *, run_missing: bool = False, source: str = "the recording") -> None:
        self.source = source
        self.run_missing = run_missing
        self.calls = 0
        """Tool calls served from the recording so far."""
        self._recorded: dict[str, _Recorded] = {}
        for unit in document.units:
            if isinstance(unit.input, dict) and "tool_name" in unit.input:
                key = _call_key(unit.input.get("tool_name"), unit.input.get("tool_args"))
                self._recorded.setdefault(key, _Recorded()).answers.append(unit)

    @classmethod
    def from_export(cls, path: str | Path, *, run_missing: bool = False) -> RecordedTools[Any]:
        """The tool results of the session `nexum export SESSION -o path` wrote."""
        return cls(read_export(path), run_missing=run_missing, source=str(path))

    def get_wrapper_toolset(self, toolset: AbstractToolset[AgentDepsT]) -> AbstractToolset[AgentDepsT] | None:
        return _RecordedToolset(toolset, recording=self)

    def serve(self, name: str, tool_args: Any) -> tuple[bool, Any]:
        """(True, the recorded result) of the call, or (False, None) when it was never recorded."""
        recorded = self._recorded.get(_call_key(name, tool_args))
        if recorded is None:
            if self.run_missing:
                return False, None
            raise NotRecorded(
                f"the call {name}({canonical_json(tool_args)}) was never recorded in {self.source}; "
                f"recorded calls: {', '.join(sorted(self._recorded)) or 'none'}"
            )
        self.calls += 1
        unit: ExportedUnit = recorded.next()
        if unit.workflow_id == AGENT_WORKFLOW_ID:  # run in the agent: the durable capability's record
            return True, unwrap_tool_call_result(JSON_CODEC.load(CallToolResult, unit.result))
        result = unit.result  # run by a worker: a `ToolCallOutput`
        return True, result.get("result") if isinstance(result, dict) else result


@dataclass
class _RecordedToolset(WrapperToolset[AgentDepsT]):
    recording: RecordedTools[Any] | None = None

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[AgentDepsT], tool: ToolsetTool[AgentDepsT]
    ) -> Any:
        assert self.recording is not None
        served, result = self.recording.serve(name, jsonable(tool_args, f"the arguments of tool {name!r}"))
        if served:
            return result
        return await super().call_tool(name, tool_args, ctx, tool)


def _is_model_request(unit: ExportedUnit) -> bool:
    return isinstance(unit.input, dict) and unit.input.get("unit") == "model_request" and unit.sent is not None


def _chain_of(unit: ExportedUnit, document: SessionExport) -> str:
    """The chain hash of what a recorded request was sent, as `_keys.MessageChain` hashes a live one."""
    bodies = [document.messages.get(digest) for digest in unit.sent or []]
    if any(body is None for body in bodies):
        raise UserError(f"the recording names a message it does not hold (unit {unit.key[:12]}…): export it again")
    return MessageChain().through(ModelMessagesTypeAdapter.validate_python(bodies))


def _call_key(name: Any, tool_args: Any) -> str:
    return f"{name}({canonical_json(tool_args)})"


def _describe(message: ModelMessage) -> str:
    """The last part of a message, as an error quotes it."""
    if isinstance(message, ModelResponse):
        return f"a model response: {_quote(message.parts[-1] if message.parts else '')}"
    assert isinstance(message, ModelRequest)
    if not message.parts:
        return "an empty request"
    part = message.parts[-1]
    if isinstance(part, UserPromptPart):
        return f"the user prompt {_quote(part.content)}"
    if isinstance(part, ToolReturnPart):
        return f"the result of {part.tool_name}: {_quote(part.content)}"
    if isinstance(part, RetryPromptPart):
        return f"a retry prompt{f' for {part.tool_name}' if part.tool_name else ''}: {_quote(part.content)}"
    if isinstance(part, SystemPromptPart):
        return f"the system prompt {_quote(part.content)}"
    return _quote(part)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")
