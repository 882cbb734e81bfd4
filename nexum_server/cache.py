"""Completed executions kept in memory, so a cached call is answered without touching the store;
and the hits on them, counted in memory and written to the store in batches (`HitCounter`).

A COMPLETED execution never changes again (cancel refuses it, a new attempt only follows FAILED or
CANCELLED), so a copy taken after its commit stays true for as long as the server runs, and for
every server on the same database. Entries go in only after the store has committed them: the
cache can make a hit faster, never make a result exist that the store does not have; an execution
deleted from the store (a forgotten session, retention) is discarded from it by the same server.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from .models import Execution, Status

if TYPE_CHECKING:
    from .store import Store

CACHE_ENTRIES = 20_000
CACHE_MAX_RESULT_BYTES = 64 * 1024
"""Larger results are served from the store: a few big pages must not push out many small ones."""

Key = tuple[str, str, str]


class CompletedCache:
    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._items: OrderedDict[Key, Execution] = OrderedDict()
        self._keys: dict[str, Key] = {}
        """Execution id to call key, for deletions another server announces by id."""

    def get(self, workflow_id: str, session_id: str, key: str) -> Execution | None:
        found = self._items.get((workflow_id, session_id, key))
        if found is not None:
            self._items.move_to_end((workflow_id, session_id, key))
        return found

    def discard(self, workflow_id: str, session_id: str, key: str) -> None:
        """The execution was deleted (forgotten or retained away): its call must run again."""
        gone = self._items.pop((workflow_id, session_id, key), None)
        if gone is not None:
            self._keys.pop(gone.id, None)

    def discard_id(self, execution_id: str) -> None:
        """Another server deleted the execution."""
        k = self._keys.pop(execution_id, None)
        if k is not None:
            self._items.pop(k, None)

    def ids(self) -> list[str]:
        """The ids of the cached executions (a re-check after lost deletions)."""
        return list(self._keys)

    def put(self, execution: Execution) -> None:
        if (
            execution.status is not Status.COMPLETED
            or self.entries <= 0
            or _size(execution.result) > CACHE_MAX_RESULT_BYTES
        ):
            return
        k = (execution.workflow_id, execution.session_id, execution.key)
        self._items[k] = execution
        self._items.move_to_end(k)
        self._keys[execution.id] = k
        while len(self._items) > self.entries:
            self._keys.pop(self._items.popitem(last=False)[1].id, None)


def _size(value: object) -> int:
    """Rough size of a result: its text, or the text of its top-level values."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(v) if isinstance(v, str) else 64 for v in value.values())
    return 64


class HitCounter:
    """Cached hits per execution, counted in memory on the hot path and written in batches."""

    def __init__(self) -> None:
        self._pending: dict[str, list[float]] = {}

    def add(self, execution_id: str, now: float) -> None:
        entry = self._pending.get(execution_id)
        if entry is None:
            self._pending[execution_id] = [1, now]
        else:
            entry[0] += 1
            entry[1] = now

    async def flush(self, store: Store) -> None:
        """Write what was counted; on failure it is kept for the next flush."""
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        try:
            await store.run(store.add_hits, [(i, int(n), at) for i, (n, at) in taken.items()])
        except BaseException:
            for execution_id, (n, at) in taken.items():
                entry = self._pending.setdefault(execution_id, [0, at])
                entry[0] += n
                entry[1] = max(entry[1], at)
            raise
