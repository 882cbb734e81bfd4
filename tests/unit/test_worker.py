"""The worker's own wording: log lines that tell calls apart."""

from __future__ import annotations

from nexum_pydantic_ai.worker import _calls, _short


def test_long_arguments_lose_their_middle_so_urls_stay_apart() -> None:
    base = "http://127.0.0.1:38447/pages/" + "what-is-durable-execution-" * 3
    one, two = _short({"url": base + "1"}), _short({"url": base + "2"})
    assert one != two
    assert one.startswith("'http://127.0.0.1:38447/pages/") and one.endswith("-1'")
    assert "…" in one and len(one) <= 70
    assert _short({"query": "short"}) == "'short'"


def test_counts_of_calls_are_plural_only_when_more_than_one() -> None:
    assert (_calls(1), _calls(2), _calls(0)) == ("1 call", "2 calls", "0 calls")
