"""Per-call cost: what one durable tool call costs on top of the tool itself, measured in one run.

    bare round trip   GET /health with the same client: the floor any request pays; async
                      (`NexumClient`) and blocking (`NexumSyncClient`, from a thread)
    cached call       `call_tool` on a key already completed: one round trip and a store read;
                      and its blocking twin `call_tool_sync`, each held to its own round trip
    cold overhead     `call_tool` of an instant tool (`web_search` on the fixture's zero-latency
                      SearXNG endpoint) in a fresh session,
                      through the server and the long-poll worker, minus the same tool called here
                      directly; the two are interleaved and compared percentile by percentile.
                      Also each cold call minus the span from claim to completion the server
                      recorded: the share outside the worker, which does not depend on the tool
    polling pattern   the upstream example's way, for comparison: the client starts without
                      waiting and GETs the execution every 50 ms; a worker asks for a task without
                      waiting, every 100 ms when idle. It runs on a workflow version of its own, so
                      the long-poll worker never takes its tasks
    throughput        tool calls per second end to end with K clients at once, for each worker count

Every loop stops by itself, at a count or a deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.stack import Stack
from bench.stats import Summary, summarize
from nexum_research import tools
from nexum_research.tools import ToolError, run_tool
from nexum_server.client import NexumClient, NexumSyncClient
from nexum_server.errors import WaitTimeout
from nexum_server.models import Execution, WorkflowRef
from submit_task import ToolCallOutcome, call_tool, call_tool_sync
from workflow import IR, VERSION_HASH, WEB_SEARCH, WORKFLOW_ID, ToolCallInput, ToolCallOutput, tool_call_key

INSTANT_TOOL = WEB_SEARCH
INSTANT_ARGS = {"query": "durable execution overhead", "max_results": 5}
"""The instant tool: a search the fixture answers at once; pages cost the tool ~30 ms of set-up."""

POLLING_VERSION = VERSION_HASH + "-polling"
"""Same IR, another version: only the polling worker asks for it, only the polling client starts it."""
CLIENT_POLL_SECONDS = 0.05
WORKER_IDLE_POLL_SECONDS = 0.1
WARMUP_CALLS = 5
"""Unrecorded calls before each latency measure: connections open, code paths warm."""
THROUGHPUT_WARMUP_ROUNDS = 8
"""Unrecorded calls per client before each throughput run."""
MEASURE_SECONDS = 10.0
"""Deadline of each latency measure, whatever its sample count."""
CALL_TIMEOUT_SECONDS = 30.0

CACHED_VS_ROUND_TRIP = 1.3
COLD_OVERHEAD_P50_MS = 2.0
COLD_OVERHEAD_P99_MS = 5.0
POLLING_VS_LONG_POLL = 35.0
CALLS_PER_SECOND_ONE_WORKER = 700.0
MARKS = {True: "[green]pass ✓[/]", False: "[red]miss ✗[/]", None: "[yellow]noisy ?[/]"}


@dataclass(frozen=True)
class CallsConfig:
    samples: int
    """Latency samples for the round trip, cached and cold measures."""
    polling_samples: int
    """Samples of the polling pattern (each takes about 100 ms)."""
    clients: int
    """Concurrent clients in the throughput runs."""
    workers: tuple[int, ...]
    """Worker counts to measure throughput with."""
    throughput_calls: int
    """Most calls per throughput run."""
    throughput_seconds: float
    """Longest a throughput run may take."""


def bounded(count: int, seconds: float) -> Iterator[int]:
    """0, 1, ... up to `count`, stopping early once `seconds` have passed."""
    deadline = time.monotonic() + seconds
    for i in range(count):
        if time.monotonic() >= deadline:
            return
        yield i


async def timed(count: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Wall time of up to `count` sequential calls, after a few unrecorded ones."""
    for i in range(WARMUP_CALLS):
        await call(-1 - i)
    samples = []
    for i in bounded(count, MEASURE_SECONDS):
        started = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - started)
    return samples


def timed_blocking(count: int, call: Callable[[int], Any]) -> list[float]:
    """`timed` for a blocking call, run in the calling thread."""
    for i in range(WARMUP_CALLS):
        call(-1 - i)
    samples = []
    for i in bounded(count, MEASURE_SECONDS):
        started = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - started)
    return samples


def blocking_figures(url: str, args: dict[str, Any], count: int, session: str) -> tuple[list[float], list[float]]:
    """The bare round trip and the cached call of the blocking client, in this (non-loop) thread."""
    with NexumSyncClient(url) as client:
        bare = timed_blocking(count, lambda i: client.request("GET", "/health"))
        cached = timed_blocking(
            count,
            lambda i: _check_cached(
                call_tool_sync(INSTANT_TOOL, args, session, CALL_TIMEOUT_SECONDS, client=client), session
            ),
        )
    return bare, cached


def _check_cached(outcome: ToolCallOutcome, session: str) -> None:
    if not outcome.cached:
        raise RuntimeError(f"expected a cached call in session {session}, got a cold one")


async def durable(client: NexumClient, args: dict[str, Any], session: str, *, cached: bool) -> ToolCallOutcome:
    """One `call_tool`, checked to have been served the way the measure expects."""
    outcome = await call_tool(INSTANT_TOOL, args, session, CALL_TIMEOUT_SECONDS, client=client)
    if outcome.cached != cached:
        raise RuntimeError(f"expected a {'cached' if cached else 'cold'} call in session {session}, got the other")
    return outcome


async def cold_and_direct(
    client: NexumClient, args: dict[str, Any], count: int, prefix: str
) -> tuple[list[float], list[float], list[float]]:
    """Interleaved, so both see the same machine: the direct tool, then the same call through Nexum.

    Returns the direct times, the cold times, and each cold time minus its claimed-to-completed span.
    """
    direct: list[float] = []
    cold: list[float] = []
    outside: list[float] = []

    async def pair(i: int) -> None:
        started = time.perf_counter()
        await tools.run_tool(INSTANT_TOOL, args)
        middle = time.perf_counter()
        execution = (await durable(client, args, f"{prefix}-cold-{i}", cached=False)).execution
        ended = time.perf_counter()
        if i >= 0:
            direct.append(middle - started)
            cold.append(ended - middle)
            outside.append(ended - middle - ((execution.completed_at or 0.0) - (execution.started_at or 0.0)))

    for i in range(WARMUP_CALLS):
        await pair(-1 - i)
    for i in bounded(count, MEASURE_SECONDS):
        await pair(i)
    return direct, cold, outside


async def polling_call(client: NexumClient, args: dict[str, Any], session: str) -> Execution:
    """The upstream client: start without waiting, then GET every 50 ms until the execution is over."""
    payload = ToolCallInput(tool_name=INSTANT_TOOL, tool_args=args).model_dump()
    execution = await client.start(WORKFLOW_ID, POLLING_VERSION, session, tool_call_key(INSTANT_TOOL, args), payload)
    deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
    while not execution.status.terminal:
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"polling call {execution.id} still {execution.status.value} after {CALL_TIMEOUT_SECONDS:g} s"
            )
        await asyncio.sleep(CLIENT_POLL_SECONDS)
        execution = await client.get(execution.id)
    return execution


async def polling_worker(client: NexumClient, stop: asyncio.Event) -> None:
    """The upstream worker: ask for one task without waiting; when there is none, sleep 100 ms."""
    ref = WorkflowRef(workflow_id=WORKFLOW_ID, version_hash=POLLING_VERSION)
    while not stop.is_set():
        tasks = await client.poll("bench-polling-worker", [ref], wait=0, max_tasks=1)
        if not tasks:
            await asyncio.sleep(WORKER_IDLE_POLL_SECONDS)
        for task in tasks:
            call = ToolCallInput.model_validate(task.input)
            try:
                result = await run_tool(call.tool_name, call.tool_args)
            except ToolError as e:
                await client.fail(task, str(e), False)
            else:
                await client.complete(task, ToolCallOutput(result=result).model_dump())


async def polling_samples(client: NexumClient, args: dict[str, Any], count: int, prefix: str) -> list[float]:
    await client.register_workflow(WORKFLOW_ID, POLLING_VERSION, IR)
    stop = asyncio.Event()
    # In a task group, so a polling worker that crashes ends the measure instead of leaving every
    # call to run into its timeout.
    async with asyncio.TaskGroup() as group:
        group.create_task(polling_worker(client, stop))
        try:
            return await timed(count, lambda i: polling_call(client, args, f"{prefix}-polling-{i}"))
        finally:
            stop.set()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float] | None:
    """CPU time (user + system) each process has used so far; None where /proc is not there (not Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        seconds = {}
        for role, pid in pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[role] = (int(fields[11]) + int(fields[12])) / ticks
        return seconds
    except (OSError, IndexError, ValueError):
        return None


async def throughput(
    call: Callable[[int], Awaitable[Any]], clients: int, count: int, seconds: float, pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """`clients` loops making calls until `count` have been made or `seconds` have passed.

    With `pids`, also the CPU time each of those processes spent per call during the run.
    """
    made = 0
    deadline = 0.0

    async def client_loop() -> None:
        nonlocal made
        while made < count and time.monotonic() < deadline:
            i, made = made, made + 1
            await call(i)

    async def warm_loop(first: int) -> None:
        for i in range(first, first + THROUGHPUT_WARMUP_ROUNDS):
            await call(-1 - i)

    async with asyncio.TaskGroup() as group:
        # Unrecorded, as before the latency measures: connections open, and every worker (a second
        # one has just started) has run its code paths once before the clock starts.
        for c in range(clients):
            group.create_task(warm_loop(c * THROUGHPUT_WARMUP_ROUNDS))
    before = cpu_seconds(pids) if pids else None
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client_loop())
    elapsed = time.perf_counter() - started
    after = cpu_seconds(pids) if pids else None
    cpu = (
        {role: (after[role] - before[role]) * 1000 / made for role in before}
        if before is not None and after is not None and made
        else None
    )
    return {
        "clients": clients,
        "calls": made,
        "seconds": elapsed,
        "calls_per_second": made / elapsed,
        "cpu_ms_per_call": cpu,
    }


async def measure_calls(
    stack: Stack, client: NexumClient, config: CallsConfig, report: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every per-call figure, and the targets they are held to."""
    await asyncio.to_thread(stack.use_instant_search)
    args = INSTANT_ARGS
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    figures: dict[str, Any] = {}

    report("  bare round trip (GET /health)")
    figures["bare_round_trip_ms"] = summarize(await timed(config.samples, lambda i: client.health()))
    report("  cached call")
    await durable(client, args, f"{prefix}-cached", cached=False)
    figures["cached_call_ms"] = summarize(
        await timed(config.samples, lambda i: durable(client, args, f"{prefix}-cached", cached=True))
    )
    report("  blocking client: bare round trip and cached call")
    bare, cached_blocking = await asyncio.to_thread(
        blocking_figures, client.url, args, config.samples, f"{prefix}-cached"
    )
    figures["bare_round_trip_blocking_ms"] = summarize(bare)
    figures["cached_call_blocking_ms"] = summarize(cached_blocking)
    report("  cold call and the tool called directly")
    direct, cold, outside = await cold_and_direct(client, args, config.samples, prefix)
    figures["direct_tool_ms"] = summarize(direct)
    figures["cold_call_ms"] = summarize(cold)
    figures["cold_overhead_ms"] = figures["cold_call_ms"].minus(figures["direct_tool_ms"])
    figures["cold_outside_worker_ms"] = summarize(outside)
    report("  polling pattern")
    figures["polling_call_ms"] = summarize(await polling_samples(client, args, config.polling_samples, prefix))
    figures["polling_overhead_ms"] = figures["polling_call_ms"].minus(figures["direct_tool_ms"])

    runs = []
    report(f"  throughput: the tool alone, {config.clients} at once")
    alone = await throughput(
        lambda i: tools.run_tool(INSTANT_TOOL, args), config.clients, config.throughput_calls, config.throughput_seconds
    )
    runs.append({"label": "tool alone, in process", "workers": 0, **alone})
    for workers in config.workers:
        await asyncio.to_thread(stack.scale_workers, workers)
        report(f"  throughput: {config.clients} clients, {workers} worker(s)")
        run = await throughput(
            lambda i, w=workers: durable(client, args, f"{prefix}-w{w}-{i}", cached=False),
            config.clients,
            config.throughput_calls,
            config.throughput_seconds,
            stack.pids(),
        )
        runs.append({"label": f"Nexum, {workers} worker{'s' if workers > 1 else ''}", "workers": workers, **run})
    figures["throughput"] = runs
    await tools.aclose_clients()
    figures["targets"] = targets(figures)
    return {k: asdict(v) if isinstance(v, Summary) else v for k, v in figures.items()}


def targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its goal, the measured value and whether it was met (None: too noisy to say)."""
    round_trip, cached = figures["bare_round_trip_ms"].p50, figures["cached_call_ms"].p50
    round_trip_blocking = figures["bare_round_trip_blocking_ms"].p50
    cached_blocking = figures["cached_call_blocking_ms"].p50
    overhead, polling = figures["cold_overhead_ms"], figures["polling_overhead_ms"]
    # A negative overhead means the tool's own jitter is larger than what Nexum adds at that
    # percentile: the run cannot tell, so it neither passes nor misses.
    ratio = polling.p50 / overhead.p50 if overhead.p50 > 0 else None
    rows = [
        _target(
            "cached call p50 / bare round trip p50",
            f"≤ {CACHED_VS_ROUND_TRIP:g}x",
            cached / round_trip,
            f"{cached / round_trip:.2f}x ({cached:.2f} vs {round_trip:.2f} ms)",
            cached <= CACHED_VS_ROUND_TRIP * round_trip,
        ),
        _target(
            "blocking cached call p50 / blocking round trip p50",
            f"≤ {CACHED_VS_ROUND_TRIP:g}x",
            cached_blocking / round_trip_blocking,
            f"{cached_blocking / round_trip_blocking:.2f}x ({cached_blocking:.2f} vs {round_trip_blocking:.2f} ms)",
            cached_blocking <= CACHED_VS_ROUND_TRIP * round_trip_blocking,
        ),
        _target(
            "cold overhead p50",
            f"≤ {COLD_OVERHEAD_P50_MS:g} ms",
            overhead.p50,
            f"{overhead.p50:.2f} ms",
            None if overhead.p50 < 0 else overhead.p50 <= COLD_OVERHEAD_P50_MS,
        ),
        _target(
            "cold overhead p99",
            f"≤ {COLD_OVERHEAD_P99_MS:g} ms",
            overhead.p99,
            f"{overhead.p99:.2f} ms",
            None if overhead.p99 < 0 else overhead.p99 <= COLD_OVERHEAD_P99_MS,
        ),
        _target(
            "polling overhead p50 / cold overhead p50",
            f"≥ {POLLING_VS_LONG_POLL:g}x",
            ratio,
            "n/a (cold overhead ≤ 0)" if ratio is None else f"{ratio:.0f}x ({polling.p50:.1f} ms)",
            None if ratio is None else ratio >= POLLING_VS_LONG_POLL,
        ),
    ]
    one_worker = next((r for r in figures["throughput"] if r["workers"] == 1), None)
    if one_worker is not None:
        rate = one_worker["calls_per_second"]
        rows.append(
            _target(
                "throughput, 1 server + 1 worker",
                f"≥ {CALLS_PER_SECOND_ONE_WORKER:g} calls/s",
                rate,
                f"{rate:.0f} calls/s",
                rate >= CALLS_PER_SECOND_ONE_WORKER,
            )
        )
        two_workers = next((r for r in figures["throughput"] if r["workers"] == 2), None)
        if two_workers is not None:
            second = two_workers["calls_per_second"]
            rows.append(
                _target(
                    "throughput, 2 workers / 1 worker",
                    "≥ 1x",
                    second / rate,
                    f"{second / rate:.2f}x ({second:.0f} calls/s)",
                    second >= rate,
                )
            )
    return rows


def _target(name: str, goal: str, value: float | None, measured: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "goal": goal, "value": value, "measured": measured, "met": met}


def calls_tables(figures: dict[str, Any]) -> list[Table]:
    note = None
    if any(figures[k][p] < 0 for k in ("cold_overhead_ms", "polling_overhead_ms") for p in ("p50", "p95", "p99")):
        note = (
            "Overheads are percentile differences; a negative one means the tool's own jitter is larger "
            "than the overhead there: raise --samples, or run on a quiet machine."
        )
    latency = Table(title="Per-call latency (ms)", title_justify="left", caption=note, caption_justify="left")
    for name in ("Measure", "n", "p50", "p95", "p99"):
        latency.add_column(name, justify="left" if name == "Measure" else "right")
    for key, label in (
        ("bare_round_trip_ms", "bare round trip, GET /health"),
        ("cached_call_ms", "cached call"),
        ("bare_round_trip_blocking_ms", "blocking bare round trip, GET /health"),
        ("cached_call_blocking_ms", "blocking cached call"),
        ("direct_tool_ms", "instant tool called directly"),
        ("cold_call_ms", "cold call, server + long-poll worker"),
        ("cold_overhead_ms", "cold overhead (cold - direct)"),
        ("cold_outside_worker_ms", "cold call minus its claim-to-completion span"),
        ("polling_call_ms", "polling-pattern call"),
        ("polling_overhead_ms", "polling overhead (polling - direct)"),
    ):
        s = figures[key]
        latency.add_row(label, str(s["n"]), *(_ms(s[p]) for p in ("p50", "p95", "p99")))

    rates = Table(title="Throughput, end to end", title_justify="left")
    for name in ("Run", "Clients", "Calls", "Seconds", "Calls/s"):
        rates.add_column(name, justify="left" if name == "Run" else "right")
    for r in figures["throughput"]:
        rates.add_row(
            r["label"], str(r["clients"]), str(r["calls"]), f"{r['seconds']:.2f}", f"{r['calls_per_second']:.0f}"
        )

    measured = [r for r in figures["throughput"] if r.get("cpu_ms_per_call")]
    cpu = Table(
        title="CPU per call during the throughput runs (ms, user + system)",
        title_justify="left",
        caption="On 2 cores the calls/s a run can reach is at most 2000 / total.",
        caption_justify="left",
    )
    cpu.add_column("Run")
    roles = list(dict.fromkeys(role for r in reversed(measured) for role in r["cpu_ms_per_call"]))
    for role in [*roles, "total"]:
        cpu.add_column(role, justify="right")
    for r in measured:
        shares = r["cpu_ms_per_call"]
        cpu.add_row(
            r["label"],
            *(f"{shares[role]:.2f}" if role in shares else "" for role in roles),
            f"{sum(shares.values()):.2f}",
        )

    goals = Table(title="Targets", title_justify="left")
    for name in ("Target", "Goal", "Measured", ""):
        goals.add_column(name)
    for t in figures["targets"]:
        goals.add_row(t["name"], t["goal"], t["measured"], MARKS[t["met"]])
    return [latency, rates, cpu, goals] if measured else [latency, rates, goals]


def _ms(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
