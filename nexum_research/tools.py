"""The research agent's two tools, `web_search` and `visit_webpage`, and how their failures read.

Both wrap tools shipped with Pydantic AI: `DuckDuckGoSearchTool` (or SearXNG's JSON API) for
search, and `WebFetchLocalTool` for pages, whose `safe_download` refuses private and local
addresses, redirects included, because the URL is chosen by a language model. Both are marked
`RUN_IN_WORKER`: `python worker.py` serves `TOOLSET`; the benchmark's plain agent registers it directly.

Every failure becomes one of:

    ToolError
    ├── TransientToolError   may succeed on retry: timeouts, connection errors, HTTP 5xx/408/429
    └── PermanentToolError   will fail the same way again: HTTP 4xx, refused or invalid URL,
                             bad arguments, unknown tool, anything unrecognised

Settings (`ToolSettings`: search backend, SearXNG URL, private addresses, page size, timeout) are
read from the environment and `.env` at each call, by the project's one settings module.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import aiohttp
import httpx2
from ddgs import DDGS
from ddgs.exceptions import DDGSException, RatelimitException
from ddgs.exceptions import TimeoutException as DDGSTimeoutException
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_ai.common_tools.duckduckgo import DuckDuckGoSearchTool
from pydantic_ai.common_tools.web_fetch import WebFetchLocalTool
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import BinaryContent
from pydantic_ai.toolsets import FunctionToolset

from nexum_pydantic_ai import RUN_IN_WORKER, PermanentToolError, ToolCallInput, ToolError, TransientToolError
from nexum_pydantic_ai._errors import describe_validation
from nexum_pydantic_ai.worker import Toolsets
from nexum_server.config import ENV_FILE

from . import TOOL_NAMES, VISIT_WEBPAGE, WEB_SEARCH
from .settings import ToolSettings

T = TypeVar("T")
DEFAULT_SEARCH_RESULTS = 5
MAX_SEARCH_RESULTS = 20


Query = Annotated[str, Field(min_length=1)]
MaxResults = Annotated[int, Field(ge=1, le=MAX_SEARCH_RESULTS)]
Url = Annotated[str, Field(min_length=1)]


class SearchResult(BaseModel):
    """One web search hit, as `web_search` returns it."""

    title: str
    """Title of the page."""
    url: str
    """Address of the page."""
    snippet: str
    """Extract of the page matching the query."""


class _SearxngResult(BaseModel):
    title: str = ""
    """Title of the page."""
    url: str
    """Address of the page."""
    content: str = ""
    """SearXNG's snippet."""


class _SearxngPage(BaseModel):
    results: list[_SearxngResult] = []
    """The hits, best first."""


_SEARCH_RESULTS = TypeAdapter(list[SearchResult])

TOOLSET: FunctionToolset[Any] = FunctionToolset(
    id="research", docstring_format="google", require_parameter_descriptions=True
)
"""The research tools, declared once: the model sees these signatures, bounds and docstrings, and
the worker validates and runs calls with the same functions."""

ddgs_client_factory: Callable[[], Any] = DDGS
"""Makes the DuckDuckGo client (anything with `.text(query, max_results=...)`) per search; tests replace it."""


async def _search_duckduckgo(query: str, max_results: int, settings: ToolSettings) -> list[SearchResult]:
    search = DuckDuckGoSearchTool(client=ddgs_client_factory(), max_results=max_results)
    try:
        hits = await search(query)
    except DDGSException as e:
        # ddgs reports an empty result page as an exception; that is an answer, not a failure.
        if str(e) == "No results found.":
            return []
        raise
    return [SearchResult(title=h["title"], url=h["href"], snippet=h["body"]) for h in hits[:max_results]]


_settings_read: tuple[object, ToolSettings] | None = None
_SETTINGS_KEYS = tuple(ToolSettings.key(field) for field in ToolSettings.model_fields)


def tool_settings() -> ToolSettings:
    """`ToolSettings.from_env()`, read again only when the environment or `.env` changed.

    Reading them costs about half a millisecond of CPU (pydantic-settings parses `.env` on every
    read): more than an instant search itself, on every call a worker runs.
    """
    global _settings_read
    try:
        found = os.stat(ENV_FILE)
        env_file: object = (found.st_ino, found.st_mtime_ns, found.st_size)
    except OSError:
        env_file = None
    key = (os.getcwd(), env_file, tuple(map(os.environ.get, _SETTINGS_KEYS)))
    read = _settings_read
    if read is None or read[0] != key:
        read = _settings_read = (key, ToolSettings.from_env())
    return read[1]


_searxng_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def _searxng_client() -> aiohttp.ClientSession:
    """One keep-alive session per event loop: the tools run on whichever loop calls them (worker,
    benchmark, each test), and pooled connections belong to the loop that opened them.

    aiohttp rather than httpx2: a search is the whole of an instant tool call, and an httpx2
    request costs ~0.6 ms of CPU under 32 concurrent calls against ~0.1 ms.
    """
    loop = asyncio.get_running_loop()
    client = _searxng_clients.get(loop)
    if client is None or client.closed:
        client = _searxng_clients[loop] = aiohttp.ClientSession()
    return client


async def aclose_clients() -> None:
    """Close this event loop's search session; call it before the loop ends (aiohttp warns otherwise)."""
    client = _searxng_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


async def _search_searxng(query: str, max_results: int, settings: ToolSettings) -> list[SearchResult]:
    async with _searxng_client().get(
        f"{settings.searxng_url}/search",
        params={"q": query, "format": "json"},
        timeout=aiohttp.ClientTimeout(total=settings.fetch_timeout),
    ) as response:
        if response.status == 403:
            raise PermanentToolError(
                "SearXNG refused format=json (HTTP 403): add json to search.formats in settings.yml"
            )
        response.raise_for_status()
        content = await response.read()
    page = _SearxngPage.model_validate_json(content)
    return [SearchResult(title=r.title, url=r.url, snippet=r.content) for r in page.results[:max_results]]


@TOOLSET.tool_plain(metadata=RUN_IN_WORKER)
async def web_search(query: Query, max_results: MaxResults = DEFAULT_SEARCH_RESULTS) -> str:
    """Search the web and return the hits as a JSON list of objects with title, url and snippet.

    Args:
        query: What to search for, in a few words.
        max_results: Most results to return, 1 to 20.
    """
    settings = tool_settings()
    search = _search_searxng if settings.search_backend == "searxng" else _search_duckduckgo
    with _as_tool_errors():
        results = await search(query, max_results, settings)
    return _SEARCH_RESULTS.dump_json(results).decode()


class _BackgroundLoop:
    """An event loop on a daemon thread, for async work that would stall the caller's loop.

    Pydantic AI's `safe_download` builds a new HTTP client, and with it a TLS context, for every
    fetch: ~30 ms of CPU that would otherwise hold the worker's loop (its heartbeats, its other
    calls). On a thread of its own it does not; cancelling the caller cancels the fetch.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="nexum-fetch", daemon=True).start()
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._running()))


_fetch_loop = _BackgroundLoop()


@TOOLSET.tool_plain(metadata=RUN_IN_WORKER)
async def visit_webpage(url: Url) -> str:
    """Fetch a web page and return its title and text as Markdown, cut at a few thousand characters.

    Args:
        url: The http(s) address of the page, e.g. a URL from web_search.
    """
    settings = tool_settings()
    fetch = WebFetchLocalTool(
        max_content_length=settings.page_max_chars,
        allow_local_urls=settings.allow_private_urls,
        # Annotated `int` upstream, but only ever handed to `httpx2.Timeout`, which takes seconds as float.
        timeout=settings.fetch_timeout,  # type: ignore[arg-type]
    )
    with _as_tool_errors():
        page = await _fetch_loop.run(fetch(url))
    if isinstance(page, BinaryContent):
        return f"Binary content ({page.media_type}, {len(page.data):,} bytes) at {url}; not shown."
    return f"# {page['title'] or url}\n\nURL: {url}\n\n{page['content']}"


assert set(TOOLSET.tools) == set(TOOL_NAMES) == {WEB_SEARCH, VISIT_WEBPAGE}, "TOOL_NAMES names every tool"
_RUNTIME = Toolsets([TOOLSET])


def check_tool_args(tool_name: str, tool_args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the tool's own schema validates them; `PermanentToolError` names what is wrong."""
    tool = TOOLSET.tools.get(tool_name)
    if tool is None:
        raise PermanentToolError(f"unknown tool {tool_name!r}; the tools are: {', '.join(TOOL_NAMES)}")
    try:
        return tool.function_schema.validator.validate_python(tool_args)
    except ValidationError as e:
        problems = describe_validation(e)
        raise PermanentToolError(f"bad arguments for {tool_name}: {problems}") from e


async def run_tool(tool_name: str, tool_args: dict[str, Any]) -> Any:
    """Run one research tool here, as the worker would (validated, failures as `ToolError`s)."""
    with _as_tool_errors():
        return await _RUNTIME.run(ToolCallInput(tool_name=tool_name, tool_args=tool_args, toolset_id=TOOLSET.id))


@contextmanager
def _as_tool_errors() -> Iterator[None]:
    try:
        yield
    except ToolError:
        raise
    except Exception as e:
        raise classify_error(e) from e


def classify_error(exc: BaseException) -> ToolError:
    """Map any exception to a transient or permanent `ToolError`, judged by its deepest known cause.

    Pydantic AI wraps fetch errors in `ModelRetry` (and httpx2 errors in a family-level copy), so
    the `__cause__` chain is walked and the root cause decides. Network-ish failures are recognised
    by type; anything unrecognised is permanent, so a bug does not burn every retry attempt.
    """
    if isinstance(exc, ToolError):
        return exc
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        # Only explicit chaining (`raise ... from`): an implicit `__context__` is whatever happened to
        # be handled nearby, e.g. the ValueError of ip_address() behind every DNS lookup.
        cause = cause.__cause__
    message = "; ".join(line.strip() for line in (str(exc) or type(exc).__name__).splitlines()[:3]).rstrip(": ")
    for cause in reversed(chain):
        if verdict := _verdict(cause):
            kind, reason = verdict
            return kind(f"{reason}: {message}")
    return PermanentToolError(f"unexpected {type(exc).__name__}: {message}")


def _verdict(exc: BaseException) -> tuple[type[ToolError], str] | None:
    if isinstance(exc, ToolError):
        return type(exc), "failed"
    if isinstance(exc, (httpx2.HTTPStatusError, aiohttp.ClientResponseError)):
        status = exc.response.status_code if isinstance(exc, httpx2.HTTPStatusError) else exc.status
        return (TransientToolError if status >= 500 or status in (408, 429) else PermanentToolError), f"HTTP {status}"
    if isinstance(exc, RatelimitException):
        return TransientToolError, "rate limited"
    if isinstance(exc, (httpx2.TimeoutException, DDGSTimeoutException, TimeoutError)):
        return TransientToolError, "timed out"
    if isinstance(
        exc,
        (
            httpx2.InvalidURL,
            httpx2.UnsupportedProtocol,
            httpx2.TooManyRedirects,
            aiohttp.InvalidURL,
            aiohttp.TooManyRedirects,
        ),
    ):
        return PermanentToolError, "invalid URL"
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return TransientToolError, "DNS lookup failed"
        return PermanentToolError, "unknown host"
    # ddgs reports its engines' network failures as plain `DDGSException`s.
    if isinstance(exc, (httpx2.RequestError, aiohttp.ClientError, OSError, DDGSException)):
        return TransientToolError, "network error"
    if isinstance(exc, (ValueError, TypeError, LookupError, RecursionError, ModelRetry)):
        return PermanentToolError, "rejected"
    return None
