"""The agent (`demo.py`) dies mid-run; the resume asks the model only what it never answered.

The model is `offline-varying`: it words its search differently in every process, as a language
model at a temperature above 0 does, so a resume that asked the model again would search for other
words and read other pages. Every model request and tool call is journaled, so none is asked twice
and no page is fetched twice, whichever step the agent died after.

Calls the dead agent had already submitted still finish on the worker: a call belongs to the server,
not to the process that asked for it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable

from nexum_devtools.procs import NexumServer, Proc, server_env
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Execution, Status
from tests.reliability.faults import token, until
from workflow import AGENT_WORKFLOW_ID, WORKFLOW_ID

DEMO_TIMEOUT = 60.0
PAGES_READ = 3
"""The varying offline model reads the top three search results."""
STEPS = 7
"""Model request, search, model request, three pages, model request (the answer)."""
MODEL_MADE = re.compile(r"^  model request  executed\b", re.MULTILINE)
MODEL_REPLAYED = re.compile(r"^  model request  cached\b", re.MULTILINE)
SEARCH_LINE = re.compile(r"^  web_search\('([^']*)'\)", re.MULTILINE)


def demo_env(server: NexumServer, think_seconds: float = 0.0) -> dict[str, str]:
    # Wide columns, so rich wraps no call line.
    return {
        "NEXUM_URL": server.url,
        "COLUMNS": "250",
        "PYTHONIOENCODING": "utf-8",
        "NEXUM_OFFLINE_THINK_SECONDS": str(think_seconds),
    }


def demo_args(query: str, session: str, *flags: str) -> list[str]:
    return [sys.executable, "demo.py", "--model", "offline-varying", "--session", session, *flags, query]


def run_demo(server: NexumServer, query: str, session: str, *flags: str) -> subprocess.CompletedProcess[str]:
    proc = Proc(demo_args(query, session, *flags), env=demo_env(server))
    try:
        code = proc.popen.wait(DEMO_TIMEOUT)
    finally:
        proc.stop()
    return subprocess.CompletedProcess(proc.args, code, proc.output, "")


def run_requests(web: WebFixture, slug: str) -> list[str]:
    """This session's requests to the web: its searches (the query carries `slug`) and its pages."""
    return [
        f"{e['path']}?{e['query']}" if e["path"] == "/search" else e["path"]
        for e in web.log()
        if slug in e["path"] or slug in e["query"]
    ]


async def settle(client: NexumClient, session: str) -> list[Execution]:
    """Wait until the worker has finished every tool call the session submitted; those executions."""
    calls = [e for e in await client.list(session, limit=100) if e.workflow_id == WORKFLOW_ID]
    return [await client.wait(e, 30) for e in calls]


async def test_killed_after_any_step_the_resume_asks_only_what_was_never_answered(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
) -> None:
    server = start_server()
    start_worker(server)
    client = client_of(server)
    for k in range(1, STEPS + 1):
        slug = token(f"step{k}")
        session = f"{slug}-session"
        crashed = await asyncio.to_thread(run_demo, server, slug, session, "--crash-after", str(k))
        assert crashed.returncode == -9, f"k={k}\n{crashed.stdout}"
        asked_before = len(MODEL_MADE.findall(crashed.stdout))
        await settle(client, session)

        resumed = await asyncio.to_thread(run_demo, server, slug, session)

        note = f"killed after step {k}\n--- crashed\n{crashed.stdout}\n--- resumed\n{resumed.stdout}"
        assert resumed.returncode == 0, note
        # Three model requests in all: the resume asked only those the dead run never had answered.
        assert asked_before + len(MODEL_MADE.findall(resumed.stdout)) == 3, note
        assert len(MODEL_REPLAYED.findall(resumed.stdout)) == asked_before, note
        # One search, worded as the first process worded it, and each of its pages, once each.
        requests = run_requests(web, slug)
        assert len(requests) == len(set(requests)) == 1 + PAGES_READ, f"{note}\n{requests}"
        searches = set(SEARCH_LINE.findall(crashed.stdout + resumed.stdout))
        assert len(searches) == 1, note
        page_paths = [r for r in requests if r.startswith("/pages/")]
        assert all(f"{web.url}{path}" in resumed.stdout for path in page_paths), note
        # Replaying the finished session gives the resumed answer word for word, with nothing run.
        replayed = await asyncio.to_thread(run_demo, server, slug, session)
        assert "3 model requests: 3 replayed, 0 made" in replayed.stdout, replayed.stdout
        assert _answer(replayed.stdout) == _answer(resumed.stdout), note
        assert run_requests(web, slug) == requests


def _answer(output: str) -> str:
    """The printed answer: from the offline model's first line to the summary."""
    start = output.index("Offline extractive model")
    return output[start : output.index("Summary", start)]


async def test_killed_while_asking_for_its_answer_the_resume_takes_over_at_once(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
) -> None:
    # Leases far longer than the test: a resume that waited one out would time out here.
    server = start_server(env=server_env(lease_seconds=120))
    start_worker(server)
    client = client_of(server)
    slug = token("midrequest")
    session = f"{slug}-session"
    agent = Proc(demo_args(slug, session), env=demo_env(server, think_seconds=2.0))
    try:

        async def asking_for_answer() -> bool:
            units = [e for e in await client.list(session, limit=100) if e.workflow_id == AGENT_WORKFLOW_ID]
            return sum(e.status is Status.COMPLETED for e in units) == 2 and any(
                e.status is Status.RUNNING for e in units
            )

        await until(asking_for_answer, 60, "the agent asking the model for its third answer")
    finally:
        agent.kill()
    assert len(run_requests(web, slug)) == 1 + PAGES_READ

    started = time.monotonic()
    resumed = await asyncio.to_thread(run_demo, server, slug, session)
    took = time.monotonic() - started

    assert resumed.returncode == 0, resumed.stdout
    assert len(MODEL_MADE.findall(resumed.stdout)) == 1, resumed.stdout
    assert len(MODEL_REPLAYED.findall(resumed.stdout)) == 2, resumed.stdout
    assert len(run_requests(web, slug)) == 1 + PAGES_READ, "the resume fetched a page again"
    assert took < 20, f"the resume took {took:.1f} s: it waited for the dead run's lease"
    [answer] = [
        e for e in await client.list(session, limit=100) if e.workflow_id == AGENT_WORKFLOW_ID and e.attempts == 2
    ]
    assert answer.status is Status.COMPLETED


async def test_two_resumes_at_once_ask_the_model_each_question_once(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
) -> None:
    server = start_server()
    start_worker(server)
    client = client_of(server)
    slug = token("tworesumes")
    session = f"{slug}-session"
    crashed = await asyncio.to_thread(run_demo, server, slug, session, "--crash-after", "6")
    assert crashed.returncode == -9, crashed.stdout
    await settle(client, session)

    # Both resume the session at once; each takes it in turn, and the one answer left is asked once.
    both = [Proc(demo_args(slug, session), env=demo_env(server, think_seconds=1.0)) for _ in range(2)]
    try:
        codes = [await asyncio.to_thread(p.popen.wait, DEMO_TIMEOUT) for p in both]
    finally:
        for p in both:
            p.stop()
    outputs = "\n".join(p.output for p in both)

    assert 0 in codes, outputs
    assert all(code in (0, 1) for code in codes), outputs
    for code, p in zip(codes, both, strict=True):
        if code == 1:
            assert "taken over" in p.output, p.output
    assert len(MODEL_MADE.findall(outputs)) == 1, outputs
    assert len(run_requests(web, slug)) == 1 + PAGES_READ
