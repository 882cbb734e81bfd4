"""Durable state behind one contract (`Store`); `open_store` picks the implementation."""

from __future__ import annotations

from ..config import Settings
from .base import SCHEMA_VERSION, ClaimOutcome, StartOutcome, Store
from .sqlite import SQLiteStore

__all__ = ["SCHEMA_VERSION", "ClaimOutcome", "SQLiteStore", "StartOutcome", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store for `settings.db`: a SQLite file today."""
    store = SQLiteStore(settings)
    store.start()
    return store
