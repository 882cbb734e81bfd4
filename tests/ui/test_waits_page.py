"""The page's "Waiting for you" list in headless Chromium, against a real server and a real waiting agent."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from nexum_devtools.procs import NexumServer, Proc
from tests.e2e.approval_agent import WAITING
from tests.server.conftest import Api
from tests.server.test_waits_api import make_wait
from tests.ui.test_page import LIVE_TIMEOUT_MS, XSS, expect

RUN_TIMEOUT = 30


def test_a_waiting_call_appears_approve_lets_the_run_go_on_and_the_session_shows_who(
    server: NexumServer, session_id: str, page: Any, tmp_path: Path
) -> None:
    agent = Proc(
        [
            sys.executable,
            "-m",
            "tests.e2e.approval_agent",
            "--url",
            server.url,
            "--session",
            session_id,
            "--log",
            str(tmp_path),
        ]
    )
    try:
        token = agent.wait_for(re.compile(WAITING + r"(\S+)")).group(1)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.goto(f"{server.url}/ui")
        item = page.locator(f'#waits li[data-token="{token}"]')
        expect(item).to_contain_text("visit_webpage", timeout=LIVE_TIMEOUT_MS)
        expect(item).to_contain_text('{"url":"https://a.example/<b>page</b>"}')
        expect(item).to_contain_text(session_id)
        item.get_by_role("button", name="Approve").click()
        expect(page.locator("#notice")).to_have_text(f"Approved for session {session_id}.")
        assert "visit_webpage" in dialogs[0]  # it asked first, naming the call
        assert agent.popen.wait(RUN_TIMEOUT) == 0, agent.output
        assert "OUTPUT answer from: the page at https://a.example/<b>page</b>" in agent.output
    finally:
        agent.stop()
    expect(page.locator("#waits-box")).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    page.goto(f"{server.url}/ui#/sessions/{session_id}")
    row = page.locator(f'#session-waits tr[data-token="{token}"]')
    expect(row).to_contain_text("RESOLVED")
    expect(row.locator(".resolved-by")).to_have_text("the page")


def test_html_in_a_waits_arguments_shows_as_text_and_deny_asks_for_the_reason(
    api: Api, server: NexumServer, session_id: str, page: Any
) -> None:
    wait = make_wait(api.http, session_id, calls=[{"tool_call_id": "c1", "tool_name": XSS, "args": {"url": XSS}}])
    page.on("dialog", lambda dialog: dialog.accept("not that page"))
    page.goto(f"{server.url}/ui")
    item = page.locator(f'#waits li[data-token="{wait["token"]}"]')
    expect(item.locator(".tool")).to_have_text(XSS)
    expect(item.locator(".args")).to_contain_text("<script>window.__xss = 1</script>")
    assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
    item.get_by_role("button", name="Deny").click()
    expect(page.locator("#notice")).to_have_text(f"Denied for session {session_id}.")
    done = api.http.get(f"/v1/events/{wait['token']}").json()
    assert done["payload"]["approvals"]["c1"] == {"kind": "tool-denied", "message": "not that page"}
    assert done["resolved_by"] == "the page"
    assert page.evaluate("window.__xss") is None
