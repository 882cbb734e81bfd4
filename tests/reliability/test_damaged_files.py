"""Damaged or unusable database files: `nexum dev` exits 2 with one `error:` line naming the problem,
and damage found while serving answers 503 with a message, logged once, never a bare 500.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from nexum_devtools.procs import NexumServer
from nexum_server.config import Settings
from nexum_server.errors import ConfigError, StoreUnavailable
from nexum_server.store import SQLiteStore
from nexum_server.store import sqlite as sqlite_store
from tests.server.conftest import IR, REF, start_body
from tests.server.test_cli import nexum, said


def one_error_line(result: object, *expected: str) -> None:
    text = said(result)  # type: ignore[arg-type]
    assert result.returncode == 2, text  # type: ignore[attr-defined]
    assert text.startswith("error: cannot open the database:"), text
    assert "Traceback" not in text and "listening" not in text
    for part in expected:
        assert part in text, text


def a_database(path: Path, executions: int = 300) -> None:
    """A Nexum database with enough rows to span many pages."""
    server = NexumServer(path, 0, {})
    try:
        with server.http() as http:
            http.post("/v1/workflows", json={**REF, "ir": IR}).raise_for_status()
            for i in range(executions):
                http.post("/v1/executions", json=start_body("s", f"k{i}", {"text": "x" * 500})).raise_for_status()
    finally:
        server.stop()


def test_a_damaged_file_is_found_at_start_up(tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    a_database(db)
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    for page in range(3, len(data) // page_size - 1, 4):  # every fourth page past the schema
        data[page * page_size + 8 : page * page_size + 200] = b"\xa5" * 192
    db.write_bytes(bytes(data))
    one_error_line(nexum("dev", "--port", "0", "--db", str(db)), "is damaged", ".recover")


def test_a_directory_at_the_db_path_is_refused(tmp_path: Path) -> None:
    one_error_line(nexum("dev", "--port", "0", "--db", str(tmp_path)), "is a directory")


def test_a_folder_or_file_that_is_not_writable_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write anywhere and tests cannot mount a read-only file system: what the kernel
    # would say of a read-only one is what `os.access` is made to say here.
    db = tmp_path / "nexum.db"
    a_database(db, executions=1)
    for unwritable, what in ((tmp_path, "folder"), (db, "file")):
        monkeypatch.setattr(sqlite_store.os, "access", lambda p, mode, bad=unwritable: Path(p) != bad)
        store = SQLiteStore(Settings(db=str(db)))
        with pytest.raises(ConfigError, match=f"the {what} .* is not writable"):
            store.open()
        store.shutdown()


async def test_damage_found_while_serving_is_a_503_with_a_message_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(Settings(db=str(tmp_path / "s.db")))
    store.start()
    try:

        def damaged() -> None:
            raise sqlite3.DatabaseError("database disk image is malformed")

        with caplog.at_level(logging.ERROR, logger="nexum.store"):
            for _ in range(3):
                with pytest.raises(StoreUnavailable, match="the database file is damaged"):
                    await store.run(damaged)
                with pytest.raises(StoreUnavailable, match="the database file is damaged"):
                    await store.read(damaged)
        assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
        assert "restore it from a backup" in caplog.records[0].getMessage()
    finally:
        store.shutdown()
