"""The page at /ui in headless Chromium, against a real `nexum dev` (and a real agent run).

Playwright's `expect` waits for a condition with a deadline, so the page's own 2-second refresh is
waited on, never slept through. Set UI_SCREENSHOT=docs/ui.png to save the README's screenshot.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from nexum_devtools.procs import NexumServer, Proc
from tests.e2e.helpers import run_demo
from tests.server.conftest import Api

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips every test with the reason (and fails them in CI)
    expect = None

SCREENSHOT = os.environ.get("UI_SCREENSHOT")
"""Where to save the screenshot of a session's calls, for the README (read before the env is scrubbed)."""
LIVE_TIMEOUT_MS = 8000
"""Longer than a few 2-second refreshes."""
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
StartServer = Callable[..., NexumServer]


def finish(api: Api, session_id: str, key: str, input: Any, output: Any) -> dict[str, Any]:
    api.start(session_id, key, input)
    return api.complete(api.poll_one(), output)


def test_after_a_real_agent_run_the_page_shows_the_session_its_calls_and_a_result(
    server: NexumServer, worker: Proc, session_id: str, page: Any
) -> None:
    query = f"What is durable execution {session_id}?"
    for _ in range(2):  # the second run is served from the store: every call a cached hit
        run = run_demo(server.url, "--model", "offline", "--session", session_id, query)
        assert run.returncode == 0, run.stdout + run.stderr

    page.goto(f"{server.url}/ui")
    row = page.locator(f'#sessions tr[data-session="{session_id}"]')
    expect(row).to_be_visible()
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("6")  # 3 model requests and 3 tool calls
    expect(cells.nth(2)).to_have_text("6")  # all of them cached hits on the re-run
    expect(cells.nth(3)).to_have_text("6")
    expect(cells.nth(4)).to_have_text("0")

    row.get_by_role("link", name=session_id).click()
    calls = page.locator("#calls tbody tr")
    expect(calls).to_have_count(6)
    expect(page.locator("#session-title")).to_have_text(session_id)
    expect(page.locator("#calls")).to_contain_text("web_search")
    expect(page.locator("#calls .tool", has_text="visit_webpage")).to_have_count(2)
    expect(page.locator("#calls .tool", has_text="model request")).to_have_count(3)
    expect(page.locator("#calls")).to_contain_text("function:offline, 5 messages in")
    expect(page.locator("#calls")).to_contain_text(query)
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT)

    page.locator("#calls .tool", has_text="visit_webpage").first.click()
    expect(page.locator("#call-facts")).to_contain_text("COMPLETED")
    expect(page.locator("#call-result")).to_contain_text("Durable execution records the outcome of every step")
    expect(page.locator("#call-input")).to_contain_text('"url"')
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("(this one)")


def test_stored_text_is_shown_as_text_and_never_runs(api: Api, server: NexumServer, session_id: str, page: Any) -> None:
    # Markup cannot be in a session id (ids.py refuses it); the odd characters it may hold are used.
    hostile_session = f"{session_id}.a_b:c-d@e"
    done = finish(
        api,
        hostile_session,
        "k",
        {"tool_name": "visit_webpage", "tool_args": {"url": XSS}},
        {"result": f"Page text {XSS} end"},
    )
    api.start(hostile_session, "f", {"tool": XSS, "args": {"q": XSS}})
    api.fail(api.poll_one(), f"error {XSS}", retryable=False)

    page.goto(f"{server.url}/ui")
    expect(page.locator("#sessions")).to_contain_text(hostile_session)
    page.get_by_role("link", name=hostile_session).click()
    expect(page.locator("#calls tbody tr")).to_have_count(2)
    expect(page.locator("#calls")).to_contain_text(f"error {XSS}")
    expect(page.locator("#calls .tool", has_text="<script>")).to_have_count(1)

    page.get_by_role("link", name="visit_webpage").click()
    expect(page.locator("#call-title")).to_have_text(done["id"])
    expect(page.locator("#call-result")).to_have_text(f"Page text {XSS} end")
    expect(page.locator("#call-input")).to_contain_text("<script>window.__xss = 1</script>")

    assert page.locator("img").count() == 0
    assert page.locator("main script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_with_a_token_the_page_works_only_once_it_is_given(
    start_server: StartServer, connect: Callable[..., Api], session_id: str, page: Any
) -> None:
    server = start_server(token="s3cret")
    api = connect(server, token="s3cret")
    finish(api, session_id, "k", {"tool_name": "web_search", "tool_args": {"query": "q"}}, {"result": "r"})
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))

    page.goto(f"{server.url}/ui")
    expect(page.locator("#token-view")).to_be_visible()
    expect(page.locator("#sessions-view")).to_be_hidden()
    page.fill("#token-input", "wrong")
    page.click("#token-form button")
    expect(page.locator("#token-error")).to_have_text("That token is not this server's.")
    expect(page.locator("#sessions-view")).to_be_hidden()

    page.fill("#token-input", "s3cret")
    page.click("#token-form button")
    expect(page.locator(f'#sessions tr[data-session="{session_id}"]')).to_be_visible()
    expect(page.locator("#token-view")).to_be_hidden()

    data = [r for r in requests if "/v1/" in r.url]
    assert data and all("s3cret" not in r.url and "wrong" not in r.url for r in requests)
    assert data[-1].headers.get("authorization") == "Bearer s3cret"


def test_the_page_updates_live_and_pauses_while_hidden(
    api: Api, server: NexumServer, session_id: str, page: Any
) -> None:
    finish(api, session_id, "first", {"tool_name": "web_search", "tool_args": {"query": "one"}}, {"result": "1"})
    page.goto(f"{server.url}/ui#/sessions/{session_id}")
    expect(page.locator("#calls tbody tr")).to_have_count(1)

    api.start(session_id, "second", {"tool_name": "web_search", "tool_args": {"query": "two"}})
    expect(page.locator("#calls tbody tr")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#calls tbody tr").first).to_contain_text("PENDING")
    api.complete(api.poll_one(), {"result": "2"})
    expect(page.locator("#calls tbody tr").first).to_contain_text("COMPLETED", timeout=LIVE_TIMEOUT_MS)

    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page.locator("#live")).to_have_text("paused while the tab is hidden", timeout=LIVE_TIMEOUT_MS)
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: false, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page.locator("#live")).to_have_text(re.compile(r"^live · updated"))


def test_forget_from_the_page_is_refused_while_a_call_is_live_then_deletes_the_session(
    api: Api, server: NexumServer, session_id: str, page: Any
) -> None:
    done = finish(api, session_id, "a", {"tool_name": "web_search", "tool_args": {"query": "a"}}, {"result": "a"})
    api.start(session_id, "b", {"tool_name": "web_search", "tool_args": {"query": "b"}})
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.url}/ui#/sessions/{session_id}")
    expect(page.locator("#calls tbody tr")).to_have_count(2)

    page.click("#forget")
    expect(page.locator("#notice")).to_contain_text("Not forgotten")
    expect(page.locator("#notice")).to_contain_text("still pending or running")
    assert api.get(done["id"])["status"] == "COMPLETED"

    api.complete(api.poll_one(), {"result": "b"})
    page.click("#forget")
    expect(page.locator("#notice")).to_have_text(f"Session {session_id} forgotten: 2 execution(s) deleted.")
    expect(page.locator("#sessions-view")).to_be_visible()
    expect(page.locator(f'#sessions tr[data-session="{session_id}"]')).to_have_count(0)
    assert api.http.get(f"/v1/sessions/{session_id}").status_code == 404
    assert api.start(session_id, "a", expect=201)["id"] != done["id"]


def test_a_retried_call_shows_its_last_attempt_apart_and_a_phone_width_does_not_scroll(
    start_server: StartServer, connect: Callable[..., Api], session_id: str, page: Any
) -> None:
    server = start_server(retry_backoff_seconds=1.0)
    api = connect(server)
    api.start(session_id, "tool", {"tool_name": "web_search", "tool_args": {"query": "durable"}})
    api.fail(api.poll_one(), "the site timed out")
    api.complete(api.poll_one(wait=11), "pages")  # long-polled until the retry is due, 1 s on
    model = finish(api, session_id, "model", {"unit": "model_request", "model": "offline", "messages": 1}, "answer")

    page.goto(f"{server.url}/ui#/sessions/{session_id}")
    row = page.locator("#calls tbody tr", has_text="web_search")
    expect(row.locator("td").nth(6)).to_have_text(re.compile(r"^1\.\d s$"))  # before the last attempt
    expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+ ms$"))  # the last attempt ran
    page.goto(f"{server.url}/ui#/sessions/{session_id}/calls/{model['id']}")
    expect(page.locator("#call-facts")).to_contain_text("model request (offline)")
    expect(page.locator("#call-facts dt", has_text="Workflow")).to_have_count(1)

    page.goto(f"{server.url}/ui#/sessions/nobody-{session_id}")
    expect(page.locator("#calls-empty")).to_contain_text("No session with this id")

    page.set_viewport_size({"width": 420, "height": 800})
    for view in ("#/", f"#/sessions/{session_id}"):
        page.goto(f"{server.url}/ui{view}")
        expect(page.locator("#live")).to_contain_text("live")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), view
