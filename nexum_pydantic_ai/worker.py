"""The worker runtime: long-polls the Nexum server for calls of the toolsets it serves, runs them, reports back.

It runs ANY Pydantic AI toolset whose tools are marked `RUN_IN_WORKER` (a `FunctionToolset` with an
`id`, wrapped on the agent's side in `WorkerToolset`). Each call is validated again here, with the
tool's own schema, then run with the run context the agent sent (`DurableRunContext`; no deps).
A `TransientToolError` is reported as retryable, so the server retries it with backoff;
`ModelRetry`, `PermanentToolError` and anything else fail the call, and the agent's model is told
why. A worker asked for a tool it does not have fails that call, naming the tool and the toolsets
it serves.

Up to `concurrency` calls run at once. A long call keeps its lease with heartbeats, timed on the
worker's own monotonic clock from the lease length the task carries. If the server goes away the
worker polls and reports again under the retry policy of `nexum_server/retry.py`. `stop()` (Ctrl-C,
SIGTERM) takes no new work; calls in flight get a grace period and are then handed back.

Run with:
    nexum dev                                              # terminal 1
    python -m nexum_pydantic_ai.worker mypkg.tools:TOOLSET   # terminal 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_ai import ModelRetry
from pydantic_ai.durable_exec import DurableRunContext
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.usage import RunUsage

from nexum_server.client import HOLD_SECONDS, NexumClient, run
from nexum_server.config import DEFAULT_URL
from nexum_server.errors import ConfigError, NexumError, RequestRejected, ServerUnavailable
from nexum_server.models import Status, Task, WorkflowRef
from nexum_server.retry import retry_async, retryable

from ._durability import NexumDurability
from ._errors import PermanentToolError, ToolError, TransientToolError, describe_validation
from ._protocol import ToolCallInput, ToolCallOutput, tool_ir, tool_workflow_id, version_hash

log = logging.getLogger("nexum.worker")

CONCURRENCY = 8
GRACE_SECONDS = 10.0
"""On shutdown, how long calls in flight may run before they are handed back."""
HANDBACK_SECONDS = 5.0
"""On shutdown, how long handing calls back may take before the worker exits anyway."""
MAX_RESULT_CHARS = 200_000
"""Text results longer than this are cut (and say so) to stay well inside the server's body limit."""


class Toolsets:
    """The toolsets a worker serves, by id, and how one call of theirs is validated and run."""

    def __init__(self, toolsets: Sequence[AbstractToolset[Any]]) -> None:
        self.by_id: dict[str, AbstractToolset[Any]] = {}
        for toolset in toolsets:
            if toolset.id is None:
                raise ConfigError(
                    f"the toolset {toolset!r} has no id; give it one (FunctionToolset(id='...')): "
                    "the id names the calls this worker takes"
                )
            self.by_id[toolset.id] = toolset
        self.refs = [
            WorkflowRef(workflow_id=tool_workflow_id(i), version_hash=version_hash(tool_ir(i))) for i in self.by_id
        ]

    def describe(self) -> str:
        return ", ".join(self.by_id)

    async def run(self, call: ToolCallInput, workflow_id: str | None = None) -> Any:
        """The tool's result; every failure is raised as a `ToolError`."""
        toolset_id = call.toolset_id or (workflow_id or "").partition(".")[2]
        toolset = self.by_id.get(toolset_id)
        if toolset is None:
            raise PermanentToolError(f"this worker serves no toolset {toolset_id!r}; it serves: {self.describe()}")
        ctx = _context(call)
        tools = await toolset.get_tools(ctx)
        tool = tools.get(call.tool_name)
        if tool is None:
            raise PermanentToolError(
                f"unknown tool {call.tool_name!r}; toolset {toolset_id!r} has: {', '.join(tools) or 'no tools'}"
            )
        try:
            args = tool.args_validator.validate_python(call.tool_args)
        except ValidationError as e:
            problems = describe_validation(e)
            raise PermanentToolError(f"bad arguments for {call.tool_name}: {problems}") from e
        try:
            return await toolset.call_tool(call.tool_name, args, ctx, tool)
        except ModelRetry as e:
            raise PermanentToolError(e.message) from e


def _context(call: ToolCallInput) -> Any:
    if call.ctx is None:
        return RunContext(deps=None, model=TestModel(), usage=RunUsage(), tool_name=call.tool_name)
    return DurableRunContext.restore(call.ctx, deps=None, agent=None, engine_spec=NexumDurability.engine_spec)


class Worker:
    """Claims the calls of its toolsets and runs them; `run()` until `stop()`."""

    def __init__(
        self,
        client: NexumClient,
        toolsets: Toolsets,
        concurrency: int = CONCURRENCY,
        worker_id: str | None = None,
        grace_seconds: float = GRACE_SECONDS,
        describe: str = "",
    ) -> None:
        self.client = client
        self.toolsets = toolsets
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.grace_seconds = grace_seconds
        self.describe = describe
        self.stopping = asyncio.Event()
        self.running: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()

    async def run(self) -> None:
        """Register, then poll until `stop()`; then drain or hand back what is in flight."""
        for ref in self.toolsets.refs:
            ir = tool_ir(ref.workflow_id.partition(".")[2] or None)
            await self._with_reconnect(
                lambda ref=ref, ir=ir: self._until_stopping(
                    self.client.register_workflow(ref.workflow_id, ref.version_hash, ir)
                )
            )
        extra = f", {self.describe}" if self.describe else ""
        print(
            f"worker {self.worker_id} ready: polling {self.client.url} for toolset {self.toolsets.describe()}, "
            f"concurrency {self.concurrency}{extra}. Ctrl-C stops it.",
            flush=True,
        )
        while not self.stopping.is_set():
            await self.run_once()
        await self._drain()

    async def run_once(self) -> None:
        """One iteration: wait for a free slot, claim up to that many tasks, start them."""
        free = self.concurrency - len(self.running)
        if free <= 0:
            self._slot_free.clear()
            await self._until_stopping(self._slot_free.wait())
            return
        tasks = await self._with_reconnect(
            lambda: self._until_stopping(self.client.poll(self.worker_id, self.toolsets.refs, HOLD_SECONDS, free))
        )
        received = time.monotonic()
        for task in tasks or []:
            self.running[task.task_id] = asyncio.create_task(self.execute(task, LeaseClock(task, received)))
        if tasks:
            # Let the new calls send their first request before this loop sends its next poll.
            await asyncio.sleep(0)

    async def execute(self, task: Task, lease: LeaseClock | None = None) -> None:
        """Run one claimed task and report its outcome; never raises."""
        started = time.perf_counter()
        lease = lease or LeaseClock(task, time.monotonic())
        label = f"task {task.task_id}"
        heartbeat = asyncio.create_task(self._heartbeat(task, lease))
        try:
            try:
                call = ToolCallInput.model_validate(task.input)
                label = f"{call.tool_name}({_short(call.tool_args)})"
                result = await self.toolsets.run(call, task.workflow_id)
            finally:
                heartbeat.cancel()
            if isinstance(result, str) and len(result) > MAX_RESULT_CHARS:
                result = result[:MAX_RESULT_CHARS] + f"\n\n[result cut by the worker at {MAX_RESULT_CHARS} characters]"
            execution = await self._report(
                self.client.complete, task, ToolCallOutput(result=result).model_dump(mode="json")
            )
            if execution is None:
                verb, detail = "discarded", " (its report was refused: the lease is no longer this worker's)"
            elif execution.status is not Status.COMPLETED:
                verb, detail = "failed", f": {execution.error}"
            else:
                verb, detail = "completed", ""
        except (TransientToolError, PermanentToolError) as e:
            retryable = isinstance(e, TransientToolError)
            execution = await self._report(self.client.fail, task, str(e), retryable)
            will_retry = execution is not None and not execution.status.terminal
            verb, detail = "failed", f"{', the server will retry it' if will_retry else ''}: {e}"
        except asyncio.CancelledError:
            await self._report(self.client.release, task)
            verb, detail = "handed back", " (worker stopping; another worker can take it now)"
        except ValidationError as e:
            execution = await self._report(self.client.fail, task, f"invalid call: {e}", False)
            verb, detail = "failed", f": invalid call: {e}"
        except ToolError as e:  # neither transient nor permanent: it will fail the same way again
            execution = await self._report(self.client.fail, task, str(e), False)
            verb, detail = "failed", f": {e}"
        except Exception as e:  # a bug in a tool must not take the worker down
            log.exception("task %s crashed", task.task_id)
            await self._report(self.client.fail, task, f"worker error: {type(e).__name__}: {e}", False)
            verb, detail = "failed", f": {type(e).__name__}"
        finally:
            self.running.pop(task.task_id, None)
            self._slot_free.set()
        log.info("%s %s after %.2f s (attempt %d)%s", label, verb, time.perf_counter() - started, task.attempt, detail)

    async def _report(self, method: Any, task: Task, *args: Any, last: bool = False) -> Any:
        """Send a report; None when the server refused it (the lease is no longer ours).

        While the server is away the report is retried with no deadline: the lease guards it on
        the server, a restarted server renews running leases, and a report that comes too late is
        refused there rather than guessed at here.
        """
        try:
            return await retry_async(lambda: method(task, *args), log=log)
        except RequestRejected as e:
            if e.status not in (404, 409) and method != self.client.release and not last:
                # Sending it again cannot change the server's answer (a result too large, a text no
                # store can hold): fail the call now with the reason, rather than leave it RUNNING
                # until its lease runs out and then run it again.
                what = "result too large to store" if e.status == 413 else "the server refused the report"
                return await self._report(self.client.fail, task, f"{what}: {e}", False, last=True)
            # 409: the lease ran out and the task went to another worker, whose result will count.
            log.warning("task %s: report refused (%s)", task.task_id, e)
            return None

    async def _heartbeat(self, task: Task, lease: LeaseClock) -> None:
        """Renew the lease every third of its length, timed on this worker's monotonic clock."""
        while True:
            await asyncio.sleep(lease.seconds / 3)
            sent = time.monotonic()
            try:
                await self.client.heartbeat(task)
                lease.renewed(sent)
            except (ServerUnavailable, RequestRejected) as e:
                if retryable(e):
                    if lease.remaining() < 0:
                        log.warning(
                            "task %s: lease ran out by this worker's clock while the server was "
                            "away; a restarted server renews it, otherwise the result is refused",
                            task.task_id,
                        )
                    continue
                log.warning("task %s: lease lost (%s); its result will be refused", task.task_id, e)
                return

    async def _with_reconnect(self, call: Any) -> Any:
        """`call()` under the retry policy until it succeeds or the worker is asked to stop."""
        try:
            return await retry_async(call, stopping=self.stopping, log=log)
        except (ServerUnavailable, RequestRejected) as e:
            if retryable(e) and self.stopping.is_set():
                return None
            raise

    async def _until_stopping(self, awaitable: Any) -> Any:
        """Await, but give up (returning None) as soon as the worker is asked to stop."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        return None

    def stop(self) -> None:
        """First call: take no new work, give calls in flight the grace period. Second: hand them back now."""
        if not self.stopping.is_set():
            count = len(self.running)
            if count:
                log.info(
                    "stopping: no new work; waiting up to %g s for %s in flight, then handing back what "
                    "is left (Ctrl-C again: hand back now)",
                    self.grace_seconds,
                    _calls(count),
                )
            else:
                log.info("stopping: no calls in flight")
            self.stopping.set()
        elif self.running:
            log.info("handing back %s now", _calls(len(self.running)))
            for task in self.running.values():
                task.cancel()

    async def _drain(self) -> None:
        if self.running:
            _, late = await asyncio.wait(list(self.running.values()), timeout=self.grace_seconds)
            for pending in late:
                pending.cancel()
            if late:
                # Hand-backs retry while the server is away; past this, their leases expire instead.
                _, lost = await asyncio.wait(late, timeout=HANDBACK_SECONDS)
                if lost:
                    log.warning(
                        "%s not handed back (server unreachable); they run again once their lease expires",
                        _calls(len(lost)),
                    )
        log.info("worker %s stopped", self.worker_id)


class LeaseClock:
    """A task's lease as this worker sees it: a duration on its own monotonic clock.

    The server's `lease_expires_at` is on the server's wall clock and is never compared with ours.
    A renewal is timed from when its request left here (the server renewed it later than that); a
    claim from when its answer arrived, since a long-poll may be held for seconds before it claims.
    """

    def __init__(self, task: Task, granted: float) -> None:
        self.seconds = task.lease_seconds
        self.expires = granted + self.seconds

    def renewed(self, sent: float) -> None:
        self.expires = sent + self.seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()


def _calls(count: int) -> str:
    return f"{count} call{'' if count == 1 else 's'}"


def _short(args: dict[str, Any], width: int = 70) -> str:
    """The arguments on one line; a long one loses its middle, since URLs differ at their ends."""
    text = ", ".join(repr(v) for v in args.values())
    return text if len(text) <= width else f"{text[: width // 2 - 1]}…{text[-(width // 2) :]}"


async def serve(
    toolsets: Sequence[AbstractToolset[Any]],
    *,
    url: str | None = None,
    concurrency: int = CONCURRENCY,
    worker_id: str | None = None,
    grace_seconds: float = GRACE_SECONDS,
    describe: str = "",
) -> None:
    """Serve `toolsets` until SIGINT/SIGTERM (the second one hands calls in flight back at once)."""
    served = Toolsets(toolsets)
    # A small pool: httpx2 checks every pooled connection on each request, so a pool sized to a
    # high concurrency costs more CPU than the few extra parallel reports it would allow.
    async with NexumClient(url, max_connections=min(concurrency, 16) + 2) as client:
        await client.check()
        worker = Worker(client, served, concurrency, worker_id, grace_seconds, describe)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        async with contextlib.AsyncExitStack() as stack:
            for toolset in served.by_id.values():
                await stack.enter_async_context(toolset)
            await worker.run()


def load_toolset(spec: str) -> AbstractToolset[Any]:
    """The toolset named `module:ATTRIBUTE` (the module found from the current directory too)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{spec!r} is not MODULE:TOOLSET (for example mypkg.tools:TOOLSET)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        toolset = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load the toolset {spec!r}: {e}") from e
    if not isinstance(toolset, AbstractToolset):
        raise ConfigError(f"{spec!r} is a {type(toolset).__name__}, not a Pydantic AI toolset")
    return toolset


def build_parser(description: str, epilog: str = "") -> argparse.ArgumentParser:
    """The worker's flags, shared by `python -m nexum_pydantic_ai.worker` and the example's worker.py."""
    parser = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help=f"server URL (NEXUM_URL, default {DEFAULT_URL})")
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help=f"tool calls at once (default {CONCURRENCY})"
    )
    parser.add_argument("--worker-id", help="name shown in `nexum show` (default HOST-PID)")
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=GRACE_SECONDS,
        help=f"on Ctrl-C, how long calls in flight may finish before they are handed back (default {GRACE_SECONDS:g})",
    )
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Libraries log every request (httpx2) and every engine tried (ddgs); the task line says enough.
    for noisy in ("httpx2", "ddgs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser(
        "Run the calls of the given toolsets that the Nexum server queues.",
        "Reads NEXUM_URL and NEXUM_TOKEN from the environment or .env. Exit codes: 0 stopped, "
        "2 cannot start (a bad setting or toolset, no server at the URL, a refused token).",
    )
    parser.add_argument("toolsets", nargs="+", metavar="MODULE:TOOLSET", help="the toolsets to serve")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    configure_logging()
    try:
        toolsets = [load_toolset(spec) for spec in args.toolsets]
        run(
            serve(
                toolsets,
                url=args.url,
                concurrency=args.concurrency,
                worker_id=args.worker_id,
                grace_seconds=args.grace_seconds,
            )
        )
    except NexumError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


if __name__ == "__main__":
    main()
