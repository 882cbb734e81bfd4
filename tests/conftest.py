"""Shared fixtures: no model requests, a clean environment, and real processes on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pydantic_ai.models
import pytest

from tests.fixtures.web import WebFixture, run_web_fixture
from tests.procs import NexumServer, server_env

PROJECT_VARIABLES = ("NEXUM_", "SEARCH_BACKEND", "SEARXNG_URL", "SESSION_ID", "OPENAI_API_KEY", "GEMINI_API_KEY",
                     "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def _no_model_requests_and_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", False)
    for name in list(os.environ):
        if name.startswith(PROJECT_VARIABLES):
            monkeypatch.delenv(name)


@pytest.fixture
def session_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., NexumServer]]:
    """Start `nexum dev` on a free port with a temporary database; every server started is stopped."""
    started: list[NexumServer] = []

    def start(db: Path | None = None, port: int = 0, env: dict[str, str] | None = None,
              **settings: object) -> NexumServer:
        server = NexumServer(db or tmp_path / "nexum.db", port, {**server_env(**settings), **(env or {})})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., NexumServer]) -> NexumServer:
    return start_server()


@pytest.fixture(scope="session")
def web() -> Iterator[WebFixture]:
    """The fixture web server (search and pages), shared by the session; tests use distinct URLs."""
    with run_web_fixture() as fixture:
        yield fixture
