"""Scenario 3: resume after a crash, with a model that words its calls differently in every process.

The agent is killed when it asks the model for its third answer (after one search and three pages),
then resumed in the same session by a new process whose model words its search another way, as a
language model at a temperature above 0 does. Two designs are compared:

- **tool calls only** (the original design): tool calls are keyed executions, model requests are
  not journaled, so the resumed model is asked everything again, words its search differently and
  reads other pages;
- **full journal** (`NexumDurability`): model requests are keyed executions too, so the resume asks
  the model only for the answer it never gave, and fetches nothing.

Each resume is counted: model requests made, requests that reached the web fixture, wall time.
The "new process" is a new model (new wording) and a new agent in this process; the crash is an
exception no handler catches, so the run ends without reporting what it held, as a killed one does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from rich.table import Table

from demo import AGENT_NAME, INSTRUCTIONS, build_agent
from nexum_devtools.web import WebFixture
from nexum_pydantic_ai import WorkerToolset
from nexum_research.offline_model import offline_model
from nexum_research.tools import TOOLSET
from nexum_server.client import NexumClient

DESIGNS = ("tool calls only", "full journal")
PAGES = 3
CRASH_AT = 3
"""The model request during which the first process dies: its third, the final answer."""


class SimulatedCrash(BaseException):
    """The process dies: not an `Exception`, so nothing on the way reports or cleans up politely."""


@dataclass
class Resume:
    design: str
    first_model_requests: int
    first_web_requests: int
    model_requests: int
    """Model requests the resumed run made."""
    web_requests: int
    """Requests that reached the web during the resumed run."""
    seconds: float
    """Wall time of the resumed run."""

    def json(self) -> dict[str, Any]:
        return dict(vars(self))


def counting_model(think_seconds: float, crash_at: int | None) -> tuple[FunctionModel, list[int]]:
    """A varying offline model (a new wording each time) that counts its requests and can die."""
    inner = offline_model(PAGES, vary=True, think_seconds=think_seconds)
    made: list[int] = []

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        made.append(1)
        if crash_at is not None and len(made) == crash_at:
            raise SimulatedCrash(f"killed while asking for answer {crash_at}")
        return await inner.function(messages, info)  # type: ignore[misc]

    return FunctionModel(answer, model_name=inner.model_name), made


def _agent(design: str, model: FunctionModel, session: str, client: NexumClient) -> Agent[None, str]:
    if design == "full journal":
        return build_agent(model, session, client=client)
    return Agent(
        model,
        name=AGENT_NAME,
        instructions=INSTRUCTIONS,
        retries=3,
        toolsets=[WorkerToolset(TOOLSET, session_id=session, client=client)],
    )


async def _web_requests(web: WebFixture) -> int:
    return len(await asyncio.to_thread(web.log))


async def run_resume(design: str, query: str, client: NexumClient, web: WebFixture, think_seconds: float) -> Resume:
    session = f"resume-{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(web.reset)
    model, made = counting_model(think_seconds, CRASH_AT)
    try:
        await _agent(design, model, session, client).run(query)
        raise AssertionError("the first run was meant to die at its third model request")
    except SimulatedCrash:
        pass
    first_made, first_web = len(made), await _web_requests(web)

    model, made = counting_model(think_seconds, None)
    started = time.perf_counter()
    await _agent(design, model, session, client).run(query)
    seconds = time.perf_counter() - started
    return Resume(design, first_made, first_web, len(made), await _web_requests(web) - first_web, seconds)


async def run_resumes(
    query: str, client: NexumClient, web: WebFixture, think_seconds: float, report: Any = print
) -> list[Resume]:
    resumes = []
    for design in DESIGNS:
        r = await run_resume(design, query, client, web, think_seconds)
        report(
            f"  3 resume  {r.design:<16} model requests {r.model_requests}, web requests {r.web_requests}, "
            f"{r.seconds:.2f} s"
        )
        resumes.append(r)
    return resumes


def resume_table(resumes: list[Resume], think_seconds: float) -> Table:
    table = Table(
        title=f"Scenario 3: resume after a crash at the third model request "
        f"(model takes {think_seconds:g} s an answer, words its search anew in every process)",
        title_justify="left",
    )
    for name in ("Design", "Before the crash", "Resume: model requests", "Resume: web requests", "Resume: wall time"):
        table.add_column(name, justify="left" if name == "Design" else "right")
    for r in resumes:
        table.add_row(
            r.design,
            f"{r.first_model_requests} model (killed in the last), {r.first_web_requests} web",
            str(r.model_requests),
            str(r.web_requests),
            f"{r.seconds:.2f} s",
        )
    return table
