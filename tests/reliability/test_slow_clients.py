"""Slow and half-open clients cannot take a server down before the token is checked.

Idle sockets, headers trickled or never finished, and headers of megabytes used to hold the
server's connections and memory for as long as the client liked. Now a request's head has a
deadline and a size limit, and past the connection bound the idle connections are the ones closed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx2
import pytest

from nexum_devtools.procs import NexumServer

TOKEN = "s3cret-token"
HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 32
MAX_HEADER_BYTES = 4096


@pytest.fixture
def bounded(start_server: Callable[..., NexumServer]) -> NexumServer:
    return start_server(
        env={"NEXUM_TOKEN": TOKEN},
        header_timeout_seconds=HEADER_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        max_header_bytes=MAX_HEADER_BYTES,
    )


@pytest.fixture
def sockets() -> Iterator[Callable[[NexumServer], socket.socket]]:
    with ExitStack() as stack:

        def open_one(server: NexumServer) -> socket.socket:
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            return sock

        yield open_one


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (blocking reads, bounded by the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_socket_that_sends_nothing_or_half_a_head_gets_408_and_is_closed(
    bounded: NexumServer, sockets: Callable[[NexumServer], socket.socket]
) -> None:
    silent = sockets(bounded)
    half = sockets(bounded)
    half.sendall(b"GET /v1/executions HTTP/1.1\r\nHost: x\r\n")
    for sock in (silent, half):
        answer = answer_of(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code":"request_timeout"' in answer


def test_a_head_larger_than_the_limit_gets_431_and_is_closed(
    bounded: NexumServer, sockets: Callable[[NexumServer], socket.socket]
) -> None:
    sock = sockets(bounded)
    sock.sendall(b"GET /v1/executions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEADER_BYTES))
    answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"code":"headers_too_large"' in answer


def test_idle_sockets_past_the_connection_bound_never_starve_authenticated_requests(
    start_server: Callable[..., NexumServer], sockets: Callable[[NexumServer], socket.socket]
) -> None:
    # A long header timeout: room is made by closing idle connections, not by their timing out.
    bounded = start_server(env={"NEXUM_TOKEN": TOKEN}, header_timeout_seconds=60, max_connections=MAX_CONNECTIONS)
    idle = [sockets(bounded) for _ in range(3 * MAX_CONNECTIONS)]
    with httpx2.Client(base_url=bounded.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
        for _ in range(20):
            with httpx2.Client(
                base_url=bounded.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            ) as fresh:  # a new connection each time, among the idle ones
                assert fresh.get("/v1/executions", params={"limit": 1}).status_code == 200
        assert http.get("/health").status_code == 200
    # The oldest idle ones made room (answered 408 and closed); the newest are still open.
    assert answer_of(idle[0]).startswith(b"HTTP/1.1 408 ")
    idle[-1].settimeout(0.0)
    with pytest.raises(BlockingIOError):
        idle[-1].recv(1)


def test_the_access_log_shows_no_query_string(start_server: Callable[..., NexumServer], tmp_path: object) -> None:
    server = NexumServer(tmp_path / "log.db", 0, {}, "--access-log")  # type: ignore[operator]
    try:
        with server.http() as http:
            assert http.get("/v1/executions", params={"key": "token-in-url-abc"}).status_code == 200
        server.wait_for(re.compile(r'"GET /v1/executions HTTP/1.1" 200'))
        assert "token-in-url-abc" not in server.output
    finally:
        server.stop()
