"""The offline and planned stand-in models, driving a real `Agent` with local stub tools."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry, models
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelResponse, ToolCallPart

from nexum_research.offline_model import OFFLINE_LABEL, default_plan, offline_model, planned_model
from workflow import VISIT_WEBPAGE, WEB_SEARCH

BASE_URL = "http://127.0.0.1:8765"
PROMPT = "What is durable execution?"
RESULTS = [
    {"title": "Durable execution explained", "url": f"{BASE_URL}/a", "snippet": "Snippet A."},
    {"title": "Workflows that survive crashes", "url": f"{BASE_URL}/b", "snippet": "Snippet B."},
    {"title": "An unread third result", "url": f"{BASE_URL}/c", "snippet": "Snippet C."},
]
PAGES = {
    f"{BASE_URL}/a": (
        f"# Durable execution explained\n\nURL: {BASE_URL}/a\n\n"
        "[Home](/) | [Blog](/blog)\n\n- Docs\n- Pricing\n\n"
        "Durable execution records every step of a program so that it can resume after a crash. "
        "The runtime replays recorded results instead of running side effects again.\n\n"
        "## Details\n\nA third sentence, from the details section, ends the extract. "
        "And a fourth one that certainly should not."
    ),
    f"{BASE_URL}/b": (
        f"# Workflows that survive crashes\n\nURL: {BASE_URL}/b\n\nShare this\n\n"
        "A workflow engine stores the output of each activity in a database before moving on."
    ),
}


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real model in these tests would be a bug, so make it fail instead of reaching the network."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", False)


@dataclass
class StubTools:
    """Local stand-ins for the two research tools that record every call and can be told to fail."""

    results: list[dict[str, str]] = field(default_factory=lambda: list(RESULTS))
    """What `web_search` returns, as JSON text."""
    search_error: str | None = None
    """When set, `web_search` raises `ModelRetry` with this message."""
    broken_urls: set[str] = field(default_factory=set)
    """URLs for which `visit_webpage` raises `ModelRetry`."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Every call in order, as (tool name, arguments)."""

    def agent(self, model: Any, **kwargs: Any) -> Agent[None, str]:
        """An agent with `model` and these stubs registered under the real tool names."""
        agent: Agent[None, str] = Agent(model, **kwargs)

        @agent.tool_plain(name=WEB_SEARCH)
        async def web_search(query: str, max_results: int = 5) -> str:
            self.calls.append((WEB_SEARCH, {"query": query, "max_results": max_results}))
            if self.search_error is not None:
                raise ModelRetry(self.search_error)
            return json.dumps(self.results[:max_results])

        @agent.tool_plain(name=VISIT_WEBPAGE)
        async def visit_webpage(url: str) -> str:
            self.calls.append((VISIT_WEBPAGE, {"url": url}))
            if url in self.broken_urls:
                raise ModelRetry(f"HTTP 503 from {url}")
            return PAGES.get(url, f"# Topic\n\nURL: {url}\n\nA generated page about {url} with enough words in it.")

        return agent


def _responses_with_tool_calls(messages: list[Any]) -> list[list[str]]:
    """The tool names called in each model response, one list per response that made calls."""
    return [
        [p.tool_name for p in m.parts if isinstance(p, ToolCallPart)]
        for m in messages
        if isinstance(m, ModelResponse) and any(isinstance(p, ToolCallPart) for p in m.parts)
    ]


@pytest.mark.parametrize("output_type", [None, str])
async def test_offline_searches_reads_top_two_in_one_turn_and_quotes_them(output_type: type | None) -> None:
    stubs = StubTools()
    agent = stubs.agent(offline_model(), **({"output_type": output_type} if output_type else {}))

    result = await agent.run(PROMPT)

    assert stubs.calls == [
        (WEB_SEARCH, {"query": PROMPT, "max_results": 5}),
        (VISIT_WEBPAGE, {"url": f"{BASE_URL}/a"}),
        (VISIT_WEBPAGE, {"url": f"{BASE_URL}/b"}),
    ]
    assert _responses_with_tool_calls(result.all_messages()) == [[WEB_SEARCH], [VISIT_WEBPAGE, VISIT_WEBPAGE]]
    assert sum(isinstance(m, ModelResponse) for m in result.all_messages()) == 3
    answer = result.output
    assert answer.splitlines()[0] == OFFLINE_LABEL
    assert "not a language model" in answer.splitlines()[0]
    assert f"# {PROMPT}" in answer
    assert "Durable execution records every step of a program" in answer
    assert "replays recorded results" in answer
    assert "A workflow engine stores the output of each activity" in answer
    assert "fourth one" not in answer
    assert "URL:" not in answer and "Share this" not in answer and "Pricing" not in answer
    sources = answer.split("## Sources", 1)[1]
    assert f"1. Durable execution explained — <{BASE_URL}/a>" in sources
    assert f"2. Workflows that survive crashes — <{BASE_URL}/b>" in sources
    assert f"{BASE_URL}/c" not in answer
    assert result.all_messages()[-1].model_name == "offline"


async def test_offline_failed_search_answers_nothing_found() -> None:
    stubs = StubTools(search_error="search backend unreachable")
    result = await stubs.agent(offline_model()).run(PROMPT)

    assert stubs.calls == [(WEB_SEARCH, {"query": PROMPT, "max_results": 5})]
    assert result.output.startswith(OFFLINE_LABEL)
    assert "Nothing could be found: the web search failed: search backend unreachable" in result.output
    assert sum(isinstance(m, ModelResponse) for m in result.all_messages()) == 2


async def test_offline_empty_search_answers_nothing_found() -> None:
    stubs = StubTools(results=[])
    result = await stubs.agent(offline_model()).run(PROMPT)

    assert [name for name, _ in stubs.calls] == [WEB_SEARCH]
    assert "Nothing could be found: the web search returned no results" in result.output


async def test_offline_failed_page_is_listed_under_sources() -> None:
    stubs = StubTools(broken_urls={f"{BASE_URL}/b"})
    result = await stubs.agent(offline_model()).run(PROMPT)

    sources = result.output.split("## Sources", 1)[1]
    assert f"1. Durable execution explained — <{BASE_URL}/a>\n" in sources
    assert (
        f"2. Workflows that survive crashes — <{BASE_URL}/b> — could not be read: HTTP 503 from {BASE_URL}/b" in sources
    )
    assert "Durable execution records every step" in result.output
    assert "_The page could not be read; its search snippet:_ Snippet B." in result.output


async def test_offline_every_page_failing_still_ends_in_three_turns() -> None:
    stubs = StubTools(broken_urls={f"{BASE_URL}/a", f"{BASE_URL}/b"})
    result = await stubs.agent(offline_model(pages_to_read=2)).run(PROMPT)

    assert sum(isinstance(m, ModelResponse) for m in result.all_messages()) == 3
    assert result.output.count("could not be read: HTTP 503") == 2


async def test_offline_second_run_on_the_same_history_starts_over() -> None:
    stubs = StubTools()
    agent = stubs.agent(offline_model(pages_to_read=1))
    first = await agent.run(PROMPT)

    second = await agent.run("Second question", message_history=first.all_messages())

    assert [name for name, _ in stubs.calls] == [WEB_SEARCH, VISIT_WEBPAGE, WEB_SEARCH, VISIT_WEBPAGE]
    assert stubs.calls[2] == (WEB_SEARCH, {"query": "Second question", "max_results": 5})
    assert "# Second question" in second.output


async def test_offline_refuses_an_agent_without_text_output() -> None:
    stubs = StubTools()
    with pytest.raises(UserError, match="output_type=str"):
        await stubs.agent(offline_model(), output_type=int).run(PROMPT)
    assert stubs.calls == []


@pytest.mark.parametrize(("batch", "responses"), [(1, [1] * 10), (3, [3, 3, 3, 1])])
async def test_planned_model_makes_exactly_the_plan(batch: int, responses: list[int]) -> None:
    plan = default_plan(10, BASE_URL)
    stubs = StubTools()

    result = await stubs.agent(planned_model(plan, batch=batch)).run("benchmark")

    recorded = [(name, {k: v for k, v in args.items() if k != "max_results"}) for name, args in stubs.calls]
    assert recorded == plan
    assert [len(calls) for calls in _responses_with_tool_calls(result.all_messages())] == responses
    assert "10 calls" in result.output and "10 returned, 0 failed" in result.output


async def test_planned_model_counts_failed_calls() -> None:
    plan = default_plan(4, BASE_URL)
    stubs = StubTools(broken_urls={f"{BASE_URL}/pages/topic-1"})

    result = await stubs.agent(planned_model(plan, batch=2), output_type=str).run("benchmark")

    assert len(stubs.calls) == 4
    assert "3 returned, 1 failed" in result.output


def test_default_plan_is_ten_distinct_calls_mixing_both_tools() -> None:
    plan = default_plan(10, BASE_URL + "/")

    assert len({json.dumps(call, sort_keys=True) for call in plan}) == 10
    assert [name for name, _ in plan].count(WEB_SEARCH) == 5
    assert [name for name, _ in plan].count(VISIT_WEBPAGE) == 5
    assert (WEB_SEARCH, {"query": "durable execution 1"}) in plan
    assert (VISIT_WEBPAGE, {"url": f"{BASE_URL}/pages/topic-1"}) in plan
    assert plan == default_plan(10, BASE_URL)
