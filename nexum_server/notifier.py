"""Long-poll wake-ups: how a held request learns, without polling, that its answer is ready.

Everything here runs on the server's event loop, so checking and registering are atomic with
respect to notifications. A request registers its future *before* it reads the store; a change
committed after that read is always followed by a notification that resolves the future. An
execution that became terminal just before its waiter registered is found in `recent`.

With several servers on one database, changes committed by another server arrive as that
database's notifications (`QueueService.follow_other_servers`): `tasks_ready()` for new work, and
`ended_elsewhere()` for an execution that became terminal there, whose waiters then read it.
A wait (`waits.py`) is waited on by the id `wait:<token>`, and woken by `ended_elsewhere()` when it
is resolved, here or on another server: its holds then read it from the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from .models import Execution

RECENT_TERMINAL = 10_000
"""Terminal executions remembered for waiters that register just after the completion."""


Ref = tuple[str, str]
"""(workflow_id, version_hash): what a task needs of the worker that claims it."""


class Notifier:
    def __init__(self) -> None:
        self._pollers: dict[asyncio.Future[Ref | None], frozenset[Ref]] = {}
        """Held polls, oldest first (a dict keeps insertion order), with the workflow versions each can run."""
        self._waiters: dict[str, set[asyncio.Future[Execution]]] = {}
        self._recent: OrderedDict[str, Execution] = OrderedDict()
        self._ended_elsewhere: OrderedDict[str, None] = OrderedDict()
        self.closing = False
        self._closed = asyncio.Event()

    def close(self) -> None:
        """The server is shutting down: release every held request now, so none holds up the exit."""
        self.closing = True
        self._closed.set()
        self.tasks_ready()
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)  # type: ignore[arg-type]

    async def wait_closing(self) -> None:
        await self._closed.wait()

    def tasks_ready(self, count: int | None = None, ref: Ref | None = None) -> None:
        """New claimable work: wake `count` held polls, oldest first, or every one of them; with
        `ref`, only polls that can run that workflow version.

        One new task wakes one poll that can claim it: waking them all would have every other
        worker's poll read the store for nothing, and waking one of another workflow would leave the
        task waiting out a long-poll. A poll that is woken and then leaves without claiming hands the
        wake-up on (`QueueService._leave`, with the future's `ref`), so none is lost.
        """
        chosen = []
        for future, refs in self._pollers.items():  # stops at the first match in the common case
            if ref is None or ref in refs:
                chosen.append(future)
                if count is not None and len(chosen) >= count:
                    break
        for future in chosen:
            del self._pollers[future]
            if not future.done():
                future.set_result(ref)

    async def wait_for_tasks(self, registered: asyncio.Future[Ref | None], timeout: float) -> bool:
        """Wait on a future from `poller()`; True if woken, False on timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(registered), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._pollers.pop(registered, None)

    def drop_poller(self, registered: asyncio.Future[Ref | None]) -> None:
        self._pollers.pop(registered, None)

    def poller(self, refs: frozenset[Ref] = frozenset()) -> asyncio.Future[Ref | None]:
        """A held poll's future, woken with the `ref` of the work, or None (anything may be ready)."""
        future: asyncio.Future[Ref | None] = asyncio.get_running_loop().create_future()
        if self.closing:
            future.set_result(None)
        else:
            self._pollers[future] = refs
        return future

    def held_refs(self) -> set[Ref]:
        """The workflow versions some held poll can run."""
        return set().union(*self._pollers.values()) if self._pollers else set()

    def terminal(self, execution: Execution) -> None:
        """An execution reached a terminal state: hand it to everyone waiting on it."""
        self._recent[execution.id] = execution
        self._recent.move_to_end(execution.id)
        while len(self._recent) > RECENT_TERMINAL:
            self._recent.popitem(last=False)
        for future in self._waiters.pop(execution.id, ()):
            if not future.done():
                future.set_result(execution)

    def requeued(self, execution: Execution) -> None:
        """A held execution went back to PENDING (its holder is gone): wake its waiters, so a
        duplicate start held on it claims it now instead of at the end of its wait."""
        for future in self._waiters.pop(execution.id, ()):
            if not future.done():
                future.set_result(execution)

    def ended_elsewhere(self, execution_id: str) -> None:
        """Another server made the execution terminal: its waiters here stop waiting and read it."""
        self._ended_elsewhere[execution_id] = None
        self._ended_elsewhere.move_to_end(execution_id)
        while len(self._ended_elsewhere) > RECENT_TERMINAL:
            self._ended_elsewhere.popitem(last=False)
        for future in self._waiters.pop(execution_id, ()):
            if not future.done():
                future.set_result(None)  # type: ignore[arg-type]

    def waited_ids(self) -> list[str]:
        """Executions someone is waiting on."""
        return list(self._waiters)

    def waiter(self, execution_id: str) -> asyncio.Future[Execution]:
        """A future resolved with the execution once it is terminal (at once if it just was) or
        requeued, or with None once it ended on another server (the waiter then reads it)."""
        future: asyncio.Future[Execution] = asyncio.get_running_loop().create_future()
        if execution_id in self._recent:
            future.set_result(self._recent[execution_id])
        elif execution_id in self._ended_elsewhere or self.closing:
            future.set_result(None)  # type: ignore[arg-type]
        else:
            self._waiters.setdefault(execution_id, set()).add(future)
        return future

    def drop_waiter(self, execution_id: str, future: asyncio.Future[Any]) -> None:
        """A waiter that will not wait after all (what it waits for is over already)."""
        waiters = self._waiters.get(execution_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[execution_id]

    async def wait_terminal(
        self, future: asyncio.Future[Execution], execution_id: str, timeout: float
    ) -> Execution | None:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(execution_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[execution_id]
