"""`submit_task.py` from outside an agent: a plain blocking script, its CLI, and the no-worker warning."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from nexum_devtools.procs import ROOT, NexumServer, Proc
from nexum_devtools.web import WebFixture, search_results
from nexum_pydantic_ai import _tool_call
from nexum_server.client import NexumClient, NexumSyncClient
from nexum_server.errors import WaitTimeout
from nexum_server.models import Status
from submit_task import call_tool, submit_tool_call
from tests.e2e.helpers import WebRequests
from workflow import WEB_SEARCH

SCRIPT_TIMEOUT = 60.0
PLAIN_SCRIPT = """
import sys
from submit_task import submit_tool_call

print(submit_tool_call("web_search", {"query": sys.argv[1]}, session_id=sys.argv[2], timeout=30))
"""


def run_python(server_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEXUM_URL": server_url, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=SCRIPT_TIMEOUT,
    )


def test_blocking_submit_from_a_plain_script_then_the_cli_gets_it_cached(
    server: NexumServer, worker: Proc, web: WebFixture, web_requests: WebRequests, session_id: str
) -> None:
    query = f"plain script {session_id}"
    expected_urls = [r["url"] for r in search_results(query, web.url)[:5]]
    mark = web_requests.mark()

    script = run_python(server.url, "-c", PLAIN_SCRIPT, query, session_id)

    assert script.returncode == 0, script.stdout + script.stderr
    assert [hit["url"] for hit in json.loads(script.stdout)] == expected_urls
    assert web_requests.for_call(WEB_SEARCH, {"query": query}, since=mark) == 1

    mark = web_requests.mark()
    cli = run_python(server.url, "submit_task.py", WEB_SEARCH, json.dumps({"query": query}), "--session", session_id)

    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout) == json.loads(script.stdout)
    assert web_requests.since(mark) == []


async def test_without_a_worker_call_tool_warns_then_times_out(
    server: NexumServer,
    client: NexumClient,
    web_requests: WebRequests,
    session_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_tool_call, "NO_WORKER_WARNING_SECONDS", 0.2)
    caplog.set_level(logging.WARNING, logger=_tool_call.log.name)
    args = {"query": f"nobody home {session_id}"}
    mark = web_requests.mark()
    started = time.time()

    with pytest.raises(WaitTimeout):
        await call_tool(WEB_SEARCH, args, session_id, timeout=1, client=client)

    took = time.time() - started
    [warning] = [r for r in caplog.records if r.name == _tool_call.log.name]
    assert warning.levelno == logging.WARNING
    assert "is `python worker.py` running" in warning.getMessage()
    assert server.url in warning.getMessage()
    assert 0.2 <= warning.created - started < 1.0
    assert 1.0 <= took < 5.0
    [pending] = await client.list(session_id=session_id)
    assert pending.status is Status.PENDING and pending.attempts == 0
    assert web_requests.since(mark) == []


THREADS = 60
KEYS = 30


def test_blocking_submit_is_safe_from_many_threads_at_once(
    server: NexumServer,
    worker: Proc,
    web: WebFixture,
    web_requests: WebRequests,
    session_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a user's sync tool does when the model asks for many tools at once: Pydantic AI runs
    # each in a thread, and each calls the process's one blocking client.
    monkeypatch.setenv("NEXUM_URL", server.url)
    monkeypatch.setattr(_tool_call, "_sync_client", None)
    queries = [f"threads {session_id} {i}" for i in range(KEYS)]
    asked = queries + queries
    together = threading.Barrier(THREADS, timeout=30)
    mark = web_requests.mark()

    def ask(query: str) -> str:
        together.wait()
        return submit_tool_call(WEB_SEARCH, {"query": query}, session_id, timeout=60)

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(ask, asked, timeout=90))
    finally:
        if _tool_call._sync_client is not None:
            _tool_call._sync_client.close()

    for query, answer in zip(asked, answers, strict=True):
        assert [hit["url"] for hit in json.loads(answer)] == [r["url"] for r in search_results(query, web.url)[:5]]
    with NexumSyncClient(server.url) as client:
        executions = client.request("GET", "/v1/executions", params={"session_id": session_id, "limit": 1000}).json()[
            "executions"
        ]
    assert len(executions) == KEYS and {e["status"] for e in executions} == {"COMPLETED"}
    assert Counter(e["input"]["tool_args"]["query"] for e in executions) == Counter(queries)
    assert sum(web_requests.for_call(WEB_SEARCH, {"query": q}, since=mark) for q in queries) == KEYS
