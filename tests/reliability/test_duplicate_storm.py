"""A storm of identical submits from several processes makes one execution and one tool run."""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Callable

from nexum_devtools.procs import NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.models import Status
from tests.reliability.faults import hits, token
from workflow import VISIT_WEBPAGE, tool_call_key

PROCESSES = 5
PER_PROCESS = 10
STORM_TIMEOUT = 60.0
READY = re.compile(r"^ready$")


def test_fifty_concurrent_submits_of_one_key_from_five_processes_run_the_tool_once(
    start_server: Callable[..., NexumServer], start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    server = start_server()
    start_worker(server)
    path = f"/slow/{token('storm')}"
    # Slow enough that every submit arrives while the one execution is still running.
    args = {"url": f"{web.url}{path}?seconds=1"}
    command = [
        sys.executable,
        "-m",
        "tests.reliability.storm",
        server.url,
        session_id,
        VISIT_WEBPAGE,
        json.dumps(args),
        "--concurrency",
        str(PER_PROCESS),
    ]
    storms: list[Proc] = []
    try:
        for _ in range(PROCESSES):
            storms.append(Proc(command))
        for proc in storms:
            proc.wait_for(READY)
        for proc in storms:
            proc.signal(signal.SIGUSR1)
        codes = [proc.popen.wait(STORM_TIMEOUT) for proc in storms]
    finally:
        for proc in storms:
            proc.stop()
    assert codes == [0] * PROCESSES, "\n".join(proc.output for proc in storms)

    results = [json.loads(line) for proc in storms for line in proc.lines if line.startswith("{")]
    assert len(results) == PROCESSES * PER_PROCESS
    assert len({r["execution_id"] for r in results}) == 1
    assert len({r["result"] for r in results}) == 1
    assert {r["attempts"] for r in results} == {1}
    assert hits(web, path) == 1

    with server.http() as http:
        listed = http.get("/v1/executions", params={"session_id": session_id, "limit": 1000}).json()["executions"]
    assert [(e["key"], e["status"]) for e in listed] == [(tool_call_key(VISIT_WEBPAGE, args), Status.COMPLETED.value)]
