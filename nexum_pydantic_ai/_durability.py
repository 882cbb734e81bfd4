"""`NexumDurability`: an agent's runs journaled in a Nexum session, unit by unit.

Each model request, tool call and tool listing (dynamic and MCP toolsets) of a run in a session is
one execution of the session on the Nexum server, keyed as `_keys.py` describes. A completed unit
comes back from the store with nothing run again; a missing one runs and is recorded. So a resumed
run asks the model only what it never answered, and runs no tool twice that had finished.

A session has one live run per process. A run takes its session when it starts and holds a presence
connection while it lives; a run of another process (or a later one) takes it over at once:
- if the old run's process is gone, what it held is claimable at once (no lease is waited out) and
  a late report from it is refused;
- if the old run is still alive, it finishes the unit it is in and then stops with `SessionTakenOver`.
Runs started while a run of the same session is live in the same process (an agent used as a tool,
two agents under `asyncio.gather`) join it: their units are keyed under their own agent's name.
Each unit keeps exactly one recorded result; one interrupted mid-flight runs again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

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
    ToolsetGetInstructionsId,
    ToolsetGetToolsId,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.external_events import external_event_scope
from pydantic_ai.models import Model
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_core import PydanticSerializationError

from nexum_server.client import NexumClient, reconnecting
from nexum_server.errors import RequestRejected, ServerUnavailable, SessionTakenOver, WaitTimeout
from nexum_server.models import Execution, Journal, JournalUnit, SessionRunInfo, Status, Task

from ._keys import (
    MessageChain,
    RunIdentity,
    canonical_json,
    jsonable,
    model_request_key,
    tool_call_key,
    tool_listing_key,
    warm_up,
)
from ._protocol import AGENT_IR, AGENT_VERSION_HASH, AGENT_WORKFLOW_ID
from ._tool_call import DEFAULT_TIMEOUT, ran_seconds, shared_client

log = logging.getLogger("nexum.durability")

HOLD_SECONDS = 30.0
"""How long one start asks the server to hold it while another holder runs the unit."""
PRESENCE_RETRY_SECONDS = 0.1
"""First pause before holding the presence connection again after the server let go of it."""
TOO_LARGE = "too large to store"
"""Begins the recorded reason of a unit whose result the server refused: a resume does not repeat it."""

UnitKind = Literal["model", "tool"]
Recorded = Callable[[object, Execution, bool, float], None]
"""Called with a unit's payload, its execution, whether it was replayed and its seconds in this run."""


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
    model_seconds_saved: float = 0.0
    """Of `seconds_saved`, what model requests took when they ran."""

    def add(self, event: UnitEvent) -> None:
        if event.kind == "model":
            self.model_replayed += event.cached
            self.model_made += not event.cached
            self.model_seconds_saved += event.saved_seconds if event.cached else 0.0
        elif event.error is not None:
            self.tools_failed += 1
        else:
            self.tools_replayed += event.cached
            self.tools_run += not event.cached
        if event.cached:
            self.tokens_saved += event.tokens
            self.seconds_saved += event.saved_seconds


@dataclass
class _Hold:
    """A session this process holds: shared by every run of the session that is live in it."""

    info: SessionRunInfo
    client: NexumClient
    runs: int = 1
    lost: bool = False
    owned: bool = False
    """The client was made for this hold: it is closed with it."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    recorded: dict[str, Execution] = field(default_factory=dict)
    """The session's completed units when the run took it, by key: served with no round trip."""
    forked: list[JournalUnit] = field(default_factory=list)
    """A fork's first units (`nexum fork --until K`), served in order whatever their keys."""
    reports: set[asyncio.Task[Any]] = field(default_factory=set)
    """Completions sent without waiting: nothing the run does next depends on their answer."""
    sent: set[str] = field(default_factory=set)
    """Hashes of the messages the server was sent in this hold."""
    refused: dict[str, str] = field(default_factory=dict)
    """Units the server could not take, by key, with why: a resume fails them again, running nothing."""
    hits: list[str] = field(default_factory=list)
    """Executions served from memory: reported as cached hits when the hold is let go."""
    exclusive: bool = False
    """The session was taken from no live run and its journal read after the take: a key not in
    the journal is nobody's, and a new unit goes through the hold's writer (`_run_written`)."""
    journaled: set[str] = field(default_factory=set)
    """Every key the journal held, whatever its status."""
    written: set[str] = field(default_factory=set)
    """Keys whose start the writer sent: a second time (a retry), a unit takes the waiting path."""
    present: bool = False
    """The presence request is held (`live`)."""
    writer: _Writer = field(init=False)
    """Sends the starts of new units and their results."""

    def __post_init__(self) -> None:
        self.writer = _Writer(self)

    def load(self, journal: Journal) -> None:
        units = [unit for unit in journal.units if unit.status is Status.COMPLETED]
        if journal.fork_until is not None:
            self.forked = [unit for unit in units if unit.step <= journal.fork_until]
        sid = self.info.session_id
        self.journaled = {unit.key for unit in journal.units}
        self.recorded = {unit.key: unit.as_execution(sid) for unit in units if unit not in self.forked}
        self.refused = {
            unit.key: f"unit {unit.id} cannot be recorded: {unit.error}"
            for unit in journal.units
            if unit.status is Status.FAILED and (unit.error or "").startswith(TOO_LARGE)
        }

    def live(self) -> None:
        """The run is about to hold a unit: from now on the server must learn at once if this process
        ends (its presence request). A run that only replays holds nothing, and opens none."""
        if not self.present:
            self.present = True
            self.tasks.append(asyncio.create_task(_presence(self)))

    def check_reports(self) -> None:
        """Raise what a completion sent earlier met (another run took the session, a refused result)."""
        for report in [r for r in self.reports if r.done()]:
            self.reports.discard(report)
            if not report.cancelled() and (error := report.exception()) is not None:
                raise error

    async def settle(self) -> None:
        """Wait for every completion sent without waiting; raise the first refusal."""
        self.writer.flush()
        while self.reports:
            await asyncio.wait(set(self.reports))
            self.check_reports()

    def served(self, key: str, input: dict[str, Any], workflow_id: str) -> Execution | None:
        """The recorded unit for `key`, from what the run read when it took the session."""
        found = self._next_forked(input, workflow_id) if self.forked else self.recorded.get(key)
        if found is not None:
            self.hits.append(found.id)
        return found

    def _next_forked(self, input: dict[str, Any], workflow_id: str) -> Execution:
        # Parallel calls are recorded in the order they started, which need not be this run's:
        # the match is looked for among the units up to the next model request.
        for index, unit in enumerate(self.forked):
            if index and unit.input.get("unit") == "model_request":
                break
            if unit.workflow_id == workflow_id and _same_step(unit.input, input):
                del self.forked[index]
                return unit.as_execution(self.info.session_id)
        head = self.forked[0]
        raise UserError(
            f"this run departs from the fork of {self.info.session_id} at step {head.step}: it was "
            f"recorded as {_describe(head.input)}, this run asks for {_describe(input)}; fork with a "
            f"smaller --until, or run it in a new session"
        )


@dataclass
class Run:
    """One agent run in a session: its identity, its message chain and its figures."""

    hold: _Hold
    identity: RunIdentity
    on_unit: Callable[[UnitEvent], None] | None
    stats: RunStats = field(default_factory=RunStats)
    chain: MessageChain = field(default_factory=MessageChain)
    sent_base: tuple[str, int, int] | None = None
    """(execution id, count, chain generation) of this run's last model request the server recorded:
    the next one sends only the hashes its list adds to that one's."""
    _seen: dict[str, int] = field(default_factory=dict)

    def next_occurrence(self, what: str) -> int:
        """0 the first time the run does `what`, then 1, 2...: tells apart identical waits of a run."""
        self._seen[what] = self._seen.get(what, 0) + 1
        return self._seen[what] - 1

    @property
    def session(self) -> SessionRunInfo:
        return self.hold.info

    @property
    def client(self) -> NexumClient:
        return self.hold.client

    def report(self, event: UnitEvent) -> None:
        self.stats.add(event)
        if self.on_unit is not None:
            self.on_unit(event)


def _same_step(recorded: dict[str, Any], asked: dict[str, Any]) -> bool:
    if "tool_name" in asked or "tool_name" in recorded:  # a tool call, in the agent or in a worker
        return (recorded.get("tool_name"), recorded.get("tool_args")) == (
            asked.get("tool_name"),
            asked.get("tool_args"),
        )
    return recorded.get("unit") == asked.get("unit")


def _describe(input: dict[str, Any]) -> str:
    if "tool_name" in input:
        return f"a call of {input.get('tool_name')}({canonical_json(input.get('tool_args'))})"
    return f"a {str(input.get('unit', 'unit')).replace('_', ' ')}"


_RUN: ContextVar[Run | None] = ContextVar("nexum_run", default=None)
_HOLDS: dict[tuple[int, str], _Hold] = {}
"""The sessions live in this process, by (event loop, session id)."""
_TAKING: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()
"""One lock per session being taken, kept while a run holds or waits for it."""


def current_run() -> Run | None:
    """The Nexum run the calling code is part of, if any."""
    return _RUN.get()


def model_label(model: Model | str | None) -> str:
    if isinstance(model, Model):
        return f"{model.system}:{model.model_name}"
    return model or "default"


# --- running one unit --------------------------------------------------------------------------------


async def _start(
    run: Run, key: str, input: Any, deadline: float, messages: list[dict[str, Any]] | None = None
) -> Execution:
    client, session = run.client, run.session

    async def start() -> Execution:
        try:
            return await client.start(
                AGENT_WORKFLOW_ID,
                AGENT_VERSION_HASH,
                session.session_id,
                key,
                input,
                wait=HOLD_SECONDS,
                run_token=session.run_token,
                messages=messages,
            )
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


async def run_unit(
    run: Run,
    key: str,
    input: Any,
    body: Callable[[], Awaitable[object]],
    timeout: float = DEFAULT_TIMEOUT,
    messages: Callable[[], list[dict[str, Any]]] | None = None,
    on_recorded: Recorded | None = None,
) -> tuple[object, bool]:
    """The unit's recorded payload: from the store, or by running `body` and recording it.

    Returns the payload and whether it came from the store (this run ran nothing). A unit the session
    had recorded when the run took it is served from memory. A new one runs once its start claimed
    it: through the hold's writer when the run holds its session alone (`_run_written`: the start
    carries the results before it, and the unit's own result rides with the next start); otherwise
    its start may wait for another holder and serve the answer it records, and its completion is
    sent without waiting. Either way the next unit, or the end of the run, hears of a refusal.
    `on_recorded` is called once the unit is in the store (for a new one, when its result was
    acknowledged). `messages` gives the message bodies a new unit's start carries (completing its
    input as it does); it is not called for a unit served from the journal.
    """
    started = time.perf_counter()
    hold = run.hold
    hold.check_reports()
    if key in hold.refused:
        raise UserError(f"{hold.refused[key]}; return something smaller (or raise the server's NEXUM_MAX_BODY_BYTES)")
    recorded = hold.served(key, input, AGENT_WORKFLOW_ID)
    if recorded is not None:
        if on_recorded is not None:
            on_recorded(recorded.result, recorded, True, time.perf_counter() - started)
        return recorded.result, True
    deadline = time.monotonic() + timeout
    hold.live()
    bodies = messages() if messages is not None else None
    if hold.exclusive and not hold.lost and key not in hold.journaled and key not in hold.written:
        return await _run_written(run, key, input, body, deadline, bodies, on_recorded, started), False
    if key in hold.written:
        await hold.settle()  # this run ran it before (and it failed): what it sent of it lands first
    while True:
        execution = await _start_unit(run, key, input, deadline, bodies)
        bodies = None  # the server has them now: later starts name them without their bodies
        if execution.status is Status.COMPLETED:
            # Recorded before, or just now by another holder this start waited for: either way this
            # run did not run it (and asked no model), so it counts as replayed.
            if on_recorded is not None:
                on_recorded(execution.result, execution, True, time.perf_counter() - started)
            return execution.result, True
        if execution.claimed is not None:
            break
        # Another holder runs it (the server held this start up to HOLD_SECONDS), or its attempt
        # ended FAILED, CANCELLED or back to PENDING: start again, which claims or creates anew.
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"execution {execution.id} is still held by {execution.worker_id} after "
                f"{timeout:g} s; it stays on the server, resume the session to try again"
            )
    payload = await _run_claimed(run, execution.claimed, body)
    # The completion goes out without waiting: what the run does next does not depend on it.
    seconds = time.perf_counter() - started
    hold.reports.add(asyncio.create_task(_complete(run, execution, key, input, payload, on_recorded, seconds)))
    return payload, False


async def _run_claimed(run: Run, task: Task, body: Callable[[], Awaitable[object]]) -> object:
    """Run a unit this run holds the lease of, heartbeating meanwhile; a failure is reported, not retried."""
    beat = asyncio.create_task(_heartbeat(run.client, task, run.session.lease_seconds / 3))
    try:
        return await body()
    except Exception as e:
        beat.cancel()
        with contextlib.suppress(Exception):
            await run.client.fail(task, f"{type(e).__name__}: {e}", retryable=False)
        raise
    finally:
        beat.cancel()


async def _start_unit(
    run: Run, key: str, input: Any, deadline: float, messages: list[dict[str, Any]] | None
) -> Execution:
    """The unit's start (which claims it for this run); an input too large to store is a `UserError`,
    after the completions in flight have landed (a refused one is the cause to name)."""
    try:
        execution = await _start(run, key, input, deadline, messages)
    except RequestRejected as e:
        if e.status not in (413, 422):
            raise
        await run.hold.settle()
        raise _cannot_store(input, e) from e
    if messages:
        run.hold.sent.update(item["hash"] for item in messages)
    if execution.status is Status.FAILED and (execution.error or "").startswith(TOO_LARGE):
        raise UserError(f"unit {execution.id} cannot be recorded: {execution.error}")
    return execution


async def _run_written(
    run: Run,
    key: str,
    input: Any,
    body: Callable[[], Awaitable[object]],
    deadline: float,
    messages: list[dict[str, Any]] | None,
    on_recorded: Recorded | None,
    started: float,
) -> object:
    """Run a unit the session has never seen, in a run that holds its session alone.

    The run took its session from no live run and read the journal after the take, so a key it did
    not find there is nobody's: its start claims it. The start goes out through the hold's `_Writer`,
    carrying the results of the units before it, so a unit costs one request and one transaction,
    and no result is still unsent when the next unit runs (a crash there repeats nothing). The body
    runs once the start is answered; its result rides with the next unit's start, or goes out at
    the end of the run, before a wait, or before a tool call sent to a worker."""
    hold = run.hold
    hold.written.add(key)
    unit = _Written(key, input, messages, deadline)
    hold.writer.begin(unit)
    try:
        await asyncio.shield(unit.claimed)
    except UserError:
        await hold.settle()  # a result refused just before this start is the cause to name
        raise
    payload = await _run_claimed(run, unit.task, body)
    seconds = time.perf_counter() - started
    hold.writer.finish(unit, payload)

    async def recorded() -> None:
        done = await asyncio.shield(unit.recorded)
        if on_recorded is not None:
            on_recorded(payload, done, False, seconds)

    hold.reports.add(asyncio.create_task(recorded()))
    return payload


@dataclass
class _Written:
    """A new unit as the hold's writer sends it: its start, then its result."""

    key: str
    input: Any
    messages: list[dict[str, Any]] | None
    deadline: float
    output: Any = None
    """What its body returned, once it has."""
    claimed: asyncio.Future[Execution] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Its start's answer: the execution leased to the run (or the refusal)."""
    recorded: asyncio.Future[Execution] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Its completed execution (or why its result could not be recorded)."""

    @property
    def task(self) -> Task:
        """The run's lease on it, once its start claimed it."""
        task = self.claimed.result().claimed
        assert task is not None
        return task

    def settle(self, future: asyncio.Future[Execution], outcome: Execution | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
            future.exception()  # retrieved: the run raises it where it checks, or never needs it
        else:
            future.set_result(outcome)


@dataclass
class _Writer:
    """Sends what a run that holds its session alone records, one request at a time: the results
    of units run since the last request, then the starts of new units in the order they began."""

    hold: _Hold
    begun: list[_Written] = field(default_factory=list)
    """Units not sent yet."""
    finished: list[_Written] = field(default_factory=list)
    """Units claimed by an earlier request whose results are not sent yet."""
    flushing: asyncio.Task[None] | None = None

    def begin(self, unit: _Written) -> None:
        self.begun.append(unit)
        self._kick()

    def finish(self, unit: _Written, output: object) -> None:
        """The unit's result, sent with the next start, or by `flush`."""
        unit.output = output
        self.finished.append(unit)

    def flush(self) -> None:
        """Send what waits to be sent now: the run is about to wait, or to end."""
        if self.begun or self.finished:
            self._kick()

    def _kick(self) -> None:
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self.begun or self.finished:
            begun, self.begun = self.begun, []
            finished, self.finished = self.finished, []
            try:
                await self._send(begun, finished)
            except BaseException as e:  # a unit left unanswered would hold its run forever
                error = e if isinstance(e, Exception) else SessionTakenOver("the run's writes were cancelled")
                self._refused(error, begun + self.begun, finished + self.finished)
                self.begun, self.finished = [], []
                raise

    async def _send(self, begun: list[_Written], finished: list[_Written]) -> None:
        try:
            answer = await self._write(
                [_finished(unit) for unit in finished],
                [_unit_write(unit) for unit in begun],
                min([u.deadline for u in begun + finished]),
            )
        except RequestRejected as e:
            if e.status in (413, 422) and len(begun) + len(finished) > 1:
                for unit in finished:  # one by one: only the one that is too large fails
                    await self._send([], [unit])
                for unit in begun:
                    await self._send([unit], [])
            elif e.status in (413, 422) and finished:
                await self._too_large(finished[0], e)
            else:
                if e.error_code == "session_taken_over":
                    finished = await self._complete_alone(finished)
                self._refused(e, begun, finished)
            return
        except Exception as e:
            self._refused(e, begun, finished)
            return
        for unit, execution in zip(finished, answer.finished, strict=True):
            unit.settle(unit.recorded, execution)
        for unit, execution in zip(begun, answer.units, strict=True):
            self._answered(unit, execution)

    def _answered(self, unit: _Written, execution: Execution) -> None:
        if unit.messages:
            self.hold.sent.update(item["hash"] for item in unit.messages)
        if execution.claimed is None:
            error = SessionTakenOver(
                f"unit {execution.id} ({unit.input.get('unit')}) was {execution.status.value.lower()} by "
                f"another run of session {self.hold.info.session_id} while this one ran it; resume the "
                "session to replay it"
            )
            unit.settle(unit.claimed, error)
            unit.settle(unit.recorded, error)
            return
        unit.settle(unit.claimed, execution)

    async def _complete_alone(self, finished: list[_Written]) -> list[_Written]:
        """Another run took the session: the units this one holds are still its own to report (the new
        run waits for them rather than run them again), though nothing new may start. The ones not
        recorded are returned."""
        left = []
        for unit in finished:
            try:
                unit.settle(unit.recorded, await self.hold.client.complete(unit.task, unit.output))
            except Exception:
                left.append(unit)
        return left

    async def _too_large(self, unit: _Written, refusal: RequestRejected) -> None:
        execution = unit.claimed.result()
        unit.settle(unit.recorded, await _fail_too_large(self.hold.client, execution, unit.input, refusal))

    def _refused(self, error: Exception, begun: list[_Written], finished: list[_Written]) -> None:
        if isinstance(error, RequestRejected):
            if error.error_code == "session_taken_over":
                self.hold.lost = True
                error = SessionTakenOver(str(error))
            elif error.status in (413, 422):
                [unit] = begun + finished
                error = _cannot_store(unit.input, error)
        for unit in begun + finished:
            unit.settle(unit.claimed, error)
            unit.settle(unit.recorded, error)

    async def _write(self, finished: list[dict[str, Any]], units: list[dict[str, Any]], deadline: float) -> Any:
        client, info = self.hold.client, self.hold.info

        async def write() -> Any:
            try:
                return await client.write_units(info, AGENT_WORKFLOW_ID, AGENT_VERSION_HASH, finished, units)
            except RequestRejected as e:
                if e.error_code != "workflow_not_found":
                    raise
                await client.register_workflow(AGENT_WORKFLOW_ID, AGENT_VERSION_HASH, AGENT_IR)
                return await write()

        return await reconnecting(write, deadline)


def _finished(unit: _Written) -> dict[str, Any]:
    return {"task_id": unit.task.task_id, "lease_token": unit.task.lease_token, "output": unit.output}


def _unit_write(unit: _Written) -> dict[str, Any]:
    write: dict[str, Any] = {"key": unit.key, "input": unit.input}
    if unit.messages:
        write["messages"] = unit.messages
    return write


async def _complete(
    run: Run,
    execution: Execution,
    key: str,
    input: Any,
    payload: object,
    on_recorded: Recorded | None,
    seconds: float,
) -> Execution:
    """Record a unit's result; a server away meanwhile is waited out (the lease guards the result)."""
    task = execution.claimed
    assert task is not None
    try:
        done = await reconnecting(lambda: run.client.complete(task, payload), time.monotonic() + DEFAULT_TIMEOUT)
    except RequestRejected as e:
        if e.status == 409:
            raise SessionTakenOver(f"this run's result for {key[:12]}… was discarded: {e}") from e
        if e.status in (413, 422):
            raise await _fail_too_large(run.client, execution, input, e) from e
        raise
    if on_recorded is not None:
        on_recorded(payload, done, False, seconds)
    return done


def _cannot_store(input: Any, refusal: RequestRejected) -> UserError:
    """A unit's start (its input, the messages it carries) that the server refused as too large."""
    what = str(input.get("unit", "unit")).replace("_", " ")
    return UserError(
        f"the {what} cannot be stored: {refusal}; keep what tools return and send smaller (or raise the "
        "server's NEXUM_MAX_BODY_BYTES)"
    )


async def _fail_too_large(client: NexumClient, execution: Execution, input: Any, refusal: RequestRejected) -> UserError:
    """A result the server refused as too large: sending it again cannot make it fit, so its unit is
    recorded FAILED with why (a resume fails it again instead of running it); the error to raise."""
    reason = f"{TOO_LARGE}: {refusal}"
    assert execution.claimed is not None
    with contextlib.suppress(Exception):
        await client.fail(execution.claimed, reason, retryable=False)
    return UserError(
        f"unit {execution.id} ({input.get('unit')}) cannot be recorded: {reason}; "
        "return something smaller (or raise the server's NEXUM_MAX_BODY_BYTES)"
    )


# --- the backend --------------------------------------------------------------------------------------


class NexumBackend(CallableOperationBackend[dict[str, Any]]):
    """Runs each model request, tool listing and in-process tool call as one keyed execution."""

    def __init__(self, capability: NexumDurability[Any]) -> None:
        config = RoleBasedOperationConfig[dict[str, Any]](model={}, event={}, capability={}, tool={})
        super().__init__(namer=JournalOperationNamer(capability.name), config=config)
        self._capability = capability

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: dict[str, Any],
    ) -> object:
        run = _RUN.get()
        if run is None:
            return await body()
        if isinstance(operation_id, ModelRequestId):
            model_id, messages, settings, parameters = cache_key[:4]
            label = model_label(self._capability.model_for(model_id))
            key = model_request_key(run.identity, run.chain, label, messages, settings, parameters)  # type: ignore[arg-type]
            count, generation = len(messages), run.chain.generation  # type: ignore[arg-type]
            input: dict[str, Any] = {
                "unit": "model_request",
                "model": label,
                "messages": count,
                "agent": run.identity.agent,
            }

            def sending() -> list[dict[str, Any]]:
                # Only a request that is not served from the journal says what it was sent.
                base = run.sent_base
                if base is not None and base[2] == generation and base[1] <= count:
                    # What this run's previous request was sent, then the rest: a request's size
                    # does not grow with the history.
                    sent = run.chain.stored(count, base[1])
                    input["sent_after"] = {"id": base[0], "count": base[1]}
                else:
                    sent = run.chain.stored(count)
                input["sent"] = [digest for digest, _ in sent]
                return [{"hash": digest, "body": body} for digest, body in sent if digest not in run.hold.sent]

            def model_done(payload: object, execution: Execution, cached: bool, seconds: float) -> None:
                # A replayed request's list is another run's (other timestamps): it is no base.
                run.sent_base = None if cached else (execution.id, count, generation)
                usage = payload.get("usage", {}) if isinstance(payload, dict) else {}
                run.report(
                    UnitEvent(
                        "model",
                        label,
                        None,
                        cached,
                        seconds,
                        ran_seconds(execution) if cached else 0.0,
                        tokens=usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
                        execution=execution,
                    )
                )

            payload, _ = await run_unit(run, key, input, body, messages=sending, on_recorded=model_done)
            return payload
        if isinstance(operation_id, ToolsetGetToolsId | ToolsetGetInstructionsId):
            ctx = cache_key[0]
            assert isinstance(ctx, RunContext)
            what = "tools" if isinstance(operation_id, ToolsetGetToolsId) else "instructions"
            key = tool_listing_key(run.identity, run.chain, operation_id.toolset_id, ctx.messages, ctx.run_step, what)
            input = {"unit": f"list_{what}", "toolset_id": operation_id.toolset_id, "agent": run.identity.agent}
            payload, _ = await run_unit(run, key, input, body)
            return payload
        if isinstance(operation_id, ToolsetCallToolId):
            tool_name, ctx = str(cache_key[0]), cache_key[2]
            assert isinstance(ctx, RunContext)
            # Validated arguments may hold Pydantic models or dataclasses: key and store them as JSON.
            tool_args = jsonable(cache_key[1], f"the arguments of tool {tool_name!r}")
            key = tool_call_key(
                run.identity,
                run.chain,
                operation_id.toolset_id,
                tool_name,
                tool_args,
                ctx.messages,
                ctx.tool_call_id,
                ctx.tool_call_approved,
            )
            input = {
                "unit": "tool_call",
                "tool_name": tool_name,
                "tool_args": tool_args,
                "toolset_id": operation_id.toolset_id,
                "agent": run.identity.agent,
            }

            def tool_done(payload: object, execution: Execution, cached: bool, seconds: float) -> None:
                run.report(
                    UnitEvent(
                        "tool",
                        tool_name,
                        tool_args,
                        cached,
                        seconds,
                        ran_seconds(execution) if cached else 0.0,
                        execution=execution,
                    )
                )

            payload, _ = await run_unit(run, key, input, _storable(body, tool_name), on_recorded=tool_done)
            return payload
        # Argument validation, event handlers, capability operations: deterministic work of the run.
        return await body()


def _storable(body: Callable[[], Awaitable[object]], tool_name: str) -> Callable[[], Awaitable[object]]:
    async def guarded() -> object:
        try:
            return await body()
        except PydanticSerializationError as e:
            raise UserError(
                f"tool {tool_name!r} returned a value that cannot be stored as JSON ({e}); return "
                "text, numbers, lists, dicts, dataclasses or Pydantic models instead"
            ) from e

    return guarded


# --- the capability ---------------------------------------------------------------------------------


class NexumDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent's runs durable in a Nexum session: model requests and tool calls are journaled.

        agent = Agent(model, name="research", toolsets=[WorkerToolset(TOOLSET)],
                      capabilities=[NexumDurability(session_id="abc")])

    Args:
        session_id: The session the runs belong to; `None` leaves the agent as it is.
        url: The Nexum server (default: `NEXUM_URL`, else http://127.0.0.1:50051).
        client: A client to use instead of one made from `url`.
        on_unit: Called with a `UnitEvent` as each model request and tool call ends.
        name: Names the agent's units (and is part of their keys); defaults to the agent's `name`.
        models: Other models the run may switch to, by id (as for every durable engine).
        event_stream_handler: Receives the run's events; a replayed model request streams nothing.
        deps_key: What identifies the run's deps in unit keys, when the deps are not JSON data
            (a client, a connection): e.g. `lambda deps: deps.tenant_id`.
        on_wait: Called with the server's `Wait` when the run is about to wait for an answer
            (`RequestInput`, `wait_for_external_event`): its token resolves it.
        detach_waits: Stop the run with `WaitDetached` instead of holding the process while it waits.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="Nexum",
        durable_unit_noun="execution",
        durable_container_noun="session",
        codec=JSON_CODEC,
        wrapped_toolset_kinds=frozenset({"function", "dynamic", "mcp"}),
        toolset_lifecycles={"function": "enter-always", "dynamic": "enter-never", "mcp": "enter-in-durable-unit"},
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_call_result_upgrade_lenient=True,
        journal_discovery=True,
        sequential_tools_in_durable_context=False,
        tool_config_key="nexum",
    )

    def __init__(
        self,
        *,
        session_id: str | None,
        url: str | None = None,
        client: NexumClient | None = None,
        on_unit: Callable[[UnitEvent], None] | None = None,
        name: str | None = None,
        models: dict[str, Model] | None = None,
        event_stream_handler: Any = None,
        deps_key: Callable[[Any], Any] | None = None,
        on_wait: Callable[[Any], None] | None = None,
        detach_waits: bool = False,
    ) -> None:
        super().__init__(models=models, name=name, event_stream_handler=event_stream_handler)
        self.session_id = session_id
        self.url = url
        self.client = client
        self.on_unit = on_unit
        self.deps_key = deps_key
        self.on_wait = on_wait
        self.detach_waits = detach_waits
        # Shared with the copy the agent binds, so the caller's object sees its runs' figures.
        self._last_stats: list[RunStats | None] = [None]
        self._run_numbers: dict[str, int] = {}
        self._starts: dict[str, int] = {}

    @property
    def last_stats(self) -> RunStats | None:
        """What the last run in a session replayed and ran."""
        return self._last_stats[0]

    @property
    def in_durable_context(self) -> bool:
        return self.session_id is not None

    def get_durable_operation_backend(self) -> DurableOperationBackend[dict[str, Any]]:
        return NexumBackend(self)

    def get_default_run_id(self) -> str | None:
        # Numbered per session in the order this process starts runs, so a re-run of the same script
        # gives its runs the ids they had, and replayed messages carry them.
        if self.session_id is None:
            return None
        number = self._run_numbers[self.session_id] = self._run_numbers.get(self.session_id, 0) + 1
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nexum:{self.session_id}:{self.name}:{number}"))

    def model_for(self, model_id: object) -> Model | str | None:
        """The model a request names: a registered one, a model string, or the agent's own."""
        if isinstance(model_id, str):
            return self._extra_models.get(model_id, model_id)
        return self.agent.model if self.agent is not None else None

    def identity(self, ctx: RunContext[Any]) -> RunIdentity:
        """What tells this run apart from other runs of the session with the same messages."""
        deps = self.deps_key(ctx.deps) if self.deps_key is not None else ctx.deps
        identity = RunIdentity(
            agent=self.name or "agent",
            deps=jsonable(deps, "the run's deps"),
            metadata=jsonable(ctx.metadata, "the run's metadata"),
        )
        # The same run made again by this capability (the same prompt on the same history, in a
        # loop) is a new run, as every `agent.run` in a DBOS or Temporal workflow is; a re-run of the
        # script in another process makes the same runs in the same order, and replays them.
        start = identity.start(ctx.prompt, list(ctx.messages))
        repeat = self._starts[start] = self._starts.get(start, -1) + 1
        return dataclasses.replace(identity, repeat=repeat) if repeat else identity

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: Any) -> Any:
        if self.session_id is None:
            return await handler()
        identity = self.identity(ctx)
        async with self._session_hold() as hold:
            run = Run(hold, identity, self.on_unit)
            token = _RUN.set(run)
            # Imported here: the waiter is built on this module's run state.
            from ._events import NexumEventWaiter

            try:
                with external_event_scope(NexumEventWaiter(run, on_wait=self.on_wait, detach=self.detach_waits)):
                    return await super().wrap_run(ctx, handler=handler)
            finally:
                _RUN.reset(token)
                self._last_stats[0] = run.stats

    @contextlib.asynccontextmanager
    async def _session_hold(self) -> AsyncIterator[_Hold]:
        """The process's hold on the session: taken by the first live run, joined by the others, let
        go by the last of them to end (under `asyncio.gather` that need not be the first)."""
        assert self.session_id is not None
        slot = (id(asyncio.get_running_loop()), self.session_id)
        taking = _TAKING.setdefault(slot, asyncio.Lock())
        async with taking:  # runs starting together take the session once, not over each other
            hold = _HOLDS.get(slot)
            if hold is not None and not hold.lost:
                hold.runs += 1
            else:
                hold = _HOLDS[slot] = await self._take_session()
        try:
            yield hold
        finally:
            hold.runs -= 1
            if hold.runs == 0:
                await _let_go(slot, hold)

    async def _take_session(self) -> _Hold:
        owned = self.client is None and self.url is not None
        client = self.client or (NexumClient(self.url) if owned else shared_client())
        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        session_id = self.session_id
        assert session_id is not None  # only a run in a session takes it
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        # The journal comes with the take, read after it: with no live run before this one, nothing
        # can be recorded in the session that is not in it. A live old run may still record the unit
        # it is in: then every new unit's start waits, and answers it from the store if so.
        info = await reconnecting(lambda: client.take_session(session_id, holder, journal=True), deadline)
        journal, info = info.journal, info.model_copy(update={"journal": None})
        assert journal is not None
        warm_up()
        if info.previous_holder:
            log.warning(
                "took session %s over from a run still live (%s); that run stops at its next unit",
                self.session_id,
                info.previous_holder,
            )
        hold = _Hold(info, client, owned=owned, exclusive=info.previous_holder is None)
        hold.load(journal)
        hold.tasks = [asyncio.create_task(_renew(hold))]
        return hold


async def _let_go(slot: tuple[int, str], hold: _Hold) -> None:
    # Forgotten before the first await, so a run starting meanwhile takes the session anew
    # instead of joining a hold that is going away.
    if _HOLDS.get(slot) is hold:
        del _HOLDS[slot]
    try:
        await hold.settle()  # what the runs recorded without waiting; a refusal is raised here
    finally:
        for task in hold.tasks:
            task.cancel()
        if not hold.lost:
            with contextlib.suppress(Exception):
                await hold.client.end_session_run(hold.info, hold.hits)
        if hold.owned:
            await hold.client.aclose()


async def _presence(hold: _Hold) -> None:
    """Hold the run's presence connection for as long as the run lives, across server restarts."""
    pause = PRESENCE_RETRY_SECONDS
    while True:
        try:
            await hold.client.hold_presence(hold.info)
            pause = PRESENCE_RETRY_SECONDS
        except RequestRejected as e:
            # Another run took the session: this one has nothing left to hold, and its next unit
            # takes the path whose start is refused at once, not the writer's.
            hold.lost = hold.lost or e.error_code == "session_taken_over"
            return
        except ServerUnavailable as e:  # the server is away: hold again once it is back
            log.debug("presence connection lost: %s", e)
            pause = min(pause * 2, 2.0)
        except Exception:
            log.warning("holding the run's presence failed; trying again", exc_info=True)
            pause = min(pause * 2, 2.0)
        await asyncio.sleep(pause)


async def _renew(hold: _Hold) -> None:
    """Keep the session lease. Once another run took the session this one is not cut short mid-unit
    (it finishes what it holds); its next start is refused instead."""
    while True:
        await asyncio.sleep(hold.info.lease_seconds / 3)
        try:
            await hold.client.renew_session(hold.info)
        except RequestRejected as e:
            if e.error_code == "session_taken_over":
                hold.lost = True
                return
            log.warning("renewing the session run failed: %s", e)
        except ServerUnavailable as e:  # the server is away: the run's own calls wait it out
            log.debug("session renewal failed: %s", e)
