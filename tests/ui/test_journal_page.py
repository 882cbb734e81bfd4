"""A model request's call view in headless Chromium: what it was sent, new messages marked, its
response, long parts folded, stored markup shown as text; and forking a session from the page."""

from __future__ import annotations

from typing import Any

from nexum_devtools.procs import NexumServer
from nexum_server.journal import message_hash
from tests.server.conftest import REF, Api
from tests.ui.test_page import XSS

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips every test with the reason (and fails them in CI)
    expect = None


def request(api: Api, session_id: str, key: str, history: list[Any], new: list[Any], response: Any) -> dict:
    body = {
        **REF,
        "session_id": session_id,
        "key": key,
        "input": {
            "unit": "model_request",
            "model": "test:model",
            "messages": len(history),
            "sent": [message_hash(m) for m in history],
        },
        "messages": [{"hash": message_hash(m), "body": m} for m in new],
    }
    assert api.http.post("/v1/executions", json=body).status_code == 201
    return api.complete(api.poll_one(), response)


def test_a_model_request_shows_what_it_was_sent_and_its_response_as_text(
    api: Api, server: NexumServer, session_id: str, page: Any
) -> None:
    prompt = {
        "kind": "request",
        "instructions": "Answer briefly.",
        "parts": [{"part_kind": "user-prompt", "content": "Find durable execution"}],
    }
    call = {
        "kind": "response",
        "parts": [
            {
                "part_kind": "tool-call",
                "tool_name": "visit_webpage",
                "args": {"url": "https://example.org"},
                "tool_call_id": "c1",
            }
        ],
    }
    long_page = "x" * 2000
    result = {
        "kind": "request",
        "parts": [
            {
                "part_kind": "tool-return",
                "tool_name": "visit_webpage",
                "tool_call_id": "c1",
                "content": f"Page {XSS} {long_page}",
            }
        ],
    }
    request(api, session_id, "r1", [prompt], [prompt], call)
    answer = {
        "kind": "response",
        "parts": [{"part_kind": "text", "content": f"The answer {XSS}"}],
        "usage": {"input_tokens": 120, "output_tokens": 9},
    }
    done = request(api, session_id, "r2", [prompt, call, result], [call, result], answer)

    page.goto(f"{server.url}/ui#/sessions/{session_id}/calls/{done['id']}")
    expect(page.locator("#call-request")).to_be_visible()
    expect(page.locator("#call-sent-summary")).to_have_text("3 message(s), 2 new since the previous model request")
    parts = page.locator("#call-sent .part")
    expect(parts).to_have_count(4)  # instructions, user prompt, tool call, tool result
    expect(parts.nth(0)).to_contain_text("Answer briefly.")
    expect(parts.nth(1)).to_contain_text("Find durable execution")
    expect(page.locator("#call-sent .part.new")).to_have_count(2)
    expect(parts.nth(2)).to_contain_text("visit_webpage({")
    folded = parts.nth(3).locator("details")
    expect(folded).to_have_count(1)
    expect(folded.locator("summary")).to_contain_text(f"Page {XSS}")
    expect(page.locator("#call-response")).to_contain_text(f"The answer {XSS}")
    expect(page.locator("#call-response")).to_contain_text("input tokens 120, output tokens 9")
    assert page.locator("img").count() == 0
    assert page.locator("main script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_a_session_is_forked_from_the_page_and_the_fork_shows_its_source(
    api: Api, server: NexumServer, session_id: str, page: Any
) -> None:
    for key in ("a", "b", "c"):
        api.start(session_id, key, {"tool_name": "web_search", "tool_args": {"query": key}})
        api.complete(api.poll_one(), {"result": key})
    answers = iter([f"{session_id}-fork", "2"])
    page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    page.goto(f"{server.url}/ui#/sessions/{session_id}")
    expect(page.locator("#calls tbody tr")).to_have_count(3)
    page.click("#fork")
    expect(page.locator("#notice")).to_have_text(
        f"Session {session_id}-fork forked from {session_id}: 2 call(s) copied."
    )
    expect(page.locator("#session-title")).to_have_text(f"{session_id}-fork")
    expect(page.locator("#calls tbody tr")).to_have_count(2)
    expect(page.locator("#session-counts")).to_contain_text(f"Forked from{session_id} (its first 2 calls)")
    page.locator("#session-counts a").click()
    expect(page.locator("#session-title")).to_have_text(session_id)
