"""The ASGI layer in front of the API: bearer-token check, body-size limit, request latency.

It runs before FastAPI parses anything, so an oversized or unauthenticated request costs no
validation work and can never reach a handler.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any
from urllib.parse import unquote

from .errors import InvalidSessionId
from .ids import validate_session_id
from .metrics import Metrics
from .shape import error_json

log = logging.getLogger("nexum.api")

Scope = dict[str, Any]
SESSIONS = "/v1/sessions/"
OPEN_PATHS = frozenset({"/health", "/ui"})
PAGE_FILES = "/ui/"
"""The web page's own files are open: the page asks for the token, and the data it reads needs it."""


class Guard:
    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_recording(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_recording)
        except Exception:
            if status[0]:
                raise  # the answer is under way (FastAPI's own 500 went out): uvicorn logs it
            # A bug on the fast path: the client still gets the shape, the log the traceback.
            log.exception("%s %s failed", scope["method"], scope["path"])
            await _error(
                send_recording, 500, "internal_error", "the server failed on this request; its log has the details"
            )
        finally:
            route = scope.get("route")
            self.metrics.latency.labels(
                scope["method"], getattr(route, "path", "unmatched"), str(status[0] or 500)
            ).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] not in OPEN_PATHS and not scope["path"].startswith(PAGE_FILES):
            given = headers.get(b"authorization", b"")
            scheme, _, credentials = given.partition(b" ")
            # The scheme is case-insensitive (RFC 7235): `bearer` and `BEARER` are `Bearer`.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.token):
                # One code for both (clients branch on it); the message says which of the two it is.
                problem = "the token sent is wrong" if given else "this server needs a token and none was sent"
                await _error(
                    send,
                    401,
                    "unauthorized",
                    f"{problem}: set NEXUM_TOKEN for the client to the token `nexum dev` was started with",
                    extra=[(b"www-authenticate", b"Bearer")],
                )
                return
        if scope["path"].startswith(SESSIONS) and (refused := _slash_in_session_id(scope)) is not None:
            await _error(send, 422, refused.code, str(refused))
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                await _error(send, 400, "bad_request", "Content-Length is not a number")
                return
            if too_large:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # A body without a length (chunked): read it up to the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        # The body is left unread: the connection closes after the answer, so that what is still on
        # its way is not taken for the head of the client's next request on it.
        await _error(
            send,
            413,
            "body_too_large",
            f"request body is larger than {self.max_body_bytes} bytes (NEXUM_MAX_BODY_BYTES)",
            extra=[(b"connection", b"close")],
        )


def _slash_in_session_id(scope: Scope) -> InvalidSessionId | None:
    """A session id holding `/` (sent as `%2F`) is refused before routing: decoded, `a/runs/b`
    would route to the run endpoints of session `a`."""
    segments = scope.get("raw_path", b"").split(b"/")
    if len(segments) < 4 or b"%2f" not in segments[3].lower():
        return None
    try:
        validate_session_id(unquote(segments[3].decode("latin-1")))
    except InvalidSessionId as e:
        return e
    return None


async def _error(
    send: Any, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_json(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
