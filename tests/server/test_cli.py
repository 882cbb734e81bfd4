"""The `nexum` command as a user runs it: `python -m nexum_server ...` as a subprocess.

Output goes through rich at its non-terminal width (80 columns), so messages are compared with
their whitespace folded; ids must survive that width whole.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexum_server.store import SCHEMA_VERSION
from nexum_devtools.procs import ROOT, NexumServer
from tests.server.conftest import Api

COMMAND_TIMEOUT = 30


def nexum(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nexum_server", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)


def said(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed, with rich's line wrapping folded back into single spaces."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def executions(api: Api, session_id: str) -> dict[str, dict]:
    """One COMPLETED and one PENDING execution in `session_id`."""
    done = api.start(session_id, "done", {"tool_name": "web_search", "tool_args": {"query": "durable"}})
    api.complete(api.poll_one(), {"result": "the answer text"})
    pending = api.start(session_id, "pending")
    return {"done": api.get(done["id"]), "pending": pending}


def test_ps_lists_executions_with_their_ids_and_statuses(
        server: NexumServer, executions: dict[str, dict], session_id: str) -> None:
    result = nexum("ps", "--url", server.url, "--session", session_id)
    assert result.returncode == 0, said(result)
    assert executions["done"]["id"] in result.stdout
    assert executions["pending"]["id"] in result.stdout
    assert "COMPLETED" in result.stdout and "PENDING" in result.stdout
    assert result.stdout.index(executions["pending"]["id"]) < result.stdout.index(executions["done"]["id"])

    completed_only = nexum("ps", "--url", server.url, "--status", "completed")
    assert completed_only.returncode == 0, said(completed_only)
    assert executions["done"]["id"] in completed_only.stdout
    assert executions["pending"]["id"] not in completed_only.stdout

    nobody = nexum("ps", "--url", server.url, "--session", "nobody")
    assert nobody.returncode == 0 and "no executions" in nobody.stdout


def test_show_prints_one_execution_and_its_result(server: NexumServer, executions: dict[str, dict]) -> None:
    done = executions["done"]
    result = nexum("show", done["id"], "--url", server.url)
    assert result.returncode == 0, said(result)
    text = said(result)
    assert done["id"] in text and "COMPLETED" in text and "attempt 1 of 3" in text
    assert done["session_id"] in text and "the answer text" in text

    missing = nexum("show", "no-such-id", "--url", server.url)
    assert missing.returncode == 1
    assert "404" in said(missing) and "no-such-id" in said(missing)


def test_cancel_cancels_a_pending_execution_and_refuses_a_completed_one(
        server: NexumServer, api: Api, executions: dict[str, dict]) -> None:
    pending = executions["pending"]
    result = nexum("cancel", pending["id"], "--url", server.url)
    assert result.returncode == 0, said(result)
    assert f"{pending['id']} is CANCELLED" in said(result)
    assert api.get(pending["id"])["status"] == "CANCELLED"

    refused = nexum("cancel", executions["done"]["id"], "--url", server.url)
    assert refused.returncode == 1
    assert "409" in said(refused) and "already COMPLETED" in said(refused)
    assert api.get(executions["done"]["id"])["status"] == "COMPLETED"


def test_the_url_comes_from_nexum_url(server: NexumServer, executions: dict[str, dict],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_URL", server.url)
    result = nexum("ps")
    assert result.returncode == 0, said(result)
    assert executions["done"]["id"] in result.stdout


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_ps_without_a_server_exits_2_naming_the_url_and_nexum_dev(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = nexum("ps", "--url", url)
    assert result.returncode == 2
    text = said(result)
    assert url in text and "`nexum dev`" in text
    assert "Traceback" not in text


def test_dev_refuses_a_database_from_a_newer_server(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    result = nexum("dev", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    text = said(result)
    assert "cannot open the database" in text and "newer Nexum server" in text
    assert str(db) in "".join(text.split())  # a long path may wrap anywhere
    assert "Traceback" not in text and "listening" not in text
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_dev_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 100)
    result = nexum("dev", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    text = said(result)
    assert "cannot open the database" in text and "Traceback" not in text


def test_dev_on_a_port_in_use_exits_2_and_says_so(server: NexumServer, tmp_path: Path) -> None:
    result = nexum("dev", "--port", str(server.port), "--db", str(tmp_path / "second.db"))
    assert result.returncode == 2
    text = said(result)
    assert f"cannot listen on 127.0.0.1:{server.port}" in text
    assert "another `nexum dev` running" in text and "--port" in text
    assert "Traceback" not in text
    with server.http() as http:
        assert http.get("/health").status_code == 200  # the first server is unaffected
