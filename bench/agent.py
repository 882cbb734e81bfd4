"""Scenarios 1 and 2: one agent run plain and through Nexum, cold and then again.

Plain Pydantic AI calls the tools in this process (`tools.py`); Pydantic AI + Nexum is the demo's
agent, whose calls go to the server and a worker. Both present the model the same two tools, so a
planned model makes exactly the same calls in all four runs (a real model may vary its calls, and
then only those that repeat exactly are cached). What ran is counted twice: by the agent's side
(executed or cached) and at the local web fixture (the requests that reached "the web").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.models import Model
from pydantic_ai.toolsets import ToolsetTool, WrapperToolset
from rich.table import Table

from demo import build_agent
from nexum_devtools.web import WebFixture
from nexum_pydantic_ai import UnitEvent
from nexum_research import tools
from nexum_research.tools import ToolError
from nexum_server.client import NexumClient
from submit_task import call_tool
from workflow import VISIT_WEBPAGE

PLAIN = "Pydantic AI"
NEXUM = "Pydantic AI + Nexum"
COLD = "cold"
RERUN = "rerun"
SCENARIO_LABELS = {COLD: "1 cold", RERUN: "2 re-run"}


@dataclass
class AgentRun:
    """One agent run and what its tool calls cost."""

    scenario: str
    """`cold` or `rerun`."""
    agent: str
    """`Pydantic AI` or `Pydantic AI + Nexum`."""
    session: str | None
    """The Nexum session, None for the plain agent."""
    seconds: float
    """Wall time of `agent.run`."""
    tool_calls: int = 0
    executed: int = 0
    cached: int = 0
    failed: int = 0
    web_requests: int | None = None
    """Requests the web fixture served during the run; None when the real web was used."""
    model_requests: int = 0
    """Model requests of the run (Nexum agent only: replayed or made)."""
    model_made: int = 0
    """Model requests actually sent to the model (the others were replayed from the store)."""


@dataclass
class CountingToolset(WrapperToolset[None]):
    """The tools run here, every time, counted in `run`; a failure becomes a retry prompt, as the
    Nexum agent's failed calls do."""

    run: AgentRun | None = None

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[None], tool: ToolsetTool[None]
    ) -> Any:
        assert self.run is not None
        self.run.tool_calls += 1
        try:
            result = await tools.run_tool(name, tool_args)
        except ToolError as e:
            self.run.failed += 1
            raise ModelRetry(str(e)) from e
        self.run.executed += 1
        return result


def build_plain_agent(model: Model | str, run: AgentRun) -> Agent[None, str]:
    """The same agent with no Nexum: each tool call runs here, every time; counted in `run`."""
    return build_agent(model, None, toolset=CountingToolset(tools.TOOLSET, run=run))


def _nexum_recorder(run: AgentRun) -> Callable[[UnitEvent], None]:
    def on_unit(event: UnitEvent) -> None:
        if event.kind == "model":
            run.model_requests += 1
            run.model_made += not event.cached
            return
        run.tool_calls += 1
        if event.error is not None:
            run.failed += 1
        elif event.cached:
            run.cached += 1
        else:
            run.executed += 1

    return on_unit


async def run_once(
    scenario: str,
    agent_name: str,
    model: Model | str,
    query: str,
    client: NexumClient,
    session: str | None,
    web: WebFixture | None,
) -> AgentRun:
    run = AgentRun(scenario, agent_name, session, 0.0)
    if session is None:
        agent = build_plain_agent(model, run)
    else:
        agent = build_agent(model, session, client=client, on_unit=_nexum_recorder(run))
    if web is not None:
        await asyncio.to_thread(web.reset)
    started = time.perf_counter()
    await agent.run(query)
    run.seconds = time.perf_counter() - started
    if web is not None:
        run.web_requests = len(await asyncio.to_thread(web.log))
    return run


async def run_scenarios(
    model: Model | str, query: str, client: NexumClient, web: WebFixture | None, report: Callable[[str], None] = print
) -> list[AgentRun]:
    """Plain and Nexum cold (a new session), then both again (Nexum in the same session)."""
    session = f"bench-{uuid.uuid4().hex[:12]}"
    if web is not None:
        # One call each way first, so neither cold run pays for first-use costs (connection pools,
        # resolver threads) that the other then gets for free.
        await tools.visit_webpage(f"{web.url}/instant")
        await call_tool(VISIT_WEBPAGE, {"url": f"{web.url}/instant"}, f"{session}-warmup", client=client)
    runs = []
    for scenario in (COLD, RERUN):
        for agent_name, agent_session in ((PLAIN, None), (NEXUM, session)):
            run = await run_once(scenario, agent_name, model, query, client, agent_session, web)
            report(
                f"  {SCENARIO_LABELS[scenario]:<9} {agent_name:<20} {run.seconds:7.2f} s  "
                f"{run.tool_calls} tool calls, {run.executed} executed, {run.cached} cached"
            )
            runs.append(run)
    return runs


def agent_table(runs: list[AgentRun]) -> Table:
    table = Table(title="Agent runs: same query, same tools", title_justify="left")
    columns = ["Scenario", "Run", "Wall time", "Tool calls", "Executed", "Cached", "Web requests", "vs plain"]
    show_failed = any(r.failed for r in runs)
    if show_failed:
        columns.insert(6, "Failed")
    for name in columns:
        table.add_column(
            name,
            justify="left" if name in ("Scenario", "Run", "vs plain") else "right",
            no_wrap=name in ("Run", "vs plain"),
        )
    plain = {r.scenario: r for r in runs if r.session is None}
    for r in runs:
        label = r.agent if r.session is None else f"{r.agent}, {'new' if r.scenario == COLD else 'same'} session"
        cells = [
            SCENARIO_LABELS[r.scenario],
            label,
            f"{r.seconds:.2f} s",
            str(r.tool_calls),
            str(r.executed),
            str(r.cached),
            "n/a" if r.web_requests is None else str(r.web_requests),
            "" if r.session is None else _versus(r, plain.get(r.scenario)),
        ]
        if show_failed:
            cells.insert(6, str(r.failed))
        table.add_row(*cells)
    return table


def _versus(nexum: AgentRun, plain: AgentRun | None) -> str:
    if plain is None:
        return ""
    if nexum.scenario == COLD:
        extra = nexum.seconds - plain.seconds
        return f"{extra * 1000:+.0f} ms ({extra / plain.seconds:+.1%})"
    return f"{plain.seconds / nexum.seconds:.0f}x faster" if nexum.seconds > 0 else ""


def agent_figures(runs: list[AgentRun]) -> dict[str, Any]:
    """The JSON form: every run, plus the overhead of scenario 1 and the speed-up of scenario 2."""
    by = {(r.scenario, r.session is None): r for r in runs}
    figures: dict[str, Any] = {"runs": [_run_json(r) for r in runs]}
    cold_plain, cold_nexum = by.get((COLD, True)), by.get((COLD, False))
    rerun_plain, rerun_nexum = by.get((RERUN, True)), by.get((RERUN, False))
    if cold_plain and cold_nexum:
        figures["cold_overhead_seconds"] = cold_nexum.seconds - cold_plain.seconds
    if rerun_plain and rerun_nexum and rerun_nexum.seconds > 0:
        figures["rerun_speedup"] = rerun_plain.seconds / rerun_nexum.seconds
    return figures


def _run_json(r: AgentRun) -> dict[str, Any]:
    return {
        "scenario": r.scenario,
        "agent": r.agent,
        "session": r.session,
        "seconds": r.seconds,
        "tool_calls": r.tool_calls,
        "executed": r.executed,
        "cached": r.cached,
        "failed": r.failed,
        "web_requests": r.web_requests,
    }
