"""`WorkerToolset`: a toolset whose tools marked `RUN_IN_WORKER` run in a Nexum worker process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai import ModelRetry
from pydantic_ai.durable_exec import DurableRunContext
from pydantic_ai.exceptions import UserError
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import ToolsetTool, WrapperToolset

from nexum_server.client import NexumClient

from ._durability import Run, UnitEvent, current_run
from ._errors import ToolCallFailed
from ._keys import MessageChain, RunIdentity, tool_call_key
from ._protocol import tool_workflow_id
from ._tool_call import DEFAULT_TIMEOUT, call_tool, ran_seconds

RUN_IN_WORKER = {"nexum": {"run": "worker"}}
"""Tool metadata: the call is submitted to the Nexum server and run by a worker, not in the agent."""
_JSON = TypeAdapter(Any)


def runs_in_worker(tool: ToolsetTool[Any]) -> bool:
    """Whether the tool is marked `RUN_IN_WORKER`."""
    nexum = (tool.tool_def.metadata or {}).get("nexum")
    return isinstance(nexum, dict) and nexum.get("run") == "worker"


def worker_context(ctx: RunContext[Any]) -> dict[str, Any] | None:
    """The run context a worker rebuilds for the tool (no deps: they stay in the agent's process)."""
    try:
        return _JSON.dump_python(DurableRunContext.serialize_run_context(ctx), mode="json")
    except Exception:
        return None


@dataclass
class WorkerToolset(WrapperToolset[AgentDepsT]):
    """Sends the wrapped toolset's tools marked `RUN_IN_WORKER` to the Nexum server, run by a worker
    that serves the toolset (`python -m nexum_pydantic_ai.worker module:TOOLSET`).

    The model sees the wrapped tools' own schemas, and Pydantic AI validates each call against them
    before it is submitted; the worker validates it again with the same schema. In a
    `NexumDurability` run the call is a unit of the run's session; on its own, `session_id` gives
    the session (tool calls durable, model requests not). Give the wrapped toolset an `id`: it
    names the workflow its calls go to.
    """

    session_id: str | None = None
    client: NexumClient | None = None
    on_unit: Callable[[UnitEvent], None] | None = None
    timeout: float = DEFAULT_TIMEOUT
    _chains: dict[str, tuple[RunIdentity, MessageChain]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.wrapped.id is None:
            raise UserError(
                "WorkerToolset needs a toolset with an id (FunctionToolset(id='...')): the id "
                "names the worker that runs its tools"
            )

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[AgentDepsT], tool: ToolsetTool[AgentDepsT]
    ) -> Any:
        if not runs_in_worker(tool):
            return await super().call_tool(name, tool_args, ctx, tool)
        run = current_run()
        session_id = run.session.session_id if run is not None else self.session_id
        if session_id is None:
            raise UserError(
                "WorkerToolset needs a session: pass session_id=..., or give the agent NexumDurability(session_id=...)"
            )
        identity, chain = (run.identity, run.chain) if run is not None else self._standalone(ctx)
        key = tool_call_key(
            identity, chain, self.wrapped.id, name, tool_args, ctx.messages, ctx.tool_call_id, ctx.tool_call_approved
        )
        client = self.client or (run.client if run is not None else None)
        report = self._reporter(run)
        started = time.perf_counter()
        recorded = (
            run.hold.served(key, {"tool_name": name, "tool_args": tool_args}, tool_workflow_id(self.wrapped.id))
            if run is not None
            else None
        )
        if run is not None and recorded is None:
            run.hold.writer.flush()  # what the run has recorded leaves before the worker is asked
        if recorded is not None and isinstance(recorded.result, dict):
            report(
                UnitEvent(
                    "tool",
                    name,
                    tool_args,
                    True,
                    time.perf_counter() - started,
                    ran_seconds(recorded),
                    execution=recorded,
                )
            )
            return recorded.result.get("result")
        try:
            outcome = await call_tool(
                self.wrapped.id,
                name,
                tool_args,
                session_id,
                self.timeout,
                client=client,
                key=key,
                ctx=worker_context(ctx),
            )
        except ToolCallFailed as e:
            report(
                UnitEvent(
                    "tool",
                    name,
                    tool_args,
                    False,
                    time.perf_counter() - started,
                    error=str(e.execution.error or e),
                    execution=e.execution,
                )
            )
            raise ModelRetry(str(e)) from e
        report(
            UnitEvent(
                "tool",
                name,
                tool_args,
                outcome.cached,
                outcome.seconds,
                outcome.tool_seconds if outcome.cached else 0.0,
                execution=outcome.execution,
            )
        )
        return outcome.result

    def _reporter(self, run: Run | None) -> Any:
        if run is not None:
            return run.report
        return self.on_unit or (lambda event: None)

    def _standalone(self, ctx: RunContext[Any]) -> tuple[RunIdentity, MessageChain]:
        """Keys for a run with no `NexumDurability`: tool calls durable alone, one chain per run."""
        while len(self._chains) > 64:  # runs long finished
            del self._chains[next(iter(self._chains))]
        agent = ctx.agent.name if ctx.agent is not None and ctx.agent.name else "agent"
        return self._chains.setdefault(ctx.run_id or "", (RunIdentity(agent), MessageChain()))
