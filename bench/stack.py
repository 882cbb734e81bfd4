"""The processes a benchmark needs: the local web fixture, a Nexum server and its workers.

`start_stack()` starts each on a free loopback port (the server on a temporary database) and stops
all of them, newest first, when its `with` block ends, however it ends: a normal finish, an
exception or Ctrl-C. Pointed at a running server, it starts only the web fixture and the workers.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc
from nexum_devtools.web import WebFixture, run_web_fixture, tools_env
from nexum_server.errors import ServerUnavailable

CHECK_TIMEOUT_SECONDS = 5.0
WORKER_GRACE_SECONDS = 1.0
WORKER_STOP_SECONDS = 5.0
"""After SIGTERM, how long a worker may take before SIGKILL (one whose server is gone keeps retrying)."""


@contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the `with` block, then restore what was there before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Stack:
    """The running processes and how to reach them."""

    nexum_url: str
    """The server every client and worker talks to."""
    web: WebFixture | None
    """The local web (search and pages), or None when the tools use the real web."""
    tool_env: dict[str, str]
    """Environment the tools need, in the workers and in this process."""
    worker_concurrency: int
    """`--concurrency` of each worker started."""
    workers: list[Proc] = field(default_factory=list)
    server_pid: int | None = None
    """The server's process when this stack started it (None for `--nexum-url`)."""

    def pids(self) -> dict[str, int]:
        """The process of each role on this machine, for CPU accounting; workers numbered."""
        roles = {"client (benchmark)": os.getpid()}
        if self.server_pid is not None:
            roles["server"] = self.server_pid
        roles.update({f"worker {i + 1}": w.popen.pid for i, w in enumerate(self.workers)})
        if self.web is not None:
            roles["stand-in web"] = self.web.process.pid
        return roles

    def require_web(self) -> WebFixture:
        if self.web is None:
            raise ValueError("this measure needs the local web fixture, which runs only without a real model")
        return self.web

    def scale_workers(self, count: int) -> None:
        """Start or stop workers until exactly `count` of ours are running; blocks until they are ready."""
        while len(self.workers) < count:
            env = {"NEXUM_URL": self.nexum_url, **self.tool_env}
            # A short grace: calls still in flight when the benchmark stops are not worth waiting for.
            args = [
                sys.executable,
                str(ROOT / "worker.py"),
                "--url",
                self.nexum_url,
                "--concurrency",
                str(self.worker_concurrency),
                "--grace-seconds",
                str(WORKER_GRACE_SECONDS),
            ]
            # Kept before waiting for its ready line, so one that never gets ready is still stopped.
            self.workers.append(worker := Proc(args, env=env))
            worker.wait_for(WORKER_READY)
        while len(self.workers) > count:
            self.workers.pop().stop(WORKER_STOP_SECONDS)

    def use_instant_search(self) -> None:
        """Point the tools (here and in restarted workers) at the fixture's zero-latency search."""
        count = len(self.workers)
        self.stop_workers()
        self.tool_env["NEXUM_SEARXNG_URL"] = f"{self.require_web().url}/instant"
        os.environ["NEXUM_SEARXNG_URL"] = self.tool_env["NEXUM_SEARXNG_URL"]
        self.scale_workers(count)

    def stop_workers(self) -> None:
        self.scale_workers(0)


@contextmanager
def start_stack(
    *,
    nexum_url: str | None,
    offline: bool,
    search_latency: float,
    page_latency: float,
    worker_concurrency: int,
    workers: int = 1,
) -> Iterator[Stack]:
    """Start what the benchmark needs; everything started here is stopped when the block ends.

    Offline, the web fixture is started with the given latencies and the tools are pointed at it;
    otherwise the tools use whatever search backend the environment names, and no fixture runs.
    """
    with ExitStack() as started:
        web = started.enter_context(run_web_fixture(search_latency, page_latency)) if offline else None
        server_pid = None
        if nexum_url is None:
            nexum_url, server_pid = _start_server(started)
        else:
            _check_server(nexum_url)
        stack = Stack(
            nexum_url.rstrip("/"), web, tools_env(web.url) if web else {}, worker_concurrency, server_pid=server_pid
        )
        started.callback(stack.stop_workers)
        stack.scale_workers(workers)
        yield stack


def _start_server(started: ExitStack) -> tuple[str, int]:
    """`nexum dev` on a free port and a temporary database; returns its URL and process id."""
    directory = Path(started.enter_context(tempfile.TemporaryDirectory(prefix="nexum-bench-")))
    args = [sys.executable, "-m", "nexum_server", "dev", "--port", "0", "--db", str(directory / "bench.db")]
    # Not `nexum_devtools.procs.NexumServer`: it waits inside its constructor, so a server that never got
    # ready would be left running with nothing holding it to stop.
    server = Proc(args)
    started.callback(server.stop)
    return server.wait_for(SERVER_READY).group(1), server.popen.pid


def _check_server(url: str) -> None:
    """Fail at once, not after the workers' ready timeout, when the given server cannot be reached."""
    try:
        httpx2.get(f"{url.rstrip('/')}/health", timeout=CHECK_TIMEOUT_SECONDS).raise_for_status()
    except httpx2.HTTPError as e:
        raise ServerUnavailable(f"no Nexum server answers at {url} ({type(e).__name__}: {e})") from e
