"""A model request as text: what it was sent, part by part, and what came back (`nexum show`).

Messages are Pydantic AI's `ModelMessage` JSON: a request's parts are system prompts, user prompts,
tool returns and retry prompts (with the request's `instructions`); a response's are text, thinking
and tool calls, with `usage`. Unknown parts are shown as their JSON, never dropped. Everything is
plain text: stored text is never read as markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FOLD_CHARS = 600
"""Longer parts are cut to this many characters unless the whole text is asked for."""

LABELS = {
    "system-prompt": "system",
    "user-prompt": "user",
    "tool-return": "tool result",
    "retry-prompt": "retry",
    "text": "text",
    "thinking": "thinking",
    "tool-call": "tool call",
}


@dataclass(frozen=True)
class Part:
    label: str
    text: str
    new: bool = False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def parts_of(message: Any, new: bool = False) -> list[Part]:
    """The parts of one message, labelled; `new` marks a message the previous request was not sent."""
    if not isinstance(message, dict):
        return [Part("message", _text(message), new)]
    found = []
    if message.get("instructions"):
        found.append(Part("instructions", str(message["instructions"]), new))
    for part in message.get("parts") or ():
        kind = part.get("part_kind") if isinstance(part, dict) else None
        label = LABELS.get(kind or "", kind or "part")
        if kind == "tool-call":
            text = f"{part.get('tool_name')}({_text(part.get('args'))})"
        elif kind in ("tool-return", "retry-prompt") and part.get("tool_name"):
            label = f"{label} {part['tool_name']}"
            text = _text(part.get("content"))
        elif isinstance(part, dict) and "content" in part:
            text = _text(part["content"])
        else:
            text = _text(part)
        found.append(Part(label, text, new))
    return found


def usage_line(response: Any) -> str | None:
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    shown = {k: v for k, v in usage.items() if isinstance(v, int | float) and v}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shown.items()) or "none reported"


def fold(text: str, full: bool, limit: int = FOLD_CHARS) -> str:
    if full or len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters; --full shows them)"
