"""Unit keys: what makes two units of a session the same unit, as sha256 hex digests.

Every key starts from the run's identity (`RunIdentity`: the key scheme, the agent's name, its deps
and its run metadata) and adds what produced the unit:

- a **model request**: the model's name, the message history as a hash chain, the model settings
  and the request parameters (tool definitions, output mode);
- a **tool call**: the toolset's id, the tool's name, its arguments as canonical JSON, the chain
  hash of the history up to the model response that asked for it, the call's place among the
  calls of that history, and the decision on it that the run carries (approved or not);
- a **tool listing** (dynamic and MCP toolsets): the toolset's id and the history so far.

The history is hashed message by message: `h(k) = sha256(h(k-1) + message k)`, each message
without the fields that differ between two runs of the same history (timestamps, run and
conversation ids), tool-call ids numbered in order of first appearance, and a request's tool
results in the order of their calls. A run hashes each message once, so a key costs the same at
step 200 as at step 1, and the same history gives the same keys in every process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest, ModelResponse, UserPromptPart
from pydantic_ai.models import ModelRequestParameters

from nexum_server.journal import message_hash

KEY_SCHEME = 2
"""Bumped whenever a key's projection changes: units recorded under another scheme are not served."""
VOLATILE_FIELDS = frozenset({"timestamp", "run_id", "conversation_id"})
"""Message fields that differ between two runs of the same history; left out of every key."""

_ANY = TypeAdapter(Any)
_PARAMETERS = TypeAdapter(ModelRequestParameters)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(*parts: Any) -> str:
    """The sha256 hex digest of `parts` as canonical JSON."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def _digest_of_texts(*texts: str) -> str:
    """`digest` of parts given as their canonical JSON texts: the canonical JSON of a list is its
    items' texts, comma-separated, in brackets."""
    return hashlib.sha256(f"[{','.join(texts)}]".encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _projected(dumped: bytes) -> str:
    """The canonical JSON of settings or request parameters (as dumped) without volatile fields.

    A run sends the same settings and tool definitions with every request: they are projected once."""
    return canonical_json(_without_volatile(json.loads(dumped), {}))


def jsonable(value: Any, what: str) -> Any:
    """`value` as plain JSON data, or a `UserError` naming `what` could not be keyed."""
    try:
        data = _ANY.dump_python(value, mode="json")
        canonical_json(data)
    except Exception as e:
        raise UserError(
            f"{what} of type {type(value).__name__} cannot be part of a unit key ({e}); pass "
            "JSON-serialisable data (a Pydantic model, a dataclass, a dict), or tell "
            "NexumDurability what identifies it, e.g. deps_key=lambda deps: deps.tenant_id"
        ) from e
    return data


@dataclass(frozen=True)
class RunIdentity:
    """What tells two runs of a session apart besides their messages: every key includes it."""

    agent: str
    deps: Any = None
    metadata: Any = None
    repeat: int = 0
    """How many runs with the same start (prompt, history, identity) this capability made before."""

    @functools.cached_property
    def base(self) -> str:
        if self.repeat:  # a first run's keys stay as they were; a repeat of it is a new run
            return digest(KEY_SCHEME, self.agent, self.deps, self.metadata, self.repeat)
        return digest(KEY_SCHEME, self.agent, self.deps, self.metadata)

    def start(self, prompt: Any, history: list[ModelMessage]) -> str:
        """What a run starts from: two runs with the same start are the same run, or its repeat."""
        return digest(self.base, jsonable(prompt, "the prompt"), MessageChain().through(history))


def _without_volatile(value: Any, call_ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in VOLATILE_FIELDS:
                continue
            if k == "tool_call_id" and isinstance(v, str):
                v = call_ids.setdefault(v, f"call-{len(call_ids)}")
            out[k] = _without_volatile(v, call_ids)
        return out
    if isinstance(value, list):
        return [_without_volatile(v, call_ids) for v in value]
    return value


def _in_call_order(message: dict[str, Any]) -> dict[str, Any]:
    """A request's tool results in the order of their calls, not of their completion: parallel calls
    finish in any order, and the same results must give the same key."""
    parts = message.get("parts") if message.get("kind") == "request" else None
    if not parts:
        return message
    slots = [i for i, part in enumerate(parts) if isinstance(part, dict) and "tool_call_id" in part]
    ordered = sorted((parts[i] for i in slots), key=lambda part: int(str(part["tool_call_id"]).split("-")[-1]))
    reordered = list(parts)
    for slot, part in zip(slots, ordered, strict=True):
        reordered[slot] = part
    return {**message, "parts": reordered}


@dataclass
class MessageChain:
    """The hash chain of one run's message history; each message is hashed once.

    The run's history only grows, so the chain keeps the messages it hashed and extends from the
    last one; a history that is not an extension of them (another run's) is hashed afresh.
    """

    _messages: list[ModelMessage] = field(default_factory=list)
    _hashes: list[str] = field(default_factory=list)
    _call_ids: dict[str, str] = field(default_factory=dict)
    _data: list[Any] = field(default_factory=list)
    """Each message as JSON, kept for the journal: a start sends what the server lacks."""
    _stored: list[tuple[str, Any]] = field(default_factory=list)
    """(content hash, JSON) of the first messages, hashed only when a start needs them."""
    generation: int = 0
    """Counts the times the chain started afresh: within one generation its lists only grow."""

    def through(self, messages: list[ModelMessage], count: int | None = None) -> str:
        """The chain hash of `messages[:count]` (all of them by default)."""
        count = len(messages) if count is None else count
        known = len(self._messages)
        if known > count or (known and messages[known - 1] is not self._messages[-1]):
            self._messages, self._hashes, self._call_ids, self._data, self._stored = [], [], {}, [], []
            self.generation += 1
            known = 0
        for message in messages[known:count]:
            data = ModelMessagesTypeAdapter.dump_python([message], mode="json")[0]
            projection = _in_call_order(_without_volatile(data, self._call_ids))
            previous = self._hashes[-1] if self._hashes else ""
            self._hashes.append(hashlib.sha256((previous + canonical_json(projection)).encode()).hexdigest())
            self._messages.append(message)
            self._data.append(data)
        return self._hashes[count - 1] if count else ""

    def stored(self, count: int, start: int = 0) -> list[tuple[str, Any]]:
        """Messages `start` to `count` as the journal stores them: (content hash, JSON), after `through`.

        The content hash is computed here, once per message, so a run that only replays hashes none."""
        self._stored.extend((message_hash(data), data) for data in self._data[len(self._stored) : count])
        return self._stored[start:count]

    @property
    def last(self) -> str:
        """The chain hash of everything hashed so far."""
        return self._hashes[-1] if self._hashes else ""

    def call_ordinal(self, tool_call_id: str | None) -> str | None:
        """The call's number in order of first appearance (`call-3`), the same in every process."""
        return self._call_ids.get(tool_call_id) if tool_call_id is not None else None


def response_holding(messages: list[ModelMessage], tool_call_id: str | None) -> int:
    """How many messages there are up to and including the model response that made the call."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, ModelResponse) and any(
            getattr(part, "tool_call_id", None) == tool_call_id for part in message.parts
        ):
            return index + 1
    return len(messages)


def model_request_key(
    run: RunIdentity,
    chain: MessageChain,
    model: str,
    messages: list[ModelMessage],
    settings: Any,
    parameters: ModelRequestParameters,
) -> str:
    history = chain.through(messages)
    return _digest_of_texts(
        '"model"',
        canonical_json(run.base),
        canonical_json(model),
        canonical_json(history),
        _projected(_ANY.dump_json(settings or {})),
        _projected(_PARAMETERS.dump_json(parameters)),
    )


def tool_call_key(
    run: RunIdentity,
    chain: MessageChain,
    toolset_id: str | None,
    tool_name: str,
    tool_args: Any,
    messages: list[ModelMessage],
    tool_call_id: str | None,
    approved: bool = False,
) -> str:
    history = chain.through(messages, response_holding(messages, tool_call_id))
    return digest(
        "tool", run.base, toolset_id, tool_name, tool_args, history, chain.call_ordinal(tool_call_id), approved
    )


def tool_listing_key(
    run: RunIdentity,
    chain: MessageChain,
    toolset_id: str,
    messages: list[ModelMessage],
    run_step: int,
    what: str = "tools",
) -> str:
    return digest(what, run.base, toolset_id, chain.through(messages), run_step)


def standalone_tool_key(toolset_id: str | None, tool_name: str, tool_args: Any, occurrence: int = 0) -> str:
    """The key of a tool call submitted on its own (`submit_task.py`), outside any agent run."""
    return digest("call", KEY_SCHEME, toolset_id, tool_name, tool_args, occurrence)


def warm_up() -> None:
    """Pydantic AI builds the message serializer on first use (~30 ms): pay it before the first unit."""
    ModelMessagesTypeAdapter.dump_python([ModelRequest(parts=[UserPromptPart("")])], mode="json")
