"""Messages stored once, and how a model request's list of them is kept: the pure part, shared by
the service, both stores and the CLI.

A message is stored by content: its hash is the sha256 (lowercase hex) of its canonical JSON,
`json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` in UTF-8, so the same
message sent by every request of every session is one row. A start carries the bodies the server
may not have yet (`messages`) and, in its input, the hashes the request was sent, in order (`sent`).

The list of hashes is not stored whole with every request: that alone would grow with the square
of the conversation. A request whose list extends the session's previous list (the usual case: the
history plus what was added since) stores only its new hashes and a reference to that previous
execution (`base`); the whole list is the chain's additions joined, root first. A list that does
not extend the previous one (a history processor dropped messages) is stored whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidValue

HASH = re.compile(r"^[0-9a-f]{64}$")
SENT_FIELD = "sent"
"""The field of a start's input naming the hashes the model request was sent."""
SENT_AFTER_FIELD = "sent_after"
"""The field naming the earlier list (`{id, count}`) that `sent` only adds to."""


def canonical(body: Any) -> str:
    """The canonical JSON text of a message: what its hash is the sha256 of."""
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise InvalidValue("NaN and Infinity are not JSON; send null or a string instead") from e


def message_hash(body: Any) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def list_digest(hashes: list[str], start: str = "") -> str:
    """Identifies a whole list of hashes: a later list extends it when its start has the same digest.

    A chain, hash by hash, so that the digest of a list that extends one whose digest is `start` is
    computed from the added hashes alone."""
    digest = start
    for item in hashes:
        digest = hashlib.sha256((digest + item).encode()).hexdigest()
    return digest


@dataclass(frozen=True)
class Sent:
    """What a model request was sent: bodies the server may not have, and the hashes in order."""

    bodies: list[tuple[str, str]]
    """(hash, canonical JSON) of each message whose body came with the start."""
    hashes: list[str]
    after: tuple[str, int] | None = None
    """(execution id, count): `hashes` are what the list adds to that execution's list of `count`."""


@dataclass(frozen=True)
class SentRow:
    """How one execution's list is stored: the additions to `base`'s list (all of it without a base)."""

    base: str | None
    """The id of the session's previous execution whose whole list this one extends."""
    added: list[str]
    count: int
    digest: str

    @property
    def added_json(self) -> str:
        return json.dumps(self.added, separators=(",", ":"))


def split_input(input: Any, messages: list[Any] | None) -> tuple[Any, Sent | None]:
    """The input to store (without `sent`) and what the request was sent; `InvalidValue` for a
    hash that is not the sha256 of its body's canonical JSON, or a `sent` that is not a list of hashes."""
    hashes = input.get(SENT_FIELD) if isinstance(input, dict) else None
    if hashes is None and not messages:
        return input, None
    if hashes is not None and not (
        isinstance(hashes, list) and all(isinstance(h, str) and HASH.match(h) for h in hashes)
    ):
        raise InvalidValue(
            "input.sent must be a list of sha256 hex digests (64 lowercase hex characters), "
            "the hashes of the messages the model request was sent, in order"
        )
    after = _sent_after(input.get(SENT_AFTER_FIELD) if isinstance(input, dict) else None)
    bodies = []
    for i, message in enumerate(messages or ()):
        text = canonical(message.body)
        if hashlib.sha256(text.encode()).hexdigest() != message.hash:
            raise InvalidValue(
                f"messages[{i}]: hash {message.hash} is not the sha256 of the body's canonical JSON "
                "(json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=False), UTF-8)"
            )
        bodies.append((message.hash, text))
    hidden = (SENT_FIELD, SENT_AFTER_FIELD)
    stored = {k: v for k, v in input.items() if k not in hidden} if isinstance(input, dict) else input
    return stored, Sent(bodies, list(hashes or ()), after)


def _sent_after(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"id", "count"}
        and isinstance(value["id"], str)
        and 0 < len(value["id"]) <= 200
        and type(value["count"]) is int
        and value["count"] >= 0
    ):
        return value["id"], value["count"]
    raise InvalidValue(
        "input.sent_after must be {id, count}: the id of an earlier model request of the session and the "
        "number of hashes its list holds; input.sent then lists only the hashes added after them"
    )


def encode_sent(previous: tuple[str, int, str] | None, hashes: list[str], extends: bool = False) -> SentRow:
    """Store `hashes` as additions to `previous` (id, count, digest) when they extend its list; with
    `extends`, `hashes` are the additions themselves (`Sent.after` named `previous`)."""
    if extends and previous is not None:
        base, count, base_digest = previous
        return SentRow(base, hashes, count + len(hashes), list_digest(hashes, base_digest))
    return _encode_whole(previous, hashes)


def check_sent_after(sent: Sent, named: tuple[str, int, str] | None) -> None:
    """`InvalidValue` unless the execution `sent.after` names, `named` (id, count, digest) as the
    store found it in the session, holds a list of that many hashes."""
    assert sent.after is not None
    if named is None or named[1] != sent.after[1]:
        found = "no model request of the session" if named is None else f"a list of {named[1]} hashes"
        raise InvalidValue(
            f"input.sent_after names execution {sent.after[0]!r} with {sent.after[1]} hashes, but it is {found}; "
            "send the whole list in input.sent instead"
        )


def _encode_whole(previous: tuple[str, int, str] | None, hashes: list[str]) -> SentRow:
    digest = list_digest(hashes)
    if previous is not None:
        base, count, base_digest = previous
        if count <= len(hashes) and list_digest(hashes[:count]) == base_digest:
            return SentRow(base, hashes[count:], len(hashes), digest)
    return SentRow(None, hashes, len(hashes), digest)


def resolve_all(rows: list[tuple[str, str | None, list[str]]]) -> dict[str, tuple[list[str], bool]]:
    """Every list of a session from its (id, base, added) rows in recorded order (a base comes
    before what is stored against it), each with whether it is whole."""
    lists: dict[str, tuple[list[str], bool]] = {}
    for row_id, base, added in rows:
        if base is None:
            lists[row_id] = (added, True)
        elif base in lists:
            before, whole = lists[base]
            lists[row_id] = (before + added, whole)
        else:
            lists[row_id] = (added, False)
    return lists
