"""Fault-injection fixtures (workers come from `start_worker` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2
import pytest

from nexum_devtools.procs import NexumServer
from nexum_server.client import NexumClient


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


@pytest.fixture
async def raw_http_of() -> AsyncIterator[Callable[[NexumServer], httpx2.AsyncClient]]:
    """`raw_http_of(server)`: a plain HTTP client of that server, for requests a test forges; closed at teardown."""
    clients: list[httpx2.AsyncClient] = []

    def make(server: NexumServer) -> httpx2.AsyncClient:
        clients.append(client := httpx2.AsyncClient(base_url=server.url, timeout=30))
        return client

    yield make
    for client in clients:
        await client.aclose()
