"""Shared fixtures: no model requests, a clean environment, and real processes on loopback."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pydantic_ai.models
import pytest

from nexum_devtools.postgres import PostgresMissing, ThrowawayPostgres, find_bindir
from nexum_devtools.procs import DOTENV_KEYS, WORKER_READY, NexumServer, Proc, server_env
from nexum_devtools.web import WebFixture, run_web_fixture, tools_env

CI = pytest.StashKey[bool]()


NETGUARD_DIR = Path(__file__).with_name("netguard")
NETGUARD_LOG = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # Read before any test runs: the autouse fixture below scrubs every NEXUM_ variable.
    config.stash[CI] = os.environ.get("NEXUM_CI") == "1"
    # The network guard, in this process and (through PYTHONPATH and `sitecustomize`) in every
    # Python process a test starts: nothing but loopback, and the test that tried fails.
    fd, log = tempfile.mkstemp(prefix="netguard-", suffix=".log")
    os.close(fd)
    config.stash[NETGUARD_LOG] = Path(log)
    os.environ["NETGUARD_LOG"] = log
    # The checkout too: a process started elsewhere (cwd=tmp_path) runs this checkout's code, not
    # whichever checkout the virtualenv's editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(NETGUARD_DIR), str(NETGUARD_DIR.parent.parent), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(NETGUARD_DIR))
    import sitecustomize  # noqa: F401  (installs the guard here too)


def pytest_unconfigure(config: pytest.Config) -> None:
    if NETGUARD_LOG in config.stash:
        config.stash[NETGUARD_LOG].unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _network_stays_on_loopback(pytestconfig: pytest.Config) -> Iterator[None]:
    log = pytestconfig.stash[NETGUARD_LOG]
    before = log.stat().st_size
    yield
    with log.open(encoding="utf-8") as f:
        f.seek(before)
        refused = f.read()
    if refused:
        pytest.fail(f"this test (or a process it started) tried to reach beyond loopback:\n{refused}", pytrace=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Said once per run: which system parts the tests found, and what happens to tests that need one missing."""
    from tests.ui.browser import missing

    outcome = "fail (NEXUM_CI=1)" if config.stash[CI] else "are skipped"
    try:
        lines = [f"postgresql: {find_bindir()} (a throwaway cluster starts for the tests that need it)"]
    except PostgresMissing as e:
        lines = [f"postgresql: MISSING, its tests {outcome}: {e}"]
    reason = missing()
    lines.append(
        f"page tests (tests/ui): {outcome}: {reason}" if reason else "page tests (tests/ui): headless Debian chromium"
    )
    return lines


PROJECT_VARIABLES = ("NEXUM_", "SESSION_ID", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def _no_model_requests_and_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", False)
    for name in list(os.environ):
        if name.startswith(PROJECT_VARIABLES):
            monkeypatch.delenv(name)
    # Blank rather than unset: a variable in the environment, even an empty one, hides the same key
    # in .env (nexum_server/config.py), so a developer's own .env cannot leak a token, a model key
    # or another port into the processes a test starts. An empty value means the default.
    for name in DOTENV_KEYS:
        monkeypatch.setenv(name, "")


@pytest.fixture(scope="session")
def postgres(pytestconfig: pytest.Config) -> Iterator[ThrowawayPostgres]:
    """A throwaway PostgreSQL for the whole run; skipped where PostgreSQL is not installed, but a
    failure in CI (`NEXUM_CI=1`), so CI never skips these tests silently."""
    try:
        cluster = ThrowawayPostgres()
    except PostgresMissing as e:
        if pytestconfig.stash[CI]:
            pytest.fail(f"NEXUM_CI=1 and {e}")
        pytest.skip(str(e))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_url(postgres: ThrowawayPostgres) -> Iterator[str]:
    """A new empty database on the throwaway PostgreSQL, dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def session_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., NexumServer]]:
    """Start `nexum dev` on a free port with a temporary database; every server started is stopped."""
    started: list[NexumServer] = []

    def start(
        db: Path | None = None, port: int = 0, env: dict[str, str] | None = None, **settings: object
    ) -> NexumServer:
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


@pytest.fixture
def worker_env(web: WebFixture) -> dict[str, str]:
    """What a worker needs to search and read pages on the stand-in web (which is on loopback)."""
    return tools_env(web.url)


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., Proc]]:
    """`start(server, *flags, env=...)` runs `worker.py` until it is ready; all are stopped at teardown.

    A test may SIGKILL or SIGTERM a worker itself; stopping one that already exited is a no-op.
    """
    started: list[Proc] = []

    def start(server: NexumServer, *flags: str, env: dict[str, str] | None = None) -> Proc:
        # Tracked before waiting for readiness, so a worker that never gets ready is still stopped.
        proc = Proc([sys.executable, "worker.py", "--url", server.url, *flags], env={**worker_env, **(env or {})})
        started.append(proc)
        proc.match = proc.wait_for(WORKER_READY)
        return proc

    yield start
    for proc in started:
        proc.stop()
