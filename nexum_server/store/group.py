"""Group commit: store calls that arrive together run in one transaction, one savepoint each.

Under load most of a SQLite store's time is COMMIT (the WAL write) and the hop to and from its
thread. Calls queue up here while the store thread is busy; the thread then takes all of them,
runs each inside its own SAVEPOINT (a call that fails is rolled back alone, exactly as if it had
run by itself), COMMITs once, and hands every answer back to the event loop in one wake-up. No
answer leaves before the COMMIT that made it durable; if the COMMIT fails, every call in the group
fails with that error. A call that finds the queue empty runs alone, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

Call = tuple[Callable[[], Any], "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", bool, Any]


class GroupCommit:
    def __init__(self, executor: Executor, db: Callable[[], sqlite3.Connection]) -> None:
        self._executor = executor
        self._db = db
        self._queue: list[Call] = []
        self._lock = threading.Lock()
        self._draining = False

    async def run(self, call: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queue.append((call, future))
            idle, self._draining = not self._draining, True
        if idle:
            self._executor.submit(self._drain, loop)
        return await future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store thread: run what is queued, group by group, until the queue is empty."""
        try:
            while True:
                with self._lock:
                    group, self._queue = self._queue, []
                    if not group:
                        self._draining = False
                        return
                outcomes = self._alone(group[0]) if len(group) == 1 else self._together(group)
                loop.call_soon_threadsafe(_deliver, outcomes)
        except BaseException:
            # The loop is gone (shutdown): let a later call start draining afresh.
            with self._lock:
                self._draining = False
            raise

    @staticmethod
    def _alone(call: Call) -> list[Outcome]:
        work, future = call
        try:
            return [(future, True, work())]
        except Exception as e:
            return [(future, False, e)]

    def _together(self, group: list[Call]) -> list[Outcome]:
        db = self._db()
        outcomes: list[Outcome] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for work, future in group:
                db.execute("SAVEPOINT call")
                try:
                    outcomes.append((future, True, work()))
                except Exception as e:
                    db.execute("ROLLBACK TO call")
                    outcomes.append((future, False, e))
                db.execute("RELEASE call")
            db.execute("COMMIT")
        except Exception as e:  # the transaction itself failed: nothing in it counts
            if db.in_transaction:
                # A failed ROLLBACK: the connection is broken; the error below says why.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return [(future, False, e) for _, future in group]
        return outcomes


def _deliver(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.done():  # the request went away meanwhile
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
