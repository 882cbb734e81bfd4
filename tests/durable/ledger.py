"""The ledger of a scenario: one JSON line per model request answered and per side effect of a tool.

Each line is written and closed at once, so what a process killed with SIGKILL had done is on disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

LEDGER_VARIABLE = "DURABLE_LEDGER"
"""Names the ledger for processes a scenario starts (the MCP server)."""


def note(kind: str, what: str, path: Path | None = None) -> None:
    target = path or Path(os.environ[LEDGER_VARIABLE])
    with target.open("a") as f:
        f.write(json.dumps({"kind": kind, "what": what}) + "\n")


@dataclass(frozen=True)
class Entries:
    """What a ledger holds, by kind."""

    models: list[str]
    """One entry per model request answered, naming the agent that asked."""
    effects: list[str]
    """One entry per side effect of a tool (its name and arguments)."""
    other: list[str]
    """Anything else noted (an MCP server's start)."""


def read(path: Path) -> Entries:
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    by = lambda kind: [line["what"] for line in lines if line["kind"] == kind]  # noqa: E731
    return Entries(
        by("model"),
        by("effect"),
        [f"{line['kind']} {line['what']}" for line in lines if line["kind"] not in ("model", "effect")],
    )
