"""Unit tests of `workflow.py`: the idempotency key of a tool call and the workflow's version hash."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest

import workflow
from nexum_devtools.procs import ROOT
from workflow import VERSION_HASH, VISIT_WEBPAGE, WEB_SEARCH, canonical_json, tool_call_key

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def test_key_ignores_argument_order() -> None:
    assert tool_call_key(WEB_SEARCH, {"query": "q", "max_results": 5}) == tool_call_key(
        WEB_SEARCH, {"max_results": 5, "query": "q"}
    )


def test_key_ignores_order_inside_nested_values() -> None:
    assert tool_call_key("t", {"a": {"x": 1, "y": [1, 2]}}) == tool_call_key("t", {"a": {"y": [1, 2], "x": 1}})


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ((WEB_SEARCH, {"query": "q"}), (VISIT_WEBPAGE, {"query": "q"})),
        ((WEB_SEARCH, {"query": "q"}), (WEB_SEARCH, {"query": "Q"})),
        ((WEB_SEARCH, {"query": "q", "max_results": 5}), (WEB_SEARCH, {"query": "q", "max_results": 6})),
        ((WEB_SEARCH, {"query": "q"}), (WEB_SEARCH, {"query": "q", "max_results": 5})),
        ((WEB_SEARCH, {"n": 1}), (WEB_SEARCH, {"n": "1"})),
    ],
)
def test_key_differs_for_a_different_tool_or_different_values(left: tuple, right: tuple) -> None:
    assert tool_call_key(*left) != tool_call_key(*right)


def test_key_is_the_full_sha256_hex_digest() -> None:
    key = tool_call_key(VISIT_WEBPAGE, {"url": "https://example.com/"})
    assert SHA256_HEX.fullmatch(key)


def test_key_matches_a_hand_computed_sha256() -> None:
    expected = hashlib.sha256(b'["call",2,"research","web_search",{"a":1,"b":2},0]').hexdigest()
    assert tool_call_key("web_search", {"b": 2, "a": 1}) == expected


def test_canonical_json_keeps_non_ascii_text() -> None:
    assert canonical_json({"q": "café ⚡"}) == '{"q":"café ⚡"}'
    assert (
        tool_call_key("t", {"q": "café"})
        == hashlib.sha256('["call",2,"research","t",{"q":"café"},0]'.encode()).hexdigest()
    )


def test_version_hash_is_sha256_of_the_canonical_ir() -> None:
    assert VERSION_HASH.startswith("sha256:")
    assert SHA256_HEX.fullmatch(VERSION_HASH.removeprefix("sha256:"))
    assert "sha256:" + hashlib.sha256(canonical_json(workflow.IR).encode()).hexdigest() == VERSION_HASH


def test_version_hash_is_stable_across_processes() -> None:
    # A new process (new hash seed, fresh schema generation) must compute the same version, or every
    # restart would register a new workflow version and lose the session's stored calls.
    printed = subprocess.run(
        [sys.executable, "-c", "import workflow; print(workflow.VERSION_HASH)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert printed == VERSION_HASH
