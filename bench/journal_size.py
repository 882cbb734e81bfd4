"""What the journal stores for a model run, against storing the whole history with every request.

A run of N turns: each model request is sent the whole history and answers with one tool call,
whose result is 4 KB of text. Each run goes through the real SQLite store, one fresh file per run,
and the store counts what it holds (`stored_bytes`); the second column is what the history's JSON
text would cost if every request kept its own copy. Also times a start carrying its new messages
at the last turn against a start without them, in process (no HTTP).

Run with:
    .venv/bin/python -m bench.journal_size
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from nexum_devtools.journal_sim import conversation, start_fields, whole_history_bytes
from nexum_server.config import Settings
from nexum_server.journal import split_input
from nexum_server.models import MessageBody, WorkflowRef
from nexum_server.store import SQLiteStore

REF = WorkflowRef(workflow_id="bench", version_hash="sha256:bench")
TURNS = (10, 50, 200)


def run(store: SQLiteStore, session_id: str, turns: int) -> list[float]:
    """Start and complete each request; the seconds each start took in the store."""
    took = []
    for turn, (sent, new, response) in enumerate(conversation(turns, 4096, session_id)):
        hashes, messages = start_fields(sent, new)
        started = time.perf_counter()
        input, journal = split_input(
            {"unit": "model_request", "sent": hashes}, [MessageBody.model_validate(m) for m in messages]
        )
        store.start_execution(REF, session_id, f"r{turn}", input, time.time(), journal)
        took.append(time.perf_counter() - started)
        task = store.claim("w", [REF], 1, 30, time.time()).tasks[0]
        store.complete(task.task_id, task.lease_token, response, time.time())
    return took


def main() -> None:
    print(f"{'turns':>5} {'journal':>10} {'whole history per request':>26} {'ratio':>6} {'start at last turn':>19}")
    with tempfile.TemporaryDirectory() as folder:
        for turns in TURNS:
            store = SQLiteStore(Settings(db=str(Path(folder) / f"{turns}.db")))
            store.start()
            try:
                store.register_workflow(REF, {"nodes": [{"id": "n"}]}, time.time())
                took = run(store, f"s{turns}", turns)
                counts = store.stored_bytes()
            finally:
                store.shutdown()
            journal = counts["message_bytes"] + counts["execution_bytes"]
            naive = whole_history_bytes(turns, 4096)
            last = statistics.median(took[-5:]) * 1000
            print(
                f"{turns:>5} {journal / 1e6:>8.2f} MB {naive / 1e6:>23.2f} MB {naive / journal:>5.0f}x {last:>15.2f} ms"
            )


if __name__ == "__main__":
    main()
