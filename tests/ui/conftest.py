"""Fixtures of the page tests: one headless Chromium per test module, a fresh page per test.

Per module, not per session: Playwright's sync API runs an event loop in the main thread while it
is open, and asyncio tests of later modules could not start theirs.

Without Debian's chromium (or Playwright) the page tests skip with the reason; in CI
(`NEXUM_CI=1`, set by `.ci/run`) they fail instead, so CI never passes without running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import worker  # noqa: F401  (fixtures shared with the end-to-end tests)
from tests.server.conftest import api, connect  # noqa: F401
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS, missing

IN_CI = os.environ.get("NEXUM_CI") == "1"
"""Read when collected, before the autouse fixture of tests/conftest.py scrubs NEXUM_* variables."""
VIEWPORT = {"width": 1280, "height": 760}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI must run the page tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a context of its own (its own tab storage); scripts' errors fail the test."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page's scripts raised: {errors}"
