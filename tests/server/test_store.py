"""The store contract, called directly (no HTTP) on a temporary database per test.

Every store method takes `now`, so leases, expiry and backoff are driven by the test's clock, never by
sleeping. The `make_store` fixture is parametrized by backend: a PostgreSQL store joins by adding a
param that builds it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from nexum_server.config import Settings
from nexum_server.errors import (
    LeaseLost,
    NexumError,
    NotFound,
    SchemaError,
    SessionBusy,
    SessionTakenOver,
    StoreUnavailable,
    WorkflowNotFound,
)
from nexum_server.models import Execution, Status, WorkflowRef
from nexum_server.store import SCHEMA_VERSION, SQLiteStore, Store, UnitToWrite, postgres
from nexum_server.store.postgres import PostgresStore

REF = WorkflowRef(workflow_id="wf", version_hash="sha256:abc")
OTHER = WorkflowRef(workflow_id="other", version_hash="sha256:def")
IR = {"nodes": [{"id": "n1", "kind": "EFFECT"}]}
T0 = 1_700_000_000.0
LEASE = 10.0
BACKENDS: dict[str, type[Store]] = {"sqlite": SQLiteStore, "postgresql": PostgresStore}


class StoreFactory:
    """`make_store(**settings)`: an open store on the test's database; several may share it."""

    def __init__(self, name: str, db: str) -> None:
        self.name = name
        self.backend = BACKENDS[name]
        self.db = db
        self.opened: list[Store] = []

    def __call__(self, **settings: Any) -> Store:
        store = self.backend(Settings(db=str(self.db), **settings))
        store.start()
        self.opened.append(store)
        return store

    def close(self, store: Store) -> None:
        self.opened.remove(store)
        store.shutdown()


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A new database per test: a SQLite file, or a database on the throwaway PostgreSQL."""
    db = request.getfixturevalue("postgres_url") if request.param == "postgresql" else str(tmp_path / "nexum.db")
    factory = StoreFactory(request.param, db)
    yield factory
    for store in factory.opened:
        store.shutdown()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    store = make_store(max_attempts=3, retry_backoff_seconds=1.0, retry_backoff_max_seconds=60.0)
    store.register_workflow(REF, IR, T0)
    return store


def start(store: Store, key: str = "k", session_id: str = "s", now: float = T0) -> Execution:
    return store.start_execution(REF, session_id, key, {"key": key}, now).execution


def claim_one(store: Store, now: float, worker_id: str = "w1") -> Any:
    tasks = store.claim(worker_id, [REF], 1, LEASE, now).tasks
    assert len(tasks) == 1, f"expected one claimable task at {now}, got {tasks}"
    return tasks[0]


# --- workflows and starts -------------------------------------------------------------------------


def test_register_answers_new_identical_changed(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.register_workflow(REF, IR, T0) == "NEW"
    assert store.register_workflow(REF, IR, T0 + 1) == "IDENTICAL"
    changed = WorkflowRef(workflow_id=REF.workflow_id, version_hash="sha256:new")
    assert store.register_workflow(changed, {"nodes": [{"id": "n2"}]}, T0 + 2) == "CHANGED"
    assert store.register_workflow(OTHER, IR, T0 + 3) == "NEW"


def test_start_is_idempotent_per_workflow_session_and_key(store: Store) -> None:
    first = store.start_execution(REF, "s", "k", {"q": 1}, T0)
    again = store.start_execution(REF, "s", "k", {"q": "ignored"}, T0 + 1)
    assert first.created and not again.created
    assert again.execution.id == first.execution.id
    assert again.execution.input == {"q": 1}
    assert again.execution.status is Status.PENDING
    other_key = store.start_execution(REF, "s", "k2", None, T0)
    other_session = store.start_execution(REF, "s2", "k", None, T0)
    assert other_key.created and other_session.created
    assert len({first.execution.id, other_key.execution.id, other_session.execution.id}) == 3
    assert store.count_by_status()[Status.PENDING] == 3


def test_start_of_a_completed_call_returns_its_result(store: Store) -> None:
    execution = start(store)
    task = claim_one(store, T0)
    store.complete(task.task_id, task.lease_token, {"answer": 42}, T0 + 1)
    again = store.start_execution(REF, "s", "k", {"key": "k"}, T0 + 2)
    assert not again.created
    assert again.execution.id == execution.id
    assert again.execution.status is Status.COMPLETED
    assert again.execution.result == {"answer": 42}


def test_start_of_an_unregistered_version_raises_and_stores_nothing(store: Store) -> None:
    unknown = WorkflowRef(workflow_id=REF.workflow_id, version_hash="sha256:never")
    with pytest.raises(WorkflowNotFound, match="sha256:never"):
        store.start_execution(unknown, "s", "k", None, T0)
    assert sum(store.count_by_status().values()) == 0


@pytest.mark.parametrize("end", ["fail", "cancel"])
def test_a_failed_or_cancelled_call_starts_anew_and_keeps_its_history(store: Store, end: str) -> None:
    old = start(store)
    if end == "fail":
        task = claim_one(store, T0)
        store.fail(task.task_id, task.lease_token, "boom", False, T0 + 1)
    else:
        store.cancel_execution(old.id, T0 + 1)
    again = store.start_execution(REF, "s", "k", {"key": "k"}, T0 + 2)
    assert again.created
    assert again.execution.id != old.id
    assert again.execution.status is Status.PENDING and again.execution.attempts == 0
    history = store.list_executions("s", None, "k", 10)
    assert [e.id for e in history] == [again.execution.id, old.id]
    assert history[1].status is (Status.FAILED if end == "fail" else Status.CANCELLED)
    # The new one is now the live one: a further start finds it.
    assert store.start_execution(REF, "s", "k", None, T0 + 3).execution.id == again.execution.id


def test_list_filters_and_orders_newest_first(store: Store) -> None:
    ids = [start(store, key=f"k{i}", session_id="a" if i < 3 else "b", now=T0 + i).id for i in range(5)]
    task = claim_one(store, T0 + 10)
    assert task.execution_id == ids[0]
    assert [e.id for e in store.list_executions("a", None, None, 50)] == ids[2::-1]
    assert [e.id for e in store.list_executions(None, None, None, 2)] == ids[:2:-1]
    assert [e.id for e in store.list_executions(None, Status.RUNNING, None, 50)] == [ids[0]]
    assert [e.id for e in store.list_executions(None, None, "k4", 50)] == [ids[4]]
    assert store.list_executions("nobody", None, None, 50) == []


def test_list_finds_executions_by_the_start_of_their_id(store: Store) -> None:
    ids = [start(store, key=f"k{i}", now=T0 + i).id for i in range(20)]
    target = ids[7]
    assert [e.id for e in store.list_executions(None, None, None, 50, id_prefix=target)] == [target]
    shared = [i for i in ids if i.startswith(target[:1])]
    assert [e.id for e in store.list_executions(None, None, None, 50, id_prefix=target[:1])] == shared[::-1]
    # Characters LIKE would treat as wildcards match only themselves.
    assert store.list_executions(None, None, None, 50, id_prefix="%") == []
    assert store.list_executions(None, None, None, 50, id_prefix="_") == []


# --- claims ------------------------------------------------------------------------------------


def test_claim_leases_oldest_first_with_a_fresh_token_each(store: Store) -> None:
    ids = [start(store, key=f"k{i}", now=T0 + i).id for i in range(3)]
    outcome = store.claim("w1", [REF], 2, LEASE, T0 + 10)
    assert [t.execution_id for t in outcome.tasks] == ids[:2]
    assert all(t.attempt == 1 and t.node_id == "n1" for t in outcome.tasks)
    assert all(t.lease_expires_at == T0 + 10 + LEASE for t in outcome.tasks)
    assert len({t.lease_token for t in outcome.tasks}) == 2
    running = store.get_execution(ids[0])
    assert running.status is Status.RUNNING and running.worker_id == "w1"
    assert running.started_at == T0 + 10


def test_claim_only_takes_the_workflows_the_worker_runs(store: Store) -> None:
    store.register_workflow(OTHER, IR, T0)
    mine = start(store)
    store.start_execution(OTHER, "s", "k", None, T0)
    outcome = store.claim("w1", [REF], 10, LEASE, T0 + 1)
    assert [t.execution_id for t in outcome.tasks] == [mine.id]
    assert store.count_by_status()[Status.PENDING] == 1


def test_concurrent_claims_from_two_connections_never_lease_a_task_twice(
    make_store: StoreFactory, store: Store
) -> None:
    total = 60
    ids = {start(store, key=f"k{i}").id for i in range(total)}
    other = make_store()  # a second connection to the same file, as a second server would have
    claimed: list[Any] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        # Each store is used from its own executor thread, as the API layer does.
        target = store if n % 2 else other
        try:
            barrier.wait()
            while True:
                tasks = target._executor.submit(target.claim, f"w{n}", [REF], 3, LEASE, T0 + 1).result().tasks
                if not tasks:
                    return
                with lock:
                    claimed.extend(tasks)
        except BaseException as e:  # reported below, with the thread's error
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(t.execution_id for t in claimed) == sorted(ids)
    assert len({t.lease_token for t in claimed}) == total
    assert store.count_by_status()[Status.RUNNING] == total


def test_leases_expired_by_several_stores_at_once_are_each_expired_and_counted_once(
    make_store: StoreFactory, store: Store
) -> None:
    total = 40
    for i in range(total):
        start(store, key=f"k{i}")
    store.claim("w1", [REF], total, LEASE, T0)
    others = [make_store() for _ in range(3)]  # as other servers would, each on its own thread
    barrier = threading.Barrier(len(others) + 1)
    seen: list[list[Execution]] = []
    errors: list[BaseException] = []

    def expire(target: Store) -> None:
        try:
            barrier.wait()
            seen.append(target._executor.submit(target.expire_leases, T0 + LEASE).result()[0])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=expire, args=(target,)) for target in [store, *others]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    expired = [e.id for batch in seen for e in batch]
    assert len(expired) == total and len(set(expired)) == total
    assert store.count_by_status()[Status.PENDING] == total


# --- leases ------------------------------------------------------------------------------------


def test_expired_lease_is_requeued_then_failed_when_attempts_are_used_up(make_store: StoreFactory) -> None:
    store = make_store(max_attempts=2)
    store.register_workflow(REF, IR, T0)
    execution = start(store)
    first = claim_one(store, T0)

    early = store.claim("w2", [REF], 1, LEASE, T0 + LEASE - 1)
    assert early.tasks == [] and early.expired == []
    assert early.next_due_at == pytest.approx(T0 + LEASE)

    at_expiry = store.claim("w2", [REF], 1, LEASE, T0 + LEASE)
    assert [e.id for e in at_expiry.expired] == [execution.id]
    assert at_expiry.expired[0].status is Status.PENDING
    assert "lease expired on attempt 1 of 2" in (at_expiry.expired[0].error or "")
    [second] = at_expiry.tasks
    assert second.attempt == 2 and second.lease_token != first.lease_token

    last = store.claim("w3", [REF], 1, LEASE, T0 + 2 * LEASE)
    assert last.tasks == []
    assert [(e.id, e.status) for e in last.expired] == [(execution.id, Status.FAILED)]
    failed = store.get_execution(execution.id)
    assert failed.status is Status.FAILED and failed.attempts == 2
    assert failed.completed_at == T0 + 2 * LEASE
    assert "lease expired on attempt 2 of 2" in (failed.error or "")


def test_heartbeat_extends_the_lease(store: Store) -> None:
    start(store)
    task = claim_one(store, T0)
    assert store.heartbeat(task.task_id, task.lease_token, LEASE, T0 + 8) == T0 + 8 + LEASE
    outcome = store.claim("w2", [REF], 1, LEASE, T0 + LEASE + 1)
    assert outcome.tasks == [] and outcome.expired == []
    assert store.get_execution(task.task_id).lease_expires_at == T0 + 8 + LEASE


def test_a_server_start_gives_running_tasks_a_fresh_lease_and_leaves_the_rest(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=LEASE)
    store.register_workflow(REF, IR, T0)
    running = start(store, "running")
    start(store, "pending")
    done = start(store, "done")
    task = claim_one(store, T0)
    assert task.task_id == running.id and task.lease_seconds == LEASE
    finished = store.claim("w1", [REF], 2, LEASE, T0).tasks
    [other] = [t for t in finished if t.task_id != done.id]
    store.complete(done.id, next(t for t in finished if t.task_id == done.id).lease_token, "ok", T0 + 1)
    store.release(other.task_id, other.lease_token, T0 + 1)

    # The server was away far longer than a lease: on its start, the lease clock starts afresh.
    restart = T0 + 25 * LEASE
    assert store.on_server_start(restart) == 1
    assert store.get_execution(running.id).lease_expires_at == restart + LEASE
    assert store.claim("w2", [REF], 5, LEASE, restart + LEASE - 1).expired == []
    assert store.complete(task.task_id, task.lease_token, "late but ours", restart + 1).status is Status.COMPLETED
    assert store.get_execution(done.id).result == "ok"
    assert store.on_server_start(restart + 2) == 1, "only the task claimed after the restart is running"


REPORTS: dict[str, Callable[[Store, Any, str], Any]] = {
    "complete": lambda store, task, token: store.complete(task.task_id, token, "late", T0 + 30),
    "fail": lambda store, task, token: store.fail(task.task_id, token, "late", True, T0 + 30),
    "heartbeat": lambda store, task, token: store.heartbeat(task.task_id, token, LEASE, T0 + 30),
    "release": lambda store, task, token: store.release(task.task_id, token, T0 + 30),
}


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_a_stale_token_raises_lease_lost_and_changes_nothing(store: Store, report: str) -> None:
    start(store)
    stale = claim_one(store, T0)
    current = store.claim("w2", [REF], 1, LEASE, T0 + LEASE).tasks[0]
    assert current.lease_token != stale.lease_token
    before = store.get_execution(stale.task_id)
    with pytest.raises(LeaseLost, match="stale"):
        REPORTS[report](store, stale, stale.lease_token)
    assert store.get_execution(stale.task_id) == before
    # The holder of the current lease is unaffected.
    done = store.complete(current.task_id, current.lease_token, {"by": "w2"}, T0 + 31)
    assert done.status is Status.COMPLETED and done.result == {"by": "w2"}


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_after_completion_every_report_raises_lease_lost(store: Store, report: str) -> None:
    start(store)
    task = claim_one(store, T0)
    store.complete(task.task_id, task.lease_token, {"first": True}, T0 + 1)
    before = store.get_execution(task.task_id)
    with pytest.raises(LeaseLost, match="COMPLETED"):
        REPORTS[report](store, task, task.lease_token)
    after = store.get_execution(task.task_id)
    assert after == before and after.result == {"first": True}


def test_reports_on_an_unknown_task_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.complete("nope", "token", 1, T0)
    with pytest.raises(NotFound):
        store.heartbeat("nope", "token", LEASE, T0)
    with pytest.raises(NotFound):
        store.get_execution("nope")


def test_release_gives_the_task_back_without_counting_an_attempt(store: Store) -> None:
    execution = start(store)
    task = claim_one(store, T0)
    released = store.release(task.task_id, task.lease_token, T0 + 1)
    assert released.status is Status.PENDING and released.attempts == 0 and released.worker_id is None
    again = claim_one(store, T0 + 1, worker_id="w2")
    assert again.execution_id == execution.id
    assert again.attempt == 1 and again.lease_token != task.lease_token
    with pytest.raises(LeaseLost):
        store.complete(task.task_id, task.lease_token, "old holder", T0 + 2)


# --- retries -----------------------------------------------------------------------------------


def test_retryable_failures_back_off_doubling_then_fail_with_the_last_error(make_store: StoreFactory) -> None:
    store = make_store(max_attempts=4, retry_backoff_seconds=0.5, retry_backoff_max_seconds=1.5)
    store.register_workflow(REF, IR, T0)
    execution = start(store)
    now = T0
    for attempt, delay in ((1, 0.5), (2, 1.0), (3, 1.5)):  # 0.5 * 2**2 = 2.0 is capped at 1.5
        task = claim_one(store, now)
        assert task.attempt == attempt
        failed_at = now + 0.25
        pending = store.fail(task.task_id, task.lease_token, f"boom {attempt}", True, failed_at)
        assert pending.status is Status.PENDING and pending.error == f"boom {attempt}"
        assert pending.next_attempt_at == pytest.approx(failed_at + delay)
        early = store.claim("w1", [REF], 1, LEASE, failed_at + delay - 0.01)
        assert early.tasks == []
        assert early.next_due_at == pytest.approx(failed_at + delay)
        now = failed_at + delay
    task = claim_one(store, now)
    assert task.attempt == 4
    final = store.fail(task.task_id, task.lease_token, "boom 4", True, now + 0.25)
    assert final.status is Status.FAILED and final.error == "boom 4" and final.attempts == 4
    assert final.next_attempt_at is None and final.completed_at == now + 0.25
    assert store.claim("w1", [REF], 1, LEASE, now + 100).tasks == []
    assert store.get_execution(execution.id).status is Status.FAILED


def test_a_non_retryable_failure_fails_at_once(store: Store) -> None:
    start(store)
    task = claim_one(store, T0)
    failed = store.fail(task.task_id, task.lease_token, "bad input", False, T0 + 1)
    assert failed.status is Status.FAILED and failed.attempts == 1 and failed.error == "bad input"
    assert store.claim("w1", [REF], 1, LEASE, T0 + 100).tasks == []


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_pending_and_running_then_reports_are_refused(store: Store) -> None:
    pending = start(store, key="a")
    running = start(store, key="b", now=T0 - 1)
    task = claim_one(store, T0)
    assert task.execution_id == running.id
    for execution in (pending, running):
        cancelled = store.cancel_execution(execution.id, T0 + 1)
        assert cancelled.status is Status.CANCELLED and cancelled.completed_at == T0 + 1
    assert store.cancel_execution(pending.id, T0 + 2).status is Status.CANCELLED
    with pytest.raises(LeaseLost, match="CANCELLED"):
        store.complete(task.task_id, task.lease_token, "too late", T0 + 2)
    assert store.get_execution(running.id).result is None
    assert store.claim("w1", [REF], 10, LEASE, T0 + 3).tasks == []


def test_cancel_of_a_finished_execution_raises_and_unknown_is_not_found(store: Store) -> None:
    start(store)
    task = claim_one(store, T0)
    store.complete(task.task_id, task.lease_token, 1, T0 + 1)
    with pytest.raises(LeaseLost, match="already COMPLETED"):
        store.cancel_execution(task.task_id, T0 + 2)
    assert store.get_execution(task.task_id).status is Status.COMPLETED
    with pytest.raises(NotFound):
        store.cancel_execution("nope", T0)


# --- the database -------------------------------------------------------------------------------


def test_data_survives_closing_and_reopening(make_store: StoreFactory, store: Store) -> None:
    start(store)
    task = claim_one(store, T0)
    store.complete(task.task_id, task.lease_token, {"kept": True}, T0 + 1)
    make_store.close(store)
    reopened = make_store()
    assert reopened.get_execution(task.task_id).result == {"kept": True}
    assert reopened.register_workflow(REF, IR, T0) == "IDENTICAL"


def test_several_stores_may_create_a_new_database_at_once(make_store: StoreFactory) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            make_store()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def _write(factory: StoreFactory, *statements: str) -> None:
    """Prepare the test's database directly, as another program would have left it."""
    if factory.name == "sqlite":
        db = sqlite3.connect(factory.db)
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()
    else:
        with psycopg.connect(factory.db, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)


def _tables(factory: StoreFactory) -> list[str]:
    """The tables a store would own, and whether the SQLite file was switched to WAL (a write)."""
    if factory.name == "sqlite":
        db = sqlite3.connect(factory.db)
        try:
            names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
            return [*names, f"journal={db.execute('PRAGMA journal_mode').fetchone()[0]}"]
        finally:
            db.close()
    with psycopg.connect(factory.db) as pg:
        return [row[0] for row in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'nexum' ORDER BY 1")]


def _refused(factory: StoreFactory) -> BaseException:
    store = factory.backend(Settings(db=factory.db))
    with pytest.raises(NexumError) as refused:
        store.start()
    store.shutdown()
    assert store.location in str(refused.value)
    return refused.value


NEWER = {
    "sqlite": ("CREATE TABLE future (x)", f"PRAGMA user_version = {SCHEMA_VERSION + 1}"),
    "postgresql": (
        "CREATE SCHEMA nexum",
        "CREATE TABLE nexum.schema_version (version integer NOT NULL)",
        f"INSERT INTO nexum.schema_version VALUES ({SCHEMA_VERSION + 1})",
    ),
}
FOREIGN = {
    "sqlite": ("CREATE TABLE customers (name TEXT)", "INSERT INTO customers VALUES ('ada')"),
    "postgresql": (
        "CREATE SCHEMA nexum",
        "CREATE TABLE nexum.customers (name text)",
        "INSERT INTO nexum.customers VALUES ('ada')",
    ),
}


def test_a_database_from_a_newer_server_is_refused_naming_it_and_left_untouched(make_store: StoreFactory) -> None:
    _write(make_store, *NEWER[make_store.name])
    before = _tables(make_store)
    error = _refused(make_store)
    assert isinstance(error, SchemaError) and "newer Nexum server" in str(error)
    assert _tables(make_store) == before


def test_a_foreign_database_is_refused_and_left_untouched(make_store: StoreFactory) -> None:
    _write(make_store, *FOREIGN[make_store.name])
    before = _tables(make_store)
    error = _refused(make_store)
    assert isinstance(error, SchemaError) and "not a Nexum database" in str(error)
    assert _tables(make_store) == before


def test_a_database_that_cannot_be_opened_is_refused_with_a_clear_error(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    if make_store.name == "sqlite":
        Path(make_store.db).write_text("these are my notes, not a database\n" * 50)
        expected, message = SchemaError, "cannot be used as a SQLite database"
    else:
        make_store.db = make_store.db.rsplit("/", 1)[0] + "/no_such_database"
        expected, message = StoreUnavailable, 'database "no_such_database" does not exist'
    error = _refused(make_store)
    assert isinstance(error, expected) and message in str(error), error
    if make_store.name == "sqlite":
        assert Path(make_store.db).read_text().startswith("these are my notes")


@contextmanager
def _write_lock_held_elsewhere(factory: StoreFactory) -> Iterator[None]:
    """Another program holds the write lock: SQLite's "database is locked", PostgreSQL's lock timeout."""
    if factory.name == "sqlite":
        other = sqlite3.connect(factory.db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        with psycopg.connect(factory.db) as pg:
            pg.execute("LOCK TABLE nexum.executions IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                pg.rollback()


async def test_a_busy_database_is_store_unavailable_not_a_crash(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", "50ms")
    store = make_store(max_attempts=3, retry_backoff_seconds=1.0, retry_backoff_max_seconds=60.0)
    store.register_workflow(REF, IR, T0)
    if isinstance(store, SQLiteStore):
        store.db.execute("PRAGMA busy_timeout = 50")
    with _write_lock_held_elsewhere(make_store), pytest.raises(StoreUnavailable, match="try again"):
        await store.run(store.start_execution, REF, "s", "k", {}, T0)
    assert (await store.run(store.start_execution, REF, "s", "k", {}, T0)).created


async def test_calls_that_arrive_together_each_stand_or_fall_alone(store: Store) -> None:
    # While one call holds the store, the next ones queue up: a store may run them as one group.
    release = threading.Event()
    busy = asyncio.ensure_future(store.run(release.wait, 10))
    await asyncio.sleep(0)
    running = start(store, "running")
    task = claim_one(store, T0)

    calls = [store.run(store.start_execution, REF, "s", f"k{i}", {"i": i}, T0 + 1) for i in range(5)]
    calls += [
        store.run(store.start_execution, OTHER, "s", "never", {}, T0 + 1),
        store.run(store.complete, task.task_id, "stale", "forged", T0 + 1),
        store.run(store.complete, task.task_id, task.lease_token, "real", T0 + 1),
    ]
    waiting = asyncio.gather(*calls, return_exceptions=True)
    await asyncio.sleep(0.05)
    release.set()
    outcomes = await waiting
    await busy

    assert all(o.created for o in outcomes[:5])
    assert isinstance(outcomes[5], WorkflowNotFound) and isinstance(outcomes[6], LeaseLost)
    assert outcomes[7].status is Status.COMPLETED and outcomes[7].result == "real"
    assert sorted(e.key for e in store.list_executions("s", None, None, 100)) == sorted(
        ["running"] + [f"k{i}" for i in range(5)]
    )
    assert store.get_execution(running.id).result == "real"


async def test_sqlite_groups_calls_and_rolls_back_a_failed_one_alone(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(db=str(tmp_path / "group.db")))
    store.start()
    try:
        store.register_workflow(REF, IR, T0)
        release = threading.Event()
        busy = asyncio.ensure_future(store.run(release.wait, 10))
        await asyncio.sleep(0)

        def half_done_then_fails() -> None:
            store.start_execution(REF, "s", "never", {}, T0)
            raise ValueError("a call that fails after writing")

        calls = [store.run(store.start_execution, REF, "s", f"k{i}", {}, T0) for i in range(3)]
        waiting = asyncio.gather(*calls[:2], store.run(half_done_then_fails), calls[2], return_exceptions=True)
        await asyncio.sleep(0.05)
        release.set()
        outcomes = await waiting
        await busy
        assert isinstance(outcomes[2], ValueError)
        assert sorted(e.key for e in store.list_executions("s", None, None, 100)) == ["k0", "k1", "k2"]
    finally:
        store.shutdown()


# Session runs: the agent's own (in-process) executions, fenced by the run that holds the session.


def test_the_current_run_claims_an_in_process_execution_once(store: Store) -> None:
    run = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    task = store.claim_for_run(e.id, "s", run.token, LEASE, T0)
    assert task is not None and task.attempt == 1
    assert store.get_execution(e.id).worker_id == f"run:{run.token}"
    # Held by the current run: a second claim (a duplicate start) gets nothing and must wait.
    assert store.claim_for_run(e.id, "s", run.token, LEASE, T0) is None
    store.complete(task.task_id, task.lease_token, {"answer": 42}, T0 + 1)
    assert store.claim_for_run(e.id, "s", run.token, LEASE, T0 + 1) is None
    assert store.get_execution(e.id).result == {"answer": 42}


def test_a_new_run_takes_the_session_at_once_and_a_live_old_run_finishes_what_it_holds(store: Store) -> None:
    old = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    held = store.claim_for_run(e.id, "s", old.token, LEASE, T0)
    assert held is not None
    new = store.take_session("s", "agent-2", LEASE, T0 + 1)
    assert new.previous_holder == "agent-1" and new.token != old.token
    # The old run is fenced: nothing new, no renewal. What it holds is still its own to report.
    with pytest.raises(SessionTakenOver):
        store.renew_session("s", old.token, LEASE, T0 + 2)
    with pytest.raises(SessionTakenOver):
        store.claim_for_run(start(store, key="k2").id, "s", old.token, LEASE, T0 + 2)
    assert store.claim_for_run(e.id, "s", new.token, LEASE, T0 + 2) is None
    store.complete(held.task_id, held.lease_token, "answer", T0 + 2)
    assert store.get_execution(e.id).result == "answer"


def test_what_a_gone_run_held_is_claimable_at_once_and_its_late_report_refused(store: Store) -> None:
    old = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    held = store.claim_for_run(e.id, "s", old.token, LEASE, T0)
    assert held is not None
    new = store.take_session("s", "agent-2", LEASE, T0 + 1)
    [requeued] = store.run_gone("s", old.token, T0 + 1)
    assert requeued.id == e.id and requeued.status is Status.INTERRUPTED
    # Long before the old lease would run out, the new run holds the unit under a new token.
    again = store.claim_for_run(e.id, "s", new.token, LEASE, T0 + 1)
    assert again is not None and again.lease_token != held.lease_token and again.attempt == 2
    with pytest.raises(LeaseLost):
        store.complete(held.task_id, held.lease_token, "late answer from the old run", T0 + 2)
    store.complete(again.task_id, again.lease_token, "answer", T0 + 2)
    assert store.get_execution(e.id).result == "answer"
    assert store.run_gone("s", new.token, T0 + 3) == []
    assert store.take_session("s", "agent-3", LEASE, T0 + 3).previous_holder is None


def test_what_a_gone_run_held_is_interrupted_no_workers_work_and_forgotten_with_the_session(store: Store) -> None:
    run = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    assert store.claim_for_run(e.id, "s", run.token, LEASE, T0) is not None
    [interrupted] = store.run_gone("s", run.token, T0 + 1)
    assert interrupted.status is Status.INTERRUPTED and "agent run holding it ended" in (interrupted.error or "")
    assert store.claim("w1", [REF], 10, LEASE, T0 + 2).tasks == []
    counts = store.get_session("s")
    assert (counts.running, counts.pending, counts.interrupted) == (0, 0, 1)
    # Still the call's one live execution: a start of the same call finds it, not a new one.
    assert store.start_execution(REF, "s", "k", None, T0 + 2).execution.id == e.id
    assert [key for _, _, key in store.forget_session("s", T0 + 3)] == ["k"]


def test_an_in_process_execution_whose_lease_ran_out_is_interrupted(store: Store) -> None:
    run = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    assert store.claim_for_run(e.id, "s", run.token, LEASE, T0) is not None
    expired, _ = store.expire_leases(T0 + LEASE + 1)
    assert [(x.id, x.status) for x in expired] == [(e.id, Status.INTERRUPTED)]
    again = store.take_session("s", "agent-2", LEASE, T0 + LEASE + 2)
    task = store.claim_for_run(e.id, "s", again.token, LEASE, T0 + LEASE + 2)
    assert task is not None and task.attempt == 2


def test_a_gone_run_on_its_last_attempt_fails_the_execution(make_store: StoreFactory) -> None:
    store = make_store(max_attempts=1)
    store.register_workflow(REF, IR, T0)
    run = store.take_session("s", "agent-1", LEASE, T0)
    e = start(store)
    assert store.claim_for_run(e.id, "s", run.token, LEASE, T0) is not None
    [failed] = store.run_gone("s", run.token, T0 + 1)
    assert failed.status is Status.FAILED and "attempt 1 of 1" in (failed.error or "")


def test_a_dead_run_is_not_named_as_a_live_holder_and_ending_a_run_is_fenced(store: Store) -> None:
    old = store.take_session("s", "agent-1", LEASE, T0)
    assert store.renew_session("s", old.token, LEASE, T0 + 5) == T0 + 5 + LEASE
    new = store.take_session("s", "agent-2", LEASE, T0 + 5 + LEASE + 1)
    assert new.previous_holder is None
    store.end_session_run("s", old.token)  # the old run ending late leaves the new one alone
    assert store.renew_session("s", new.token, LEASE, T0 + 20) == T0 + 20 + LEASE
    store.end_session_run("s", new.token)
    assert store.take_session("s", "agent-3", LEASE, T0 + 21).previous_holder is None


def test_sessions_are_independent(store: Store) -> None:
    a = store.take_session("a", "agent-1", LEASE, T0)
    store.take_session("b", "agent-2", LEASE, T0)
    assert store.renew_session("a", a.token, LEASE, T0 + 1) == T0 + 1 + LEASE
    e = start(store, session_id="b")
    with pytest.raises(SessionTakenOver):
        store.claim_for_run(e.id, "b", a.token, LEASE, T0 + 1)


# --- sessions, forget and retention --------------------------------------------------------------

DAY = 86_400.0


def run_to_completion(
    store: Store, key: str, session_id: str, now: float, took: float = 2.0, input: Any = None
) -> Execution:
    """Start, claim at `now` and complete `took` seconds later; the COMPLETED execution."""
    store.start_execution(REF, session_id, key, {"key": key} if input is None else input, now)
    task = claim_one(store, now)
    return store.complete(task.task_id, task.lease_token, {"result": key}, now + took)


def test_sessions_are_counted_and_listed_by_latest_activity(store: Store) -> None:
    done = run_to_completion(store, "a", "s1", T0, took=2.0)
    store.start_execution(REF, "s1", "b", {"key": "b"}, T0 + 5)
    failed = store.start_execution(REF, "s1", "c", {"key": "c"}, T0 + 6).execution
    task = claim_one(store, T0 + 6)  # the oldest PENDING one: "b"
    store.fail(task.task_id, task.lease_token, "boom", False, T0 + 7)
    store.cancel_execution(failed.id, T0 + 8)
    run_to_completion(store, "x", "s2", T0 + 20)

    store.add_hits([(done.id, 3, T0 + 30), ("gone", 5, T0 + 31)])

    sessions = store.list_sessions(10, None, None)
    assert [s.session_id for s in sessions] == ["s1", "s2"]  # s1's hits are its latest activity
    s1 = sessions[0]
    assert (s1.calls, s1.completed, s1.failed, s1.cancelled, s1.running, s1.pending) == (3, 1, 1, 1, 0, 0)
    assert s1.cached_hits == 3
    assert s1.seconds_saved == pytest.approx(3 * 2.0)
    assert s1.first_activity == T0 and s1.last_activity == T0 + 30
    assert store.get_session("s1") == s1  # one session read alone counts the same
    assert sessions[1].last_activity == T0 + 20  # its newest call started then; it ended later
    assert store.get_session("s2").calls == 1 and store.get_session("s2").cached_hits == 0
    with pytest.raises(NotFound, match="no session 'nope'"):
        store.get_session("nope")


def test_a_call_ran_for_its_last_attempt_only_and_saves_that_model_requests_apart(store: Store) -> None:
    # A tool call whose first worker died: its lease ran out, a second worker took it 20 s after the
    # first and ran it for 1 s. It ran 1 s; the 20 s before are shown apart, and not saved.
    store.start_execution(REF, "s", "tool", {"tool_name": "web_search", "tool_args": {"query": "q"}}, T0)
    claim_one(store, T0)
    again = claim_one(store, T0 + 20)
    assert again.attempt == 2
    tool = store.complete(again.task_id, again.lease_token, "pages", T0 + 21)
    assert (tool.started_at, tool.attempt_started_at, tool.completed_at) == (T0, T0 + 20, T0 + 21)
    model = run_to_completion(
        store, "model", "s", T0 + 30, took=3.0, input={"unit": "model_request", "model": "m", "messages": 1}
    )
    store.add_hits([(tool.id, 2, T0 + 40), (model.id, 1, T0 + 41)])
    counts = store.get_session("s")
    assert counts.seconds_saved == pytest.approx(2 * 1.0 + 3.0)
    assert (counts.tool_seconds_saved, counts.model_seconds_saved) == (pytest.approx(2.0), pytest.approx(3.0))
    [listed] = store.list_sessions(10, None, None)
    assert listed.model_seconds_saved == pytest.approx(3.0)
    call = next(c for c in store.list_calls("s", 10, None)[0] if c.key == "tool")
    assert (call.started_at, call.attempt_started_at) == (T0, T0 + 20)


def test_hits_add_up_and_keep_the_latest_time(store: Store) -> None:
    done = run_to_completion(store, "a", "s", T0)
    store.add_hits([(done.id, 1, T0 + 10)])
    store.add_hits([(done.id, 2, T0 + 5)])
    session = store.get_session("s")
    assert session.cached_hits == 3 and session.last_activity == T0 + 10
    assert store.list_calls("s", 10, None)[0][0].hits == 3


def test_sessions_page_through_without_gaps_or_repeats(store: Store) -> None:
    for i in range(7):
        store.start_execution(REF, f"s{i}", "k", None, T0 + i % 3)  # ties in activity, broken by id
    seen: list[str] = []
    after = None
    while True:
        page = store.list_sessions(3, after, None)
        seen += [s.session_id for s in page]
        if len(page) < 3:
            break
        after = (page[-1].last_activity, page[-1].session_id)
    assert sorted(seen) == [f"s{i}" for i in range(7)] and len(seen) == 7
    activity = [store.get_session(s).last_activity for s in seen]
    assert activity == sorted(activity, reverse=True)
    assert [s.session_id for s in store.list_sessions(10, None, "s4")] == ["s4"]


def test_calls_of_a_session_name_the_tool_or_summarise_any_other_input(store: Store) -> None:
    store.start_execution(REF, "s", "t1", {"tool": "web_search", "args": {"query": "durable"}}, T0)
    store.start_execution(REF, "s", "t2", {"tool_name": "visit_webpage", "tool_args": {"url": "http://x"}}, T0 + 1)
    store.start_execution(REF, "s", "m", {"messages": ["x" * 10_000]}, T0 + 2)
    store.start_execution(REF, "other", "o", None, T0 + 3)
    calls, cursor = store.list_calls("s", 10, None)
    assert cursor is None
    assert [c.key for c in calls] == ["m", "t2", "t1"]
    model, visit, search = calls
    assert (search.tool, search.args) == ("web_search", {"query": "durable"})
    assert (visit.tool, visit.args) == ("visit_webpage", {"url": "http://x"})
    assert model.tool is None and model.summary.startswith('{"messages":["xxx') and len(model.summary) <= 160
    assert all(c.status is Status.PENDING and c.result_chars is None for c in calls)

    first, cursor = store.list_calls("s", 2, None)
    rest, end = store.list_calls("s", 2, cursor)
    assert [c.key for c in first + rest] == ["m", "t2", "t1"] and end is None


def test_forget_deletes_a_finished_session_and_a_new_start_runs_again(store: Store) -> None:
    old = run_to_completion(store, "a", "s", T0)
    run_to_completion(store, "a", "keep", T0)
    assert sorted(store.forget_session("s", T0 + 10)) == [(REF.workflow_id, "s", "a")]
    with pytest.raises(NotFound):
        store.get_execution(old.id)
    again = store.start_execution(REF, "s", "a", {"key": "a"}, T0 + 10)
    assert again.created and again.execution.status is Status.PENDING
    assert store.get_session("keep").completed == 1
    with pytest.raises(NotFound, match="no session 'never'"):
        store.forget_session("never", T0 + 10)


@pytest.mark.parametrize("live", ["pending", "running"])
def test_forget_refuses_a_session_with_live_calls_and_deletes_nothing(store: Store, live: str) -> None:
    run_to_completion(store, "a", "s", T0)
    store.start_execution(REF, "s", "b", None, T0 + 1)
    if live == "running":
        claim_one(store, T0 + 1)
    with pytest.raises(SessionBusy, match=r"1 call.* still pending or running"):
        store.forget_session("s", T0 + 10)
    assert store.get_session("s").calls == 2


def test_forget_refuses_a_session_an_agent_run_holds_until_its_lease_runs_out(store: Store) -> None:
    run_to_completion(store, "a", "s", T0)
    run = store.take_session("s", "agent-1", LEASE, T0 + 1)
    with pytest.raises(SessionBusy, match="held by a run in progress \\(agent-1\\)"):
        store.forget_session("s", T0 + 2)
    assert store.get_session("s").calls == 1
    assert store.forget_session("s", run.lease_expires_at + 1) == [(REF.workflow_id, "s", "a")]


def test_retention_deletes_terminal_executions_older_than_the_cutoff_in_batches(store: Store) -> None:
    old = [run_to_completion(store, f"old{i}", "s", T0 + i) for i in range(5)]
    failed = store.start_execution(REF, "s", "f", None, T0 + 10).execution
    store.cancel_execution(failed.id, T0 + 10)
    recent = run_to_completion(store, "recent", "s", T0 + 40 * DAY)
    store.start_execution(REF, "s", "live", None, T0)  # never finished: never retained away
    cutoff = T0 + 40 * DAY - 30 * DAY

    first = store.delete_terminal_before(cutoff, 4)
    assert sorted(first) == [(REF.workflow_id, "s", f"old{i}") for i in range(4)]  # the oldest ones
    second = store.delete_terminal_before(cutoff, 4)
    assert sorted(k for _, _, k in second) == ["f", "old4"]
    assert store.delete_terminal_before(cutoff, 4) == []
    assert {c.key for c in store.list_calls("s", 10, None)[0]} == {"recent", "live"}
    assert store.get_execution(recent.id).status is Status.COMPLETED
    again = store.start_execution(REF, "s", "old0", {"key": "old0"}, T0 + 41 * DAY)
    assert again.created and again.execution.id != old[0].id


def test_a_file_of_schema_1_is_migrated_and_keeps_its_executions(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    v1 = SQLiteStore(Settings(db=str(path)))
    v1.start()
    v1.register_workflow(REF, IR, T0)
    kept = v1.start_execution(REF, "s", "k", None, T0).execution
    v1.db.executescript(
        "BEGIN; DROP INDEX executions_done; DROP INDEX executions_hits;"
        "DROP INDEX executions_sent_base; DROP TABLE session_messages; DROP TABLE messages;"
        "DROP TABLE session_forks; ALTER TABLE executions DROP COLUMN sent_base;"
        "ALTER TABLE executions DROP COLUMN sent_added; ALTER TABLE executions DROP COLUMN sent_count;"
        "ALTER TABLE executions DROP COLUMN sent_digest;"
        "ALTER TABLE executions DROP COLUMN hits;"
        "ALTER TABLE executions DROP COLUMN last_hit_at; DROP TABLE session_runs;"
        "ALTER TABLE executions DROP COLUMN attempt_started_at;"
        "PRAGMA user_version = 1; COMMIT;"
    )
    v1.shutdown()

    store = SQLiteStore(Settings(db=str(path)))
    store.start()
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.get_execution(kept.id).status is Status.PENDING
        assert store.get_session("s").cached_hits == 0
        assert store.take_session("s", "run-1", LEASE, T0).token
    finally:
        store.shutdown()


def test_a_schema_4_file_counts_interrupted_executions_as_live(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    v4 = SQLiteStore(Settings(db=str(path)))
    v4.start()
    v4.register_workflow(REF, IR, T0)
    v4.db.executescript(
        "BEGIN; DROP INDEX executions_live_key; DROP INDEX IF EXISTS executions_sent_base;"
        "ALTER TABLE executions DROP COLUMN attempt_started_at;"
        + "".join(
            f"ALTER TABLE executions DROP COLUMN {c};" for c in ("sent_base", "sent_added", "sent_count", "sent_digest")
        )
        + "CREATE UNIQUE INDEX executions_live_key ON executions (workflow_id, session_id, key) "
        "WHERE status IN ('PENDING', 'RUNNING', 'COMPLETED'); PRAGMA user_version = 4; COMMIT;"
    )
    v4.shutdown()

    store = SQLiteStore(Settings(db=str(path)))
    store.start()
    try:
        run = store.take_session("s", "run-1", LEASE, T0)
        e = start(store)
        assert store.claim_for_run(e.id, "s", run.token, LEASE, T0) is not None
        store.run_gone("s", run.token, T0 + 1)
        again = store.start_execution(REF, "s", "k", None, T0 + 2)
        assert not again.created and again.execution.status is Status.INTERRUPTED
        assert again.execution.attempt_started_at == T0
    finally:
        store.shutdown()


def test_a_postgres_schema_2_gains_the_hit_counts_and_keeps_its_executions(postgres_url: str) -> None:
    import psycopg

    old = PostgresStore(Settings(db=postgres_url))
    old.start()
    old.register_workflow(REF, IR, T0)
    kept = old.start_execution(REF, "s", "k", None, T0).execution
    old.shutdown()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("ALTER TABLE nexum.executions DROP COLUMN hits, DROP COLUMN last_hit_at")
        db.execute("DROP INDEX nexum.executions_done")
        db.execute("UPDATE nexum.schema_version SET version = 2")

    store = PostgresStore(Settings(db=postgres_url))
    store.start()
    try:
        assert store.get_execution(kept.id).status is Status.PENDING
        store.add_hits([(kept.id, 2, T0 + 1)])
        assert store.get_session("s").cached_hits == 2
    finally:
        store.shutdown()


# --- waits -------------------------------------------------------------------------------------------


def _ask(key: str = "w1", timeout: float | None = None) -> Any:
    from nexum_server.models import CreateWait, PendingCall, WaitRequest

    calls = [PendingCall(tool_call_id="c1", tool_name="visit", args={"url": "<b>x</b>"})]
    return CreateWait(key=key, name="deferred_tool_calls", timeout_seconds=timeout, request=WaitRequest(calls=calls))


def test_a_wait_is_made_once_per_key_and_keeps_its_token_and_request(store: Store) -> None:
    first = store.create_wait("s", _ask(), T0)
    again = store.create_wait("s", _ask(), T0 + 5)
    assert first.created and not again.created
    assert again.token == first.token and again.created_at == T0
    assert again.request.calls[0].args == {"url": "<b>x</b>"}
    assert store.create_wait("s", _ask("w2"), T0).token != first.token
    assert store.create_wait("other", _ask(), T0).token != first.token


def test_the_first_resolution_wins_and_a_second_changes_nothing(store: Store) -> None:
    from nexum_server.errors import WaitOver
    from nexum_server.models import WaitStatus

    wait = store.create_wait("s", _ask(), T0)
    done = store.resolve_wait(wait.token, WaitStatus.RESOLVED, {"approvals": {"c1": True}}, None, "ann", T0 + 1)
    assert done.status is WaitStatus.RESOLVED and done.resolved_by == "ann" and done.resolved_at == T0 + 1
    with pytest.raises(WaitOver):
        store.resolve_wait(wait.token, WaitStatus.FAILED, None, "no", "bob", T0 + 2)
    kept = store.get_wait(wait.token, T0 + 3)
    assert kept.payload == {"approvals": {"c1": True}} and kept.resolved_by == "ann" and kept.error is None
    with pytest.raises(NotFound):
        store.get_wait("no-such-token", T0)


def test_a_wait_times_out_on_the_store_clock_counted_from_its_creation(store: Store) -> None:
    from nexum_server.errors import WaitOver
    from nexum_server.models import WaitStatus

    wait = store.create_wait("s", _ask(timeout=10), T0)
    assert store.create_wait("s", _ask(timeout=10), T0 + 9).expires_at == T0 + 10  # a replay does not restart it
    assert store.get_wait(wait.token, T0 + 9.9).status is WaitStatus.WAITING
    over = store.get_wait(wait.token, T0 + 10)
    assert over.status is WaitStatus.TIMED_OUT and over.resolved_at == T0 + 10 and over.resolved_by == "timeout"
    assert "10" in (over.error or "")
    with pytest.raises(WaitOver):
        store.resolve_wait(wait.token, WaitStatus.RESOLVED, {}, None, "late", T0 + 11)


def test_waits_are_listed_by_status_and_retention_and_forget_keep_a_waiting_one(store: Store) -> None:
    from nexum_server.models import WaitStatus

    waiting = store.create_wait("s", _ask("a"), T0)
    done = store.create_wait("s", _ask("b"), T0)
    store.resolve_wait(done.token, WaitStatus.FAILED, None, "denied", "ann", T0 + 1)
    assert [w.token for w in store.list_waits(WaitStatus.WAITING, None, 50, T0 + 2)] == [waiting.token]
    assert {w.token for w in store.list_waits(None, "s", 50, T0 + 2)} == {waiting.token, done.token}
    assert store.waits_over_among([waiting.token, done.token]) == [done.token]
    store.delete_waits_before(T0 + 10_000, 100)
    assert [w.token for w in store.list_waits(None, "s", 50, T0 + 2)] == [waiting.token]
    store.start_execution(REF, "s", "k", None, T0)
    task = store.claim("w", [REF], 1, LEASE, T0).tasks[0]
    store.complete(task.task_id, task.lease_token, 1, T0)
    with pytest.raises(SessionBusy):
        store.forget_session("s", T0 + 100)
    store.resolve_wait(waiting.token, WaitStatus.RESOLVED, None, None, "ann", T0 + 3)
    store.forget_session("s", T0 + 100)
    with pytest.raises(NotFound):
        store.get_wait(waiting.token, T0 + 101)


def test_a_run_writes_its_units_and_the_results_before_them_in_one_transaction(store: Store) -> None:
    run = store.take_session("s", "agent-1", LEASE, T0)
    [], [first] = store.write_units(REF, "s", run.token, LEASE, [], [UnitToWrite("k1", "m1", None, False, None)], T0)
    assert first.task is not None and first.outcome.created
    # The next unit's write carries the first one's result: it is recorded, the second claimed.
    finished = [(first.task.task_id, first.task.lease_token, {"answer": 1})]
    [done], [second] = store.write_units(
        REF, "s", run.token, LEASE, finished, [UnitToWrite("k2", "t1", None, False, None)], T0 + 1
    )
    assert done.status is Status.COMPLETED and done.result == {"answer": 1}
    assert second.task is not None
    # A unit the store had recorded comes back as it is, not claimed; its order is kept.
    [], [again] = store.write_units(
        REF, "s", run.token, LEASE, [], [UnitToWrite("k1", "m1", None, False, None)], T0 + 2
    )
    assert (
        again.task is None and again.execution.status is Status.COMPLETED and again.execution.id == first.execution.id
    )
    # A unit that has run already is started, claimed and recorded in the one write.
    [], [third] = store.write_units(REF, "s", run.token, LEASE, [], [UnitToWrite("k3", "t2", None, True, 3)], T0 + 3)
    assert third.task is None and third.execution.status is Status.COMPLETED and third.execution.result == 3
    assert [unit.key for unit in store.journal("s")[1]] == ["k1", "k2", "k3"]


def test_a_write_of_a_run_that_was_taken_over_records_nothing(store: Store) -> None:
    old = store.take_session("s", "agent-1", LEASE, T0)
    [], [held] = store.write_units(REF, "s", old.token, LEASE, [], [UnitToWrite("k1", "m1", None, False, None)], T0)
    assert held.task is not None
    store.take_session("s", "agent-2", LEASE, T0 + 1)
    # All or nothing: the result it carries is not recorded either, nor the new unit started.
    finished = [(held.task.task_id, held.task.lease_token, "answer")]
    with pytest.raises(SessionTakenOver):
        store.write_units(REF, "s", old.token, LEASE, finished, [UnitToWrite("k2", "t1", None, False, None)], T0 + 2)
    assert store.get_execution(held.execution.id).status is Status.RUNNING
    assert [unit.key for unit in store.journal("s")[1]] == ["k1"]


def test_wait_tokens_never_begin_with_a_dash(store: Store) -> None:
    # `nexum approve TOKEN` would read a token beginning with "-" as an option (1 in 64 once).
    tokens = [store.create_wait("s", _ask(f"w{i}"), T0).token for i in range(200)]
    assert len(set(tokens)) == 200
    assert not [token for token in tokens if token.startswith("-")]
