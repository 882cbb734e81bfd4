"""A worker's report the server refuses with a 4xx ends the call with the reason, on both backends.

A model-chosen URL holding a NUL character made the worker's `fail` report a 500 on PostgreSQL,
retried for ever: the worker's slot never freed and the call never ended. Now the error text is
stored escaped, and any report the server refuses for what it holds (not for a lost lease) is
followed by one last `fail` that names the refusal, so no report loops.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nexum_devtools.procs import NexumServer, Proc
from nexum_devtools.web import WebFixture
from nexum_server.client import NexumClient
from nexum_server.models import Status
from submit_task import ToolCallFailed, call_tool
from tests.reliability.faults import token
from workflow import VISIT_WEBPAGE


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_server(request: pytest.FixtureRequest, start_server: Callable[..., NexumServer]) -> NexumServer:
    db = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return start_server(db=db, lease_seconds=5, retry_backoff_seconds=0.05)


async def test_a_url_with_a_nul_fails_the_call_with_its_reason_and_frees_the_worker(
    backend_server: NexumServer, start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    start_worker(backend_server, "--concurrency", "1")
    async with NexumClient(backend_server.url) as client:
        with pytest.raises(ToolCallFailed) as failed:
            await call_tool(
                VISIT_WEBPAGE, {"url": f"{web.url}/pages/{token('nul')}\x00x"}, session_id, 60, client=client
            )
        execution = failed.value.execution
        assert execution.status is Status.FAILED and "\x00" not in (execution.error or ""), execution.error
        # The worker's one slot is free again: a good call right after it completes.
        done = await call_tool(
            VISIT_WEBPAGE, {"url": f"{web.url}/pages/{token('after')}"}, session_id, 60, client=client
        )
        assert done.result


async def test_a_report_refused_with_a_4xx_is_not_sent_again_and_fails_the_call_naming_why(
    backend_server: NexumServer, start_worker: Callable[..., Proc], web: WebFixture, session_id: str
) -> None:
    start_worker(backend_server, "--concurrency", "1")
    # An error text longer than the server takes (FailTask.error): the URL is quoted in it.
    long_url = f"{web.url}/missing/{token('long')}/" + "x" * 21_000
    async with NexumClient(backend_server.url) as client:
        with pytest.raises(ToolCallFailed) as failed:
            await call_tool(VISIT_WEBPAGE, {"url": long_url}, session_id, 60, client=client)
    execution = failed.value.execution
    assert execution.status is Status.FAILED, execution
    assert execution.attempts == 1, "a refused report is not retried by running the tool again"
    assert "the server refused the report" in (execution.error or ""), execution.error[:300]
