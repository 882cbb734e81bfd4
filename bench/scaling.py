"""The same calls on each backend: SQLite with one server, PostgreSQL with one and with two servers.

Each setup gets servers of its own on a new database (a temporary SQLite file, or a new database
on a throwaway PostgreSQL), and two workers: both on the one server, or one on each of two. With
two servers the clients alternate between them and the latency samples start on the server that
has no worker, so every cold call crosses from one server to the other. Measured per setup: a
cached call, a cold call of the instant tool, and throughput with K clients.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.calls import INSTANT_ARGS, CallsConfig, durable, throughput, timed
from bench.stack import WORKER_GRACE_SECONDS, WORKER_STOP_SECONDS, Stack
from bench.stats import summarize
from nexum_devtools.postgres import PostgresMissing, ThrowawayPostgres
from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc
from nexum_server.client import NexumClient

WORKERS = 2
"""Workers in every setup, so the setups differ only in backend and server count."""
SETUPS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2))


@contextmanager
def _servers(db: str, count: int, stack: Stack) -> Iterator[list[str]]:
    """`count` servers on `db` and `WORKERS` workers spread over them; their URLs."""
    with ExitStack() as started:
        urls = []
        for _ in range(count):
            server = Proc([sys.executable, "-m", "nexum_server", "dev", "--port", "0", "--db", db])
            started.callback(server.stop)
            urls.append(server.wait_for(SERVER_READY).group(1))
        for i in range(WORKERS):
            url = urls[-1 - i % count]  # with two servers, one worker on each, the last server first
            worker = Proc(
                [
                    sys.executable,
                    str(ROOT / "worker.py"),
                    "--url",
                    url,
                    "--concurrency",
                    str(stack.worker_concurrency),
                    "--grace-seconds",
                    str(WORKER_GRACE_SECONDS),
                ],
                env={"NEXUM_URL": url, **stack.tool_env},
            )
            started.callback(worker.stop, WORKER_STOP_SECONDS)
            worker.wait_for(WORKER_READY)
        yield urls


async def _measure(urls: list[str], config: CallsConfig, prefix: str) -> dict[str, Any]:
    clients = [NexumClient(url, max_connections=config.clients + 8) for url in urls]
    try:
        first = clients[0]  # with two servers: the one whose worker is on the other
        args = INSTANT_ARGS
        await durable(first, args, f"{prefix}-cached", cached=False)
        cached = summarize(await timed(config.samples, lambda i: durable(first, args, f"{prefix}-cached", cached=True)))
        cold = summarize(
            await timed(config.samples, lambda i: durable(first, args, f"{prefix}-cold-{i}", cached=False))
        )
        rate = await throughput(
            lambda i: durable(clients[i % len(clients)], args, f"{prefix}-rate-{i}", cached=False),
            config.clients,
            config.throughput_calls,
            config.throughput_seconds,
        )
    finally:
        for client in clients:
            await client.aclose()
    return {"cached_call_ms": asdict(cached), "cold_call_ms": asdict(cold), **rate}


async def measure_backends(
    stack: Stack, config: CallsConfig, report: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """One row per setup; the PostgreSQL rows are left out, saying why, where it is not installed."""
    rows = []
    with ExitStack() as started:
        postgres: ThrowawayPostgres | None = None
        try:
            postgres = ThrowawayPostgres()
            started.callback(postgres.remove)
            postgres.start()
            report(f"  PostgreSQL {postgres.url()} (throwaway, removed after)")
        except PostgresMissing as e:
            report(f"  PostgreSQL setups skipped: {e}")
        folder = Path(started.enter_context(tempfile.TemporaryDirectory(prefix="nexum-bench-")))
        for backend, servers in SETUPS:
            if backend == "PostgreSQL" and postgres is None:
                continue
            label = f"{backend}, {servers} server{'s' if servers > 1 else ''}"
            report(f"  {label}, {WORKERS} workers")
            db = (
                postgres.create_database("bench")
                if postgres and backend == "PostgreSQL"
                else str(folder / f"{uuid.uuid4().hex[:8]}.db")
            )
            with _servers(db, servers, stack) as urls:
                figures = await _measure(urls, config, f"bench-{uuid.uuid4().hex[:8]}")
            rows.append({"setup": label, "backend": backend, "servers": servers, "workers": WORKERS, **figures})
    return rows


def backends_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title=f"Backends: the instant tool, {WORKERS} workers in every setup",
        title_justify="left",
        caption="Two servers: clients alternate between them; latency samples start on the server without a worker.",
        caption_justify="left",
    )
    for name in ("Setup", "Cached p50 ms", "Cold p50 ms", "Cold p99 ms", "Clients", "Calls/s"):
        table.add_column(name, justify="left" if name == "Setup" else "right")
    for r in rows:
        table.add_row(
            r["setup"],
            f"{r['cached_call_ms']['p50']:.2f}",
            f"{r['cold_call_ms']['p50']:.2f}",
            f"{r['cold_call_ms']['p99']:.2f}",
            str(r["clients"]),
            f"{r['calls_per_second']:.0f}",
        )
    return table
