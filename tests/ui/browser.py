"""The browser the page tests drive: Debian's own Chromium through Playwright, never a downloaded one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's `chromium` package; CI installs it (`.ci/run`)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (make .venv/.test installs it)"
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed ({CHROMIUM}); install it with `apt-get install chromium`"
    return None
