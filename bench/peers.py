"""The engines of the peer comparison: one FunctionModel agent, run plain, by Nexum and by DBOS.

Every engine runs the same agent: a `FunctionModel` that reads the number of steps from the prompt
(`steps=N`) and, while fewer tool results than that are in the history, calls the one tool it is
given; then it answers. A step is a model request and a tool call, so an N-step run journals
2N + 1 units. The tools cost nothing, so what is measured is the engine:

- `instant(n)`, a `FunctionToolset` tool run in the agent's process (for DBOS, as a `DBOS.step`,
  so it is journaled as the Nexum one is);
- `web_search` from the research tools, run by `worker.py` (`WorkerToolset`) against the stand-in
  web's zero-latency search; its plain baseline runs the same search in this process.

`python -m bench.peers` is the child process of the resume workload: it runs one N-step run in a
session (Nexum) or a workflow (DBOS), killed with SIGKILL at model request `--crash-at`, or resumes
it and prints the time from after its imports to done. `bench/peer_workloads.py` drives it all.

Run with (the benchmark starts these itself):
    python -m bench.peers --engine nexum --id S1 --url http://127.0.0.1:50051 --crash-at 8
    python -m bench.peers --engine nexum --id S1 --url http://127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec import (
    BaseDurabilityCapability,
    CallableOperationBackend,
    DurableOperationId,
    JournalOperationNamer,
    RoleBasedOperationConfig,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset
from pydantic_ai.usage import UsageLimits

# The Nexum integration, imported here only: the rest of the comparison takes it from this module.
from nexum_pydantic_ai import NexumDurability, WorkerToolset
from nexum_research.tools import TOOLSET
from nexum_server.client import NexumClient
from workflow import WEB_SEARCH

AGENT_NAME = "peers"
INSTANT = "instant"
RESUMED = "peers-resume"
"""The line a resumed child prints before its figures (JSON)."""
DBOS_REPLAY_QUEUE = "peers-replay"
DBOS_POLL_SECONDS = 0.01
"""How often the forked workflows' queue and a DBOS result are polled (DBOS's default is 1 s)."""

COUNTS: Counter[str] = Counter()
"""Model requests and in-process tool calls made in this process, by kind."""
STAMPS: list[float] = []
"""When each model request reached the model (`perf_counter`), for the per-step times."""
LIMITS = UsageLimits(request_limit=None)
"""No cap on model requests: a long run makes more than Pydantic AI's default 50."""
CRASH_AT: list[int] = []
"""The model request at which this process kills itself (the resume child's first run)."""


def prompt(steps: int) -> str:
    return f"steps={steps}"


def _steps(messages: list[ModelMessage]) -> int:
    for message in messages:
        for part in message.parts:
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                return int(part.content.removeprefix("steps="))
    raise ValueError("no steps=N prompt in the history")


async def step_model_function(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    STAMPS.append(time.perf_counter())
    COUNTS["model"] += 1
    if CRASH_AT and COUNTS["model"] == CRASH_AT[0]:
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9`: nothing on the way is told
    done = sum(isinstance(part, ToolReturnPart) for message in messages for part in message.parts)
    if done >= _steps(messages):
        return ModelResponse(parts=[TextPart(f"{done} steps done")])
    names = {tool.name for tool in info.function_tools}
    if INSTANT in names:
        return ModelResponse(parts=[ToolCallPart(INSTANT, {"n": done})])
    return ModelResponse(parts=[ToolCallPart(WEB_SEARCH, {"query": f"step {done}", "max_results": 1})])


MODEL = FunctionModel(step_model_function, model_name="steps")


async def instant(n: int) -> str:
    """Return at once.

    Args:
        n: Which step of the run this is.
    """
    COUNTS["tool"] += 1
    return f"step {n} done"


INSTANT_TOOLSET: FunctionToolset[None] = FunctionToolset([instant], id="peers")


def reset_counts() -> None:
    COUNTS.clear()
    STAMPS.clear()


# --- the engines ------------------------------------------------------------------------------------


@dataclass
class Engine:
    """One column of the comparison: how to run a fresh run and replay a finished one."""

    name: str
    """The column's title."""
    baseline: str
    """The name of the plain engine its overhead is measured against (itself for a plain one)."""
    fresh: Callable[[int, str], Awaitable[None]]
    """Run `steps` steps as run `id` (a session or workflow id; ignored by a plain engine)."""
    replay: Callable[[int, str], Awaitable[None]] | None = None
    """Run a finished run `id` again, every unit from the journal; None for a plain engine."""
    search_tool: bool = False
    """Its tool is `web_search` (not counted in `COUNTS`), rather than `instant`."""
    child: str | None = None
    """`--engine` of the resume child (`python -m bench.peers`); None: nothing to resume."""
    shown: bool = True
    """False for a baseline that only serves another column."""
    stats: list[Any] = field(default_factory=list)
    """The last Nexum run's `RunStats`, to check a replay ran nothing."""
    journals: bool = True
    """False for the machinery floor: its replay is a run like the first, and is not checked."""


def plain_engine(name: str, toolset: AbstractToolset[None], *, shown: bool = True) -> Engine:
    agent = Agent(MODEL, name=AGENT_NAME, toolsets=[toolset])

    async def fresh(steps: int, run_id: str) -> None:
        await agent.run(prompt(steps), usage_limits=LIMITS)

    return Engine(name, name, fresh, search_tool=toolset is TOOLSET, shown=shown)


class _RunsEverything(CallableOperationBackend[dict[str, Any]]):
    """Runs every durable operation as it is: nothing is journaled, nothing replayed."""

    def __init__(self, name: str) -> None:
        config = RoleBasedOperationConfig[dict[str, Any]](model={}, event={}, capability={}, tool={})
        super().__init__(namer=JournalOperationNamer(name), config=config)

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: dict[str, Any],
    ) -> object:
        return await body()


class MachineryOnly(BaseDurabilityCapability[None]):
    """Pydantic AI's durable-engine machinery (`pydantic_ai.durable_exec`) with a backend that journals
    nothing: the floor under every engine built on it, Nexum's and DBOS's alike."""

    engine_spec = dataclasses.replace(NexumDurability.engine_spec, engine_name="machinery only")

    @property
    def in_durable_context(self) -> bool:
        return True

    def get_durable_operation_backend(self) -> _RunsEverything:
        return _RunsEverything(self.name or AGENT_NAME)


def machinery_engine(name: str, baseline: str) -> Engine:
    """Plain Pydantic AI plus the durable machinery alone; its "replay" is another run (it journals nothing)."""
    agent = Agent(MODEL, name=AGENT_NAME, toolsets=[INSTANT_TOOLSET], capabilities=[MachineryOnly()])

    async def run(steps: int, run_id: str) -> None:
        await agent.run(prompt(steps), usage_limits=LIMITS)

    return Engine(name, baseline, run, run, journals=False)


def nexum_plain_agent(*, worker_tools: bool) -> Agent[None, str]:
    """The agent of the Nexum columns, with no capability: each run brings its session's."""
    return Agent(MODEL, name=AGENT_NAME, toolsets=[WorkerToolset(TOOLSET) if worker_tools else INSTANT_TOOLSET])


def nexum_engine(name: str, baseline: str, client: NexumClient, *, worker_tools: bool) -> Engine:
    stats: list[Any] = []
    # One agent, as DBOS's column has: each run names its session with a capability of its own.
    agent = nexum_plain_agent(worker_tools=worker_tools)

    async def run(steps: int, session_id: str) -> None:
        durability = NexumDurability[None](session_id=session_id, client=client)
        await agent.run(prompt(steps), usage_limits=LIMITS, capabilities=[durability])
        stats[:] = [durability.last_stats]

    # A run in a session that has recorded every unit is the replay.
    return Engine(
        name,
        baseline,
        run,
        run,
        search_tool=worker_tools,
        stats=stats,
        child="nexum-worker" if worker_tools else "nexum",
    )


def dbos_missing() -> str | None:
    """Why DBOS cannot run here, or None when it can."""
    try:
        import pydantic_ai.durable_exec.dbos  # noqa: F401
    except ImportError as e:
        return f"DBOS: skipped, it is not installed here ({type(e).__name__}); pip install -e '.[peers]' brings it"
    return None


def dbos_configure(db: Path) -> Callable[[str], Awaitable[str]]:
    """Configure DBOS on the SQLite file `db` (WAL) with the agent's workflow; launch is the caller's.

    Returns the workflow: `await workflow(prompt)` inside `SetWorkflowID(...)`.
    """
    from dbos import DBOS
    from pydantic_ai.durable_exec.dbos import DBOSDurability

    # WAL is a property of the file: set once, it holds for every connection DBOS opens.
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    DBOS(config={"name": AGENT_NAME, "system_database_url": f"sqlite:///{db}", "log_level": "WARNING"})
    tool = DBOS.step(name=f"{AGENT_NAME}.{INSTANT}")(instant)
    agent = Agent(
        MODEL, name=AGENT_NAME, toolsets=[FunctionToolset([tool], id="peers")], capabilities=[DBOSDurability()]
    )

    @DBOS.workflow(name=f"{AGENT_NAME}.run")
    async def run_agent(text: str) -> str:
        return (await agent.run(text, usage_limits=LIMITS)).output

    return run_agent


def dbos_engine(name: str, baseline: str, db: Path) -> Engine:
    """DBOS launched in this process on `db`; `dbos_shutdown()` ends it."""
    from dbos import DBOS, SetWorkflowID

    workflow = dbos_configure(db)
    DBOS.launch()
    DBOS.register_queue(DBOS_REPLAY_QUEUE, polling_interval_sec=DBOS_POLL_SECONDS)

    async def fresh(steps: int, workflow_id: str) -> None:
        with SetWorkflowID(workflow_id):
            await workflow(prompt(steps))

    async def replay(steps: int, workflow_id: str) -> None:
        # DBOS returns a finished workflow's output without running it; re-running it with its steps
        # from the database is a fork from after its last step, which the queue above runs.
        recorded = await DBOS.list_workflow_steps_async(workflow_id)
        after = max(step["function_id"] for step in recorded) + 1
        handle = await DBOS.fork_workflow_async(workflow_id, after, queue_name=DBOS_REPLAY_QUEUE)
        await handle.get_result(polling_interval_sec=DBOS_POLL_SECONDS)

    return Engine(name, baseline, fresh, replay, child="dbos")


def dbos_shutdown() -> None:
    from dbos import DBOS

    DBOS.destroy(destroy_registry=True)


# --- the resume child ------------------------------------------------------------------------------


async def _child_nexum(args: argparse.Namespace) -> None:
    agent = nexum_plain_agent(worker_tools=args.engine == "nexum-worker")
    durability = NexumDurability[None](session_id=args.id, url=args.url)
    await agent.run(prompt(args.steps), usage_limits=LIMITS, capabilities=[durability])


async def _child_dbos(args: argparse.Namespace) -> None:
    from dbos import DBOS, SetWorkflowID

    workflow = dbos_configure(Path(args.db))
    # On launch DBOS recovers this executor's pending workflows, the killed run among them.
    DBOS.launch()
    if CRASH_AT:
        with SetWorkflowID(args.id):
            await workflow(prompt(args.steps))
    else:
        handle = await DBOS.retrieve_workflow_async(args.id)
        await handle.get_result(polling_interval_sec=DBOS_POLL_SECONDS)
    DBOS.destroy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One run of the resume workload, crashed or resumed.")
    parser.add_argument("--engine", choices=("nexum", "nexum-worker", "dbos"), required=True)
    parser.add_argument("--id", required=True, help="the session (Nexum) or workflow id (DBOS)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--crash-at", type=int, help="kill this process at this model request")
    parser.add_argument("--url", help="the Nexum server")
    parser.add_argument("--db", help="DBOS's SQLite file")
    args = parser.parse_args(argv)
    if args.engine == "dbos":
        import pydantic_ai.durable_exec.dbos  # noqa: F401  # an import, not the resume's work
    CRASH_AT[:] = [args.crash_at] if args.crash_at else []
    started = time.perf_counter()
    asyncio.run(_child_dbos(args) if args.engine == "dbos" else _child_nexum(args))
    figures = {"seconds": time.perf_counter() - started, "model_calls": COUNTS["model"], "tool_calls": COUNTS["tool"]}
    print(RESUMED, json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
