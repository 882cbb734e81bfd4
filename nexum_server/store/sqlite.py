"""The SQLite store: one file in WAL mode, one connection, used from the store's one thread."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

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
from ..models import (
    CallSummary,
    Execution,
    JournalUnit,
    RegisterOutcome,
    SessionSummary,
    Status,
    Task,
    WorkflowRef,
    describe_input,
)
from . import sqlite_sql
from . import sqlite_sql as sql
from .base import SCHEMA_VERSION, CallKey, ClaimOutcome, CopiedUnit, SessionRun, StartOutcome, Store
from .group import GroupCommit
from .lock import ServerLock
from .sqlite_sql import (
    ADD_HITS,
    ADDED_COLUMNS,
    ANYTHING_TO_CLAIM,
    CANCEL,
    CLAIM,
    CLAIM_FOR_RUN,
    COMPLETE,
    COUNT_BY_STATUS,
    DELETE_TERMINAL_BEFORE,
    END_SESSION_RUN,
    EXPIRE_LEASES,
    FAIL,
    FORGET_SESSION,
    GET_SESSION,
    HEARTBEAT,
    INSERT_EXECUTION,
    INSERT_WORKFLOW,
    LIST_CALLS,
    LIST_EXECUTIONS,
    LIST_SESSIONS,
    NEXT_DUE,
    NEXT_LEASE_EXPIRY,
    PRESENT_AMONG,
    READY_BY_WORKFLOW,
    RELEASE,
    RENEW_RUNNING_LEASES,
    RENEW_SESSION,
    RENEW_SESSION_LEASES,
    RUN_GONE,
    SCHEMA,
    SCHEMA_STATE,
    SELECT_EXECUTION,
    SELECT_LIVE,
    SELECT_SESSION_RUN,
    SELECT_WORKFLOW,
    SELECT_WORKFLOW_ANY,
    SESSION_LIVE,
    SESSION_RUN_GONE,
    SESSION_RUN_IS,
    TAKE_SESSION,
    TERMINAL_AMONG,
)

T = TypeVar("T")
log = logging.getLogger("nexum.store")
DAMAGE_SIGNS = ("malformed", "not a database", "corrupt")
"""Words of SQLite's errors for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB)."""


class SQLiteStore(Store):
    """The store on one SQLite file. All calls arrive on the one executor thread, but for `read()`:
    the page's counts read on a read-only connection of their own, which in WAL mode never waits
    for the writer nor makes it wait."""

    # "database is locked" (another process holds the file), "disk I/O error", a full disk.
    unavailable_errors = (sqlite3.OperationalError,)
    sql = sqlite_sql

    def __init__(self, settings: Any, lock: bool = False) -> None:
        super().__init__(settings)
        self._db: sqlite3.Connection | None = None
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexum-store-read")
        self._lock_file = lock
        """Hold the file for this server alone (`lock.py`); tests open several stores on one file."""
        self._lock: ServerLock | None = None
        self._group = GroupCommit(self._executor, lambda: self.db)
        self._damage_logged = False

    async def read(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._read_executor, functools.partial(method, *args, **kwargs))
        except Exception as e:
            known = self.translate(e)
            if known is None:
                raise
            raise known from e

    def translate(self, error: Exception) -> NexumError | None:
        if isinstance(error, sqlite3.DatabaseError) and any(sign in str(error) for sign in DAMAGE_SIGNS):
            if not self._damage_logged:  # once: every request that touches the damage says the same
                self._damage_logged = True
                log.error(
                    "%s is damaged (%s): stop the server, keep a copy of the file, and restore it from a "
                    "backup (or try `sqlite3 %s .recover`)",
                    self.location,
                    error,
                    self.location,
                )
            return StoreUnavailable(f"the database file is damaged ({error}); the server's log says what to do")
        return super().translate(error)

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection: the read executor's, or a caller's own in tests."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(
                f"{self.settings.db_path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 5000")
            self._readers.db = db
            self._reader_connections.append(db)
        return db

    def shutdown(self) -> None:
        self._read_executor.shutdown(wait=True)
        for db in self._reader_connections:
            db.close()
        self._reader_connections.clear()
        super().shutdown()

    @property
    def location(self) -> str:
        return str(self.settings.db_path)

    async def _execute(self, call: Callable[[], T]) -> T:
        return await self._group.run(call)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def open(self) -> None:
        path = self.settings.db_path
        _check_path(path)
        if self._lock_file:
            try:
                self._lock = ServerLock(path)
            except OSError as e:
                raise ConfigError(f"--db {path}: cannot create its lock file {path}.lock ({e.strerror})") from e
        # Autocommit mode: each method opens its own transaction with BEGIN IMMEDIATE, so a writer
        # takes the lock before reading what it will change.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            # Checked before any pragma that writes: a file this server refuses is left as it was.
            version = self._check_schema(db, path)
            if version:
                _quick_check(db, path)
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SchemaError(f"{path}: SQLite refused WAL mode (got {mode}); use a local file system")
            db.execute(f"PRAGMA synchronous = {self.settings.sqlite_synchronous.upper()}")
            db.execute("PRAGMA foreign_keys = ON")
            if version == 0:
                # IF NOT EXISTS: another server may create the schema between our check and our lock.
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version < SCHEMA_VERSION:
                self._migrate(db)
        except sqlite3.DatabaseError as e:
            db.close()
            if "malformed" in str(e) or "corrupt" in str(e):  # damage SQLite meets before quick_check runs
                raise SchemaError(
                    f"{path} is damaged ({e}): keep a copy of it, then restore it from a backup "
                    f"or recover what is left (`sqlite3 {path} .recover`)"
                ) from e
            raise SchemaError(f"{path} cannot be used as a SQLite database: {e}") from e
        except BaseException:
            db.close()
            raise
        self._db = db

    @staticmethod
    def _check_schema(db: sqlite3.Connection, path: Any) -> int:
        """The file's schema version; `SchemaError` for a file this server must not touch."""
        version, tables = db.execute(SCHEMA_STATE).fetchone()
        if version == 0 and tables > 0:
            raise SchemaError(
                f"{path} is not a Nexum database (it has tables but no schema version); point --db at a new file"
            )
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{path} was written by a newer Nexum server (schema {version}; this server "
                f"knows up to {SCHEMA_VERSION}): upgrade this server or use another --db"
            )
        return version

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring an older file up to SCHEMA_VERSION in one transaction; the version is read again
        under the write lock, since another server may have migrated it meanwhile."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                for added_in, script in sorted(ADDED_COLUMNS.items()):
                    if version < added_in:
                        _run_script(db, script)
                _run_script(db, SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def announce(self, url: str) -> None:
        if self._lock is not None:
            self._lock.announce(url)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _tx(self) -> sqlite3.Connection:
        return _Transaction(self.db)  # type: ignore[return-value]

    def _rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        with self._tx():
            return self.db.execute(statement, params).fetchall()

    def register_workflow(self, ref: WorkflowRef, ir: dict[str, Any], now: float) -> RegisterOutcome:
        with self._tx():
            row = self.db.execute(SELECT_WORKFLOW, (ref.workflow_id, ref.version_hash)).fetchone()
            if row is not None:
                return "IDENTICAL"
            known = self.db.execute(SELECT_WORKFLOW_ANY, (ref.workflow_id,)).fetchone()
            self.db.execute(INSERT_WORKFLOW, (ref.workflow_id, ref.version_hash, _dump(ir), now))
            return "CHANGED" if known else "NEW"

    def start_execution(
        self, ref: WorkflowRef, session_id: str, key: str, input: Any, now: float, sent: Sent | None = None
    ) -> StartOutcome:
        # The common case on a re-run is a hit: answer it with a read, without taking the write lock.
        # The UNIQUE index, not this read, is what keeps a call to one live execution.
        # Message bodies are kept even when the execution exists (a resumed run's start of a unit the
        # dead run had made): the client counts them as stored once any start carried them.
        row = (
            None
            if sent is not None and sent.bodies
            else self.db.execute(SELECT_LIVE, (ref.workflow_id, session_id, key)).fetchone()
        )
        if row is not None:
            return StartOutcome(_execution(row), created=False)
        params = {
            "id": uuid.uuid4().hex,
            "workflow_id": ref.workflow_id,
            "version_hash": ref.version_hash,
            "session_id": session_id,
            "key": key,
            "input": _dump(input),
            "max_attempts": self.settings.max_attempts,
            "now": now,
            **_sent_params(None),
        }
        with self._tx():
            if sent is not None:
                if sent.after is not None:
                    previous = self.db.execute(sql.SENT_OF, (sent.after[0], session_id)).fetchone()
                    check_sent_after(sent, tuple(previous) if previous else None)
                else:
                    previous = self.db.execute(sql.PREVIOUS_SENT, (session_id,)).fetchone()
                previous = tuple(previous) if previous else None
                params.update(_sent_params(self._store_sent(session_id, sent, previous)))
            row = self.db.execute(INSERT_EXECUTION, params).fetchone()
            if row is not None:
                return StartOutcome(_execution(row), created=True)
            row = self.db.execute(SELECT_LIVE, (ref.workflow_id, session_id, key)).fetchone()
        if row is None:
            raise WorkflowNotFound(
                f"workflow {ref.workflow_id!r} version {ref.version_hash!r} is not "
                "registered; register it with POST /v1/workflows first"
            )
        return StartOutcome(_execution(row), created=False)

    def get_execution(self, execution_id: str) -> Execution:
        row = self.db.execute(SELECT_EXECUTION, (execution_id,)).fetchone()
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
        return [_execution(row, listed=True) for row in self.db.execute(LIST_EXECUTIONS, params)]

    def terminal_among(self, execution_ids: list[str]) -> list[str]:
        return [row[0] for row in self.db.execute(TERMINAL_AMONG, (json.dumps(execution_ids),))]

    def present_among(self, execution_ids: list[str]) -> list[str]:
        return [row[0] for row in self.db.execute(PRESENT_AMONG, (json.dumps(execution_ids),))]

    def ready_by_workflow(self, workflows: list[WorkflowRef], now: float) -> dict[tuple[str, str], int]:
        refs = json.dumps([w.model_dump() for w in workflows])
        return {(w, v): n for w, v, n in self.db.execute(READY_BY_WORKFLOW, {"now": now, "workflows": refs})}

    def cancel_execution(self, execution_id: str, now: float) -> Execution:
        with self._tx():
            row = self.db.execute(CANCEL, {"id": execution_id, "now": now}).fetchone()
            if row is not None:
                return _execution(row)
            current = self.get_execution(execution_id)
        if current.status is Status.CANCELLED:
            return current
        raise LeaseLost(f"execution {execution_id} is already {current.status.value}; nothing to cancel")

    def claim(
        self, worker_id: str, workflows: list[WorkflowRef], limit: int, lease_seconds: float, now: float
    ) -> ClaimOutcome:
        refs = json.dumps([w.model_dump() for w in workflows])
        pending, lapsed = self.db.execute(ANYTHING_TO_CLAIM, {"now": now, "workflows": refs}).fetchone()
        if not (pending or lapsed):
            next_due = self.db.execute(NEXT_DUE, {"now": now}).fetchone()[0]
            return ClaimOutcome(tasks=[], expired=[], next_due_at=next_due)
        with self._tx():
            expired = [_execution(r) for r in self.db.execute(EXPIRE_LEASES, {"now": now}).fetchall()] if lapsed else []
            rows = self.db.execute(
                CLAIM,
                {"now": now, "lease_seconds": lease_seconds, "worker_id": worker_id, "workflows": refs, "limit": limit},
            ).fetchall()
            next_due = self.db.execute(NEXT_DUE, {"now": now}).fetchone()[0]
        return ClaimOutcome(tasks=[_task(row, lease_seconds) for row in rows], expired=expired, next_due_at=next_due)

    def on_server_start(self, now: float) -> int:
        # One server per SQLite file, so a starting server is the only one: nobody kept the clock.
        params = {"now": now, "lease_seconds": self.settings.lease_seconds}
        with self._tx():
            cursor = self.db.execute(RENEW_RUNNING_LEASES, params)
            self.db.execute(RENEW_SESSION_LEASES, params)
        return cursor.rowcount

    def expire_leases(self, now: float) -> tuple[list[Execution], float | None]:
        with self._tx():
            expired = [_execution(r) for r in self.db.execute(EXPIRE_LEASES, {"now": now}).fetchall()]
            next_expiry = self.db.execute(NEXT_LEASE_EXPIRY).fetchone()[0]
        return expired, next_expiry

    def heartbeat(self, task_id: str, lease_token: str, lease_seconds: float, now: float) -> float:
        with self._tx():
            row = self.db.execute(
                HEARTBEAT, {"id": task_id, "token": lease_token, "now": now, "lease_seconds": lease_seconds}
            ).fetchone()
            if row is None:
                self._lease_lost(task_id)
        return row[0]

    def complete(self, task_id: str, lease_token: str, output: Any, now: float) -> Execution:
        return self._finish(COMPLETE, {"id": task_id, "token": lease_token, "now": now, "output": _dump(output)})

    def fail(self, task_id: str, lease_token: str, error: str, retryable: bool, now: float) -> Execution:
        return self._finish(
            FAIL,
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
        return self._finish(RELEASE, {"id": task_id, "token": lease_token, "now": now})

    def _finish(self, sql: str, params: dict[str, Any]) -> Execution:
        with self._tx():
            row = self.db.execute(sql, params).fetchone()
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
        for status, count in self.db.execute(COUNT_BY_STATUS):
            counts[Status(status)] = count
        return counts

    def take_session(self, session_id: str, holder: str, lease_seconds: float, now: float) -> SessionRun:
        token = uuid.uuid4().hex
        with self._tx():
            previous = self.db.execute(SELECT_SESSION_RUN, (session_id,)).fetchone()
            self.db.execute(
                TAKE_SESSION,
                {
                    "session_id": session_id,
                    "token": token,
                    "holder": holder,
                    "now": now,
                    "lease_seconds": lease_seconds,
                },
            )
            origin = self.session_origin(session_id) or (None, None)
        live_holder = previous["holder"] if previous is not None and previous["lease_expires_at"] > now else None
        return SessionRun(session_id, token, now + lease_seconds, live_holder, *origin)

    def renew_session(self, session_id: str, token: str, lease_seconds: float, now: float) -> float:
        with self._tx():
            row = self.db.execute(
                RENEW_SESSION, {"session_id": session_id, "token": token, "now": now, "lease_seconds": lease_seconds}
            ).fetchone()
        if row is None:
            raise SessionTakenOver(f"session {session_id!r} was taken over by a newer run")
        return row[0]

    def end_session_run(self, session_id: str, token: str) -> None:
        with self._tx():
            self.db.execute(END_SESSION_RUN, {"session_id": session_id, "token": token})

    def run_gone(self, session_id: str, token: str, now: float) -> list[Execution]:
        params = {"session_id": session_id, "token": token, "now": now}
        with self._tx():
            self.db.execute(SESSION_RUN_GONE, params)
            return [_execution(row) for row in self.db.execute(RUN_GONE, params).fetchall()]

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
        with self._tx():
            row = self.db.execute(CLAIM_FOR_RUN, params).fetchone()
            if row is None and self.db.execute(SESSION_RUN_IS, params).fetchone() is None:
                raise SessionTakenOver(f"session {session_id!r} was taken over by a newer run")
        return _task(row, lease_seconds) if row is not None else None

    def add_hits(self, hits: list[tuple[str, int, float]]) -> None:
        with self._tx():
            self.db.executemany(ADD_HITS, [{"id": i, "hits": n, "at": at} for i, n, at in hits])

    def list_sessions(self, limit: int, after: tuple[float, str] | None, contains: str | None) -> list[SessionSummary]:
        after_at, after_id = after or (None, None)
        params = {"limit": limit, "after_at": after_at, "after_id": after_id, "contains": contains or None}
        return [_session(row) for row in self.reader.execute(LIST_SESSIONS, params)]

    def get_session(self, session_id: str) -> SessionSummary:
        row = self.reader.execute(GET_SESSION, (session_id,)).fetchone()
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
        rows = self.reader.execute(LIST_CALLS, params).fetchall()
        next_before = rows[-1]["seq"] if len(rows) == limit else None
        return [_call(row) for row in rows], next_before

    def forget_session(self, session_id: str, now: float) -> list[CallKey]:
        with self._tx():
            live, holder = self.db.execute(SESSION_LIVE, {"session_id": session_id, "now": now}).fetchone()
            _refuse_waiting(
                session_id, self.db.execute(sqlite_sql.SESSION_WAITING, {"session_id": session_id}).fetchone()[0]
            )
            if live:
                raise SessionBusy(
                    f"session {session_id!r} has {live} call(s) still pending or running: a run in progress "
                    "would lose results it is about to read. Let it finish (or cancel them), then forget again"
                )
            if holder is not None:
                raise SessionBusy(
                    f"session {session_id!r} is held by a run in progress ({holder}): it would lose results "
                    "it is about to read. Let it finish, then forget again"
                )
            deleted = [tuple(row) for row in self.db.execute(FORGET_SESSION, (session_id,)).fetchall()]
            self._collect({session_id})
            self.db.execute(sqlite_sql.FORGET_WAITS, {"session_id": session_id})
        if not deleted:
            raise NotFound(f"no session {session_id!r}: nothing is stored under that id")
        return deleted

    def delete_terminal_before(self, cutoff: float, limit: int) -> list[CallKey]:
        with self._tx():
            rows = self.db.execute(DELETE_TERMINAL_BEFORE, {"cutoff": cutoff, "limit": limit}).fetchall()
            self._collect({row[1] for row in rows})
        return [tuple(row) for row in rows]

    # --- the journal -----------------------------------------------------------------------------------

    def _store_sent(self, session_id: str, sent: Sent, previous: tuple[str, int, str] | None) -> SentRow:
        """Store the bodies and the session's references to what the list adds; how to store the list."""
        bodies, hashes = sent.bodies, sent.hashes
        encoded = encode_sent(previous, hashes, extends=sent.after is not None)
        self.db.executemany(sql.INSERT_MESSAGE, bodies)
        try:
            self.db.execute(sql.ADD_SESSION_MESSAGES, {"session_id": session_id, "hashes": json.dumps(encoded.added)})
        except sqlite3.IntegrityError as e:
            raise _unknown_message(hashes, bodies) from e
        return encoded

    def _collect(self, sessions: set[str]) -> None:
        """Drop what sessions left with no execution refer to, and the messages nobody refers to now."""
        if not sessions:
            return
        names = json.dumps(sorted(sessions))
        hashes = [row[0] for row in self.db.execute(sql.DROP_SESSION_REFS, {"sessions": names}).fetchall()]
        self.db.execute(sql.DROP_FORKS, {"sessions": names})
        if hashes:
            self.db.execute(sql.DROP_ORPHAN_MESSAGES, {"hashes": json.dumps(hashes)})

    def journal(self, session_id: str) -> tuple[tuple[str, int | None] | None, list[JournalUnit]]:
        rows = self.db.execute(sql.JOURNAL, (session_id,)).fetchall()
        return self.session_origin(session_id), [_unit(i, row) for i, row in enumerate(rows, 1)]

    def session_sent(self, session_id: str) -> list[tuple[str, str | None, list[str]]]:
        return [(row[0], row[1], json.loads(row[2])) for row in self.db.execute(sql.SESSION_SENT, (session_id,))]

    def messages(self, hashes: list[str]) -> dict[str, Any]:
        return {row[0]: json.loads(row[1]) for row in self.db.execute(sql.SELECT_MESSAGES, (json.dumps(hashes),))}

    def session_origin(self, session_id: str) -> tuple[str, int | None] | None:
        row = self.db.execute(sql.SELECT_FORK, (session_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def workflows_of(self, session_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [(row[0], row[1], json.loads(row[2])) for row in self.db.execute(sql.SELECT_WORKFLOWS_OF, (session_id,))]

    def copy_units(
        self,
        session_id: str,
        units: list[CopiedUnit],
        bodies: list[tuple[str, str]],
        workflows: list[tuple[str, str, dict[str, Any]]],
        origin: tuple[str, int | None] | None,
        now: float,
    ) -> int:
        with self._tx():
            if self.db.execute(sql.SESSION_EXISTS, (session_id,)).fetchone()[0]:
                raise SessionBusy(
                    f"session {session_id!r} already has stored calls; forget it first or pick another name"
                )
            for workflow_id, version_hash, ir in workflows:
                self.db.execute(sql.INSERT_WORKFLOW_IF_NEW, (workflow_id, version_hash, _dump(ir), now))
            self.db.executemany(sql.INSERT_MESSAGE, bodies)
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
                    encoded = self._store_sent(session_id, Sent([], unit.sent), previous)
                    params.update(_sent_params(encoded))
                    previous = (params["id"], encoded.count, encoded.digest)
                if self.db.execute(sql.INSERT_COPY, params).fetchone() is None:
                    raise WorkflowNotFound(
                        f"workflow {unit.workflow_id!r} version {unit.version_hash!r} is not "
                        "registered here, and the copy does not carry it"
                    )
            if origin is not None:
                self.db.execute(sql.INSERT_FORK, (session_id, origin[0], origin[1], now))
        return len(units)

    def stored_bytes(self) -> dict[str, int]:
        return dict(self.db.execute(sql.STORED_BYTES).fetchone())


def _refuse_waiting(session_id: str, waiting: int) -> None:
    """Forget refuses a session with a wait still waiting: the run that waits would lose it."""
    if waiting:
        raise SessionBusy(
            f"session {session_id!r} has {waiting} wait(s) still waiting for an answer: resolve "
            "or deny them (`nexum waits`), then forget again"
        )


CALL_INPUT_CHARS = 4000
"""Characters of an input read for a list of calls: a tool call fits whole; longer ones are summarised."""
CALL_ERROR_CHARS = 1000


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.owner = True
        else:
            self.owner = False
        return self.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.owner:
            return
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _check_path(path: Path) -> None:
    """`ConfigError` naming the problem when `path` cannot be a database file this server writes."""
    if path.is_dir():
        raise ConfigError(
            f"--db {path} is a directory; give the path of a database file in it, e.g. {path / 'local.db'}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--db {path}: cannot create its folder {path.parent} ({e.strerror})") from e
    # SQLite writes the WAL and its index beside the file, so the folder must be writable too.
    for where, what in ((path.parent, "folder"), (path, "file")):
        if (what == "folder" or path.exists()) and not os.access(where, os.W_OK):
            raise ConfigError(
                f"--db {path}: the {what} {where} is not writable (read-only file system, "
                "or its permissions); give a --db this user can write"
            )


def _quick_check(db: sqlite3.Connection, path: Path) -> None:
    """`SchemaError` when SQLite finds the file damaged (`PRAGMA quick_check`, a read of every page)."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        raise SchemaError(
            f"{path} is damaged ({'; '.join(problems)}): keep a copy of it, then restore it "
            f"from a backup or recover what is left (`sqlite3 {path} .recover`)"
        )


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run each statement of `script` inside the caller's transaction (executescript would commit it)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise InvalidValue(
            "NaN, Infinity and numbers too large for a float (such as 1e999) cannot be "
            "stored; send null or a string instead"
        ) from e


def _execution(row: sqlite3.Row, listed: bool = False) -> Execution:
    # model_validate, not model_construct: validating in pydantic-core is ~3x faster than
    # model_construct's Python loop over the fields (11 vs 30 µs), on every row the hot path reads.
    status = Status(row["status"])
    return Execution.model_validate(
        dict(
            id=row["id"],
            workflow_id=row["workflow_id"],
            version_hash=row["version_hash"],
            session_id=row["session_id"],
            key=row["key"],
            input=json.loads(row["input"]),
            status=status,
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            result=json.loads(row["result"]) if row["result"] is not None else None,
            error=row["error"],
            worker_id=row["worker_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            attempt_started_at=row["attempt_started_at"],
            next_attempt_at=row["scheduled_at"] if status is Status.PENDING else None,
            lease_expires_at=row["lease_expires_at"] if status is Status.RUNNING else None,
            cached=False,
            result_chars=row["result_chars"] if listed else None,
        )
    )


def _task(row: sqlite3.Row, lease_seconds: float) -> Task:
    return Task.model_validate(
        dict(
            task_id=row["id"],
            execution_id=row["id"],
            workflow_id=row["workflow_id"],
            version_hash=row["version_hash"],
            node_id=row["node_id"],
            input=json.loads(row["input"]),
            attempt=row["attempts"],
            lease_token=row["lease_token"],
            lease_expires_at=row["lease_expires_at"],
            lease_seconds=lease_seconds,
        )
    )


def _session(row: sqlite3.Row) -> SessionSummary:
    fields = dict(row)
    fields["tool_seconds_saved"] = fields["seconds_saved"] - fields["model_seconds_saved"]
    return SessionSummary.model_construct(**fields)


def _call(row: sqlite3.Row) -> CallSummary:
    tool, args, summary = describe_input(row["input_head"], row["input_length"] <= CALL_INPUT_CHARS)
    status = Status(row["status"])
    return CallSummary.model_construct(
        id=row["id"],
        workflow_id=row["workflow_id"],
        key=row["key"],
        tool=tool,
        args=args,
        summary=summary,
        status=status,
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        error=row["error"],
        worker_id=row["worker_id"],
        hits=row["hits"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        attempt_started_at=row["attempt_started_at"],
        next_attempt_at=row["scheduled_at"] if status is Status.PENDING else None,
        result_chars=row["result_length"],
    )


def _sent_params(encoded: SentRow | None) -> dict[str, Any]:
    if encoded is None:
        return {"sent_base": None, "sent_added": None, "sent_count": None, "sent_digest": None}
    return {
        "sent_base": encoded.base,
        "sent_added": encoded.added_json,
        "sent_count": encoded.count,
        "sent_digest": encoded.digest,
    }


def _copy_params(unit: CopiedUnit, now: float) -> dict[str, Any]:
    return {
        "workflow_id": unit.workflow_id,
        "version_hash": unit.version_hash,
        "key": unit.key,
        "input": _dump(unit.input),
        "result": _dump(unit.result),
        "worker_id": unit.worker_id,
        "now": now,
        "started_at": unit.started_at if unit.started_at is not None else now,
        "completed_at": unit.completed_at if unit.completed_at is not None else now,
    }


def _unknown_message(hashes: list[str], bodies: list[tuple[str, str]]) -> InvalidValue:
    return InvalidValue(
        "input.sent names a message the server does not have: send its body in `messages` "
        f"({len(hashes)} hash(es) named, {len(bodies)} body/bodies sent)"
    )


def _unit(step: int, row: Any) -> JournalUnit:
    return JournalUnit.model_validate(
        dict(
            step=step,
            id=row["id"],
            workflow_id=row["workflow_id"],
            version_hash=row["version_hash"],
            key=row["key"],
            status=row["status"],
            input=json.loads(row["input"]),
            result=json.loads(row["result"]) if row["result"] is not None else None,
            error=row["error"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            attempt_started_at=row["attempt_started_at"],
            completed_at=row["completed_at"],
        )
    )
