"""The queue service in process, on a real SQLite store: which held polls a new task wakes.

One new task wakes one held poll, not all of them; a poll that is woken and then leaves without
claiming (its worker went away) hands the wake-up on, so the task is never left waiting for a
poll's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nexum_server.config import Settings
from nexum_server.models import PollTasks, StartExecution, WorkflowRef
from nexum_server.service import QueueService
from nexum_server.store import open_store

REF = WorkflowRef(workflow_id="wf", version_hash="sha256:abc")
IR = {"nodes": [{"id": "n1", "kind": "EFFECT"}]}
HOLD = 20.0
"""Far longer than any wake-up takes: a poll that returns sooner was woken, not timed out."""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[QueueService]:
    service = QueueService(Settings(db=str(tmp_path / "service.db")))
    await service.start(open_store)
    await service.store.run(service.store.register_workflow, REF, IR, time.time())
    yield service
    service.close_requests()
    await service.stop()


def poll(service: QueueService, worker: str, gone: asyncio.Event | None = None) -> asyncio.Task[list]:
    body = PollTasks(worker_id=worker, workflows=[REF], wait=HOLD, max_tasks=5)

    async def disconnected() -> bool:
        return gone is not None and gone.is_set()

    return asyncio.create_task(service.poll(body, disconnected))


async def start(service: QueueService, key: str) -> None:
    await service.start_execution(StartExecution(**REF.model_dump(), session_id="s", key=key, input={}))


async def held(service: QueueService, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(service.notifier._pollers) < count:
        assert time.monotonic() < deadline, "the polls were never held"
        await asyncio.sleep(0.01)


async def test_one_new_task_wakes_one_held_poll(service: QueueService, monkeypatch: pytest.MonkeyPatch) -> None:
    claims: list[str] = []
    claim = service.store.claim

    def counted(worker_id: str, *args: object) -> object:
        claims.append(worker_id)
        return claim(worker_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(service.store, "claim", counted)
    first, second = poll(service, "w1"), poll(service, "w2")
    await held(service, 2)

    await start(service, "a")
    done, waiting = await asyncio.wait({first, second}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(done.pop().result()) == 1
    await start(service, "b")
    [other] = waiting
    assert len(await asyncio.wait_for(other, 5)) == 1

    # Each poll read the store once on arrival and once per task it was woken for; woken all
    # at once, the loser of the first task would have read it once more for nothing.
    assert sorted(claims) == ["w1", "w1", "w2", "w2"]


async def test_a_woken_poll_whose_worker_left_hands_the_wake_up_on(service: QueueService) -> None:
    gone = asyncio.Event()
    gone.set()
    leaving = poll(service, "gone", gone)
    await held(service, 1)
    staying = poll(service, "stays")
    await held(service, 2)

    started = time.monotonic()
    await start(service, "a")

    assert await asyncio.wait_for(leaving, 5) == []
    [task] = await asyncio.wait_for(staying, 5)
    assert task.input == {} and time.monotonic() - started < HOLD / 4
