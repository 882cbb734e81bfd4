"""Slow and half-open clients: a bound on how long and how large a request's head may be, and on
open connections, enforced in the HTTP protocol before any token is checked.

uvicorn arms no timer until a first request is answered, and its parser keeps a request head of
any size: idle sockets (1,100 left no room for authenticated requests) or unfinished 8 MB headers
(40 took a server from 58 to 393 MB) took a server down without ever sending a token. Here:

- a request's head (request line and headers) must arrive within `header_timeout_seconds` of the
  connection opening, or of the previous answer on a kept-alive connection (408, then closed);
- it may not exceed `max_header_bytes` (431, then closed);
- past `max_connections` open connections, the oldest connection still waiting for its head is
  closed to make room, so sockets that send nothing never starve requests that do; when none is
  waiting (every connection is a request in progress, e.g. held long-polls), the new one gets 503.

Answers are in the API's error shape (`shape.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .shape import error_json


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    body = error_json(code, message)
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


def protocol(header_timeout_seconds: float, max_header_bytes: int, max_connections: int) -> type[Any]:
    """The uvicorn protocol class (httptools) with these bounds; pass it as `uvicorn.Config(http=...)`."""
    too_slow = _answer(
        408,
        "Request Timeout",
        "request_timeout",
        f"the request's headers did not arrive within {header_timeout_seconds:g} s (NEXUM_HEADER_TIMEOUT_SECONDS)",
    )
    too_large = _answer(
        431,
        "Request Header Fields Too Large",
        "headers_too_large",
        f"the request's headers are larger than {max_header_bytes} bytes (NEXUM_MAX_HEADER_BYTES)",
    )
    too_many = _answer(
        503,
        "Service Unavailable",
        "too_many_connections",
        f"the server has {max_connections} connections open, each with a request in progress "
        "(NEXUM_MAX_CONNECTIONS); try again",
    )

    class BoundedProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            waiting = _waiting(self.server_state)
            if len(self.connections) > max_connections:
                if not waiting:
                    self._refuse(too_many)
                    return
                oldest = next(iter(waiting))
                oldest._refuse(too_slow)
            self._await_head()

        def _await_head(self) -> None:
            self._head_bytes = 0
            self._timer = self.loop.call_later(header_timeout_seconds, self._head_too_slow)
            _waiting(self.server_state)[self] = None

        def _head_arrived(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            _waiting(self.server_state).pop(self, None)

        def _refuse(self, answer: bytes) -> None:
            self._head_arrived()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def _head_too_slow(self) -> None:
            self._timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                _waiting(self.server_state).pop(self, None)  # a pipelined request is being answered
                return
            self._refuse(too_slow)

        def data_received(self, data: bytes) -> None:
            waiting = self._timer is not None
            super().data_received(data)
            if waiting and self._timer is not None:  # the head is still incomplete after this data
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._refuse(too_large)

        def on_headers_complete(self) -> None:
            self._head_arrived()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()  # the next request on this connection has its own bound

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_arrived()
            super().connection_lost(exc)

    return BoundedProtocol


def _waiting(state: Any) -> dict[Any, None]:
    """Connections waiting for a request's head, oldest first; one per server (its uvicorn state)."""
    waiting = getattr(state, "nexum_waiting", None)
    if waiting is None:
        waiting = state.nexum_waiting = {}
    return waiting
