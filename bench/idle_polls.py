"""Idle long-polls: what N held polls cost a server, and a cold call's latency beside them.

Holds N polls (for the bench workflow) on one server, measures the server process's CPU over a
window, then starts one call and times until a held poll has claimed it.

Run with:
    python -m bench.idle_polls --polls 2000 --db postgresql   # a throwaway PostgreSQL
    python -m bench.idle_polls --polls 2000 --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from nexum_devtools.postgres import ThrowawayPostgres
from nexum_devtools.procs import NexumServer, server_env

REF = {"workflow_id": "bench-idle", "version_hash": "sha256:idle"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, pid: int, polls: int, window: float) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=polls + 10)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        await http.post("/v1/workflows", json={**REF, "ir": {"nodes": [{"id": "n", "kind": "EFFECT"}]}})
        body = {"worker_id": "idle", "workflows": [REF], "wait": 60}
        held = [asyncio.ensure_future(http.post("/v1/tasks/poll", json=body)) for _ in range(polls)]
        await asyncio.sleep(3)  # let every poll reach the server and park
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        cpu = (cpu_seconds(pid) - before) / window
        started = time.perf_counter()
        await http.post("/v1/executions", json={**REF, "session_id": "idle", "key": "cold", "input": 1})
        await asyncio.wait(held, return_when=asyncio.FIRST_COMPLETED)
        cold = time.perf_counter() - started
        for task in held:
            task.cancel()
        return cpu, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    cluster = ThrowawayPostgres() if args.db == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if cluster is not None:
                cluster.start()
            db = cluster.create_database() if cluster is not None else Path(tmp) / "idle.db"
            server = NexumServer(db, 0, server_env(max_wait_seconds=60))  # type: ignore[arg-type]
            try:
                cpu, cold = asyncio.run(measure(server.url, server.popen.pid, args.polls, args.window))
            finally:
                server.stop()
        finally:
            if cluster is not None:
                cluster.remove()
    print(
        f"{args.polls} idle polls on {args.db}: server CPU {cpu:.1%} of a core; cold call claimed in "
        f"{cold * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
