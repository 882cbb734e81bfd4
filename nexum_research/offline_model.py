"""Deterministic stand-in models for the research agent: no API key, no network, no language model.

`offline_model()` answers a question the way a careful script would: it searches for the prompt,
reads the top pages in one turn of parallel calls, and quotes the first meaningful sentences of
each, with a list of sources. It never writes anything of its own, and its answer says so on the
first line. It is what the demo uses when no model API key is set.

`planned_model()` makes a fixed list of tool calls, a few per response, then reports how many
returned and how many failed; `default_plan()` builds such a list for the benchmark.

Both are `FunctionModel`s that read only the message history, so the same history always gives
the same response, and both need an agent with `web_search(query, max_results)` and
`visit_webpage(url)` tools and a text output (`output_type=str`, the default):

    agent = Agent(offline_model(), tools=[web_search, visit_webpage])
    print((await agent.run("What is durable execution?")).output)
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Sequence
from typing import Any

from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from . import VISIT_WEBPAGE, WEB_SEARCH

OFFLINE_MODEL_NAME = "offline"
SEARCH_WORDINGS = (
    "{} explained",
    "{} overview",
    "about {}",
    "{} in practice",
    "{} guide",
    "{} basics",
    "learn {}",
    "{} introduction",
)
"""How a varying offline model may word its search; each model picks one."""
PLANNED_MODEL_NAME = "planned"
OFFLINE_LABEL = (
    "**Offline extractive model, not a language model.** The text below is quoted from the search "
    "results and pages found; nothing in it was written, summarised or checked by an AI."
)
MAX_SENTENCES_PER_PAGE = 3
MAX_CHARS_PER_PAGE = 600
MIN_WORDS_PER_PARAGRAPH = 8
"""Shorter paragraphs are menus, bylines, buttons and captions rather than prose worth quoting."""

_CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"[*_`]{1,3}")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def offline_model(pages_to_read: int = 2, *, vary: bool = False, think_seconds: float = 0.0) -> FunctionModel:
    """A model that searches for the prompt, reads the top `pages_to_read` results and quotes them.

    Turn 1 calls `web_search(query=<prompt>)`; turn 2 calls `visit_webpage` for the first
    `pages_to_read` distinct result URLs, all in one response; turn 3 answers. A failed or empty
    search ends the run at turn 2 with an answer saying why nothing was found; a page that failed is
    listed under the sources with its reason. There is never a fourth turn.

    With `vary`, each model words its search its own way (`<prompt> explained`, `<prompt> overview`,
    ...), picked at random when it is made: like a language model at a temperature above 0, two
    processes asking the same thing make different calls, and read different pages. Each answer
    takes `think_seconds`, as a real model's would.
    """
    if pages_to_read < 0:
        raise ValueError(f"pages_to_read must be 0 or more, got {pages_to_read}")
    wording = random.Random().choice(SEARCH_WORDINGS) if vary else "{}"

    async def offline(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        _require_text_agent(info, OFFLINE_MODEL_NAME, {WEB_SEARCH, VISIT_WEBPAGE})
        if think_seconds > 0:
            await asyncio.sleep(think_seconds)
        run = _current_run(messages)
        prompt = _prompt_text(messages, run)
        turn = sum(isinstance(m, ModelResponse) for m in run)
        if turn == 0 and prompt:
            return ModelResponse(parts=[ToolCallPart(WEB_SEARCH, {"query": wording.format(prompt)})])
        results, failure = _search_outcome(run)
        if turn == 1 and failure is None and results and pages_to_read > 0:
            urls = _unique_urls(results)[:pages_to_read]
            return ModelResponse(parts=[ToolCallPart(VISIT_WEBPAGE, {"url": url}) for url in urls])
        if not prompt:
            failure = "the prompt has no text to search for"
        elif failure is None and not results:
            failure = f"the web search returned no results for {prompt!r}"
        answer = _nothing_found(prompt, failure) if failure else _extractive_answer(prompt, results, run)
        return ModelResponse(parts=[TextPart(answer)])

    return FunctionModel(offline, model_name=OFFLINE_MODEL_NAME)


def planned_model(plan: Sequence[tuple[str, dict[str, Any]]], batch: int = 1) -> FunctionModel:
    """A model that makes the calls in `plan`, `batch` per response and in order, then reports on them.

    The final answer counts the calls that returned and those that failed (a `ModelRetry` from the
    tool). A tool that keeps failing still ends the run early with `UnexpectedModelBehavior` once it
    exceeds its retry budget, as it would with a real model; give the tools `retries=` to match.
    """
    if batch < 1:
        raise ValueError(f"batch must be 1 or more, got {batch}")
    calls = [(name, dict(args)) for name, args in plan]
    tools = {name for name, _ in calls}

    async def planned(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        _require_text_agent(info, PLANNED_MODEL_NAME, tools)
        run = _current_run(messages)
        made = sum(isinstance(p, ToolCallPart) for m in run if isinstance(m, ModelResponse) for p in m.parts)
        if made < len(calls):
            return ModelResponse(parts=[ToolCallPart(name, dict(args)) for name, args in calls[made : made + batch]])
        outcomes = [_tool_outcome(p)[1] is None for p in _tool_results(run)]
        responses = sum(isinstance(m, ModelResponse) for m in run)
        summary = (
            f"Planned run finished: {len(calls)} calls in {responses} model responses of up to {batch}; "
            f"{outcomes.count(True)} returned, {outcomes.count(False)} failed."
        )
        return ModelResponse(parts=[TextPart(summary)])

    return FunctionModel(planned, model_name=PLANNED_MODEL_NAME)


def default_plan(n: int, base_url: str) -> list[tuple[str, dict[str, Any]]]:
    """`n` distinct calls alternating a search ("durable execution 1", ...) and a page visit.

    Pages are `{base_url}/pages/topic-1`, `topic-2`, ..., so a local test server can serve them.
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    base = base_url.rstrip("/")
    plan: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        number = i // 2 + 1
        if i % 2 == 0:
            plan.append((WEB_SEARCH, {"query": f"durable execution {number}"}))
        else:
            plan.append((VISIT_WEBPAGE, {"url": f"{base}/pages/topic-{number}"}))
    return plan


def _require_text_agent(info: AgentInfo, model: str, tools: set[str]) -> None:
    """Fail with a clear message rather than loop on output retries or call tools that are not there."""
    if not info.allow_text_output:
        raise UserError(f"The {model} model answers in plain text only: build the agent with output_type=str.")
    missing = tools - {tool.name for tool in info.function_tools}
    if missing:
        raise UserError(f"The {model} model needs the agent to have the tools {sorted(missing)}.")


def _current_run(messages: list[ModelMessage]) -> list[ModelMessage]:
    """The messages of this agent run, so a history from earlier runs neither counts as turns nor ends this one."""
    run_id = messages[-1].run_id if messages else None
    if run_id is not None:
        return [m for m in messages if m.run_id == run_id]
    starts = [i for i, m in enumerate(messages) if isinstance(m, ModelRequest) and _user_prompts(m)]
    return messages[starts[-1] :] if starts else list(messages)


def _user_prompts(message: ModelRequest) -> list[str]:
    """The text of the user prompt parts in one request; non-text content such as images is skipped."""
    texts: list[str] = []
    for part in message.parts:
        if isinstance(part, UserPromptPart):
            items = [part.content] if isinstance(part.content, str) else part.content
            texts.extend(item for item in items if isinstance(item, str))
    return texts


def _prompt_text(messages: list[ModelMessage], run: list[ModelMessage]) -> str:
    """This run's question, or the last one asked when the run was started without a new prompt."""
    for scope in (run, messages[::-1]):
        for message in scope:
            if isinstance(message, ModelRequest) and (texts := _user_prompts(message)):
                return " ".join(text.strip() for text in texts).strip()
    return ""


def _tool_results(run: list[ModelMessage]) -> list[ToolReturnPart | RetryPromptPart]:
    """Every answer to a tool call in this run, successful or not, in order."""
    return [
        part
        for message in run
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart | RetryPromptPart) and part.tool_name is not None
    ]


def _tool_outcome(part: ToolReturnPart | RetryPromptPart) -> tuple[Any, str | None]:
    """The tool's result and `None`, or `None` and why it failed.

    A `ModelRetry` raised by a tool now arrives as a `ToolReturnPart` with `outcome='retried'`;
    `RetryPromptPart` is what older histories and older pydantic-ai versions hold for the same thing.
    """
    if isinstance(part, RetryPromptPart):
        return None, _first_line(part.model_response())
    if part.outcome != "success":
        return None, _first_line(part.model_response_str(wrap_if_error=False)) or part.outcome
    return part.content, None


def _first_line(text: str) -> str:
    """The first non-blank line of an error, enough to say why without pasting a traceback."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _search_outcome(run: list[ModelMessage]) -> tuple[list[dict[str, Any]], str | None]:
    """The results of this run's search and `None`, or an empty list and why there are none."""
    searches = [p for p in _tool_results(run) if p.tool_name == WEB_SEARCH]
    if not searches:
        return [], "the web search was never answered"
    content, error = _tool_outcome(searches[0])
    if error is not None:
        return [], f"the web search failed: {error}"
    try:
        results = json.loads(content) if isinstance(content, str) else content
    except json.JSONDecodeError as exc:
        return [], f"the web search returned text that is not JSON ({exc.msg})"
    if not isinstance(results, list):
        return [], f"the web search returned a JSON {type(results).__name__}, not a list of results"
    return [r for r in results if isinstance(r, dict) and isinstance(r.get("url"), str) and r["url"]], None


def _unique_urls(results: list[dict[str, Any]]) -> list[str]:
    """Result URLs in rank order without repeats, so no page is read twice."""
    return list(dict.fromkeys(str(r["url"]) for r in results))


def _nothing_found(prompt: str, reason: str) -> str:
    """The answer when there is nothing to quote."""
    heading = prompt or "No question"
    return f"{OFFLINE_LABEL}\n\n# {heading}\n\nNothing could be found: {reason.rstrip('.')}.\n"


def _extractive_answer(prompt: str, results: list[dict[str, Any]], run: list[ModelMessage]) -> str:
    """Quotes from each page read (or each search snippet, when no page was visited) and the sources."""
    by_url = {str(r["url"]): r for r in reversed(results)}
    pages = {p.tool_call_id: _tool_outcome(p) for p in _tool_results(run) if p.tool_name == VISIT_WEBPAGE}
    visits = [
        (str(p.args_as_dict().get("url", "")), pages.get(p.tool_call_id, (None, "visit_webpage never answered")))
        for m in run
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, ToolCallPart) and p.tool_name == VISIT_WEBPAGE
    ]
    sections: list[str] = []
    sources: list[str] = []
    for url, (content, error) in visits or [(url, (None, None)) for url in _unique_urls(results)]:
        snippet = str(by_url.get(url, {}).get("snippet") or "").strip()
        title = str(by_url.get(url, {}).get("title") or url)
        text, note = snippet, ""
        if content is not None:
            title = _page_title(str(content)) or title
            text = _extract(str(content)) or snippet
        elif error is not None:
            note = f" — could not be read: {error}"
            text = f"_The page could not be read; its search snippet:_ {snippet}" if snippet else ""
        if text:
            sections.append(f"## {title}\n\n{text}")
        sources.append(f"{len(sources) + 1}. {title} — <{url}>{note}")
    body = "\n\n".join(sections) or "None of the pages had any text to quote."
    return f"{OFFLINE_LABEL}\n\n# {prompt}\n\n{body}\n\n## Sources\n\n" + "\n".join(sources) + "\n"


def _page_title(page: str) -> str:
    """The `# Title` line `visit_webpage` puts first, if it is there."""
    first = page.lstrip().split("\n", 1)[0]
    return first[2:].strip() if first.startswith("# ") else ""


def _extract(page: str) -> str:
    """The first few sentences of prose on a page, skipping headings, the URL line, menus and code."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", _CODE_BLOCK.sub("", page)):
        lines = [line.strip() for line in paragraph.strip().splitlines() if line.strip()]
        if not lines or lines[0].startswith(("#", "URL:", "|", ">")) or all(_LIST_MARKER.match(x) for x in lines):
            continue
        text = _EMPHASIS.sub("", _LINK.sub(r"\1", _IMAGE.sub("", " ".join(lines))))
        text = " ".join(text.split())
        if len(text.split()) < MIN_WORDS_PER_PARAGRAPH:
            continue
        for sentence in _SENTENCE_END.split(text):
            if sentence not in sentences:
                sentences.append(sentence)
            if len(sentences) >= MAX_SENTENCES_PER_PAGE or sum(map(len, sentences)) >= MAX_CHARS_PER_PAGE:
                return _clip(" ".join(sentences))
    return _clip(" ".join(sentences))


def _clip(text: str) -> str:
    """At most `MAX_CHARS_PER_PAGE` characters, cut at a word and marked as cut."""
    if len(text) <= MAX_CHARS_PER_PAGE:
        return text
    return text[:MAX_CHARS_PER_PAGE].rsplit(" ", 1)[0] + " …"
