"""Durable agent runs on a Nexum server: every model request and every tool call is one keyed execution.

`NexumDurability` is a Pydantic AI capability built on `pydantic_ai.durable_exec`. Inside a
session, each unit of a run is one execution of the session on the Nexum server, keyed by the
sha256 of a projection of the unit that is the same in every process:

- a **model request** (`pydantic-agent-step`, run by the agent itself): the model's name, the
  message history with timestamps, run ids and conversation ids removed, tool-call ids numbered
  in order of appearance and parallel tool results in the order of their calls, the model settings
  and the request parameters (tool definitions, output mode). An edited prompt, instructions, tool or model gives a new key;
- a **tool call**: its name, its arguments as canonical JSON and its occurrence in the run (the
  second identical call, or a call repeated after `ModelRetry`, is its own execution). Tools marked
  `RUN_IN_WORKER` run in `worker.py` (`pydantic-tool-call`, through `WorkerToolset`); any other
  tool runs in the agent's process as a `pydantic-agent-step` execution.

A completed unit comes back from the store in one round trip, with nothing run again; a missing
one runs and is recorded. So a resumed run asks the model only what it never answered.

A session has one live run. A run takes its session when it starts, and holds a presence connection
to the server while it lives. A newer run of the same session takes it over at once:
- if the old run's process is gone (killed, crashed: its connection closed), what it held is
  claimable at once, so a resume never waits out a lease; a late report from it is refused;
- if the old run is still alive, it finishes the unit it is in the middle of (the new run waits for
  that result instead of asking again) and then stops with `SessionTakenOver`.
Each unit keeps exactly one recorded result. A unit interrupted mid-flight runs again
(at-least-once execution). Outside a session (`session_id=None`) the capability changes nothing.

Use it (with `nexum dev` and `python worker.py` running):

    agent = Agent(model, name="research", toolsets=[WorkerToolset(TOOLSET)],
                  capabilities=[NexumDurability(session_id="my-session")])
    result = await agent.run("What is durable execution?")   # run it again: nothing is asked twice
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic_ai import ModelRetry
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    CallableOperationBackend,
    DurabilityEngineSpec,
    DurableOperationBackend,
    DurableOperationId,
    JournalOperationNamer,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.external_events import external_event_scope
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest, UserPromptPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import ToolsetTool, WrapperToolset

from nexum_server.client import NexumClient, reconnecting
from nexum_server.errors import RequestRejected, ServerUnavailable, SessionTakenOver, WaitTimeout
from nexum_server.models import Execution, SessionRunInfo, Status, Task
from submit_task import DEFAULT_TIMEOUT, ToolCallFailed, call_tool, ran_seconds, shared_client
from workflow import AGENT_IR, AGENT_VERSION_HASH, AGENT_WORKFLOW_ID, canonical_json, unit_key

log = logging.getLogger("nexum.durability")

HOLD_SECONDS = 30.0
"""How long one start asks the server to hold it while another holder runs the unit."""
PRESENCE_RETRY_SECONDS = 0.1
"""First pause before holding the presence connection again after the server let go of it."""
VOLATILE_FIELDS = frozenset({"timestamp", "run_id", "conversation_id"})
"""Message fields that differ between two runs of the same history; left out of a model request's key."""

UnitKind = Literal["model", "tool"]


@dataclass(frozen=True)
class UnitEvent:
    """One unit of a run, as it ended: what `on_unit` receives."""

    kind: UnitKind
    name: str
    """The model's name, or the tool's."""
    args: dict[str, Any] | None
    """A tool call's arguments; None for a model request."""
    cached: bool
    """Served from the store: nothing ran."""
    seconds: float
    """Wall time of this unit in this run."""
    saved_seconds: float = 0.0
    """For a cached unit: how long it took when it ran."""
    tokens: int = 0
    """For a model request: the tokens of its response's usage (replayed ones were not spent again)."""
    error: str | None = None
    """Why the unit failed (a tool call that used up its attempts), else None."""
    execution: Execution | None = None
    """The unit's stored execution (its id, attempts, timings and result)."""


@dataclass
class RunStats:
    """What a run replayed and what it ran; `NexumDurability.last_stats` after each run."""

    model_replayed: int = 0
    model_made: int = 0
    tools_replayed: int = 0
    tools_run: int = 0
    tools_failed: int = 0
    tokens_saved: int = 0
    seconds_saved: float = 0.0

    def add(self, event: UnitEvent) -> None:
        if event.kind == "model":
            self.model_replayed += event.cached
            self.model_made += not event.cached
        elif event.error is not None:
            self.tools_failed += 1
        else:
            self.tools_replayed += event.cached
            self.tools_run += not event.cached
        if event.cached:
            self.tokens_saved += event.tokens
            self.seconds_saved += event.saved_seconds


class Occurrences:
    """Numbers the identical tool calls of one run: 0 for the first call of a tool with these
    arguments, then 1, 2... Taken when a call is dispatched, before any await, so parallel calls
    number in the order the model gave them."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def next(self, tool_name: str, tool_args: dict[str, Any]) -> int:
        key = tool_name + canonical_json(tool_args)
        self._seen[key] += 1
        return self._seen[key] - 1


@dataclass
class _Run:
    """The state of one agent run in a session, shared by its units through a context variable."""

    session: SessionRunInfo
    client: NexumClient
    on_unit: Callable[[UnitEvent], None] | None
    stats: RunStats = field(default_factory=RunStats)
    occurrences: Occurrences = field(default_factory=Occurrences)
    lost: bool = False

    def report(self, event: UnitEvent) -> None:
        self.stats.add(event)
        if self.on_unit is not None:
            self.on_unit(event)


_RUN: ContextVar[_Run | None] = ContextVar("nexum_run", default=None)


# --- keys ------------------------------------------------------------------------------------------

_REQUEST_PARAMETERS = TypeAdapter(ModelRequestParameters)
_SETTINGS = TypeAdapter(Any)


def _without_volatile(value: Any, call_ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in VOLATILE_FIELDS:
                continue
            if k == "tool_call_id" and isinstance(v, str):
                v = call_ids.setdefault(v, f"call-{len(call_ids)}")
            out[k] = _without_volatile(v, call_ids)
        return out
    if isinstance(value, list):
        return [_without_volatile(v, call_ids) for v in value]
    return value


def _in_call_order(message: Any) -> Any:
    """A request's tool results in the order of their calls, not of their completion: parallel calls
    finish in any order, and the same results must give the same key."""
    parts = message.get("parts") if isinstance(message, dict) and message.get("kind") == "request" else None
    if not parts:
        return message
    slots = [i for i, part in enumerate(parts) if isinstance(part, dict) and "tool_call_id" in part]
    ordered = sorted((parts[i] for i in slots), key=lambda part: int(str(part["tool_call_id"]).split("-")[-1]))
    reordered = list(parts)
    for slot, part in zip(slots, ordered, strict=True):
        reordered[slot] = part
    return {**message, "parts": reordered}


def model_request_projection(model_name: str, messages: list[Any], model_settings: Any,
                             parameters: ModelRequestParameters) -> dict[str, Any]:
    """What a model request's key is the sha256 of (see the module docstring)."""
    call_ids: dict[str, str] = {}
    history = _without_volatile(ModelMessagesTypeAdapter.dump_python(messages, mode="json"), call_ids)
    return {
        "model": model_name,
        "messages": [_in_call_order(message) for message in history],
        "settings": _without_volatile(_SETTINGS.dump_python(model_settings or {}, mode="json"), call_ids),
        "parameters": _without_volatile(_REQUEST_PARAMETERS.dump_python(parameters, mode="json"), call_ids),
    }


def tool_call_projection(tool_name: str, tool_args: dict[str, Any], occurrence: int) -> dict[str, Any]:
    """What an in-process tool call's key is the sha256 of."""
    return {"tool": tool_name, "args": tool_args, "occurrence": occurrence}


def model_label(model: Model | str | None) -> str:
    if isinstance(model, Model):
        return f"{model.system}:{model.model_name}"
    return model or "default"


# --- running one unit --------------------------------------------------------------------------------


async def _start(run: _Run, key: str, input: Any, deadline: float) -> Execution:
    client, session = run.client, run.session

    async def start() -> Execution:
        try:
            return await client.start(AGENT_WORKFLOW_ID, AGENT_VERSION_HASH, session.session_id, key, input,
                                      wait=HOLD_SECONDS, run_token=session.run_token)
        except RequestRejected as e:
            if e.error_code == "session_taken_over":
                raise SessionTakenOver(str(e)) from e
            if e.error_code != "workflow_not_found":
                raise
            await client.register_workflow(AGENT_WORKFLOW_ID, AGENT_VERSION_HASH, AGENT_IR)
            return await start()

    return await reconnecting(start, deadline)


async def _heartbeat(client: NexumClient, task: Task, every: float) -> None:
    """Keep the lease of a unit the run is running; a server away for a while is waited out."""
    while True:
        await asyncio.sleep(every)
        try:
            await client.heartbeat(task)
        except ServerUnavailable as e:
            log.debug("heartbeat failed, the server is away: %s", e)
        except RequestRejected:
            return  # the lease is over: the report will say so


async def run_unit(run: _Run, key: str, input: Any, body: Callable[[], Awaitable[object]],
                   timeout: float = DEFAULT_TIMEOUT) -> tuple[object, Execution, bool]:
    """The unit's recorded payload: from the store, or by running `body` and recording it.

    Returns the payload, its execution and whether it came from the store (this run ran nothing).
    """
    deadline = time.monotonic() + timeout
    while True:
        execution = await _start(run, key, input, deadline)
        if execution.status is Status.COMPLETED:
            # Recorded before, or just now by another holder this start waited for: either way this
            # run did not run it (and asked no model), so it counts as replayed.
            return execution.result, execution, True
        if execution.claimed is not None:
            break
        # Another holder runs it (the server held this start up to HOLD_SECONDS), or its attempt
        # ended FAILED, CANCELLED or back to PENDING: start again, which claims or creates anew.
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"execution {execution.id} is still held by {execution.worker_id} after "
                              f"{timeout:g} s; it stays on the server, resume the session to try again")
    task = execution.claimed
    beat = asyncio.create_task(_heartbeat(run.client, task, run.session.lease_seconds / 3))
    try:
        payload = await body()
    except Exception as e:
        beat.cancel()
        with contextlib.suppress(Exception):
            await run.client.fail(task, f"{type(e).__name__}: {e}", retryable=False)
        raise
    finally:
        beat.cancel()
    try:
        done = await run.client.complete(task, payload)
    except RequestRejected as e:
        if e.status == 409:
            raise SessionTakenOver(f"this run's result for {key[:12]}… was discarded: {e}") from e
        raise
    return payload, done, False


# --- the capability ---------------------------------------------------------------------------------


class NexumBackend(CallableOperationBackend[dict[str, Any]]):
    """Runs each model request and in-process tool call as one keyed execution of the session."""

    def __init__(self, capability: NexumDurability[Any]) -> None:
        config = RoleBasedOperationConfig[dict[str, Any]](model={}, event={}, capability={}, tool={})
        super().__init__(namer=JournalOperationNamer(capability.name), config=config)
        self._capability = capability

    async def execute(self, *, operation_id: DurableOperationId, name: str, body: Callable[[], Awaitable[object]],
                      cache_key: tuple[object, ...], config: dict[str, Any]) -> object:
        run = _RUN.get()
        if run is None or not isinstance(operation_id, ModelRequestId | ToolsetCallToolId):
            # Argument validation, event handlers: deterministic work of the run itself.
            return await body()
        started = time.perf_counter()
        if isinstance(operation_id, ModelRequestId):
            model_id, messages, settings, parameters = cache_key[:4]
            label = model_label(self._capability.model_for(model_id))
            key = unit_key(model_request_projection(label, messages, settings, parameters))  # type: ignore[arg-type]
            input = {"unit": "model_request", "model": label, "messages": len(messages)}  # type: ignore[arg-type]
            payload, execution, cached = await run_unit(run, key, input, body)
            usage = payload.get("usage", {}) if isinstance(payload, dict) else {}
            run.report(UnitEvent("model", label, None, cached, time.perf_counter() - started,
                                 ran_seconds(execution) if cached else 0.0,
                                 tokens=usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
                                 execution=execution))
            return payload
        tool_name, tool_args = str(cache_key[0]), dict(cache_key[1])  # type: ignore[call-overload]
        occurrence = run.occurrences.next(tool_name, tool_args)
        key = unit_key(tool_call_projection(tool_name, tool_args, occurrence))
        input = {"unit": "tool_call", "tool_name": tool_name, "tool_args": tool_args, "occurrence": occurrence}
        payload, execution, cached = await run_unit(run, key, input, body)
        run.report(UnitEvent("tool", tool_name, tool_args, cached, time.perf_counter() - started,
                             ran_seconds(execution) if cached else 0.0, execution=execution))
        return payload


class NexumDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent's runs durable in a Nexum session: model requests and tool calls are journaled.

        agent = Agent(model, name="research", toolsets=[WorkerToolset(TOOLSET)],
                      capabilities=[NexumDurability(session_id="abc")])

    Args:
        session_id: The session the runs belong to; `None` leaves the agent as it is.
        url: The Nexum server (default: `NEXUM_URL`, else http://127.0.0.1:8080).
        client: A client to use instead of one made from `url`.
        on_unit: Called with a `UnitEvent` as each model request and tool call ends.
        name: Names the agent's units; defaults to the agent's `name`.
        models: Other models the run may switch to, by id (as for every durable engine).
        on_wait: Called with the server's `Wait` when the run is about to wait for an answer
            (`RequestInput`, `wait_for_external_event`): its token resolves it.
        detach_waits: Stop the run with `WaitDetached` instead of holding the process while it waits.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="Nexum",
        durable_unit_noun="execution",
        durable_container_noun="session",
        codec=JSON_CODEC,
        wrapped_toolset_kinds=frozenset({"function"}),
        toolset_lifecycles={"function": "enter-always"},
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        journal_discovery=False,
        sequential_tools_in_durable_context=False,
        tool_config_key="nexum",
    )

    def __init__(self, *, session_id: str | None, url: str | None = None, client: NexumClient | None = None,
                 on_unit: Callable[[UnitEvent], None] | None = None, name: str | None = None,
                 models: dict[str, Model] | None = None, on_wait: Callable[[Any], None] | None = None,
                 detach_waits: bool = False) -> None:
        super().__init__(models=models, name=name)
        self.on_wait = on_wait
        self.detach_waits = detach_waits
        self.session_id = session_id
        self.url = url
        self.client = client
        self.on_unit = on_unit
        # Shared with the copy the agent binds, so the caller's object sees its runs' figures.
        self._last_stats: list[RunStats | None] = [None]

    @property
    def last_stats(self) -> RunStats | None:
        """What the last run in a session replayed and ran."""
        return self._last_stats[0]

    @property
    def in_durable_context(self) -> bool:
        return self.session_id is not None

    def get_durable_operation_backend(self) -> DurableOperationBackend[dict[str, Any]]:
        return NexumBackend(self)

    def model_for(self, model_id: object) -> Model | str | None:
        """The model a request names: a registered one, a model string, or the agent's own."""
        if isinstance(model_id, str):
            return self._extra_models.get(model_id, model_id)
        return self.agent.model if self.agent is not None else None  # type: ignore[return-value]

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: Any) -> Any:
        if self.session_id is None:
            return await handler()
        # Imported here: the waiter is built on this module's run state (nexum_pydantic_ai/_events.py).
        from nexum_pydantic_ai._events import NexumEventWaiter

        async with self._session_run() as run:
            token = _RUN.set(run)
            try:
                waiter = NexumEventWaiter(run, on_wait=self.on_wait, detach=self.detach_waits)
                with external_event_scope(waiter):
                    return await super().wrap_run(ctx, handler=handler)
            finally:
                _RUN.reset(token)
                self._last_stats[0] = run.stats

    @contextlib.asynccontextmanager
    async def _session_run(self) -> AsyncIterator[_Run]:
        assert self.session_id is not None
        owned = self.client is None and self.url is not None
        client = self.client or (NexumClient(self.url) if owned else shared_client())
        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        take = lambda: client.take_session(self.session_id, holder)  # noqa: E731
        info = await reconnecting(take, time.monotonic() + DEFAULT_TIMEOUT)
        # Pydantic AI builds the message serializer on first use (~30 ms): the first run of a process
        # pays it here rather than inside its first unit, whose replay is otherwise one round trip.
        model_request_projection("", [ModelRequest(parts=[UserPromptPart("")])], None, ModelRequestParameters())
        if info.previous_holder:
            log.warning("took session %s over from a run still live (%s); that run is stopped",
                        self.session_id, info.previous_holder)
        run = _Run(info, client, self.on_unit)
        renew = asyncio.create_task(self._renew(run))
        presence = asyncio.create_task(self._presence(run))
        try:
            yield run
        finally:
            renew.cancel()
            presence.cancel()
            if not run.lost:
                with contextlib.suppress(Exception):
                    await client.end_session_run(info)
            if owned:
                await client.aclose()

    @staticmethod
    async def _presence(run: _Run) -> None:
        """Hold the run's presence connection for as long as the run lives, across server restarts."""
        pause = PRESENCE_RETRY_SECONDS
        while True:
            try:
                await run.client.hold_presence(run.session)
                pause = PRESENCE_RETRY_SECONDS
            except RequestRejected:
                return  # another run took the session: this one has nothing left to hold
            except ServerUnavailable as e:  # the server is away: hold again once it is back
                log.debug("presence connection lost: %s", e)
                pause = min(pause * 2, 2.0)
            except Exception:
                log.warning("holding the run's presence failed; trying again", exc_info=True)
                pause = min(pause * 2, 2.0)
            await asyncio.sleep(pause)

    @staticmethod
    async def _renew(run: _Run) -> None:
        """Keep the run's session lease. Once another run took the session this one is not cut
        short mid-unit (it finishes what it holds); its next start is refused instead."""
        while True:
            await asyncio.sleep(run.session.lease_seconds / 3)
            try:
                await run.client.renew_session(run.session)
            except RequestRejected as e:
                if e.error_code == "session_taken_over":
                    run.lost = True
                    return
                log.warning("renewing the session run failed: %s", e)
            except ServerUnavailable as e:  # the server is away: the run's own calls wait it out
                log.debug("session renewal failed: %s", e)


# --- tools run by the worker ------------------------------------------------------------------------


def runs_in_worker(tool: ToolsetTool[Any]) -> bool:
    """Whether the tool is marked to run in `worker.py` (`tools.RUN_IN_WORKER`)."""
    nexum = (tool.tool_def.metadata or {}).get("nexum")
    return isinstance(nexum, dict) and nexum.get("run") == "worker"


@dataclass
class WorkerToolset(WrapperToolset[AgentDepsT]):
    """Sends the wrapped toolset's tools marked `RUN_IN_WORKER` to the Nexum server, run by `worker.py`.

    The model sees the wrapped tools' own schemas, and Pydantic AI validates each call against them
    before it is submitted. In a `NexumDurability` run the call joins the run's session; on its own,
    `session_id` gives the session (tool calls durable, model requests not).
    """

    session_id: str | None = None
    client: NexumClient | None = None
    on_unit: Callable[[UnitEvent], None] | None = None
    timeout: float = DEFAULT_TIMEOUT
    _runs: dict[str, Occurrences] = field(default_factory=dict, repr=False)

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[AgentDepsT],
                        tool: ToolsetTool[AgentDepsT]) -> Any:
        if not runs_in_worker(tool):
            return await super().call_tool(name, tool_args, ctx, tool)
        run = _RUN.get()
        session_id = run.session.session_id if run is not None else self.session_id
        if session_id is None:
            raise UserError("WorkerToolset needs a session: pass session_id=..., or give the agent "
                            "NexumDurability(session_id=...)")
        occurrences = run.occurrences if run is not None else self._occurrences(ctx)
        occurrence = occurrences.next(name, tool_args)
        client = self.client or (run.client if run is not None else None)
        report = run.report if run is not None else (self.on_unit or (lambda event: None))
        started = time.perf_counter()
        try:
            outcome = await call_tool(name, tool_args, session_id, self.timeout, client=client,
                                      occurrence=occurrence)
        except ToolCallFailed as e:
            report(UnitEvent("tool", name, tool_args, False, time.perf_counter() - started,
                             error=str(e.execution.error or e), execution=e.execution))
            raise ModelRetry(str(e)) from e
        report(UnitEvent("tool", name, tool_args, outcome.cached, outcome.seconds,
                         outcome.tool_seconds if outcome.cached else 0.0, execution=outcome.execution))
        return outcome.result

    def _occurrences(self, ctx: RunContext[Any]) -> Occurrences:
        """The run's numbering when no `NexumDurability` run holds one (tool calls durable alone)."""
        while len(self._runs) > 64:  # runs long finished
            del self._runs[next(iter(self._runs))]
        return self._runs.setdefault(ctx.run_id or "", Occurrences())

