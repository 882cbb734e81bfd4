"""What the session list costs on a big SQLite file, and whether starts wait for it.

Fills a temporary database with completed tool calls (through the store, in one transaction),
starts `nexum dev` on it, and measures new starts alone, then while `GET /v1/sessions` is asked
back to back by another thread (the page asks every 2 s); also the time of one list.

Run with:
    python scripts/measure_sessions.py                  # 100,000 calls in 10,000 sessions
    python scripts/measure_sessions.py --sessions 1000 --calls-per-session 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexum_devtools.procs import NexumServer  # noqa: E402
from nexum_server.config import Settings  # noqa: E402
from nexum_server.models import WorkflowRef  # noqa: E402
from nexum_server.store import SQLiteStore  # noqa: E402

REF = WorkflowRef(workflow_id="measure", version_hash="sha256:measure")
IR = {"nodes": [{"id": "call", "kind": "EFFECT"}]}
RESULT_CHARS = 2000
STARTS = 400


def fill(db: Path, sessions: int, per_session: int) -> None:
    store = SQLiteStore(Settings(db=str(db)))
    store.start()
    try:
        store.register_workflow(REF, IR, time.time())
        now = time.time() - sessions * per_session
        store.db.execute("BEGIN IMMEDIATE")  # the store's own statements, committed once
        for s in range(sessions):
            for k in range(per_session):
                now += 1
                store.start_execution(
                    REF, f"session-{s}", f"k{k}", {"tool_name": "web_search", "tool_args": {"query": f"q{s}-{k}"}}, now
                )
            for task in store.claim("filler", [REF], per_session, 30.0, now).tasks:
                store.complete(task.task_id, task.lease_token, {"result": "x" * RESULT_CHARS}, now + 0.5)
        store.db.execute("COMMIT")
    finally:
        store.shutdown()


def starts(http: httpx2.Client, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        response = http.post(
            "/v1/executions", json={**REF.model_dump(), "session_id": "measure", "input": {}, "key": uuid.uuid4().hex}
        )
        response.raise_for_status()
        took.append(time.perf_counter() - started)
    return sorted(took)


def summary(took: list[float]) -> str:
    return (
        f"median {statistics.median(took) * 1000:.2f} ms, p99 {took[int(len(took) * 0.99)] * 1000:.2f} ms, "
        f"max {took[-1] * 1000:.2f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--calls-per-session", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "measure.db"
        began = time.monotonic()
        fill(db, args.sessions, args.calls_per_session)
        print(
            f"{args.sessions * args.calls_per_session} completed calls in {args.sessions} sessions "
            f"({time.monotonic() - began:.1f} s to fill)"
        )
        server = NexumServer(db)
        try:
            with httpx2.Client(base_url=server.url, timeout=60) as http:
                starts(http, 20)  # warm-up
                print(f"starts alone:                      {summary(starts(http, STARTS))}")
                listed: list[float] = []
                stop = threading.Event()

                def list_sessions() -> None:
                    with httpx2.Client(base_url=server.url, timeout=60) as page:
                        while not stop.is_set():
                            began = time.perf_counter()
                            page.get("/v1/sessions").raise_for_status()
                            listed.append(time.perf_counter() - began)

                lister = threading.Thread(target=list_sessions)
                lister.start()
                try:
                    print(f"starts while the list is asked:    {summary(starts(http, STARTS))}")
                finally:
                    stop.set()
                    lister.join()
                print(
                    f"GET /v1/sessions (50 sessions):    median {statistics.median(listed) * 1000:.0f} ms "
                    f"over {len(listed)}"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
