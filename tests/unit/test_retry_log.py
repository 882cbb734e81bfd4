"""A server that is away is said once, not once per retry, and its return is said too."""

from __future__ import annotations

import logging

import pytest

from nexum_server.errors import ServerUnavailable
from nexum_server.retry import retry_async


async def test_an_outage_is_logged_when_it_starts_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("nexum.test-outage")
    failures = iter(range(4))

    async def call() -> str:
        if next(failures, None) is not None:
            raise ServerUnavailable("cannot reach the server")
        return "answered"

    with caplog.at_level(logging.WARNING, logger=log.name):
        assert await retry_async(call, log=log) == "answered"
    said = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert len(said) == 2, said
    assert said[0].startswith("cannot reach the server; retrying in")
    assert said[1].startswith("the server answers again, after")
