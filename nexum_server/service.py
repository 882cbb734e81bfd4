"""The queue service: what the HTTP routes ask for, on top of the store.

`QueueService` owns the store, the wake-up notifier, the completed-results cache and the metrics.
Every store call goes through `store.run`, off the event loop; every state change it learns of is
counted and announced here, so the routes in `api.py` only validate and serialise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .cache import CompletedCache, HitCounter
from .config import Settings
from .errors import LeaseLost, StoreUnavailable
from .journal import split_input
from .metrics import Metrics
from .models import (
    Execution,
    Journal,
    JournalUnit,
    PollTasks,
    RegisterOutcome,
    RegisterWorkflow,
    SessionRunInfo,
    StartExecution,
    Status,
    Task,
    UnitsWritten,
    WorkflowRef,
    WriteUnits,
)
from .notifier import Notifier, Ref
from .store import StartOutcome, Store, UnitToWrite

log = logging.getLogger("nexum.service")

T = TypeVar("T")

WAIT_PREFIX = "wait:"
"""The notifier's id of a wait is its token after this (`waits.notifier_id`)."""
RECONNECT_MIN_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 5.0
"""Backoff of the connection that follows other servers' changes, while the database is away."""


class QueueService:
    """Durable executions and their long-poll task queue, as one server serves them."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.completed = CompletedCache()
        self.hits = HitCounter()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop serving requests, for wake-ups from signal handlers."""
        self._background: list[asyncio.Task[None]] = []

    @property
    def store(self) -> Store:
        assert self._store is not None, "the service is not started"
        return self._store

    async def start(self, open_store: Callable[[Settings], Store]) -> None:
        """Open the store (unless one was given) and start expiring leases on time."""
        if self._store is None:
            self._store = await asyncio.to_thread(open_store, self.settings)
        self.loop = asyncio.get_running_loop()
        renewed = await self.store.run(self.store.on_server_start, time.time())
        if renewed:
            log.info("renewed the leases of %d running task(s): their workers can still report", renewed)
        self._background.append(asyncio.create_task(self.reap_leases()))
        if self.store.shared:
            self._background.append(asyncio.create_task(self.follow_other_servers()))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._store is not None:
            await asyncio.to_thread(self._store.shutdown)

    def close_requests(self) -> None:
        """Shutdown began: release every held long-poll now."""
        self.notifier.close()

    def cap_wait(self, wait: float) -> float:
        return min(wait, self.settings.max_wait_seconds)

    # Executions

    async def register(self, body: RegisterWorkflow) -> RegisterOutcome:
        return await self.store.run(self.store.register_workflow, body, body.ir, time.time())

    def served_from_journal(self, execution_ids: list[str]) -> None:
        """Hits a run served from the journal it read: counted as if each had been a cached start."""
        now = time.time()
        for execution_id in execution_ids:
            self.hits.add(execution_id, now)
        self.metrics.cache_hits.inc(len(execution_ids))

    async def start_execution(self, body: StartExecution) -> tuple[Execution, bool]:
        """The execution of the call, held until terminal for up to `body.wait`; and whether it is new."""
        hit = self.completed.get(body.workflow_id, body.session_id, body.key)
        if hit is not None:
            self.metrics.cache_hits.inc()
            self.hits.add(hit.id, time.time())
            return hit.model_copy(update={"cached": True}), False
        input, sent = split_input(body.input, body.messages)
        outcome: StartOutcome = await self.store.run(
            self.store.start_execution, body, body.session_id, body.key, input, time.time(), sent
        )
        execution = outcome.execution
        if outcome.created:
            self.metrics.started.inc()
            if body.run_token is None:
                self.notifier.tasks_ready(1, (body.workflow_id, body.version_hash))
        elif execution.status is Status.COMPLETED:
            self.metrics.cache_hits.inc()
            self.hits.add(execution.id, time.time())
            self.completed.put(execution)
            execution = execution.model_copy(update={"cached": True})
        if body.run_token is not None and not execution.status.terminal:
            task = await self.store.run(
                self.store.claim_for_run,
                execution.id,
                body.session_id,
                body.run_token,
                self.settings.lease_seconds,
                time.time(),
            )
            if task is not None:
                return self._claimed(execution, task, body.run_token), outcome.created
        return await self.await_terminal(execution, body.wait), outcome.created

    def _claimed(self, execution: Execution, task: Task, run_token: str) -> Execution:
        """The execution as leased to the session run `run_token`: run it, then report."""
        self.metrics.claims.inc()
        update = {
            "status": Status.RUNNING,
            "attempts": task.attempt,
            "lease_expires_at": task.lease_expires_at,
            "worker_id": f"run:{run_token}",
            "claimed": task,
        }
        return execution.model_copy(update=update)

    async def write_units(self, session_id: str, run_token: str, body: WriteUnits) -> UnitsWritten:
        """Record, in one transaction, what a run that holds its session alone has run and begun."""
        units = []
        for unit in body.units:
            input, sent = split_input(unit.input, unit.messages)
            units.append(UnitToWrite(unit.key, input, sent, unit.done, unit.output))
        finished = [(report.task_id, report.lease_token, report.output) for report in body.finished]
        lease = self.settings.lease_seconds
        done, written = await self._report(
            self.store.write_units, body, session_id, run_token, lease, finished, units, time.time()
        )
        answers = []
        for unit in written:
            execution = unit.execution
            if unit.outcome.created:
                self.metrics.started.inc()
            if unit.task is not None:
                execution = self._claimed(execution, unit.task, run_token)
            elif unit.outcome.execution.status is Status.COMPLETED:
                execution = execution.model_copy(update={"cached": True})  # recorded before this write
            elif execution.status.terminal:
                self._reported(execution)  # this run completed it just now
            answers.append(execution)
        return UnitsWritten(finished=[self._reported(execution) for execution in done], units=answers)

    async def get_execution(self, execution_id: str, wait: float = 0.0) -> Execution:
        execution = await self.store.run(self.store.get_execution, execution_id)
        return await self.await_terminal(execution, wait)

    async def list_executions(
        self, session_id: str | None, status: Status | None, key: str | None, limit: int, id_prefix: str | None = None
    ) -> list[Execution]:
        return await self.store.run(self.store.list_executions, session_id, status, key, limit, id_prefix)

    async def cancel(self, execution_id: str) -> Execution:
        execution = await self.store.run(self.store.cancel_execution, execution_id, time.time())
        if execution.status is Status.CANCELLED:
            self.metrics.cancelled.inc()
            self.notifier.terminal(execution)
        return execution

    async def await_terminal(self, execution: Execution, wait: float) -> Execution:
        """Hold until the execution is terminal or `wait` runs out; never polls the store."""
        if wait <= 0 or execution.status.terminal:
            return execution
        with self.metrics.held.labels("execution_wait").track_inprogress():
            future = self.notifier.waiter(execution.id)
            done = await self.notifier.wait_terminal(future, execution.id, self.cap_wait(wait))
        if done is not None:
            return done
        return await self.store.run(self.store.get_execution, execution.id)

    async def counts(self) -> dict[Status, int]:
        return await self.store.run(self.store.count_by_status)

    # Tasks

    async def poll(self, body: PollTasks, disconnected: Callable[[], Awaitable[bool]]) -> list[Task]:
        """Claim up to `body.max_tasks` tasks, held up to `body.wait` until some are ready; [] if none."""
        with self.metrics.held.labels("task_poll").track_inprogress():
            return await self._poll(body, disconnected)

    async def _poll(self, body: PollTasks, disconnected: Callable[[], Awaitable[bool]]) -> list[Task]:
        deadline = time.monotonic() + self.cap_wait(body.wait)
        refs = frozenset((w.workflow_id, w.version_hash) for w in body.workflows)
        while True:
            # Registered before the claim reads the store, so a task started after that read wakes us.
            woken = self.notifier.poller(refs)
            try:
                outcome = await self.store.run(
                    self.store.claim,
                    body.worker_id,
                    body.workflows,
                    body.max_tasks,
                    self.settings.lease_seconds,
                    time.time(),
                )
            except BaseException:
                self._leave(woken)
                raise
            self.expired(outcome.expired)
            if outcome.tasks:
                self._leave(woken)
                if len(outcome.tasks) == body.max_tasks:
                    last = outcome.tasks[-1]  # there may be more than this poll could take
                    self.notifier.tasks_ready(1, (last.workflow_id, last.version_hash))
                self.metrics.claims.inc(len(outcome.tasks))
                return outcome.tasks
            timeout = deadline - time.monotonic()
            if outcome.next_due_at is not None:
                timeout = min(timeout, max(outcome.next_due_at - time.time(), 0.0) + 0.001)
            if (
                timeout <= 0 or not await self.notifier.wait_for_tasks(woken, timeout)
            ) and time.monotonic() >= deadline:
                self._leave(woken)
                return []
            self.notifier.drop_poller(woken)
            if self.notifier.closing:
                return []
            if await disconnected():
                # A worker that went away must not be leased a task it will never run.
                self._leave(woken)
                return []

    def _leave(self, woken: asyncio.Future[Ref | None]) -> None:
        """A poll ends: a wake-up it got but will not act on goes to the next held poll that can."""
        self.notifier.drop_poller(woken)
        if woken.done() and not self.notifier.closing:
            self.notifier.tasks_ready(1, woken.result())

    async def heartbeat(self, task_id: str, lease_token: str) -> float:
        """Extend the lease; its new expiry."""
        return await self.store.run(
            self.store.heartbeat, task_id, lease_token, self.settings.lease_seconds, time.time()
        )

    async def complete(self, task_id: str, lease_token: str, output: Any) -> Execution:
        return self._reported(await self._report(self.store.complete, task_id, lease_token, output, time.time()))

    async def fail(self, task_id: str, lease_token: str, error: str, retryable: bool) -> Execution:
        return self._reported(await self._report(self.store.fail, task_id, lease_token, error, retryable, time.time()))

    async def release(self, task_id: str, lease_token: str) -> Execution:
        execution = await self._report(self.store.release, task_id, lease_token, time.time())
        self.notifier.tasks_ready(1, (execution.workflow_id, execution.version_hash))
        return execution

    async def _report(self, method: Callable[..., T], *args: Any) -> T:
        try:
            return await self.store.run(method, *args)
        except LeaseLost:
            self.metrics.stale_reports.inc()
            raise

    def _reported(self, execution: Execution) -> Execution:
        """Count and announce the outcome of a worker's report."""
        if execution.status is Status.COMPLETED:
            self.metrics.completed.inc()
            self.completed.put(execution)
        elif execution.status is Status.FAILED:
            self.metrics.failed.inc()
        elif execution.status is Status.PENDING:
            self.metrics.retries.inc()
            self.notifier.tasks_ready(1, (execution.workflow_id, execution.version_hash))
        if execution.status.terminal:
            self.notifier.terminal(execution)
        return execution

    # Session runs

    async def take_session(self, session_id: str, holder: str, journal: bool = False) -> SessionRunInfo:
        """Fence any other run of the session; with `journal`, answer what the session holds too, read
        after the take (so nothing a fenced run could still record is missing from it but its
        in-flight units, and those only when `previous_holder` says it was alive)."""
        recorded = None
        if journal:
            run, (origin, units) = await self.store.run(
                self.store.take_session_and_journal, session_id, holder, self.settings.lease_seconds, time.time()
            )
            recorded = _journal(session_id, origin, units)
        else:
            run = await self.store.run(
                self.store.take_session, session_id, holder, self.settings.lease_seconds, time.time()
            )
        return SessionRunInfo(
            journal=recorded,
            session_id=session_id,
            run_token=run.token,
            lease_seconds=self.settings.lease_seconds,
            lease_expires_at=run.lease_expires_at,
            previous_holder=run.previous_holder,
            forked_from=run.forked_from,
            fork_until=run.fork_until,
        )

    async def journal(self, session_id: str) -> Journal:
        """The session's units in recorded order (none for a session with nothing stored)."""
        return _journal(session_id, *await self.store.run(self.store.journal, session_id))

    async def renew_session(self, session_id: str, run_token: str) -> float:
        return await self.store.run(
            self.store.renew_session, session_id, run_token, self.settings.lease_seconds, time.time()
        )

    async def end_session_run(self, session_id: str, run_token: str, hits: list[str] | None = None) -> None:
        """End the run; `hits` are the executions it served from the journal it read."""
        if hits:
            self.served_from_journal(hits)
        await self.store.run(self.store.end_session_run, session_id, run_token)

    async def hold_presence(self, session_id: str, run_token: str, disconnected: Awaitable[Any]) -> None:
        """Hold a live run's presence request until its connection closes: then the run is gone.

        A killed agent's connection closes at once, so what it held is claimable by the next run
        at once, rather than when its leases run out. A server shutting down lets go without that.
        Only the session's current run may hold it (`SessionTakenOver` otherwise, at once).
        """
        await self.renew_session(session_id, run_token)
        closing = asyncio.ensure_future(self.notifier.wait_closing())
        gone = asyncio.ensure_future(disconnected)
        try:
            await asyncio.wait({closing, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            gone.cancel()
        if self.notifier.closing:
            return
        requeued = await self.store.run(self.store.run_gone, session_id, run_token, time.time())
        self.expired(requeued, lease=False)

    # Leases

    def expired(self, executions: list[Execution], lease: bool = True) -> None:
        """Count and announce tasks whose holder is gone (`lease`: its lease ran out): requeued (an
        agent run's own: INTERRUPTED), or FAILED on the last attempt."""
        for execution in executions:
            if lease:
                self.metrics.lease_expiries.inc()
            if execution.status.terminal:
                self.metrics.failed.inc()
                self.notifier.terminal(execution)
            else:
                self.notifier.requeued(execution)
                # An INTERRUPTED one is no worker's work: only a requeued one wakes the polls.
                if execution.status is Status.PENDING:
                    self.notifier.tasks_ready(1, (execution.workflow_id, execution.version_hash))

    async def follow_other_servers(self) -> None:
        """Wake this server's long-polls for what other servers on the same database commit.

        The store's notifications carry the changes; a re-check on every reconnect and every few
        seconds covers any notification lost with a dropped connection. Deletions lost that way
        are re-checked on reconnect: the cache drops what the store no longer has. Reconnects by itself.
        """
        delay = RECONNECT_MIN_SECONDS
        while True:
            connected = False
            try:
                async for change in self.store.changes():
                    delay = RECONNECT_MIN_SECONDS
                    if change is None:
                        # The first re-check of a connection follows its LISTEN: a deletion committed
                        # after it arrives as a notification, one before it is found here.
                        await self.recheck(cache=not connected)
                        connected = True
                    elif change.kind == "ready":
                        self.notifier.tasks_ready(1 if change.ref else None, change.ref)
                    elif change.kind == "done" and change.execution_id:
                        self.notifier.ended_elsewhere(change.execution_id)
                    elif change.kind == "deleted" and change.execution_id:
                        self.completed.discard_id(change.execution_id)
            except Exception as e:  # the database went away: try again, a little later each time
                log.warning(
                    "not following other servers' changes (%s: %s); reconnecting in %.1f s",
                    type(e).__name__,
                    str(e).strip(),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def recheck(self, cache: bool = False) -> None:
        """What lost notifications would have said, one store read each, never one per held request:
        polls that can claim ready work are woken (as many as there are tasks), waiters whose
        execution ended elsewhere read it; with `cache`, cached results deleted elsewhere are dropped."""
        if cache and (cached := self.completed.ids()):
            present = set(await self.store.run(self.store.present_among, cached))
            for execution_id in cached:
                if execution_id not in present:
                    self.completed.discard_id(execution_id)
        if held := self.notifier.held_refs():
            refs = [WorkflowRef(workflow_id=w, version_hash=v) for w, v in sorted(held)]
            for ref, count in (await self.store.run(self.store.ready_by_workflow, refs, time.time())).items():
                self.notifier.tasks_ready(count, ref)
        waited = self.notifier.waited_ids()
        tokens = [name.removeprefix(WAIT_PREFIX) for name in waited if name.startswith(WAIT_PREFIX)]
        executions = [name for name in waited if not name.startswith(WAIT_PREFIX)]
        if executions:
            for execution_id in await self.store.run(self.store.terminal_among, executions):
                self.notifier.ended_elsewhere(execution_id)
        if tokens:
            for token in await self.store.run(self.store.waits_over_among, tokens):
                self.notifier.ended_elsewhere(WAIT_PREFIX + token)

    async def reap_leases(self) -> None:
        """Expire leases on time even when no worker polls, so an abandoned call ends FAILED.

        Sleeps until the earliest lease runs out; a lease granted meanwhile runs out later than
        `lease_seconds` from now, so waking at least that often misses none.
        """
        while True:
            delay = self.settings.lease_seconds
            try:
                expired, next_expiry = await self.store.run(self.store.expire_leases, time.time())
            except StoreUnavailable as e:  # the database is away: said once a period, without a traceback
                log.warning("expiring leases failed (%s); trying again in %.1f s", e, delay)
            except Exception:  # a failing disk or a bug must not stop lease expiry for good
                log.exception("expiring leases failed; trying again in %.1f s", delay)
            else:
                self.expired(expired)
                if next_expiry is not None:
                    delay = min(delay, max(next_expiry - time.time(), 0.0) + 0.01)
            await asyncio.sleep(delay)


def _journal(session_id: str, origin: tuple[str, int | None] | None, units: list[JournalUnit]) -> Journal:
    forked_from, fork_until = origin or (None, None)
    return Journal(session_id=session_id, forked_from=forked_from, fork_until=fork_until, units=units)
