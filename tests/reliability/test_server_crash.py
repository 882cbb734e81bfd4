"""The server is SIGKILLed under load and restarted on the same database and port; or it answers 5xx.

200 tool calls (180 distinct, 20 repeated) wait on one client while a worker runs them. Halfway
through the server dies; clients and the worker reconnect with capped backoff. Every call ends with
its result, no call has two COMPLETED executions, and nothing acknowledged before the kill is lost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nexum_devtools.procs import WORKER_READY, NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Execution, Status
from submit_task import ToolCallOutcome, call_tool
from tests.reliability.faults import ahits, token, until
from workflow import VISIT_WEBPAGE

DISTINCT = 180
REPEATS = 20
PAGE_SECONDS = 0.1
"""Per call, so the run lasts a few seconds and the kill lands in the middle of it."""
LEASE_SECONDS = 2
"""Short, so a task claimed by a poll whose answer the kill swallowed comes back quickly."""
CALL_TIMEOUT = 90.0


async def test_server_killed_under_load_loses_nothing_acknowledged_and_every_client_gets_its_result(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
    tmp_path: Path,
) -> None:
    db = tmp_path / "crash.db"
    server = start_server(db=db, lease_seconds=LEASE_SECONDS)
    client = client_of(server, max_connections=DISTINCT + REPEATS)
    worker = start_worker(server, "--concurrency", "16")
    run = token("load")
    urls = [f"{web.url}/slow/{run}-{i}?seconds={PAGE_SECONDS}" for i in range(DISTINCT)]
    calls = urls + urls[:: DISTINCT // REPEATS]
    assert len(calls) == DISTINCT + REPEATS

    async def one(url: str) -> ToolCallOutcome:
        return await call_tool(VISIT_WEBPAGE, {"url": url}, session_id, CALL_TIMEOUT, client=client)

    waiting = [asyncio.create_task(one(url)) for url in calls]

    async def completed_before_kill() -> list[Execution]:
        done = await client.list(session_id, Status.COMPLETED, limit=1000)
        return done if len(done) >= DISTINCT // 2 else []

    acknowledged = await until(completed_before_kill, 60, "half of the calls completed")
    received = {i: task.result() for i, task in enumerate(waiting) if task.done() and not task.exception()}
    server.kill()
    restarted = start_server(db=db, port=server.port, lease_seconds=LEASE_SECONDS)
    assert restarted.url == server.url

    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), CALL_TIMEOUT)
    failures = [(calls[i], r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} calls failed, first: {failures[:3]}"
    for url, outcome in zip(calls, results, strict=True):
        assert isinstance(outcome, ToolCallOutcome)
        assert outcome.execution.input["tool_args"] == {"url": url}
        slug = url.rsplit("/", 1)[1].split("?")[0]
        assert slug.replace("-", " ").title() in outcome.result.splitlines()[0]
    for i, outcome in received.items():
        assert results[i].execution.id == outcome.execution.id

    executions = await client.list(session_id, limit=1000)
    completed = Counter(e.key for e in executions if e.status is Status.COMPLETED)
    assert len(completed) == DISTINCT
    assert max(completed.values()) == 1, "a call with two COMPLETED executions"
    assert {e.status for e in executions} == {Status.COMPLETED}
    assert worker.popen.poll() is None, "the worker rode out the restart"
    assert {e.worker_id for e in executions} == {worker.match.group(0).split()[1]}
    after = {e.id: e for e in executions}
    for before in acknowledged:
        assert after[before.id].result == before.result
        assert after[before.id].completed_at == before.completed_at
    first = {calls[i]: results[i].execution.id for i in range(DISTINCT)}
    for i in range(DISTINCT, len(calls)):
        assert results[i].execution.id == first[calls[i]], "a repeated call made a second execution"


OUTAGE_SECONDS = 25.0
"""How long the server stays down mid-run: five leases of `OUTAGE_LEASE_SECONDS`."""
OUTAGE_LEASE_SECONDS = 5
OUTAGE_PAGE_SECONDS = 2.0
"""Each page finishes while the server is down, so its worker must hold on to the result."""


async def test_a_server_down_for_many_leases_mid_run_makes_no_page_fetch_twice(
    start_server: Callable[..., NexumServer],
    start_worker: Callable[..., Proc],
    client_of: Callable[..., NexumClient],
    web: WebFixture,
    session_id: str,
    tmp_path: Path,
) -> None:
    db = tmp_path / "outage.db"
    server = start_server(db=db, lease_seconds=OUTAGE_LEASE_SECONDS)
    client = client_of(server)
    worker = start_worker(server)
    run = token("outage")
    paths = [f"/slow/{run}-{page}" for page in ("first", "second")]

    async def one(path: str) -> ToolCallOutcome:
        args = {"url": f"{web.url}{path}?seconds={OUTAGE_PAGE_SECONDS}"}
        return await call_tool(VISIT_WEBPAGE, args, session_id, CALL_TIMEOUT, client=client)

    waiting = [asyncio.create_task(one(path)) for path in paths]

    async def both_fetching() -> bool:
        return all(await asyncio.gather(*(ahits(web, path) for path in paths)))

    await until(both_fetching, 30, "the worker fetching both pages")
    server.kill()
    down_since = time.monotonic()
    # Not a wait for anything: the outage's length is the fault under test. Its pages finish
    # meanwhile and the worker keeps retrying their reports.
    await asyncio.sleep(OUTAGE_SECONDS)
    restarted = start_server(db=db, port=server.port, lease_seconds=OUTAGE_LEASE_SECONDS)
    assert time.monotonic() - down_since >= OUTAGE_SECONDS

    outcomes = await asyncio.wait_for(asyncio.gather(*waiting), CALL_TIMEOUT)
    assert [await ahits(web, path) for path in paths] == [1, 1], "a page was fetched twice"
    for path, outcome in zip(paths, outcomes, strict=True):
        assert outcome.execution.status is Status.COMPLETED and outcome.execution.attempts == 1
        assert path.rsplit("/", 1)[1].replace("-", " ").title() in outcome.result.splitlines()[0]
    assert "renewed the leases of 2 running task(s)" in restarted.output
    assert worker.output.count(") completed after") == 2 and "discarded" not in worker.output, worker.output


class FailingNexum(ThreadingHTTPServer):
    """A stand-in Nexum server on loopback whose first polls answer 503 and 500, like a server in trouble.

    Registration succeeds; poll number `failures + 1` and later ones are held until `release` is set,
    then answered 204 (no task), as a real long-poll would.
    """

    daemon_threads = True

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _FailingHandler)
        self.failures = failures
        self.polls = 0
        self.lock = threading.Lock()
        self.healthy_poll = threading.Event()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FailingHandler(BaseHTTPRequestHandler):
    server: FailingNexum

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        # The worker's start-up check lists executions; this server has none.
        return self._send(200, {"executions": []})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/workflows":
            return self._send(
                200, {"workflow_id": body["workflow_id"], "version_hash": body["version_hash"], "outcome": "NEW"}
            )
        with self.server.lock:
            self.server.polls += 1
            number = self.server.polls
        if number <= self.server.failures:
            status = 503 if number % 2 else 500
            return self._send(status, {"error": {"code": "unavailable", "message": "server in trouble"}})
        self.server.healthy_poll.set()
        self.server.release.wait(30)
        self._send(204, None)

    def _send(self, status: int, payload: object) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_worker_rides_out_5xx_answers_and_keeps_polling(worker_env: dict[str, str]) -> None:
    failing = FailingNexum(failures=4)
    serving = threading.Thread(target=failing.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    worker = Proc([sys.executable, "worker.py", "--url", failing.url], env=worker_env)
    try:
        worker.wait_for(WORKER_READY)
        assert failing.healthy_poll.wait(30), f"the worker stopped polling:\n{worker.output}"
        assert worker.popen.poll() is None, worker.output
        code = worker.stop()
    finally:
        worker.stop()
        failing.release.set()
        failing.shutdown()
        failing.server_close()
    assert code == 0, worker.output
    assert failing.polls == failing.failures + 1
    assert "503" in worker.output and "500" in worker.output
