"""`nexum waits`, `approve`, `deny` and `resolve` as a user runs them, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexum_devtools.procs import NexumServer
from tests.server.test_cli import nexum, said
from tests.server.test_waits_api import CALLS, make_wait


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest, start_server: Callable[..., NexumServer]) -> NexumServer:
    if request.param == "postgresql":
        return start_server(db=request.getfixturevalue("postgres_url"))
    return start_server()


def wait_of(server: NexumServer, token: str) -> dict[str, Any]:
    with server.http() as http:
        return http.get(f"/v1/events/{token}").json()


def test_waits_lists_the_pending_calls_then_approve_records_who(any_server: NexumServer, session_id: str) -> None:
    with any_server.http() as http:
        wait = make_wait(http, session_id)
    listed = nexum("waits", "--url", any_server.url, "--session", session_id)
    assert listed.returncode == 0, said(listed)
    text = said(listed).replace(" ", "")
    assert wait["token"].replace("-", "") in text.replace("-", "")
    assert "visit_webpage" in text and "https://a.example/<script>" in text and "c2" in text

    approved = nexum("approve", wait["token"], "--call", "c1", "--by", "ann", "--url", any_server.url)
    assert approved.returncode == 0, said(approved)
    assert "RESOLVED by ann" in said(approved)
    done = wait_of(any_server, wait["token"])
    assert done["payload"]["approvals"]["c1"] is True and done["payload"]["approvals"]["c2"]["kind"] == "tool-denied"

    again = nexum("deny", wait["token"], "--reason", "too late", "--url", any_server.url)
    assert again.returncode == 1 and "already RESOLVED (by ann)" in said(again)
    assert wait_of(any_server, wait["token"])["resolved_by"] == "ann"
    assert "nothing waits" in said(nexum("waits", "--url", any_server.url, "--session", session_id))
    assert "RESOLVED by ann" in said(nexum("waits", "--all", "--url", any_server.url, "--session", session_id))


def test_deny_and_resolve_and_an_unknown_token(server: NexumServer, session_id: str) -> None:
    with server.http() as http:
        denied, resolved = make_wait(http, session_id, "a"), make_wait(http, session_id, "b", calls=[])
    result = nexum("deny", denied["token"], "--reason", "not that site", "--url", server.url)
    assert result.returncode == 0, said(result)
    assert wait_of(server, denied["token"])["payload"]["approvals"]["c1"] == {
        "kind": "tool-denied",
        "message": "not that site",
    }
    result = nexum("resolve", resolved["token"], "--json", '{"answer": 42}', "--url", server.url)
    assert result.returncode == 0, said(result)
    assert wait_of(server, resolved["token"])["payload"] == {"answer": 42}
    bad = nexum("resolve", "whatever", "--json", "{nope", "--url", server.url)
    assert bad.returncode == 1 and "not JSON" in said(bad)
    unknown = nexum("approve", "no-such-token", "--url", server.url)
    assert unknown.returncode == 1 and "no wait has this token" in said(unknown)
    assert len(CALLS) == 2
