"""Helpers for the server tests: one registered workflow, request bodies, and a client per server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from nexum_devtools.procs import NexumServer

WORKFLOW_ID = "wf"
VERSION_HASH = "sha256:abc"
REF = {"workflow_id": WORKFLOW_ID, "version_hash": VERSION_HASH}
IR = {"nodes": [{"id": "n1", "kind": "EFFECT"}]}
READY_TIMEOUT = 10.0


def start_body(session_id: str, key: str, input: Any = None, wait: float = 0.0) -> dict[str, Any]:
    return {
        **REF,
        "session_id": session_id,
        "key": key,
        "input": {"key": key} if input is None else input,
        "wait": wait,
    }


def poll_body(worker_id: str = "worker-1", wait: float = 0.0, max_tasks: int = 1) -> dict[str, Any]:
    return {"worker_id": worker_id, "workflows": [REF], "wait": wait, "max_tasks": max_tasks}


class Api:
    """A sync client of one server with the few calls the tests repeat; every call checks its status."""

    def __init__(self, server: NexumServer, token: str | None = None) -> None:
        self.server = server
        self.http = server.http(token)

    def close(self) -> None:
        self.http.close()

    def register(self, ref: dict[str, str] = REF, ir: dict[str, Any] = IR) -> str:
        response = self.http.post("/v1/workflows", json={**ref, "ir": ir})
        assert response.status_code == 200, response.text
        return response.json()["outcome"]

    def start(
        self, session_id: str, key: str, input: Any = None, *, wait: float = 0.0, expect: int | None = None
    ) -> dict[str, Any]:
        response = self.http.post("/v1/executions", json=start_body(session_id, key, input, wait), timeout=wait + 30)
        assert response.status_code in ((expect,) if expect else (200, 201)), response.text
        return response.json()

    def get(self, execution_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def list(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/v1/executions", params=params)
        assert response.status_code == 200, response.text
        return response.json()["executions"]

    def poll(self, worker_id: str = "worker-1", wait: float = 0.0, max_tasks: int = 1) -> list[dict[str, Any]]:
        """The tasks claimed; [] on 204."""
        response = self.http.post("/v1/tasks/poll", json=poll_body(worker_id, wait, max_tasks), timeout=wait + 30)
        assert response.status_code in (200, 204), response.text
        return [] if response.status_code == 204 else response.json()["tasks"]

    def poll_one(self, worker_id: str = "worker-1", wait: float = 5.0) -> dict[str, Any]:
        tasks = self.poll(worker_id, wait)
        assert len(tasks) == 1, f"expected one task within {wait} s, got {tasks}"
        return tasks[0]

    def report(self, task: dict[str, Any], action: str, token: str | None = None, **body: Any) -> httpx2.Response:
        """POST /v1/tasks/{id}/{action} with the task's lease token (or `token`); the raw response."""
        return self.http.post(
            f"/v1/tasks/{task['task_id']}/{action}", json={"lease_token": token or task["lease_token"], **body}
        )

    def complete(self, task: dict[str, Any], output: Any) -> dict[str, Any]:
        response = self.report(task, "complete", output=output)
        assert response.status_code == 200, response.text
        return response.json()

    def fail(self, task: dict[str, Any], error: str, retryable: bool = True) -> dict[str, Any]:
        response = self.report(task, "fail", error=error, retryable=retryable)
        assert response.status_code == 200, response.text
        return response.json()

    def metrics(self) -> str:
        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample, e.g. `metric("nexum_held_requests", 'kind="task_poll"')`."""
        sample = re.escape(name + (f"{{{labels}}}" if labels else ""))
        found = re.search(rf"^{sample} (\S+)$", self.metrics(), re.MULTILINE)
        assert found is not None, f"no sample {name}{{{labels}}} in /metrics"
        return float(found.group(1))

    def wait_held(self, kind: str, count: int = 1, timeout: float = READY_TIMEOUT) -> None:
        """Readiness: until `count` long-polls of `kind` are parked in the server (its own gauge)."""
        deadline = time.monotonic() + timeout
        while self.metric("nexum_held_requests", f'kind="{kind}"') < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no {count} held {kind} request(s) within {timeout} s")


@pytest.fixture
def connect() -> Iterator[Callable[..., Api]]:
    """`connect(server, token=None, register=True)`: an `Api` on the server, closed after the test."""
    made: list[Api] = []

    def make(server: NexumServer, token: str | None = None, register: bool = True) -> Api:
        api = Api(server, token)
        made.append(api)
        if register:
            api.register()
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(server: NexumServer, connect: Callable[..., Api]) -> Api:
    """A client of the default test server, with the test workflow registered."""
    return connect(server)
