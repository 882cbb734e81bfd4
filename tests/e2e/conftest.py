"""End-to-end fixtures: workers as subprocesses against the test server, and a client of it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from nexum_server.client import NexumClient
from tests.e2e.helpers import WebRequests, tool_env
from tests.fixtures.web import WebFixture
from tests.procs import WORKER_READY, NexumServer, Proc


@pytest.fixture
def start_worker(server: NexumServer, web: WebFixture) -> Iterator[Callable[..., Proc]]:
    """Start `worker.py` against `server`, with extra flags; every worker started is stopped."""
    started: list[Proc] = []

    def start(*flags: str, web_url: str | None = None) -> Proc:
        proc = Proc([sys.executable, "worker.py", "--url", server.url, *flags],
                    env=tool_env(web_url or web.url), ready=WORKER_READY)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def worker(start_worker: Callable[..., Proc]) -> Proc:
    return start_worker()


@pytest.fixture
async def client(server: NexumServer) -> AsyncIterator[NexumClient]:
    """A client of the test server, passed explicitly: the scrubbed environment has no NEXUM_URL."""
    async with NexumClient(server.url) as nexum:
        yield nexum


@pytest.fixture
def web_requests(web: WebFixture) -> WebRequests:
    return WebRequests(web)
