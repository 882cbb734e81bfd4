"""Durable state behind one contract (`Store`); `open_store` picks the implementation from `--db`.

A path is a SQLite file (one server per file); a `postgresql://` URL is a PostgreSQL database that
several servers may share.
"""

from __future__ import annotations

import re

from ..config import Settings
from ..errors import ConfigError
from .base import SCHEMA_VERSION, ClaimOutcome, StartOutcome, Store, UnitToWrite, WrittenUnit
from .sqlite import SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "ClaimOutcome",
    "SQLiteStore",
    "StartOutcome",
    "Store",
    "UnitToWrite",
    "WrittenUnit",
    "backend",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def backend(db: str) -> str:
    """`sqlite` or `postgresql` for a `--db` value; `ConfigError` for a URL of any other scheme."""
    found = URL_SCHEME.match(db)
    if found is None:
        return "sqlite"
    if found.group(1).lower() in POSTGRES_SCHEMES:
        return "postgresql"
    raise ConfigError(
        f"NEXUM_DB / --db {found.group(1)}://... is not supported: give a SQLite file path "
        "(e.g. .nexum/local.db) or a PostgreSQL URL (postgresql://user@host:5432/dbname)"
    )


def open_store(settings: Settings) -> Store:
    """The open store for `settings.db`; a SQLite file is locked to this server until shutdown."""
    store: Store
    if backend(settings.db) == "postgresql":
        try:
            from .postgres import PostgresStore  # psycopg is imported only by servers that use it
        except ImportError as e:
            if e.name not in ("psycopg", "psycopg_pool"):
                raise
            raise ConfigError(
                f"NEXUM_DB / --db is a PostgreSQL URL but {e.name or 'psycopg'} is not installed: "
                "pip install 'nexum-pydantic-ai[postgres]'"
            ) from e

        store = PostgresStore(settings)
    else:
        store = SQLiteStore(settings, lock=True)
    try:
        store.start()
    except BaseException:
        store.shutdown()
        raise
    return store
