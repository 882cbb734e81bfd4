"""The agent (`demo.py`) dies mid-run; the re-run with the same session executes only what had not completed.

Calls the dead agent had already submitted still finish on the worker: a call belongs to the server,
not to the process that asked for it. So across both runs every distinct call reaches the web once.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
from collections.abc import Callable

from nexum_server.client import NexumClient
from nexum_server.models import Status
from nexum_devtools.web import WebFixture
from nexum_devtools.procs import NexumServer, Proc
from tests.reliability.faults import token, until
from workflow import VISIT_WEBPAGE, WEB_SEARCH

DEMO_TIMEOUT = 60.0
PAGES_READ = 2
"""The offline model reads the top two search results."""
CALL_LINE = re.compile(r"^\s+(web_search|visit_webpage)\('([^']*)'\)\s+(executed|cached)", re.MULTILINE)
SEED = random.randrange(2**32)


def demo_env(server: NexumServer) -> dict[str, str]:
    # Wide columns, so rich wraps no call line.
    return {"NEXUM_URL": server.url, "COLUMNS": "250", "PYTHONIOENCODING": "utf-8"}


def run_demo(server: NexumServer, query: str, session: str, *flags: str) -> subprocess.CompletedProcess[str]:
    proc = Proc([sys.executable, "demo.py", "--model", "offline", "--session", session, *flags, query],
                env=demo_env(server))
    try:
        code = proc.popen.wait(DEMO_TIMEOUT)
    finally:
        proc.stop()
    return subprocess.CompletedProcess(proc.args, code, proc.output, "")


def calls_in(output: str, how: str) -> set[tuple[str, str]]:
    """(tool, argument) of each call line the demo printed as `executed` or `cached`."""
    return {(tool, arg) for tool, arg, kind in CALL_LINE.findall(output) if kind == how}


def run_requests(web: WebFixture, slug: str) -> list[str]:
    """Paths of this run's requests: its search (query carries `slug`) and its pages."""
    return [entry["path"] for entry in web.log() if slug in entry["path"] or slug in entry["query"]]


def expected_calls(web: WebFixture, query: str, slug: str) -> set[tuple[str, str]]:
    pages = {(VISIT_WEBPAGE, f"{web.url}/pages/{slug}-{n}") for n in range(1, PAGES_READ + 1)}
    return {(WEB_SEARCH, query)} | pages


def test_crash_after_first_call_then_rerun_executes_only_the_rest(
        start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc], web: WebFixture,
        session_id: str) -> None:
    server = start_server()
    start_worker(server)
    slug = token("agentcrash")
    query = slug

    crashed = run_demo(server, query, session_id, "--crash-after", "1")
    assert crashed.returncode == -9, crashed.stdout
    assert calls_in(crashed.stdout, "executed") == {(WEB_SEARCH, query)}
    assert run_requests(web, slug) == ["/search"]

    rerun = run_demo(server, query, session_id)
    assert rerun.returncode == 0, rerun.stdout
    assert calls_in(rerun.stdout, "cached") == {(WEB_SEARCH, query)}
    assert calls_in(rerun.stdout, "executed") == expected_calls(web, query, slug) - {(WEB_SEARCH, query)}
    assert sorted(run_requests(web, slug)) == sorted(["/search"] + [f"/pages/{slug}-{n}" for n in (1, 2)])


async def test_sigkill_at_a_random_moment_then_rerun_executes_only_what_had_not_completed(
        start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc],
        client_of: Callable[..., NexumClient], web: WebFixture, session_id: str) -> None:
    rng = random.Random(SEED)
    server = start_server()
    start_worker(server)
    client = client_of(server)
    slug = token("agentkill")
    query = slug
    # The run makes three requests to the web (search, two pages): kill after the first, second or third.
    kill_after = rng.randint(1, 1 + PAGES_READ)
    note = f"seed {SEED}: SIGKILL after web request {kill_after}"

    agent = Proc([sys.executable, "demo.py", "--model", "offline", "--session", session_id, query],
                 env=demo_env(server))
    try:
        await until(lambda: asyncio.to_thread(lambda: len(run_requests(web, slug)) >= kill_after), 60,
                    f"{note}: the agent's web request")
    finally:
        agent.kill()

    # What the dead agent submitted is finished by the worker all the same; wait for it to be.
    for execution in await client.list(session_id, limit=100):
        await client.wait(execution, 30)
    done = {(e.input["tool_name"], e.input["tool_args"].get("query") or e.input["tool_args"]["url"])
            for e in await client.list(session_id, limit=100) if e.status is Status.COMPLETED}
    assert done, note

    rerun = await asyncio.to_thread(run_demo, server, query, session_id)
    assert rerun.returncode == 0, f"{note}\n{rerun.stdout}"
    assert calls_in(rerun.stdout, "cached") == done, note
    assert calls_in(rerun.stdout, "executed") == expected_calls(web, query, slug) - done, note
    requests = run_requests(web, slug)
    assert len(requests) == len(set(requests)) == 1 + PAGES_READ, f"{note}: {requests}"
