"""Helpers for the end-to-end tests: counting what reached "the web", recording calls, running the demo.

The fixture web server is shared by the whole test session, so its request log holds every test's
traffic: tests put a unique token in every query and URL, and count requests since a mark.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nexum_devtools.procs import ROOT
from nexum_devtools.web import WebFixture
from nexum_pydantic_ai import UnitEvent
from workflow import VISIT_WEBPAGE, WEB_SEARCH

DEMO_TIMEOUT = 60.0
"""Upper bound for one `demo.py` run; against the local fixture one takes about a second."""
EXECUTED = re.compile(r"^  (web_search|visit_webpage)\(.*\)  executed\b", re.MULTILINE)
CACHED = re.compile(r"^  (web_search|visit_webpage)\(.*\)  cached\b", re.MULTILINE)
MODEL_MADE = re.compile(r"^  model request  executed\b", re.MULTILINE)
MODEL_REPLAYED = re.compile(r"^  model request  cached\b", re.MULTILINE)
"""The demo's line for one tool call; the marks after the words (✓, ⚡) are checked where they matter."""


@dataclass
class WebRequests:
    """Counts requests in the fixture web server's log, from a mark on."""

    web: WebFixture

    def mark(self) -> int:
        return len(self.web.log())

    def since(self, mark: int = 0) -> list[dict[str, str]]:
        return self.web.log()[mark:]

    def count(self, path_prefix: str, since: int = 0) -> int:
        """Requests whose path starts with `path_prefix`."""
        return sum(r["path"].startswith(path_prefix) for r in self.since(since))

    def for_call(self, tool_name: str, tool_args: dict[str, Any], since: int = 0) -> int:
        """Requests made by one tool call: a search for its query, or a GET of its page."""
        return sum(made_by(r, tool_name, tool_args) for r in self.since(since))


def made_by(request: dict[str, str], tool_name: str, tool_args: dict[str, Any]) -> bool:
    """Whether a logged request is the one `tool_name(**tool_args)` makes."""
    if tool_name == WEB_SEARCH:
        return request["path"] == "/search" and parse_qs(request["query"]).get("q") == [tool_args["query"]]
    if tool_name == VISIT_WEBPAGE:
        url = urlsplit(tool_args["url"])
        return request["path"] == url.path and request["query"] == url.query
    raise ValueError(f"unknown tool {tool_name!r}")


@dataclass
class CallRecord:
    tool_name: str
    tool_args: dict[str, Any]
    outcome: UnitEvent | None
    """The call as it ended, None when it failed."""
    error: str | None


class Calls(list[CallRecord]):
    """A `build_agent(on_unit=...)` reporter that keeps every tool call in order, and the model requests."""

    def __init__(self) -> None:
        super().__init__()
        self.model_requests: list[UnitEvent] = []

    def __call__(self, event: UnitEvent) -> None:
        if event.kind == "model":
            self.model_requests.append(event)
            return
        self.append(CallRecord(event.name, dict(event.args or {}), event if event.error is None else None, event.error))

    @property
    def outcomes(self) -> list[UnitEvent]:
        return [c.outcome for c in self if c.outcome is not None]


def demo_env(server_url: str) -> dict[str, str]:
    """The demo's environment: the server to use, and columns wide enough that rich wraps no line."""
    return {"NEXUM_URL": server_url, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}


def run_demo(server_url: str, *args: str, timeout: float = DEMO_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `demo.py` to its end (or its own crash)."""
    return subprocess.run(
        [sys.executable, "demo.py", *args],
        cwd=ROOT,
        env={**os.environ, **demo_env(server_url)},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatedWeb:
    """A small web on 127.0.0.1 whose page request number `hold` waits until `release()`.

    It serves SearXNG-style `/search?q=Q&format=json` (results linking to its own `/pages/<slug>`)
    and those pages, and logs every request path. Holding one page request keeps that tool call
    in flight for as long as a test needs, with no timing guess; a held request is let go after
    `HOLD_LIMIT_SECONDS` at the latest, and on exit.
    """

    HOLD_LIMIT_SECONDS = 30.0
    RESULTS = 4

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.paths: list[str] = []
        self._pages = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def __enter__(self) -> GatedWeb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def release(self) -> None:
        self._released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with web._lock:
                    web.paths.append(parts.path)
                if parts.path == "/search":
                    query = parse_qs(parts.query).get("q", [""])[0]
                    slug = "-".join("".join(c if c.isalnum() else " " for c in query.lower()).split())
                    results = [
                        {
                            "title": f"Page {n}",
                            "url": f"{web.url}/pages/{slug}-{n}",
                            "content": f"Snippet {n} about {query}.",
                        }
                        for n in range(1, web.RESULTS + 1)
                    ]
                    return self._send("application/json", json.dumps({"query": query, "results": results}))
                if parts.path.startswith("/pages/"):
                    with web._lock:
                        web._pages += 1
                        held = web._pages == web.hold
                    if held:
                        web._released.wait(web.HOLD_LIMIT_SECONDS)
                    slug = parts.path.removeprefix("/pages/")
                    text = (
                        f"The page {slug} explains that durable execution stores each tool call once, "
                        "so that a crashed run resumes where it stopped instead of starting over."
                    )
                    return self._send(
                        "text/html; charset=utf-8",
                        f"<html><head><title>{slug}</title></head><body><p>{text}</p></body></html>",
                    )
                self.send_error(404)

            def _send(self, content_type: str, body: str) -> None:
                data = body.encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # a held request whose caller gave up (the worker was stopped)

        return Handler
