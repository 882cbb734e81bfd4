"""End-to-end fixtures: workers as subprocesses against the test server, and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from nexum_devtools.procs import NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from tests.e2e.helpers import WebRequests


@pytest.fixture
def worker(start_worker: Callable[..., Proc], server: NexumServer) -> Proc:
    return start_worker(server)


@pytest.fixture
async def client(server: NexumServer) -> AsyncIterator[NexumClient]:
    """A client of the test server, passed explicitly: the scrubbed environment has no NEXUM_URL."""
    async with NexumClient(server.url) as nexum:
        yield nexum


@pytest.fixture
def web_requests(web: WebFixture) -> WebRequests:
    return WebRequests(web)
