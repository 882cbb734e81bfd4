"""Fault-injection fixtures: workers as subprocesses that each test may kill, and every one stopped after."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from nexum_server.client import NexumClient
from tests.fixtures.web import WebFixture
from tests.procs import WORKER_READY, NexumServer, Proc


@pytest.fixture
def worker_env(web: WebFixture) -> dict[str, str]:
    """What a worker needs to search and read pages on the fixture web server (which is on loopback)."""
    return {"SEARCH_BACKEND": "searxng", "SEARXNG_URL": web.url, "NEXUM_ALLOW_PRIVATE_URLS": "1"}


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., Proc]]:
    """`start(server, *flags, env=...)` runs `worker.py` until it is ready; all are stopped at teardown.

    A test may SIGKILL or SIGTERM a worker itself; stopping one that already exited is a no-op.
    """
    started: list[Proc] = []

    def start(server: NexumServer, *flags: str, env: dict[str, str] | None = None) -> Proc:
        # Tracked before waiting for readiness, so a worker that never gets ready is still stopped.
        proc = Proc([sys.executable, "worker.py", "--url", server.url, *flags], env={**worker_env, **(env or {})})
        started.append(proc)
        proc.match = proc.wait_for(WORKER_READY)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
async def client_of() -> AsyncIterator[Callable[[NexumServer], NexumClient]]:
    """`client_of(server)`: a client of that server, closed at teardown."""
    clients: list[NexumClient] = []

    def make(server: NexumServer, **kwargs: object) -> NexumClient:
        client = NexumClient(server.url, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
