"""The store contract: everything the API layer may ask of durable state.

A store owns its connection(s) and the thread(s) that use them: the API layer never calls a store
method on the event loop, it goes through `await store.run(method, ...)`, so a slow disk never
stalls other requests. Every method is one transaction; every state change is one guarded
statement, so a lost race shows up as zero rows changed (a `LeaseLost` or a re-read), never as two
results. `SQLiteStore` (one server per file) and `PostgresStore` (several servers on one database) implement it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ..config import Settings
from ..errors import InvalidValue, NexumError, NotFound, StoreUnavailable, WaitOver
from ..journal import Sent
from ..models import (
    CallSummary,
    CreateWait,
    Execution,
    JournalUnit,
    RegisterOutcome,
    SessionSummary,
    Status,
    Task,
    Wait,
    WaitRequest,
    WaitStatus,
    WorkflowRef,
)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 5
"""Bumped whenever the tables change; `open()` migrates older files and refuses newer ones."""

CallKey = tuple[str, str, str]
"""(workflow_id, session_id, key): what identifies a call, and its cached result."""


@dataclass(frozen=True)
class StartOutcome:
    execution: Execution
    created: bool
    """False when the (workflow, session, key) already had a live execution."""


@dataclass(frozen=True)
class UnitToWrite:
    """A new unit of a session run, for `Store.write_units`."""

    key: str
    input: Any
    sent: Sent | None
    done: bool
    output: Any


@dataclass(frozen=True)
class WrittenUnit:
    outcome: StartOutcome
    execution: Execution
    """As it stands after the write: completed, claimed by the run, or as another holder left it."""
    task: Task | None
    """The run's lease on it, when it is claimed and not done."""


@dataclass(frozen=True)
class ClaimOutcome:
    tasks: list[Task]
    expired: list[Execution]
    """Executions whose lease had run out: back to PENDING, or FAILED when no attempt was left."""
    next_due_at: float | None
    """Earliest moment something not claimable now becomes claimable (retry or lease expiry)."""


@dataclass(frozen=True)
class SessionRun:
    """A run that took its session: `token` fences its in-process executions."""

    session_id: str
    token: str
    lease_expires_at: float
    previous_holder: str | None
    """The run that held the session until now, if its lease had not run out (a live run)."""
    forked_from: str | None = None
    fork_until: int | None = None


@dataclass(frozen=True)
class CopiedUnit:
    """A completed unit written into another session (a fork, an import)."""

    workflow_id: str
    version_hash: str
    key: str
    input: Any
    result: Any
    sent: list[str] | None
    """A model request's message hashes, in order; their messages are stored or come with the copy."""
    started_at: float | None = None
    completed_at: float | None = None
    worker_id: str | None = None


class Store(ABC):
    """Durable executions and their task queue. Subclasses hold the dialect's SQL."""

    threads = 1
    """Worker threads of the store's executor; SQLite serialises writers anyway."""
    unavailable_errors: tuple[type[Exception], ...] = ()
    """The driver's errors that mean "busy or unreachable, try later", answered as 503."""
    shared = False
    """True when several servers may use the database at once: each follows the others' `changes()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="nexum-store")

    async def run(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store method in the store's executor, off the event loop."""
        try:
            return await self._execute(functools.partial(method, *args, **kwargs))
        except NexumError:
            raise
        except Exception as e:
            known = self.translate(e)
            if known is None:
                raise
            raise known from e

    def translate(self, error: Exception) -> NexumError | None:
        """The named error a driver's error means, or None for a bug (a 500 in the error shape)."""
        if isinstance(error, self.unavailable_errors):
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]  # hints stay in the log
            return StoreUnavailable(f"the database cannot be used right now ({reason}); try again")
        return None

    async def read(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read that may be slow (the web page's session counts) where it holds up no state
        change; the store's own executor unless a dialect has a better place."""
        return await self.run(method, *args, **kwargs)

    async def _execute(self, call: Callable[[], T]) -> T:
        """One hop to the store's executor and back; a store may group calls instead."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def start(self) -> None:
        """Open the store on its own executor thread."""
        self._executor.submit(self.open).result()

    def shutdown(self) -> None:
        """Close the store from outside its executor, after in-flight calls finish."""
        self._executor.submit(self.close).result()
        self._executor.shutdown(wait=True)

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data is, for messages: a file path, or a URL without its password."""

    def announce(self, url: str) -> None:  # noqa: B027 - a hook that does nothing by default, not abstract
        """The server listens at `url` (a SQLite store names it to a second server on its file)."""

    async def changes(self) -> AsyncIterator[Any]:
        """Changes other servers commit, for a `shared` store (see `PostgresStore.changes`)."""
        raise NotImplementedError(f"{type(self).__name__} is used by one server only")
        yield  # an async generator, like the implementations

    @abstractmethod
    def open(self) -> None:
        """Create or migrate the schema; raise `SchemaError` for a file this server cannot use."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def register_workflow(self, ref: WorkflowRef, ir: dict[str, Any], now: float) -> RegisterOutcome:
        """Store a workflow version; answer NEW, IDENTICAL or CHANGED."""

    @abstractmethod
    def start_execution(
        self, ref: WorkflowRef, session_id: str, key: str, input: Any, now: float, sent: Sent | None = None
    ) -> StartOutcome:
        """Create the execution of (workflow, session, key) unless a live one exists.

        With `sent`, its message bodies are stored (once each) and its list of hashes recorded with
        the new execution, in the same transaction; `InvalidValue` when a hash is neither stored nor sent.

        A FAILED or CANCELLED execution is not live: starting again makes a new one and keeps the
        old one in the history. Raises `WorkflowNotFound` for an unregistered version.
        """

    def write_units(
        self,
        ref: WorkflowRef,
        session_id: str,
        run_token: str,
        lease_seconds: float,
        finished: list[tuple[str, str, Any]],
        units: list[UnitToWrite],
        now: float,
    ) -> tuple[list[Execution], list[WrittenUnit]]:
        """Completions of tasks the run holds, as (task_id, lease_token, output), then each new unit
        started, claimed by the run and, when done, completed: one transaction, all or nothing
        (`SessionTakenOver` when another run holds the session, `LeaseLost` for a lost lease)."""
        with self._tx():
            done = [self.complete(task_id, token, output, now) for task_id, token, output in finished]
            written = []
            for unit in units:
                outcome = self.start_execution(ref, session_id, unit.key, unit.input, now, unit.sent)
                execution, task = outcome.execution, None
                if not execution.status.terminal:
                    task = self.claim_for_run(execution.id, session_id, run_token, lease_seconds, now)
                if task is not None and unit.done:
                    execution, task = self.complete(task.task_id, task.lease_token, unit.output, now), None
                written.append(WrittenUnit(outcome, execution, task))
        return done, written

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Any]:
        """A transaction: the one the calling method is in, or a new one (committed at its end)."""

    @abstractmethod
    def get_execution(self, execution_id: str) -> Execution: ...

    @abstractmethod
    def list_executions(
        self,
        session_id: str | None,
        status: Status | None,
        key: str | None,
        limit: int,
        id_prefix: str | None = None,
    ) -> list[Execution]:
        """Newest first; `id_prefix` keeps those whose id starts with it (`nexum show` takes a prefix)."""

    @abstractmethod
    def terminal_among(self, execution_ids: list[str]) -> list[str]:
        """Those of `execution_ids` that are terminal (a re-check for waiters on other servers' work)."""

    @abstractmethod
    def present_among(self, execution_ids: list[str]) -> list[str]:
        """Those of `execution_ids` still stored (a re-check of a cache after lost deletions)."""

    @abstractmethod
    def ready_by_workflow(self, workflows: list[WorkflowRef], now: float) -> dict[tuple[str, str], int]:
        """Claimable tasks now, per (workflow_id, version_hash) among `workflows` (a re-check for held polls)."""

    @abstractmethod
    def cancel_execution(self, execution_id: str, now: float) -> Execution:
        """PENDING or RUNNING becomes CANCELLED; a CANCELLED one is returned as it is."""

    @abstractmethod
    def claim(
        self, worker_id: str, workflows: list[WorkflowRef], limit: int, lease_seconds: float, now: float
    ) -> ClaimOutcome:
        """Requeue (or fail) tasks whose lease ran out, then lease up to `limit` claimable tasks."""

    @abstractmethod
    def on_server_start(self, now: float) -> int:
        """A server starts on this store: give RUNNING tasks (and session runs) a fresh lease if no
        other server kept the clock.

        No worker can heartbeat while no server is up, so leases must not run out for that time:
        their workers may still be running or reporting. Returns how many leases were renewed.
        A store shared by several live servers renews nothing when another one is alive.
        """

    @abstractmethod
    def expire_leases(self, now: float) -> tuple[list[Execution], float | None]:
        """Requeue (or fail) tasks whose lease ran out; also return the next lease expiry, if any."""

    @abstractmethod
    def heartbeat(self, task_id: str, lease_token: str, lease_seconds: float, now: float) -> float:
        """Extend the lease; return its new expiry."""

    @abstractmethod
    def complete(self, task_id: str, lease_token: str, output: Any, now: float) -> Execution: ...

    @abstractmethod
    def fail(self, task_id: str, lease_token: str, error: str, retryable: bool, now: float) -> Execution:
        """Schedule a retry with backoff while attempts remain and `retryable`, else FAIL."""

    @abstractmethod
    def release(self, task_id: str, lease_token: str, now: float) -> Execution:
        """Give a task back untried (a worker shutting down): claimable at once, attempt not counted."""

    @abstractmethod
    def count_by_status(self) -> dict[Status, int]: ...

    @abstractmethod
    def take_session(self, session_id: str, holder: str, lease_seconds: float, now: float) -> SessionRun:
        """Make a new run the session's current run, at once, whatever held it before.

        From here on only the new token may claim the session's in-process executions. What a
        previous run holds stays its own until it reports, or until it is gone (`run_gone`).
        """

    def take_session_and_journal(
        self, session_id: str, holder: str, lease_seconds: float, now: float
    ) -> tuple[SessionRun, tuple[tuple[str, int | None] | None, list[JournalUnit]]]:
        """`take_session`, then `journal` read after it, in one call on the store's thread."""
        return self.take_session(session_id, holder, lease_seconds, now), self.journal(session_id)

    @abstractmethod
    def renew_session(self, session_id: str, token: str, lease_seconds: float, now: float) -> float:
        """Extend the run's lease on its session; `SessionTakenOver` once another run took it."""

    @abstractmethod
    def end_session_run(self, session_id: str, token: str) -> None:
        """The run finished: forget it (a no-op once another run took the session)."""

    @abstractmethod
    def run_gone(self, session_id: str, token: str, now: float) -> list[Execution]:
        """The run's process is gone: what it held is INTERRUPTED at once (FAILED on its last
        attempt), for the session's next run to claim, and the run no longer counts as live.
        Returns those executions."""

    @abstractmethod
    def claim_for_run(
        self, execution_id: str, session_id: str, token: str, lease_seconds: float, now: float
    ) -> Task | None:
        """Lease a PENDING or INTERRUPTED in-process execution to the session's current run.

        `None` when it is terminal or someone holds it (a live previous run finishes what it holds).
        `SessionTakenOver` when `token` is not the session's current run.
        """

    # --- sessions, forget and retention: the web page, `nexum sessions`, `nexum forget` ------------

    @abstractmethod
    def add_hits(self, hits: list[tuple[str, int, float]]) -> None:
        """Add counted cached hits, as (execution_id, hits, time of the last one); gone ids are skipped."""

    @abstractmethod
    def list_sessions(self, limit: int, after: tuple[float, str] | None, contains: str | None) -> list[SessionSummary]:
        """Sessions by latest activity, newest first; `after` is the (last_activity, session_id) of
        the previous page's last row; `contains` keeps session ids holding that text."""

    @abstractmethod
    def get_session(self, session_id: str) -> SessionSummary:
        """One session's counts; `NotFound` when nothing is stored under that id."""

    @abstractmethod
    def list_calls(self, session_id: str, limit: int, before: int | None) -> tuple[list[CallSummary], int | None]:
        """A session's executions, newest first, without results; and the cursor of the next page
        (None on the last one). `before` is a cursor this method returned."""

    @abstractmethod
    def forget_session(self, session_id: str, now: float) -> list[CallKey]:
        """Delete every execution of the session and return what was deleted: INTERRUPTED ones too
        (the next run of the session runs those calls from the start).

        Refuses with `SessionBusy`, deleting nothing, while any is PENDING or RUNNING or an agent
        run holds the session (its lease not run out at `now`): a run in progress would lose
        results it is about to read. `NotFound` when nothing is stored.
        """

    @abstractmethod
    def delete_terminal_before(self, cutoff: float, limit: int) -> list[CallKey]:
        """Delete up to `limit` terminal executions that ended before `cutoff`, oldest first."""

    # --- the journal: messages stored once, forks, exports --------------------------------------------

    @abstractmethod
    def journal(self, session_id: str) -> tuple[tuple[str, int | None] | None, list[JournalUnit]]:
        """The session's fork origin (forked_from, fork_until), if any, and every execution in recorded order."""

    @abstractmethod
    def session_sent(self, session_id: str) -> list[tuple[str, str | None, list[str]]]:
        """(id, base, added) of every execution of the session with a list of messages, in recorded order."""

    @abstractmethod
    def messages(self, hashes: list[str]) -> dict[str, Any]:
        """The stored bodies of those of `hashes` that are stored."""

    @abstractmethod
    def session_origin(self, session_id: str) -> tuple[str, int | None] | None:
        """(forked_from, fork_until) of a forked or imported session."""

    @abstractmethod
    def workflows_of(self, session_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(workflow_id, version_hash, ir) of every workflow version the session's executions use."""

    @abstractmethod
    def copy_units(
        self,
        session_id: str,
        units: list[CopiedUnit],
        bodies: list[tuple[str, str]],
        workflows: list[tuple[str, str, dict[str, Any]]],
        origin: tuple[str, int | None] | None,
        now: float,
    ) -> int:
        """Write `units` as the new session's completed executions, in order, with the message
        bodies (hash, canonical JSON) and workflow versions they need, in one transaction.

        `SessionBusy` when anything is stored under `session_id` already."""

    @abstractmethod
    def stored_bytes(self) -> dict[str, int]:
        """What the journal holds: messages, their bytes, the executions' bytes, session references."""

    # --- waits: one statement per change, the same logic on both dialects ------------------------

    sql: Any
    """The dialect's module of SQL text (`sqlite_sql`, `postgres_sql`): the waits' statements share names."""

    @abstractmethod
    def _rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        """Run one statement on its own (its own transaction); the rows it returns, [] for none."""

    def create_wait(self, session_id: str, body: CreateWait, now: float) -> Wait:
        """The wait of (session, key): made now with a new token, or the one made before (`created` False).

        Insert first: the UNIQUE (session_id, key) decides between two creates, and a new wait is
        one statement. The timeout counts from the first create, so a replay does not restart it.
        """
        params = {
            # Hex, so a token never begins with "-": `nexum approve TOKEN` would read it as an option.
            "token": secrets.token_hex(24),
            "session_id": session_id,
            "key": body.key,
            "name": body.name,
            "request": _dump_json(body.request.model_dump(mode="json")),
            "now": now,
            "timeout_seconds": body.timeout_seconds,
            "origin": getattr(self, "origin", ""),
        }
        rows = self._rows(self.sql.CREATE_WAIT, params)
        if rows:
            return _wait(rows[0]).model_copy(update={"created": True})
        self.expire_waits(now)
        rows = self._rows(self.sql.SELECT_WAIT_BY_KEY, params)
        if not rows:  # forgotten between the two statements: nothing to return but the truth
            raise StoreUnavailable(f"the wait {body.key!r} of session {session_id!r} was deleted while made; try again")
        return _wait(rows[0])

    def get_wait(self, token: str, now: float) -> Wait:
        self.expire_waits(now)
        rows = self._rows(self.sql.SELECT_WAIT, {"token": token})
        if not rows:
            raise NotFound("no wait has this token: it is wrong, or its session was forgotten")
        return _wait(rows[0])

    def resolve_wait(
        self, token: str, status: WaitStatus, payload: Any, error: str | None, by: str, now: float
    ) -> Wait:
        """End a WAITING wait; `WaitOver` (changing nothing) once it was resolved or its time is up."""
        params = {
            "token": token,
            "status": status.value,
            "by": by,
            "now": now,
            "error": error,
            "payload": None if status is not WaitStatus.RESOLVED else _dump_json(payload),
            "origin": getattr(self, "origin", ""),
        }
        rows = self._rows(self.sql.RESOLVE_WAIT, params)
        if rows:
            return _wait(rows[0])
        current = self.get_wait(token, now)
        raise WaitOver(
            f"this wait is already {current.status.value} (by {current.resolved_by}); the first resolution stands"
        )

    def list_waits(self, status: WaitStatus | None, session_id: str | None, limit: int, now: float) -> list[Wait]:
        """Newest first."""
        self.expire_waits(now)
        params = {"status": status.value if status else None, "session_id": session_id, "limit": limit}
        return [_wait(row) for row in self._rows(self.sql.LIST_WAITS, params)]

    def expire_waits(self, now: float) -> list[str]:
        """WAITING waits whose timeout ran out become TIMED_OUT; their tokens."""
        return [
            row["token"]
            for row in self._rows(self.sql.EXPIRE_WAITS, {"now": now, "origin": getattr(self, "origin", "")})
        ]

    def waits_over_among(self, tokens: list[str]) -> list[str]:
        """Those of `tokens` whose wait is over (a re-check for holds on other servers' resolutions)."""
        return [row["token"] for row in self._rows(self.sql.OVER_AMONG, {"tokens": self._list_param(tokens)})]

    def _list_param(self, values: list[str]) -> Any:
        """A list as one statement parameter: JSON text, unless the dialect binds arrays."""
        return json.dumps(values)

    def delete_waits_before(self, cutoff: float, limit: int) -> None:
        """Retention: delete up to `limit` waits that ended before `cutoff`; never a WAITING one."""
        self._rows(self.sql.DELETE_WAITS_BEFORE, {"cutoff": cutoff, "limit": limit})


def _dump_json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise InvalidValue("NaN and Infinity are not JSON; send null or a string instead") from e


def _wait(row: Any) -> Wait:
    return Wait(
        token=row["token"],
        session_id=row["session_id"],
        key=row["key"],
        name=row["name"],
        status=WaitStatus(row["status"]),
        request=WaitRequest.model_validate_json(row["request"]),
        payload=json.loads(row["payload"]) if row["payload"] is not None else None,
        error=row["error"],
        resolved_by=row["resolved_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        resolved_at=row["resolved_at"],
    )
