"""Workloads A-E of the peer comparison, interleaved: plain Pydantic AI, DBOS and Nexum side by side.

Each round runs every engine once, in an order rotated from round to round, so a busy spell of a
shared machine falls on all of them; an engine's overhead is paired with its plain baseline of the
same round. Every loop stops at its count, or once its time budget is spent (after one round).

  A. a fresh N-step run: (engine - plain) / journaled units (2N + 1), per round;
  B. a replay of that finished run (no model request, no tool call), / the fresh plain run (`instant`);
  C. resume after `kill -9` at model request K: a child process dies there, a new one resumes;
     the time from the resumed child's start after its imports to done;
  D. M concurrent N-step runs: runs per second, and the p99 of one run's wall time;
  E. the per-step overhead of a long run at its first steps and at its last, and its slope.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import peers
from bench.peers import Engine
from bench.stack import Stack
from bench.stats import machine, summarize
from nexum_devtools.procs import Proc
from nexum_server.client import NexumClient

PLAIN = "plain"
PLAIN_SEARCH = "plain, search in process"
MACHINERY = "Pydantic AI durable machinery, nothing journaled"
DBOS = "DBOS (SQLite, WAL)"
NEXUM_PROCESS = "Nexum, tools in process"
NEXUM_WORKER = "Nexum, tools in the worker"
CHILD_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 120.0
ABSENT = (
    "Prefect: not run: optional, and each run needs a Prefect server that takes seconds to start.",
    "Temporal: not run: its test server is a binary downloaded at first use, which this machine cannot fetch.",
)


@dataclass(frozen=True)
class PeersConfig:
    """The sizes of the workloads."""

    runs: int = 40
    """A and B: rounds of a fresh run and its replay (enough for a median that holds on a shared machine)."""
    steps: int = 10
    """A, B and C: steps of a run."""
    resumes: int = 3
    """C: crash-and-resume rounds."""
    crash_at: int = 8
    """C: the model request at which the first process is killed."""
    concurrent: int = 50
    """D: runs at once."""
    concurrent_steps: int = 5
    concurrent_rounds: int = 3
    long_steps: int = 50
    """E: steps of the long run."""
    long_runs: int = 8
    """E: long runs (each step's figure is the median over them; three left it to chance)."""
    window: int = 5
    """E: the steps at each end of the long run compared."""
    seconds: float = 40.0
    """Most time one workload may take (it still runs one round)."""


QUICK = PeersConfig(
    runs=2,
    steps=4,
    resumes=1,
    crash_at=3,
    concurrent=4,
    concurrent_steps=2,
    concurrent_rounds=1,
    long_steps=8,
    long_runs=1,
    window=2,
    seconds=20.0,
)


class PeerCheckFailed(AssertionError):
    """An engine did not do what the workload needs (a replay that asked the model, a resume that did not)."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise PeerCheckFailed(what)


def _rounds(count: int, seconds: float) -> Iterator[int]:
    deadline = time.monotonic() + seconds
    for i in range(count):
        if i and time.monotonic() >= deadline:
            return
        yield i


def _rotated(engines: list[Engine], i: int) -> list[Engine]:
    k = i % len(engines)
    return engines[k:] + engines[:k]


def _new_id(engine: Engine) -> str:
    return f"peers-{engine.child or 'plain'}-{uuid.uuid4().hex[:12]}"


async def _timed(run: Awaitable[None]) -> float:
    started = time.perf_counter()
    await asyncio.wait_for(run, RUN_TIMEOUT_SECONDS)
    return time.perf_counter() - started


def _ms(seconds: list[float]) -> dict[str, float]:
    s = summarize(seconds)
    return {"n": s.n, "p50": s.p50, "p99": s.p99}


def _ratio(values: list[float]) -> dict[str, float]:
    s = summarize([v / 1000 for v in values])  # summarize reads seconds and gives ms: undo both
    return {"n": s.n, "p50": s.p50, "p99": s.p99}


@contextlib.asynccontextmanager
async def open_engines(
    stack: Stack, client: NexumClient, directory: Path, report: Callable[[str], None]
) -> AsyncIterator[list[Engine]]:
    """Every engine that can run here; DBOS is launched in this process and destroyed at the end."""
    engines = [
        peers.plain_engine(PLAIN, peers.INSTANT_TOOLSET),
        peers.plain_engine(PLAIN_SEARCH, peers.TOOLSET, shown=False),
        peers.machinery_engine(MACHINERY, PLAIN),
    ]
    missing = peers.dbos_missing()
    if missing:
        report(missing)
    else:
        engines.append(await asyncio.to_thread(peers.dbos_engine, DBOS, PLAIN, directory / "dbos.sqlite"))
    engines += [
        peers.nexum_engine(NEXUM_PROCESS, PLAIN, client, worker_tools=False),
        peers.nexum_engine(NEXUM_WORKER, PLAIN_SEARCH, client, worker_tools=True),
    ]
    try:
        yield engines
    finally:
        if not missing:
            await asyncio.to_thread(peers.dbos_shutdown)


async def _fresh(engine: Engine, steps: int, run_id: str) -> float:
    peers.reset_counts()
    seconds = await _timed(engine.fresh(steps, run_id))
    _check(
        peers.COUNTS["model"] == steps + 1, f"{engine.name}: {peers.COUNTS['model']} model requests, not {steps + 1}"
    )
    if not engine.search_tool:
        _check(peers.COUNTS["tool"] == steps, f"{engine.name}: {peers.COUNTS['tool']} tool calls, not {steps}")
    return seconds


async def _replay(engine: Engine, steps: int, run_id: str) -> float:
    assert engine.replay is not None
    peers.reset_counts()
    seconds = await _timed(engine.replay(steps, run_id))
    ran = dict(peers.COUNTS)
    if not engine.journals:
        return seconds
    if engine.stats:
        ran.update(model_made=engine.stats[0].model_made, tools_run=engine.stats[0].tools_run)
    _check(not any(ran.values()), f"{engine.name}: the replay ran {ran}")
    return seconds


async def warm_up(engines: list[Engine]) -> None:
    """One short run and replay each, so no engine's first-use costs land in a measure."""
    for engine in engines:
        run_id = _new_id(engine)
        await _fresh(engine, 2, run_id)
        if engine.replay is not None:
            await _replay(engine, 2, run_id)


async def fresh_and_replay(engines: list[Engine], config: PeersConfig) -> dict[str, Any]:
    """A and B."""
    fresh: dict[str, list[float]] = {e.name: [] for e in engines}
    replay: dict[str, list[float]] = {e.name: [] for e in engines if e.replay}
    for i in _rounds(config.runs, config.seconds):
        for engine in _rotated(engines, i):
            run_id = _new_id(engine)
            fresh[engine.name].append(await _fresh(engine, config.steps, run_id))
            if engine.replay is not None:
                replay[engine.name].append(await _replay(engine, config.steps, run_id))
    units = 2 * config.steps + 1
    figures: dict[str, Any] = {}
    for engine in engines:
        base = fresh[engine.baseline]
        entry: dict[str, Any] = {"fresh_ms": _ms(fresh[engine.name])}
        if engine.replay is not None:
            entry["overhead_per_unit_ms"] = _ms(
                [(t - b) / units for t, b in zip(fresh[engine.name], base, strict=True)]
            )
            # A replay runs no tool, so every column's is against the same plain run.
            entry["replay_vs_plain"] = _ratio([t / b for t, b in zip(replay[engine.name], fresh[PLAIN], strict=True)])
        figures[engine.name] = entry
    return figures


def _child(engine: Engine, run_id: str, stack: Stack, db: Path, steps: int, crash_at: int | None) -> Proc:
    args = [
        sys.executable,
        "-m",
        "bench.peers",
        "--engine",
        str(engine.child),
        "--id",
        run_id,
        "--steps",
        str(steps),
        "--url",
        stack.nexum_url,
        "--db",
        str(db),
    ]
    return Proc(args + (["--crash-at", str(crash_at)] if crash_at else []), env=stack.tool_env)


def _finish(proc: Proc) -> int:
    """Wait for the child to end by itself; past the timeout (or on Ctrl-C) it is stopped."""
    try:
        proc.popen.wait(CHILD_TIMEOUT_SECONDS)
    finally:
        code = proc.stop()  # already gone: only collects the rest of its output
    return code


def resume_once(engine: Engine, stack: Stack, directory: Path, config: PeersConfig) -> dict[str, Any]:
    run_id, db = _new_id(engine), directory / f"{uuid.uuid4().hex[:8]}.sqlite"
    crashed = _child(engine, run_id, stack, db, config.steps, config.crash_at)
    code = _finish(crashed)
    _check(code == -9, f"{engine.name}: the first process exited with {code}, not SIGKILL:\n{crashed.output}")
    resumed = _child(engine, run_id, stack, db, config.steps, None)
    code = _finish(resumed)
    line = next((x for x in resumed.lines if x.startswith(peers.RESUMED)), None)
    _check(code == 0 and line is not None, f"{engine.name}: the resume exited with {code}:\n{resumed.output}")
    assert line is not None
    figures = json.loads(line.removeprefix(peers.RESUMED))
    left = config.steps + 2 - config.crash_at  # the request that died and every one after it
    _check(
        figures["model_calls"] == left,
        f"{engine.name}: the resume made {figures['model_calls']} model requests, not {left}",
    )
    return figures


async def resumes(engines: list[Engine], stack: Stack, directory: Path, config: PeersConfig) -> dict[str, Any]:
    """C: a subprocess per engine and round."""
    durable = [e for e in engines if e.child]
    seconds: dict[str, list[float]] = {e.name: [] for e in durable}
    for i in _rounds(config.resumes, config.seconds):
        for engine in _rotated(durable, i):
            figures = await asyncio.to_thread(resume_once, engine, stack, directory, config)
            seconds[engine.name].append(figures["seconds"])
    return {name: {"resume_ms": _ms(values)} for name, values in seconds.items()}


async def concurrent(engines: list[Engine], config: PeersConfig) -> dict[str, Any]:
    """D."""
    rates: dict[str, list[float]] = {e.name: [] for e in engines}
    latencies: dict[str, list[float]] = {e.name: [] for e in engines}
    for i in _rounds(config.concurrent_rounds, config.seconds):
        for engine in _rotated(engines, i):
            peers.reset_counts()
            started = time.perf_counter()
            runs = [_timed(engine.fresh(config.concurrent_steps, _new_id(engine))) for _ in range(config.concurrent)]
            latencies[engine.name] += await asyncio.gather(*runs)
            rates[engine.name].append(config.concurrent / (time.perf_counter() - started))
            expected = config.concurrent * (config.concurrent_steps + 1)
            _check(
                peers.COUNTS["model"] == expected,
                f"{engine.name}: {peers.COUNTS['model']} model requests, not {expected}",
            )
    return {
        name: {
            "runs_per_second": statistics.median(rates[name]),
            "rounds": len(rates[name]),
            "run_ms": _ms(latencies[name]),
        }
        for name in rates
    }


async def long_runs(engines: list[Engine], config: PeersConfig) -> dict[str, Any]:
    """E: step k is from model request k to k + 1 (its journal, its tool call, the next request's key)."""
    steps: dict[str, list[list[float]]] = {e.name: [] for e in engines}
    for i in _rounds(config.long_runs, config.seconds):
        for engine in _rotated(engines, i):
            await _fresh(engine, config.long_steps, _new_id(engine))
            steps[engine.name].append([b - a for a, b in itertools.pairwise(peers.STAMPS)])
    figures: dict[str, Any] = {}
    w = config.window
    for engine in engines:
        if engine.replay is None:
            continue
        paired = [
            [t - b for t, b in zip(run, base, strict=True)]
            for run, base in zip(steps[engine.name], steps[engine.baseline], strict=True)
        ]
        per_step = [statistics.median(column) for column in zip(*paired, strict=True)]
        slope = statistics.linear_regression(range(1, len(per_step) + 1), per_step).slope
        figures[engine.name] = {
            "first_steps_ms": _ms([x for run in paired for x in run[:w]]),
            "last_steps_ms": _ms([x for run in paired for x in run[-w:]]),
            "slope_ms_per_step": slope * 1000,
            "steps": len(per_step),
        }
    return figures


async def run_peers(stack: Stack, config: PeersConfig, report: Callable[[str], None] = print) -> dict[str, Any]:
    """Every workload on every engine; the figures by workload, then by engine's name."""
    await asyncio.to_thread(stack.use_instant_search)
    figures: dict[str, Any] = {"machine": machine(), "config": asdict(config)}
    with tempfile.TemporaryDirectory(prefix="nexum-peers-") as tmp:
        async with (
            NexumClient(stack.nexum_url, max_connections=2 * config.concurrent + 16) as client,
            open_engines(stack, client, Path(tmp), report) as engines,
        ):
            figures["engines"] = [e.name for e in engines if e.shown]
            figures["dbos_missing"] = peers.dbos_missing()
            await warm_up(engines)
            for key, label, work in (
                ("fresh", "A, B: fresh runs and replays", lambda: fresh_and_replay(engines, config)),
                ("resume", "C: resume after kill -9", lambda: resumes(engines, stack, Path(tmp), config)),
                ("concurrent", "D: concurrent runs", lambda: concurrent(engines, config)),
                ("long", "E: a long run", lambda: long_runs(engines, config)),
            ):
                started = time.perf_counter()
                figures[key] = await work()
                report(f"  {label}: {time.perf_counter() - started:.1f} s")
    figures["load_average_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    figures["absent"] = list(ABSENT)
    return figures
