"""Path and query parameters of the routes, each checked once here (bodies are checked in `models.py`).

Nothing a store cannot hold reaches it: no parameter takes the NUL character (PostgreSQL refuses
it in text, SQLite takes it; both answer the same 422 this way), and session ids follow the one
rule of `ids.py` wherever they appear.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from .models import NO_NUL, SessionId

Id = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
"""An execution or task id (a task's id is its execution's)."""
RunToken = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
SessionPath = Annotated[SessionId, Path()]
SessionFilter = Annotated[SessionId | None, Query()]
Text = Annotated[str | None, Query(max_length=200, pattern=NO_NUL)]
"""A filter or a cursor."""
