"""One server per SQLite file: a second `nexum dev` on the same file stops at once, naming the first.

Two servers on one file would each wake only their own long-polls (a worker of one never hears of
a call started on the other) and fight over the write lock. The lock is an advisory `flock` on a
file beside the database, so the operating system drops it when the server exits, however it
exits; the file's text names the holder for the message the next server prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import ConfigError


class ServerLock:
    """Held for as long as the server runs; `release()` on shutdown."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise ConfigError(
                f"{db_path} is already served by {holder}. A SQLite file serves one `nexum dev` at a time: "
                "use that server, stop it first, or give this one another --db. To run several servers on "
                "one database, use PostgreSQL: --db postgresql://user@host:5432/dbname"
            ) from None
        self.announce(None)

    def announce(self, url: str | None) -> None:
        """Record who holds the file, for the message a second server prints."""
        text = f"`nexum dev` (pid {os.getpid()}" + (f", {url})" if url else ")")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1
