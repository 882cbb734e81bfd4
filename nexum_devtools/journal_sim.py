"""A model run's conversation as a Nexum session would journal it, for measuring what storing it costs.

Each turn the model is sent the whole history so far and answers with one tool call; the tool
returns `result_bytes` of text. `conversation(turns)` yields, per model request, the messages it
was sent (Pydantic AI's JSON shape, trimmed to what matters here) and the ones new since the last;
runs with different `tag`s share no message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from nexum_server.journal import message_hash


def _request(turn: int, result_bytes: int, tag: str) -> dict[str, Any]:
    if turn == 0:
        return {
            "kind": "request",
            "instructions": "You are a research assistant.",
            "parts": [{"part_kind": "user-prompt", "content": f"What is durable execution? {tag}"}],
        }
    text = (f"result {turn} {tag} " + "lorem ipsum dolor sit amet " * (result_bytes // 27 + 1))[:result_bytes]
    return {
        "kind": "request",
        "parts": [
            {"part_kind": "tool-return", "tool_name": "visit_webpage", "tool_call_id": f"call-{turn}", "content": text}
        ],
    }


def _response(turn: int) -> dict[str, Any]:
    return {
        "kind": "response",
        "parts": [
            {
                "part_kind": "tool-call",
                "tool_name": "visit_webpage",
                "args": {"url": f"https://example.org/{turn}"},
                "tool_call_id": f"call-{turn + 1}",
            }
        ],
        "usage": {"input_tokens": 100 * (turn + 1), "output_tokens": 20},
    }


def conversation(turns: int, result_bytes: int = 4096, tag: str = "") -> Iterator[tuple[list[Any], list[Any], Any]]:
    """(history sent, messages new since the previous request, the response) for each model request."""
    history: list[Any] = []
    for turn in range(turns):
        new = ([_response(turn - 1)] if turn else []) + [_request(turn, result_bytes, tag)]
        history = history + new
        yield list(history), new, _response(turn)


def whole_history_bytes(turns: int, result_bytes: int = 4096) -> int:
    """What storing the whole history with every request would cost: its JSON text, per request."""
    return sum(
        len(json.dumps(sent, separators=(",", ":")).encode()) for sent, _, _ in conversation(turns, result_bytes)
    )


def start_fields(sent: list[Any], new: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The `sent` hashes and the `messages` a start carries for one request."""
    return [message_hash(m) for m in sent], [{"hash": message_hash(m), "body": m} for m in new]
