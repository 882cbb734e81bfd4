"""The PostgreSQL store: several servers on one database, each with a pool of connections.

Calls arrive on the store's executor threads (as with SQLite), each borrowing a connection from a
psycopg pool for one method. Connections are in autocommit mode: most methods are one statement,
which PostgreSQL runs as its own transaction; the few that read then change open one explicitly.
The wake-ups other servers need travel as notifications (`LISTEN`/`NOTIFY`) sent by the changing
statement itself, read by `changes()` on one more connection held by the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, LiteralString, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from ..errors import (
    ConfigError,
    InvalidValue,
    LeaseLost,
    NexumError,
    NotFound,
    SchemaError,
    SessionBusy,
    SessionTakenOver,
    StoreUnavailable,
    WorkflowNotFound,
)
from ..journal import Sent, SentRow, check_sent_after, encode_sent
from ..models import CallSummary, Execution, JournalUnit, RegisterOutcome, SessionSummary, Status, Task, WorkflowRef
from . import postgres_sql as sql
from .base import SCHEMA_VERSION, CallKey, ClaimOutcome, CopiedUnit, SessionRun, StartOutcome, Store

# Rows decode the same way on both backends.
from .sqlite import (
    CALL_ERROR_CHARS,
    CALL_INPUT_CHARS,
    _call,
    _copy_params,
    _dump,
    _execution,
    _refuse_waiting,
    _sent_params,
    _session,
    _task,
    _unit,
    _unknown_message,
)

T = TypeVar("T")

CONNECTIONS = 8
"""Pool size, and threads of the store's executor: one connection per call in flight."""
CONNECT_TIMEOUT_SECONDS = 5
"""How long opening one connection may take before the database counts as unreachable."""
POOL_WAIT_SECONDS = 2.0
"""How long a call waits for a pooled connection (the database is down) before it is answered 503."""
RECONNECT_GIVE_UP_SECONDS = 3.0
"""The pool's reconnection backoff (1 s, 2 s, ...) is abandoned after this, and the next call
starts a fresh attempt at once: a database back after a long outage is used within seconds."""
LOCK_TIMEOUT = "5s"
"""Longest a statement waits for a lock held by another connection (as SQLite's busy timeout)."""
RECHECK_SECONDS = 1.0
"""How often `changes()` yields a re-check: the longest a lost notification delays a wake-up."""
SERVER_ALIVE_SECONDS = 10.0
"""A server seen by the database within this long is alive (it checks in every `RECHECK_SECONDS`)."""
START_RETRIES = 3
"""A start whose live execution ended between its insert and its read tries again this often."""
KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""TCP keepalives, so a database host that vanished is noticed within about 11 s."""


CHANGE_KINDS = ("ready", "done", "deleted")


@dataclass(frozen=True)
class Change:
    """A change another server committed: `ready` (a task became claimable), `done` (terminal) or
    `deleted` (a session forgotten, or retention)."""

    kind: str
    execution_id: str | None = None
    ref: tuple[str, str] | None = None
    """Of `ready`: the (workflow_id, version_hash) of the task."""


def is_postgres_url(db: str) -> bool:
    return urlsplit(db).scheme in ("postgresql", "postgres")


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(Store):
    """The store on a PostgreSQL database, in the schema `nexum`."""

    threads = CONNECTIONS
    # Connection refused or lost, admin shutdown, lock timeout, no pooled connection in time.
    unavailable_errors = (psycopg.OperationalError,)
    shared = True
    sql = sql

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.url: str = settings.db
        self.origin = uuid.uuid4().hex[:16]
        """Names this server in the notifications it sends, so it can skip its own."""
        self._pool: ConnectionPool[Any] | None = None
        self._local = threading.local()
        try:
            conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as e:
            raise ConfigError(f"NEXUM_DB={redacted(self.url)!r} is not a valid PostgreSQL URL: {e}") from e

    @property
    def location(self) -> str:
        return redacted(self.url)

    @property
    def pool(self) -> ConnectionPool:
        assert self._pool is not None, "store is not open"
        return self._pool

    def translate(self, error: Exception) -> NexumError | None:
        if isinstance(error, psycopg.DataError):
            # A value PostgreSQL cannot hold (a NUL in text) that no route refused: refused here
            # too, as SQLite's store refuses what it cannot hold, never a 500.
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return InvalidValue(f"the database cannot store a value of this request: {reason}")
        return super().translate(error)

    def _connect_args(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c lock_timeout={LOCK_TIMEOUT}",
            "application_name": self.application_name,
            **KEEPALIVE,
        }

    @property
    def application_name(self) -> str:
        """Names this server's connections, so a starting server can see which others are alive."""
        return f"{sql.SERVER_NAME_PREFIX}{self.origin}"

    def open(self) -> None:
        try:
            with psycopg.connect(self.url, **self._connect_args()) as db:
                self._create_schema(db)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot use the PostgreSQL database at {self.location}: {str(e).strip()}") from e
        pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
            kwargs=self._connect_args(),
            open=False,
            name="nexum",
        )
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        self._pool = pool

    def _create_schema(self, db: psycopg.Connection[Any]) -> None:
        """Create or migrate the tables under an advisory lock; `SchemaError` for a schema not ours."""
        with db.transaction():
            db.execute(sql.SCHEMA_LOCK)
            state = db.execute(sql.SCHEMA_STATE).fetchone()
            assert state is not None
            version = _scalar(db, sql.SELECT_SCHEMA_VERSION) if state["versioned"] else 0
            if state["tables"] and not state["versioned"]:
                raise SchemaError(
                    f"{self.location}: the schema `nexum` holds tables but no schema version, so "
                    "it is not a Nexum database; point --db at another database"
                )
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.location} was written by a newer Nexum server (schema {version}; this "
                    f"server knows up to {SCHEMA_VERSION}): upgrade this server or use another --db"
                )
            if version < SCHEMA_VERSION:
                if version:
                    db.execute(sql.MIGRATE)
                db.execute(sql.SCHEMA)
                db.execute(sql.CLEAR_SCHEMA_VERSION)
                db.execute(sql.SET_SCHEMA_VERSION, (SCHEMA_VERSION,))

    def close(self) -> None:
        if self._pool is not None:
            try:
                with self._db() as db:
                    db.execute(sql.SERVER_GONE, {"origin": self.origin})
            except psycopg.OperationalError:
                pass  # the database is away: the row ages out instead
            self._pool.close()
            self._pool = None

    async def _execute(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_transaction, call)

    def _in_transaction(self, call: Callable[[], T]) -> T:
        """Everything `call` does on this thread is one transaction: it commits or it leaves no trace."""
        if getattr(getattr(call, "func", None), "__self__", None) is self:
            return call()  # one of the store's own methods: each is one transaction already
        with self._tx():
            return call()

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection of the call being run here, or one from the pool (autocommit)."""
        current = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self.pool.connection() as db:
            yield db

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction: the running call's own, or a new one that the methods it calls join."""
        current = getattr(self._local, "db", None)
        if current is not None:
            with _transaction(current):
                yield current
            return
        with self.pool.connection() as db:
            self._local.db = db
            try:
                with db.transaction():
                    yield db
            finally:
                self._local.db = None

    def _rows(self, statement: LiteralString, params: dict[str, Any]) -> list[Any]:
        with self._db() as db:
            cursor = db.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _list_param(self, values: list[str]) -> Any:
        return values

    def register_workflow(self, ref: WorkflowRef, ir: dict[str, Any], now: float) -> RegisterOutcome:
        with self._db() as db:
            if db.execute(sql.SELECT_WORKFLOW, (ref.workflow_id, ref.version_hash)).fetchone() is not None:
                return "IDENTICAL"
            known = db.execute(sql.SELECT_WORKFLOW_ANY, (ref.workflow_id,)).fetchone()
            inserted = db.execute(sql.INSERT_WORKFLOW, (ref.workflow_id, ref.version_hash, _dump(ir), now)).fetchone()
        if inserted is None:  # another server registered the same version just now
            return "IDENTICAL"
        return "CHANGED" if known else "NEW"

    def start_execution(
        self, ref: WorkflowRef, session_id: str, key: str, input: Any, now: float, sent: Sent | None = None
    ) -> StartOutcome:
        params = {
            "id": uuid.uuid4().hex,
            "workflow_id": ref.workflow_id,
            "version_hash": ref.version_hash,
            "session_id": session_id,
            "key": key,
            "input": _dump(input),
            "max_attempts": self.settings.max_attempts,
            "now": now,
            "origin": self.origin,
            **_sent_params(None),
        }
        if sent is None:
            with self._db() as db:
                return self._start(db, ref, params)
        # The messages, the session's references and the execution commit together, or none of them.
        with self._tx() as db:
            cursor = db.cursor(row_factory=tuple_row)
            if sent.after is not None:
                row = cursor.execute(sql.SENT_OF, (sent.after[0], session_id)).fetchone()
                check_sent_after(sent, tuple(row) if row else None)
            else:
                row = cursor.execute(sql.PREVIOUS_SENT, (session_id,)).fetchone()
            params.update(_sent_params(self._store_sent(db, session_id, sent, tuple(row) if row else None)))
            return self._start(db, ref, params)

    def _start(self, db: psycopg.Connection[Any], ref: WorkflowRef, params: dict[str, Any]) -> StartOutcome:
        key = params["key"]
        live = (ref.workflow_id, params["session_id"], key)
        for _ in range(START_RETRIES):
            # Insert first: the UNIQUE index decides (a concurrent start of the key is waited
            # for, not missed), and a new call costs one statement.
            row = db.execute(sql.INSERT_EXECUTION, params).fetchone()
            if row is not None:
                return StartOutcome(_execution(row), created=True)
            # The key is taken: read what holds it, in a snapshot taken after that committed.
            row = db.execute(sql.SELECT_LIVE, live).fetchone()
            if row is not None:
                return StartOutcome(_execution(row), created=False)
            if db.execute(sql.SELECT_WORKFLOW, (ref.workflow_id, ref.version_hash)).fetchone() is None:
                raise WorkflowNotFound(
                    f"workflow {ref.workflow_id!r} version {ref.version_hash!r} is not "
                    "registered; register it with POST /v1/workflows first"
                )
        raise StoreUnavailable(f"the execution of {key!r} kept ending while it was started; try again")

    def get_execution(self, execution_id: str) -> Execution:
        with self._db() as db:
            row = db.execute(sql.SELECT_EXECUTION, (execution_id,)).fetchone()
        if row is None:
            raise NotFound(f"no execution with id {execution_id!r}")
        return _execution(row)

    def list_executions(
        self, session_id: str | None, status: Status | None, key: str | None, limit: int, id_prefix: str | None = None
    ) -> list[Execution]:
        params = {
            "session_id": session_id,
            "status": status.value if status else None,
            "key": key,
            "limit": limit,
            "id_prefix": id_prefix,
        }
        with self._db() as db:
            return [_execution(row, listed=True) for row in db.execute(sql.LIST_EXECUTIONS, params)]

    def terminal_among(self, execution_ids: list[str]) -> list[str]:
        with self._db() as db:
            return [row["id"] for row in db.execute(sql.TERMINAL_AMONG, (execution_ids,))]

    def present_among(self, execution_ids: list[str]) -> list[str]:
        with self._db() as db:
            return [row["id"] for row in db.execute(sql.PRESENT_AMONG, (execution_ids,))]

    def ready_by_workflow(self, workflows: list[WorkflowRef], now: float) -> dict[tuple[str, str], int]:
        params = {
            "now": now,
            "workflow_ids": [w.workflow_id for w in workflows],
            "hashes": [w.version_hash for w in workflows],
        }
        with self._db() as db:
            rows = db.cursor(row_factory=tuple_row).execute(sql.READY_BY_WORKFLOW, params).fetchall()
        return {(w, v): n for w, v, n in rows}

    def cancel_execution(self, execution_id: str, now: float) -> Execution:
        with self._db() as db:
            row = db.execute(sql.CANCEL, {"id": execution_id, "now": now, "origin": self.origin}).fetchone()
        if row is not None:
            return _execution(row)
        current = self.get_execution(execution_id)
        if current.status is Status.CANCELLED:
            return current
        raise LeaseLost(f"execution {execution_id} is already {current.status.value}; nothing to cancel")

    def claim(
        self, worker_id: str, workflows: list[WorkflowRef], limit: int, lease_seconds: float, now: float
    ) -> ClaimOutcome:
        params = {
            "now": now,
            "lease_seconds": lease_seconds,
            "worker_id": worker_id,
            "limit": limit,
            "workflow_ids": [w.workflow_id for w in workflows],
            "hashes": [w.version_hash for w in workflows],
            "origin": self.origin,
        }
        with self._db() as db:
            pending, lapsed, next_due = db.cursor(row_factory=tuple_row).execute(sql.CLAIMABLE, params).fetchone()  # type: ignore[misc]
            if not (pending or lapsed):
                return ClaimOutcome(tasks=[], expired=[], next_due_at=next_due)
            with _transaction(db):
                expired = [_execution(row) for row in db.execute(sql.EXPIRE_LEASES, params)] if lapsed else []
                tasks = [_task(row, lease_seconds) for row in db.execute(sql.CLAIM, params).fetchall()]
                next_due = _scalar(db, sql.NEXT_DUE, params)
        return ClaimOutcome(tasks=tasks, expired=expired, next_due_at=next_due)

    def on_server_start(self, now: float) -> int:
        # Whether another server is alive is judged on the database's clock, never on ours.
        params = {
            "origin": self.origin,
            "now": now,
            "lease_seconds": self.settings.lease_seconds,
            "alive_seconds": SERVER_ALIVE_SECONDS,
        }
        with self._tx() as db:
            db.execute(sql.SERVERS_LOCK)
            others = _scalar(db, sql.OTHER_SERVERS_ALIVE, params)
            db.execute(sql.SERVER_SEEN, params)
            if others:
                return 0  # they kept the clock: their workers heartbeat and their reaper expires on time
            renewed = db.execute(sql.RENEW_RUNNING_LEASES, params).rowcount
            db.execute(sql.RENEW_SESSION_LEASES, params)
        return renewed

    def expire_leases(self, now: float) -> tuple[list[Execution], float | None]:
        with self._tx() as db:
            expired = [_execution(row) for row in db.execute(sql.EXPIRE_LEASES, {"now": now, "origin": self.origin})]
            return expired, _scalar(db, sql.NEXT_LEASE_EXPIRY)

    def heartbeat(self, task_id: str, lease_token: str, lease_seconds: float, now: float) -> float:
        with self._db() as db:
            row = db.execute(
                sql.HEARTBEAT, {"id": task_id, "token": lease_token, "now": now, "lease_seconds": lease_seconds}
            ).fetchone()
        if row is None:
            self._lease_lost(task_id)
        return row["lease_expires_at"]

    def complete(self, task_id: str, lease_token: str, output: Any, now: float) -> Execution:
        return self._finish(sql.COMPLETE, {"id": task_id, "token": lease_token, "now": now, "output": _dump(output)})

    def fail(self, task_id: str, lease_token: str, error: str, retryable: bool, now: float) -> Execution:
        return self._finish(
            sql.FAIL,
            {
                "id": task_id,
                "token": lease_token,
                "now": now,
                "error": error,
                "retryable": retryable,
                "backoff": self.settings.retry_backoff_seconds,
                "backoff_max": self.settings.retry_backoff_max_seconds,
            },
        )

    def release(self, task_id: str, lease_token: str, now: float) -> Execution:
        return self._finish(sql.RELEASE, {"id": task_id, "token": lease_token, "now": now})

    def _finish(self, statement: LiteralString, params: dict[str, Any]) -> Execution:
        with self._db() as db:
            row = db.execute(statement, {**params, "origin": self.origin}).fetchone()
        if row is None:
            self._lease_lost(params["id"])
        return _execution(row)

    def _lease_lost(self, task_id: str) -> NoReturn:
        current = self.get_execution(task_id)
        if current.status is Status.RUNNING:
            raise LeaseLost(
                f"task {task_id}: the lease token is stale (the task was claimed again, attempt {current.attempts})"
            )
        raise LeaseLost(f"task {task_id} is {current.status.value}; its lease is over")

    def count_by_status(self) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        with self._db() as db:
            for row in db.execute(sql.COUNT_BY_STATUS).fetchall():
                counts[Status(row["status"])] = row["count"]
        return counts

    def take_session(self, session_id: str, holder: str, lease_seconds: float, now: float) -> SessionRun:
        token = uuid.uuid4().hex
        with self._db() as db:
            row = db.execute(
                sql.TAKE_SESSION,
                {
                    "session_id": session_id,
                    "token": token,
                    "holder": holder,
                    "now": now,
                    "lease_seconds": lease_seconds,
                },
            ).fetchone()
        assert row is not None
        live = row["holder"] is not None and row["lease_expires_at"] > now
        return SessionRun(
            session_id,
            token,
            now + lease_seconds,
            row["holder"] if live else None,
            row["forked_from"],
            row["fork_until"],
        )

    def renew_session(self, session_id: str, token: str, lease_seconds: float, now: float) -> float:
        with self._db() as db:
            row = db.execute(
                sql.RENEW_SESSION,
                {"session_id": session_id, "token": token, "now": now, "lease_seconds": lease_seconds},
            ).fetchone()
        if row is None:
            raise SessionTakenOver(f"session {session_id!r} was taken over by a newer run")
        return row["lease_expires_at"]

    def end_session_run(self, session_id: str, token: str) -> None:
        with self._db() as db:
            db.execute(sql.END_SESSION_RUN, {"session_id": session_id, "token": token})

    def run_gone(self, session_id: str, token: str, now: float) -> list[Execution]:
        params = {"session_id": session_id, "token": token, "now": now, "origin": self.origin}
        with self._tx() as db:
            db.execute(sql.SESSION_RUN_GONE, params)
            return [_execution(r) for r in db.execute(sql.RUN_GONE, params).fetchall()]

    def claim_for_run(
        self, execution_id: str, session_id: str, token: str, lease_seconds: float, now: float
    ) -> Task | None:
        params = {
            "id": execution_id,
            "session_id": session_id,
            "token": token,
            "now": now,
            "lease_seconds": lease_seconds,
        }
        with self._tx() as db:
            row = db.execute(sql.CLAIM_FOR_RUN, params).fetchone()
            if row is None and db.execute(sql.SESSION_RUN_IS, params).fetchone() is None:
                raise SessionTakenOver(f"session {session_id!r} was taken over by a newer run")
        return _task(row, lease_seconds) if row is not None else None

    def add_hits(self, hits: list[tuple[str, int, float]]) -> None:
        with self._tx() as db:
            db.cursor().executemany(sql.ADD_HITS, [{"id": i, "hits": n, "at": at} for i, n, at in hits])

    def list_sessions(self, limit: int, after: tuple[float, str] | None, contains: str | None) -> list[SessionSummary]:
        after_at, after_id = after or (None, None)
        params = {"limit": limit, "after_at": after_at, "after_id": after_id, "contains": contains or None}
        with self._db() as db:
            return [_session(row) for row in db.execute(sql.LIST_SESSIONS, params)]

    def get_session(self, session_id: str) -> SessionSummary:
        with self._db() as db:
            row = db.execute(sql.GET_SESSION, (session_id,)).fetchone()
        if row is None:
            raise NotFound(f"no session {session_id!r}: nothing is stored under that id")
        return _session(row)

    def list_calls(self, session_id: str, limit: int, before: int | None) -> tuple[list[CallSummary], int | None]:
        params = {
            "session_id": session_id,
            "limit": limit,
            "before": before,
            "input_chars": CALL_INPUT_CHARS,
            "error_chars": CALL_ERROR_CHARS,
        }
        with self._db() as db:
            rows = db.execute(sql.LIST_CALLS, params).fetchall()
        next_before = rows[-1]["seq"] if len(rows) == limit else None
        return [_call(row) for row in rows], next_before

    def forget_session(self, session_id: str, now: float) -> list[CallKey]:
        with self._tx() as db:
            state = db.execute(sql.SESSION_LIVE, {"session_id": session_id, "now": now}).fetchone()
            assert state is not None
            _refuse_waiting(session_id, _scalar(db, sql.SESSION_WAITING, {"session_id": session_id}))
            if state["live"]:
                raise SessionBusy(
                    f"session {session_id!r} has {state['live']} call(s) still pending or running: a run in "
                    "progress would lose results it is about to read. Let it finish (or cancel them), then "
                    "forget again"
                )
            if state["holder"] is not None:
                raise SessionBusy(
                    f"session {session_id!r} is held by a run in progress ({state['holder']}): it would lose "
                    "results it is about to read. Let it finish, then forget again"
                )
            rows = db.execute(sql.FORGET_SESSION, {"session_id": session_id, "origin": self.origin}).fetchall()
            self._collect(db, {session_id})
            db.execute(sql.FORGET_WAITS, {"session_id": session_id})
        if not rows:
            raise NotFound(f"no session {session_id!r}: nothing is stored under that id")
        return [(r["workflow_id"], r["session_id"], r["key"]) for r in rows]

    def delete_terminal_before(self, cutoff: float, limit: int) -> list[CallKey]:
        with self._tx() as db:
            rows = db.execute(
                sql.DELETE_TERMINAL_BEFORE, {"cutoff": cutoff, "limit": limit, "origin": self.origin}
            ).fetchall()
            self._collect(db, {r["session_id"] for r in rows})
        return [(r["workflow_id"], r["session_id"], r["key"]) for r in rows]

    # --- the journal -----------------------------------------------------------------------------------

    def _store_sent(
        self,
        db: psycopg.Connection[Any],
        session_id: str,
        sent: Sent,
        previous: tuple[str, int, str] | None,
    ) -> SentRow:
        """Store the bodies and the session's references to what the list adds; how to store the list."""
        bodies, hashes = sent.bodies, sent.hashes
        encoded = encode_sent(previous, hashes, extends=sent.after is not None)
        if bodies:
            db.execute(sql.INSERT_MESSAGES, {"hashes": [h for h, _ in bodies], "bodies": [b for _, b in bodies]})
        try:
            with db.transaction():  # a savepoint: the error below is ours to name
                db.execute(sql.ADD_SESSION_MESSAGES, {"session_id": session_id, "hashes": encoded.added})
        except psycopg.errors.ForeignKeyViolation as e:
            raise _unknown_message(hashes, bodies) from e
        return encoded

    def _collect(self, db: psycopg.Connection[Any], sessions: set[str]) -> None:
        """Drop what sessions left with no execution refer to, and the messages nobody refers to now."""
        if not sessions:
            return
        names = sorted(sessions)
        hashes = [r["hash"] for r in db.execute(sql.DROP_SESSION_REFS, {"sessions": names}).fetchall()]
        db.execute(sql.DROP_FORKS, {"sessions": names})
        if hashes:
            try:
                with db.transaction():
                    db.execute(sql.DROP_ORPHAN_MESSAGES, {"hashes": hashes})
            except psycopg.errors.ForeignKeyViolation:
                pass  # another session referred to one of them meanwhile: it is not an orphan

    def journal(self, session_id: str) -> tuple[tuple[str, int | None] | None, list[JournalUnit]]:
        with self._db() as db:
            rows = db.execute(sql.JOURNAL, (session_id,)).fetchall()
        return self.session_origin(session_id), [_unit(i, row) for i, row in enumerate(rows, 1)]

    def session_sent(self, session_id: str) -> list[tuple[str, str | None, list[str]]]:
        with self._db() as db:
            rows = db.execute(sql.SESSION_SENT, (session_id,)).fetchall()
        return [(r["id"], r["sent_base"], json.loads(r["sent_added"])) for r in rows]

    def messages(self, hashes: list[str]) -> dict[str, Any]:
        with self._db() as db:
            return {r["hash"]: json.loads(r["body"]) for r in db.execute(sql.SELECT_MESSAGES, (hashes,))}

    def session_origin(self, session_id: str) -> tuple[str, int | None] | None:
        with self._db() as db:
            row = db.execute(sql.SELECT_FORK, (session_id,)).fetchone()
        return None if row is None else (row["forked_from"], row["fork_until"])

    def workflows_of(self, session_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        with self._db() as db:
            rows = db.execute(sql.SELECT_WORKFLOWS_OF, (session_id,)).fetchall()
        return [(r["workflow_id"], r["version_hash"], json.loads(r["ir"])) for r in rows]

    def copy_units(
        self,
        session_id: str,
        units: list[CopiedUnit],
        bodies: list[tuple[str, str]],
        workflows: list[tuple[str, str, dict[str, Any]]],
        origin: tuple[str, int | None] | None,
        now: float,
    ) -> int:
        with self._tx() as db:
            db.execute(sql.SESSION_LOCK, (session_id,))
            if _scalar(db, sql.SESSION_EXISTS, (session_id,)):
                raise SessionBusy(
                    f"session {session_id!r} already has stored calls; forget it first or pick another name"
                )
            for workflow_id, version_hash, ir in workflows:
                db.execute(sql.INSERT_WORKFLOW_IF_NEW, (workflow_id, version_hash, _dump(ir), now))
            if bodies:
                db.execute(sql.INSERT_MESSAGES, {"hashes": [h for h, _ in bodies], "bodies": [b for _, b in bodies]})
            previous: tuple[str, int, str] | None = None
            for unit in units:
                params = {
                    "id": uuid.uuid4().hex,
                    "session_id": session_id,
                    **_copy_params(unit, now),
                    "max_attempts": self.settings.max_attempts,
                    **_sent_params(None),
                }
                if unit.sent is not None:
                    encoded = self._store_sent(db, session_id, Sent([], unit.sent), previous)
                    params.update(_sent_params(encoded))
                    previous = (params["id"], encoded.count, encoded.digest)
                if db.execute(sql.INSERT_COPY, params).fetchone() is None:
                    raise WorkflowNotFound(
                        f"workflow {unit.workflow_id!r} version {unit.version_hash!r} is not "
                        "registered here, and the copy does not carry it"
                    )
            if origin is not None:
                db.execute(sql.INSERT_FORK, (session_id, origin[0], origin[1], now))
        return len(units)

    def stored_bytes(self) -> dict[str, int]:
        with self._db() as db:
            row = db.execute(sql.STORED_BYTES).fetchone()
        return {k: int(v) for k, v in row.items()}  # type: ignore[union-attr]

    async def changes(self) -> AsyncIterator[Change | None]:
        """Other servers' changes as they commit, and `None` once connected and then every
        `RECHECK_SECONDS`: the caller re-checks what it waits for, so a notification lost with a
        dropped connection costs at most one interval. Raises when the connection is lost."""
        async with await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=self.application_name,
            **KEEPALIVE,
        ) as db:
            await db.execute(sql.LISTEN)
            yield None
            while True:
                async for notice in db.notifies(timeout=RECHECK_SECONDS):
                    origin, _, change = notice.payload.partition(" ")
                    kind, _, execution_id = change.partition(" ")
                    # Our own changes woke our own waiters already; anything else on the channel is ignored.
                    if origin != self.origin and kind in CHANGE_KINDS:
                        if kind == "ready":
                            workflow_id, tab, version_hash = execution_id.partition("\t")
                            yield Change(kind, ref=(workflow_id, version_hash) if tab else None)
                        else:
                            yield Change(kind, execution_id or None)
                # This server is alive (on the database's clock); a connection that died quietly fails here.
                await db.execute(sql.SERVER_SEEN, {"origin": self.origin})
                yield None


@contextmanager
def _transaction(db: psycopg.Connection[Any]) -> Iterator[None]:
    """A transaction on `db`, unless it is inside one already (the call's own, see `_in_transaction`)."""
    if db.info.transaction_status == TransactionStatus.INTRANS:
        yield
    else:
        with db.transaction():
            yield


def _scalar(db: psycopg.Connection[Any], statement: LiteralString, params: Any = None) -> Any:
    row = db.cursor(row_factory=tuple_row).execute(statement, params).fetchone()
    return None if row is None else row[0]
