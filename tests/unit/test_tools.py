"""Unit tests of `tools.py`: both search backends, page fetching, the SSRF guard, error classes.

The web is the local fixture server (`nexum_devtools/web.py`, a subprocess on a free loopback
port); DuckDuckGo is replaced at its client boundary. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from ddgs.exceptions import DDGSException, RatelimitException
from ddgs.exceptions import TimeoutException as DDGSTimeoutException
from pydantic_ai.exceptions import ModelRetry

from nexum_devtools.web import WebFixture, run_web_fixture
from nexum_research import tools
from nexum_research.tools import (
    PermanentToolError,
    ToolError,
    TransientToolError,
    classify_error,
    run_tool,
    visit_webpage,
    web_search,
)
from workflow import TOOL_NAMES, VISIT_WEBPAGE, WEB_SEARCH

ENV_KEYS = (
    "NEXUM_SEARCH_BACKEND",
    "NEXUM_SEARXNG_URL",
    "NEXUM_PAGE_MAX_CHARS",
    "NEXUM_FETCH_TIMEOUT",
    "NEXUM_ALLOW_PRIVATE_URLS",
)
TRUNCATION_MARKER = "\n\n[Content truncated]"


@pytest.fixture(scope="module")
def web() -> Iterator[WebFixture]:
    with run_web_fixture() as fixture:
        yield fixture


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)

    def no_real_ddgs() -> Any:
        raise AssertionError("unit tests must not build a real DDGS client")

    monkeypatch.setattr(tools, "ddgs_client_factory", no_real_ddgs)


@pytest.fixture
def private_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_ALLOW_PRIVATE_URLS", "1")


@pytest.fixture
async def searxng(monkeypatch: pytest.MonkeyPatch, web: WebFixture) -> AsyncIterator[WebFixture]:
    monkeypatch.setenv("NEXUM_SEARCH_BACKEND", "searxng")
    monkeypatch.setenv("NEXUM_SEARXNG_URL", web.url)
    web.reset()
    yield web
    await tools.aclose_clients()  # the test's loop ends next


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Settings (their parsing is tested in test_config.py)


async def test_settings_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_PAGE_MAX_CHARS", "abc")
    with pytest.raises(ValueError, match="NEXUM_PAGE_MAX_CHARS"):
        await visit_webpage("http://127.0.0.1:1/")
    with pytest.raises(PermanentToolError, match="NEXUM_PAGE_MAX_CHARS"):
        await run_tool(VISIT_WEBPAGE, {"url": "http://127.0.0.1:1/"})


async def test_unknown_search_backend_names_variable_and_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_SEARCH_BACKEND", "bing")
    with pytest.raises(ValueError, match=r"NEXUM_SEARCH_BACKEND='bing'.*'duckduckgo' or 'searxng'"):
        await web_search("anything")


async def test_searxng_backend_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_SEARCH_BACKEND", "searxng")
    with pytest.raises(ValueError, match="NEXUM_SEARXNG_URL"):
        await web_search("anything")


# SearXNG backend, against the fixture


async def test_searxng_results_are_mapped_and_cut(searxng: WebFixture) -> None:
    results = json.loads(await web_search("durable execution"))
    assert len(results) == 5
    assert results[0]["title"] == "Durable Execution (1)"
    assert results[0]["url"] == f"{searxng.url}/pages/durable-execution-1"
    assert all(set(r) == {"title", "url", "snippet"} and r["snippet"] for r in results)
    assert searxng.log() == [{"method": "GET", "path": "/search", "query": "q=durable+execution&format=json"}]


async def test_searxng_max_results_and_empty_answer(searxng: WebFixture) -> None:
    assert len(json.loads(await web_search("agents", max_results=2))) == 2
    assert json.loads(await web_search("   ")) == []


async def test_searxng_through_run_tool(searxng: WebFixture) -> None:
    results = json.loads(await run_tool(WEB_SEARCH, {"query": "leases", "max_results": 3}))
    assert [r["title"] for r in results] == ["Leases (1)", "Leases (2)", "Leases (3)"]


@pytest.mark.parametrize(("suffix", "error"), [("/always-503", TransientToolError), ("/nowhere", PermanentToolError)])
async def test_searxng_http_errors(
    monkeypatch: pytest.MonkeyPatch, searxng: WebFixture, suffix: str, error: type[ToolError]
) -> None:
    monkeypatch.setenv("NEXUM_SEARXNG_URL", searxng.url + suffix)
    with pytest.raises(error, match="HTTP"):
        await web_search("x")


async def test_searxng_unreachable_is_transient(monkeypatch: pytest.MonkeyPatch, searxng: WebFixture) -> None:
    monkeypatch.setenv("NEXUM_SEARCH_BACKEND", "searxng")
    monkeypatch.setenv("NEXUM_SEARXNG_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransientToolError, match="network error"):
        await web_search("x")


# DuckDuckGo backend, with DDGS replaced at its boundary


class FakeDDGS:
    """Stands in for `ddgs.DDGS`: answers `.text()` with canned hits or raises a canned error."""

    def __init__(self, hits: list[dict[str, Any]] | None = None, error: Exception | None = None) -> None:
        self.hits = hits or []
        self.error = error
        self.calls: list[tuple[str, int | None]] = []

    def text(self, query: str, max_results: int | None = None) -> list[dict[str, Any]]:
        self.calls.append((query, max_results))
        if self.error is not None:
            raise self.error
        return self.hits


def use_ddgs(monkeypatch: pytest.MonkeyPatch, fake: FakeDDGS) -> FakeDDGS:
    monkeypatch.setattr(tools, "ddgs_client_factory", lambda: fake)
    return fake


def ddgs_hit(n: int) -> dict[str, Any]:
    return {"title": f"Hit {n}", "href": f"https://example.com/{n}", "body": f"About {n}", "source": "ddg"}


async def test_duckduckgo_hits_are_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = use_ddgs(monkeypatch, FakeDDGS(hits=[ddgs_hit(1), ddgs_hit(2)]))
    results = json.loads(await web_search("pydantic ai", max_results=3))
    assert results == [
        {"title": "Hit 1", "url": "https://example.com/1", "snippet": "About 1"},
        {"title": "Hit 2", "url": "https://example.com/2", "snippet": "About 2"},
    ]
    assert fake.calls == [("pydantic ai", 3)]


async def test_duckduckgo_results_are_cut_to_max_results(monkeypatch: pytest.MonkeyPatch) -> None:
    use_ddgs(monkeypatch, FakeDDGS(hits=[ddgs_hit(n) for n in range(10)]))
    assert len(json.loads(await run_tool(WEB_SEARCH, {"query": "q"}))) == 5


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RatelimitException("202 Ratelimit"), TransientToolError),
        (DDGSTimeoutException("timed out"), TransientToolError),
        (DDGSException("https://html.duckduckgo.com/html 503"), TransientToolError),
    ],
)
async def test_duckduckgo_errors(monkeypatch: pytest.MonkeyPatch, error: Exception, expected: type) -> None:
    use_ddgs(monkeypatch, FakeDDGS(error=error))
    with pytest.raises(expected) as raised:
        await web_search("q")
    assert raised.value.__cause__ is error


async def test_duckduckgo_no_results_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    use_ddgs(monkeypatch, FakeDDGS(error=DDGSException("No results found.")))
    assert await web_search("zxqv") == "[]"


async def test_duckduckgo_malformed_hit_is_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    use_ddgs(monkeypatch, FakeDDGS(hits=[{"title": "no href"}]))
    with pytest.raises(PermanentToolError):
        await web_search("q")


# visit_webpage against the fixture, loopback allowed


async def test_page_is_markdown_with_title_and_cap(private_ok: None, web: WebFixture) -> None:
    url = f"{web.url}/pages/durable-execution"
    text = await visit_webpage(url)
    header = f"# Durable Execution\n\nURL: {url}\n\n"
    assert text.startswith(header)
    content = text[len(header) :]
    assert content.endswith(TRUNCATION_MARKER)
    assert len(content) == 8000 + len(TRUNCATION_MARKER)
    assert "Section 1:" in content and "\n---" in content
    for leaked in ("SCRIPT_SHOULD_NOT_LEAK", "console.log", "font-family"):
        assert leaked not in content


async def test_page_cap_follows_the_setting(private_ok: None, web: WebFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_PAGE_MAX_CHARS", "300")
    text = await run_tool(VISIT_WEBPAGE, {"url": f"{web.url}/pages/short"})
    assert text.endswith(TRUNCATION_MARKER)
    assert len(text.split("\n\n", 2)[2]) == 300 + len(TRUNCATION_MARKER)


async def test_huge_page_is_capped(private_ok: None, web: WebFixture) -> None:
    text = await visit_webpage(f"{web.url}/huge")
    assert text.startswith("# Huge\n") and text.endswith(TRUNCATION_MARKER)
    assert len(text) < 8200


@pytest.mark.parametrize(
    ("path", "media_type"), [("/files/image.png", "image/png"), ("/files/report.pdf", "application/pdf")]
)
async def test_binary_content_is_one_line(private_ok: None, web: WebFixture, path: str, media_type: str) -> None:
    size = len(httpx2.get(web.url + path).content)
    text = await visit_webpage(web.url + path)
    assert text == f"Binary content ({media_type}, {size:,} bytes) at {web.url}{path}; not shown."


@pytest.mark.parametrize(
    ("path", "error", "reason"),
    [
        ("/missing", PermanentToolError, "HTTP 404"),
        ("/status/410", PermanentToolError, "HTTP 410"),
        ("/always-503/page", TransientToolError, "HTTP 503"),
        ("/status/429", TransientToolError, "HTTP 429"),
        ("/status/500", TransientToolError, "HTTP 500"),
    ],
)
async def test_http_errors(private_ok: None, web: WebFixture, path: str, error: type[ToolError], reason: str) -> None:
    with pytest.raises(error, match=reason) as raised:
        await visit_webpage(web.url + path)
    assert isinstance(raised.value.__cause__, ModelRetry)


async def test_flaky_page_succeeds_once_the_server_recovers(private_ok: None, web: WebFixture) -> None:
    url = f"{web.url}/flaky/recovering?fail=1"
    with pytest.raises(TransientToolError):
        await visit_webpage(url)
    assert (await visit_webpage(url)).startswith("# Recovering\n")


async def test_connection_refused_is_transient(private_ok: None) -> None:
    with pytest.raises(TransientToolError, match="network error"):
        await visit_webpage(f"http://127.0.0.1:{closed_port()}/")


async def test_read_timeout_is_transient(private_ok: None, web: WebFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUM_FETCH_TIMEOUT", "0.3")
    with pytest.raises(TransientToolError, match="timed out"):
        await visit_webpage(f"{web.url}/slow/late?seconds=5")


async def test_redirects_are_followed(private_ok: None, web: WebFixture) -> None:
    text = await visit_webpage(f"{web.url}/redirect?to=/pages/target")
    assert text.startswith("# Target\n")


async def test_redirect_to_cloud_metadata_is_refused_even_with_opt_in(private_ok: None, web: WebFixture) -> None:
    web.reset()
    with pytest.raises(PermanentToolError, match="cloud metadata"):
        await visit_webpage(f"{web.url}/redirect?to=http://169.254.169.254/latest/meta-data/")
    assert [entry["path"] for entry in web.log()] == ["/redirect"]


# The SSRF guard without the opt-in


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records, and refuses, any HTTP request httpx2 would send."""
    sent: list[str] = []

    async def send(self: httpx2.AsyncClient, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        sent.append(str(request.url))
        raise AssertionError("network I/O attempted")

    monkeypatch.setattr(httpx2.AsyncClient, "send", send)
    return sent


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.0.0.1/",
        "http://192.168.1.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
async def test_private_addresses_are_refused_before_any_request(url: str, no_network: list[str]) -> None:
    with pytest.raises(PermanentToolError, match="is blocked"):
        await run_tool(VISIT_WEBPAGE, {"url": url})
    assert no_network == []


async def test_fixture_itself_is_refused_without_opt_in(web: WebFixture) -> None:
    web.reset()
    with pytest.raises(PermanentToolError, match="is blocked"):
        await visit_webpage(f"{web.url}/pages/secret")
    assert web.log() == []


@pytest.mark.parametrize("url", ["ftp://example.com/file", "not a url", "http:///no-host"])
async def test_invalid_urls_are_permanent(url: str, no_network: list[str]) -> None:
    with pytest.raises(PermanentToolError):
        await visit_webpage(url)
    assert no_network == []


# classify_error


def status_error(status: int) -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", "http://example.test/page")
    response = httpx2.Response(status, request=request)
    return httpx2.HTTPStatusError(f"HTTP {status}\nmore detail", request=request, response=response)


def wrapped(inner: BaseException) -> ModelRetry:
    """What web_fetch raises: ModelRetry from a family-level httpx2 copy from the original error."""
    middle = httpx2.RequestError(str(inner))
    middle.__cause__ = inner
    outer = ModelRetry(f"Failed to fetch http://example.test/: {inner}")
    outer.__cause__ = middle
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx2.ConnectError("refused"), TransientToolError),
        (httpx2.ReadTimeout("slow"), TransientToolError),
        (httpx2.RemoteProtocolError("peer closed"), TransientToolError),
        (status_error(500), TransientToolError),
        (status_error(503), TransientToolError),
        (status_error(429), TransientToolError),
        (status_error(408), TransientToolError),
        (status_error(400), PermanentToolError),
        (status_error(403), PermanentToolError),
        (status_error(404), PermanentToolError),
        (RatelimitException("ratelimit"), TransientToolError),
        (DDGSTimeoutException("timeout"), TransientToolError),
        (ConnectionRefusedError(111, "refused"), TransientToolError),
        (TimeoutError(), TransientToolError),
        (socket.gaierror(socket.EAI_AGAIN, "temporary failure"), TransientToolError),
        (socket.gaierror(socket.EAI_NONAME, "unknown name"), PermanentToolError),
        (httpx2.InvalidURL("bad"), PermanentToolError),
        (ValueError("Access to private/internal IP address (10.0.0.1) is blocked."), PermanentToolError),
        (TypeError("unexpected keyword"), PermanentToolError),
        (ModelRetry("the document is too complex"), PermanentToolError),
        (RuntimeError("a bug"), PermanentToolError),
        (wrapped(httpx2.ConnectError("All connection attempts failed")), TransientToolError),
        (wrapped(httpx2.ReadTimeout("")), TransientToolError),
        (wrapped(status_error(404)), PermanentToolError),
        (wrapped(status_error(502)), TransientToolError),
    ],
)
def test_classify_error(exc: BaseException, expected: type[ToolError]) -> None:
    result = classify_error(exc)
    assert type(result) is expected
    assert str(result) and "\n" not in str(result) and not str(result).endswith(":")


def test_classify_error_keeps_tool_errors_and_survives_cycles() -> None:
    error = TransientToolError("already classified")
    assert classify_error(error) is error
    looping = ValueError("loop")
    looping.__cause__ = looping
    assert isinstance(classify_error(looping), PermanentToolError)


def test_classify_error_names_unexpected_types() -> None:
    assert str(classify_error(RuntimeError("a bug"))) == "unexpected RuntimeError: a bug"


def test_dns_failure_is_judged_by_the_gaierror_not_its_context() -> None:
    gai = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    gai.__context__ = ValueError("'example.test' does not appear to be an IPv4 or IPv6 address")
    outer = ValueError("DNS resolution failed")
    outer.__cause__ = gai
    assert isinstance(classify_error(outer), TransientToolError)


# run_tool


def test_the_toolset_declares_the_workflow_names_once() -> None:
    assert set(tools.TOOLSET.tools) == set(TOOL_NAMES)


async def test_the_model_sees_the_bounds_and_docs_the_worker_enforces() -> None:
    """One declaration: the schema the model is shown is the one `run_tool` validates with."""
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    model = TestModel(call_tools=[])
    await Agent(model, toolsets=[tools.TOOLSET]).run("hello")
    shown = {t.name: t for t in model.last_model_request_parameters.function_tools}
    search = shown[WEB_SEARCH].parameters_json_schema["properties"]
    assert search["max_results"]["minimum"] == 1 and search["max_results"]["maximum"] == tools.MAX_SEARCH_RESULTS
    assert search["query"]["description"] and shown[VISIT_WEBPAGE].parameters_json_schema["properties"]["url"]
    assert shown[WEB_SEARCH].metadata == tools.RUN_IN_WORKER
    with pytest.raises(PermanentToolError, match="max_results"):
        tools.check_tool_args(WEB_SEARCH, {"query": "x", "max_results": tools.MAX_SEARCH_RESULTS + 10})


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("read_minds", {}, "unknown tool 'read_minds'"),
        (WEB_SEARCH, {}, "query: Field required"),
        (WEB_SEARCH, {"query": ""}, "query"),
        (WEB_SEARCH, {"query": "x", "max_results": 0}, "max_results"),
        (WEB_SEARCH, {"query": "x", "max_results": "many"}, "max_results"),
        (WEB_SEARCH, {"query": "x", "limit": 3}, "limit: Extra inputs are not permitted"),
        (VISIT_WEBPAGE, {"link": "http://example.com"}, "url: Field required"),
        (VISIT_WEBPAGE, ["http://example.com"], "valid dictionary"),  # type: ignore[list-item]
    ],
)
async def test_run_tool_rejects_bad_calls(name: str, args: Any, message: str, no_network: list[str]) -> None:
    with pytest.raises(PermanentToolError, match=message):
        await run_tool(name, args)
    assert no_network == []


# The fixture server itself


def test_fixture_head_log_and_reset(web: WebFixture) -> None:
    web.reset()
    head = httpx2.head(f"{web.url}/pages/abc")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 10_000
    assert httpx2.get(f"{web.url}/nope?x=1").status_code == 404
    assert web.log() == [
        {"method": "HEAD", "path": "/pages/abc", "query": ""},
        {"method": "GET", "path": "/nope", "query": "x=1"},
    ]
    web.reset()
    assert web.log() == []


def test_fixture_stops_cleanly_on_sigterm() -> None:
    with run_web_fixture() as fixture:
        assert httpx2.get(f"{fixture.url}/instant").status_code == 200
    assert fixture.process.returncode == 0


async def test_page_fetch_runs_off_the_callers_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream builds a TLS context per fetch (~30 ms of CPU): it must not hold the worker's loop."""
    seen: list[int] = []

    class RecordingFetch:
        def __init__(self, **settings: Any) -> None:
            pass

        async def __call__(self, url: str) -> dict[str, str]:
            seen.append(threading.get_ident())
            return {"url": url, "title": "Recorded", "content": "body"}

    monkeypatch.setattr(tools, "WebFetchLocalTool", RecordingFetch)
    text = await visit_webpage("http://example.invalid/page")
    assert text.startswith("# Recorded") and "body" in text
    assert seen and seen[0] != threading.get_ident()
