"""`demo.py` as a user runs it: a subprocess with the offline model, a real server and a real worker.

In the crash test the offline model's two page visits run in parallel; a small gated web holds the
second page request, so when the demo kills itself after four steps (two model requests, the search
and the first page) the second page is still in flight,
and stopping the worker (no grace period) hands it back to the server unfinished for the re-run.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from nexum_devtools.procs import NexumServer, Proc, running
from nexum_devtools.web import WebFixture, search_results, tools_env
from nexum_server.client import NexumClient
from nexum_server.models import Status
from tests.e2e.helpers import (
    CACHED,
    DEMO_TIMEOUT,
    EXECUTED,
    MODEL_MADE,
    MODEL_REPLAYED,
    GatedWeb,
    WebRequests,
    closed_port,
    demo_env,
    run_demo,
)
from workflow import VISIT_WEBPAGE, WEB_SEARCH, WORKFLOW_ID

OFFLINE_ANSWER = "Offline extractive model, not a language model."
"""The first words of every offline answer (OFFLINE_LABEL as rich renders its Markdown)."""
PAGES_READ = 2
"""Pages the offline model reads: the top results of its one search."""


def test_demo_runs_end_to_end_then_serves_the_rerun_from_the_store(
    server: NexumServer, worker: Proc, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    query = f"What is durable execution {session_id}?"
    pages = [r["url"] for r in search_results(query, web.url)[:PAGES_READ]]
    mark = web_requests.mark()

    first = run_demo(server.url, "--model", "offline", "--session", session_id, query)

    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert query in out and session_id in out
    assert len(EXECUTED.findall(out)) == 1 + PAGES_READ and not CACHED.findall(out)
    assert len(MODEL_MADE.findall(out)) == 3 and not MODEL_REPLAYED.findall(out)
    assert out.count("executed ✓") == 3 + 1 + PAGES_READ
    assert OFFLINE_ANSWER in out
    assert all(url in out for url in pages)
    assert "3 model requests: 0 replayed, 3 made" in out
    assert "3 tool calls: 0 cached, 3 executed, 0 failed" in out
    assert web_requests.for_call(WEB_SEARCH, {"query": query}, since=mark) == 1
    for url in pages:
        assert web_requests.for_call(VISIT_WEBPAGE, {"url": url}, since=mark) == 1
    assert len(web_requests.since(mark)) == 1 + PAGES_READ

    mark = web_requests.mark()
    again = run_demo(server.url, "--model", "offline", "--session", session_id, query)

    assert again.returncode == 0, again.stdout + again.stderr
    assert len(CACHED.findall(again.stdout)) == 1 + PAGES_READ and not EXECUTED.findall(again.stdout)
    assert len(MODEL_REPLAYED.findall(again.stdout)) == 3 and not MODEL_MADE.findall(again.stdout)
    assert again.stdout.count("cached ⚡") == 3 + 1 + PAGES_READ
    assert "3 model requests: 3 replayed, 0 made" in again.stdout
    # A replayed response keeps its usage: the tokens it cost the first time were not spent again.
    assert int(re.search(r"\(([\d,]+) tokens not spent again\)", again.stdout)[1].replace(",", "")) > 0
    assert "3 tool calls: 3 cached, 0 executed, 0 failed" in again.stdout
    assert OFFLINE_ANSWER in again.stdout
    assert web_requests.since(mark) == []


async def test_crash_after_two_calls_then_the_rerun_executes_only_the_unfinished_call(
    server: NexumServer, start_worker: Callable[..., Proc], session_id: str
) -> None:
    query = f"durable crash {session_id}"
    with GatedWeb(hold=2) as gated:
        worker = start_worker(server, "--grace-seconds", "0", env=tools_env(gated.url))

        # Steps: model request, search, model request, first page (the second is held): then killed.
        crashed = run_demo(server.url, "--model", "offline", "--session", session_id, "--crash-after", "4", query)
        assert worker.stop() == 0, worker.output
        gated.release()

        assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
        assert "--crash-after 4: killing this process now" in crashed.stdout
        assert len(EXECUTED.findall(crashed.stdout)) == 2
        assert len(MODEL_MADE.findall(crashed.stdout)) == 2
        assert OFFLINE_ANSWER not in crashed.stdout
        async with NexumClient(server.url) as client:
            stored = [e for e in await client.list(session_id=session_id) if e.workflow_id == WORKFLOW_ID]
            by_status = {s: [e for e in stored if e.status is s] for s in Status}
            assert len(by_status[Status.COMPLETED]) == 2 and len(by_status[Status.PENDING]) == 1, stored
            [unfinished] = by_status[Status.PENDING]
            assert unfinished.input["tool_name"] == VISIT_WEBPAGE

            # The re-run starts with no worker, so it finds the unfinished call still pending and
            # waits for it; the worker is started once the re-run has been answered from the store.
            seen = len(gated.paths)
            with running(
                Proc(
                    [sys.executable, "demo.py", "--model", "offline", "--session", session_id, query],
                    env=demo_env(server.url),
                )
            ) as rerun:
                rerun.wait_for(re.compile(r"^  visit_webpage\(.*\)  cached\b"))
                start_worker(server, env=tools_env(gated.url))
                assert rerun.popen.wait(DEMO_TIMEOUT) == 0, rerun.output
            resumed = await client.get(unfinished.id)

        assert len(CACHED.findall(rerun.output)) == 2
        assert len(EXECUTED.findall(rerun.output)) == 1
        # The model is asked only for the answer it never gave.
        assert len(MODEL_REPLAYED.findall(rerun.output)) == 2 and len(MODEL_MADE.findall(rerun.output)) == 1
        assert OFFLINE_ANSWER in rerun.output and query in rerun.output
        assert "3 model requests: 2 replayed, 1 made" in rerun.output
        assert "3 tool calls: 2 cached, 1 executed, 0 failed" in rerun.output
        assert gated.paths[seen:] == [urlsplit(unfinished.input["tool_args"]["url"]).path]
        assert resumed.status is Status.COMPLETED


def test_demo_exits_2_naming_the_url_when_the_server_is_unreachable(session_id: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    result = run_demo(url, "--model", "offline", "--session", session_id, "anything")

    assert result.returncode == 2, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert url in said
    assert "nexum dev" in said
    assert "Traceback" not in said
