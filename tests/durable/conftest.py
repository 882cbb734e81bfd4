"""The conformance suite's fixtures: one `nexum dev` per module, a fresh session per test, and the
three ways each scenario runs (plain, durable, and again in another process)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nexum_devtools.procs import NexumServer, Proc
from tests.conftest import PROJECT_VARIABLES
from tests.durable.ledger import Entries, read
from tests.durable.run import ERROR, RESULT
from tests.durable.scenarios import SCENARIOS, Env

RUN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def durable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NexumServer]:
    """One server for the module's tests (each test has its own session): starting one per test
    would be most of the suite's time."""
    # The module fixture starts before the autouse scrub of each test: blank the project's
    # variables here, so that a developer's NEXUM_* settings cannot reach this server.
    env = {name: "" for name in os.environ if name.startswith(PROJECT_VARIABLES)}
    server = NexumServer(tmp_path_factory.mktemp("durable") / "nexum.db", 0, env)
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Outcome:
    """What one run of a scenario gave, and what its process did."""

    result: dict[str, Any] | None
    error: str | None
    entries: Entries
    returncode: int = 0

    @property
    def output(self) -> Any:
        assert self.result is not None, self.error
        return self.result["output"]


@dataclass
class Conformance:
    server: NexumServer
    tmp_path: Path
    session_id: str
    _runs: int = 0

    def _ledger(self, label: str) -> Path:
        self._runs += 1
        return self.tmp_path / f"{self._runs}-{label}.jsonl"

    async def plain(self, name: str) -> Outcome:
        """Plain Pydantic AI: the same agents with no session."""
        return await self._here(name, None, "plain")

    async def durable(self, name: str) -> Outcome:
        """The scenario in this test's session, in this process."""
        return await self._here(name, self.session_id, "durable")

    async def _here(self, name: str, session_id: str | None, label: str) -> Outcome:
        ledger = self._ledger(label)
        try:
            result = await SCENARIOS[name](Env(session_id, self.server.url, ledger))
        except Exception as e:
            return Outcome(None, f"{type(e).__name__}: {e}", read(ledger))
        return Outcome(result, None, read(ledger))

    def elsewhere(self, name: str, crash_at: int | None = None, label: str = "replay") -> Outcome:
        """The scenario in this test's session, in a process of its own."""
        ledger = self._ledger(label)
        args = [
            sys.executable,
            "-m",
            "tests.durable.run",
            name,
            "--url",
            self.server.url,
            "--session",
            self.session_id,
            "--ledger",
            str(ledger),
        ]
        if crash_at is not None:
            args += ["--crash-at", str(crash_at)]
        proc = Proc(args)
        try:
            code = proc.popen.wait(RUN_TIMEOUT)
        finally:
            proc.stop()
        result = error = None
        for line in proc.lines:
            if line.startswith(RESULT):
                result = json.loads(line[len(RESULT) :])
            elif line.startswith(ERROR):
                error = line[len(ERROR) :]
        if code not in (0, 1, -9) or (code != -9 and result is None and error is None):
            raise AssertionError(f"{args} exited with {code}:\n{proc.output}")
        return Outcome(result, error, read(ledger), code)

    async def check(self, name: str) -> tuple[Outcome, Outcome, Outcome]:
        """Plain, durable, replayed elsewhere: the durable run gives what plain Pydantic AI gives,
        and the replay gives it again with no model request and no side effect."""
        plain = await self.plain(name)
        durable = await self.durable(name)
        assert durable.error is None and plain.error is None, (plain.error, durable.error)
        assert durable.output == plain.output
        assert sorted(durable.entries.models) == sorted(plain.entries.models)
        assert sorted(durable.entries.effects) == sorted(plain.entries.effects)
        replay = self.elsewhere(name)
        assert replay.error is None, replay.error
        assert replay.output == plain.output
        assert replay.entries.models == [], "the replay asked the model again"
        assert replay.entries.effects == [], "the replay ran a tool again"
        return plain, durable, replay

    def crash_and_resume(self, name: str, at: int, plain: Outcome) -> Outcome:
        """Killed (SIGKILL) as it is about to get its `at`-th model answer, then resumed in
        another process: together they ask each question and run each tool of `plain` once."""
        crashed = self.elsewhere(name, crash_at=at, label="crashed")
        assert crashed.returncode == -9, crashed
        resumed = self.elsewhere(name, label="resumed")
        assert resumed.error is None, resumed.error
        assert resumed.output == plain.output
        assert crashed.entries.models + resumed.entries.models == plain.entries.models
        assert sorted(crashed.entries.effects + resumed.entries.effects) == sorted(plain.entries.effects)
        return resumed


@pytest.fixture
def conformance(durable_server: NexumServer, tmp_path: Path) -> Conformance:
    return Conformance(durable_server, tmp_path, f"durable-{uuid.uuid4().hex[:12]}")
