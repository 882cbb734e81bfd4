"""Real processes for tests: the Nexum server, the worker, the fixture web server.

Each is started as a subprocess on a free loopback port, waited for by reading its ready line with
a monotonic deadline, and stopped (SIGTERM, then SIGKILL) by the fixture or `with` block that made it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
"""The checkout, when run from one (the tests, `make demo`); the processes start there."""
_ENV_EXAMPLE = ROOT / ".env.example"
DOTENV_KEYS = (
    tuple(
        line.split("=", 1)[0]
        for line in _ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    if _ENV_EXAMPLE.exists()
    else ()
)
"""Every variable the project reads (`.env.example` lists them all); none for an installed copy."""
READY_TIMEOUT = 30.0
SERVER_READY = re.compile(r"listening on (http://\S+)")
WORKER_READY = re.compile(r"worker \S+ ready")


class Proc:
    """A child process whose output is collected by a thread, so its pipe never fills up."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready: re.Pattern[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        # Variables the test did not set are blank, not absent: a variable in the environment, even
        # an empty one, hides the same key in .env, so a developer's .env cannot reach a test's processes.
        blank = dict.fromkeys(DOTENV_KEYS, "")
        full_env = {**blank, **os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd or _default_cwd(),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.match: re.Match[str] | None = self.wait_for(ready) if ready else None
        except BaseException:
            self.kill()  # never ready: nobody else holds it to stop it
            raise

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = READY_TIMEOUT, start: int = 0) -> re.Match[str]:
        """The first line from index `start` on that matches; fails with the output so far."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if m := pattern.search(line):
                        return m
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.args} exited with {self.popen.returncode} before {pattern.pattern!r}:\n{self.output}"
                    )
                if remaining <= 0:
                    raise TimeoutError(f"{self.args}: no {pattern.pattern!r} within {timeout} s:\n{self.output}")
                self._changed.wait(min(remaining, 0.5))

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap: the process gets no chance to clean up."""
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.returncode
        finally:
            self._reader.join(5)


class NexumServer(Proc):
    def __init__(self, db: Path, port: int = 0, env: dict[str, str] | None = None, *extra: str) -> None:
        args = [sys.executable, "-m", "nexum_server", "dev", "--port", str(port), "--db", str(db), *extra]
        super().__init__(args, env=env, ready=SERVER_READY)
        assert self.match is not None
        self.url = self.match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.db = db

    def http(self, token: str | None = None) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def _default_cwd() -> Path | None:
    """The checkout (its scripts and `.env.example` are there); for an installed copy, the current directory."""
    return ROOT if _ENV_EXAMPLE.exists() else None


def server_env(**settings: object) -> dict[str, str]:
    """`NEXUM_*` variables for short test timings, e.g. `server_env(lease_seconds=1)`."""
    return {f"NEXUM_{k.upper()}": str(v) for k, v in settings.items()}
