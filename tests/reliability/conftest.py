"""Fault-injection fixtures (workers come from `start_worker` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from nexum_server.client import NexumClient
from nexum_devtools.procs import NexumServer


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
