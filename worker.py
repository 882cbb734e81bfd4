"""The research worker: runs the research agent's web tools for the Nexum server.

It is `nexum_pydantic_ai.worker` serving `nexum_research.tools.TOOLSET` (`web_search`,
`visit_webpage`); the same runtime runs any toolset (`python -m nexum_pydantic_ai.worker
mypkg.tools:TOOLSET`). A misconfigured search is refused at start-up rather than failing every call.
Ctrl-C or SIGTERM stops it taking work; calls in flight get a grace period, then are handed back.

Run with:
    nexum dev                                  # terminal 1
    python worker.py [--concurrency 8]         # terminal 2, searching the real web
    nexum-web python worker.py                 # terminal 2, on the stand-in web (no internet needed)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai.toolsets import AbstractToolset

from nexum_pydantic_ai.worker import build_parser, configure_logging, serve
from nexum_server.client import run
from nexum_server.config import DEFAULT_URL
from nexum_server.errors import NexumError

HELP_EPILOG = f"""\
The worker reads these variables, from the environment or from .env in the current directory:
  NEXUM_URL                 the server (default {DEFAULT_URL}; --url wins)
  NEXUM_TOKEN               the server's token, if it was started with one
  NEXUM_SEARCH_BACKEND      duckduckgo (default, the real web) or searxng
  NEXUM_SEARXNG_URL         the SearXNG instance, required with searxng
  NEXUM_ALLOW_PRIVATE_URLS  1 lets pages on loopback/private addresses be read
  NEXUM_PAGE_MAX_CHARS, NEXUM_FETCH_TIMEOUT   page text kept, seconds per request
Without internet, `nexum-web python worker.py` runs it against a stand-in web.

Ctrl-C or SIGTERM: no new work; calls in flight get --grace-seconds, then are handed back.
A second Ctrl-C hands them back at once. Exit codes: 0 stopped, 2 cannot start (a bad setting,
no server at the URL, a refused token)."""


def main(argv: list[str] | None = None) -> None:
    parser = build_parser("Run the research tool calls the Nexum server queues, and report their results.", HELP_EPILOG)
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    configure_logging()
    try:
        from nexum_research.settings import ToolSettings
        from nexum_research.tools import TOOLSET, aclose_clients

        settings = ToolSettings.from_env()  # refused here, not on every call
        run(_serve(args, TOOLSET, f"search: {settings.describe()}", aclose_clients))
    except NexumError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


async def _serve(
    args: argparse.Namespace,
    toolset: AbstractToolset[Any],
    describe: str,
    aclose_clients: Callable[[], Awaitable[None]],
) -> None:
    try:
        await serve(
            [toolset],
            url=args.url,
            concurrency=args.concurrency,
            worker_id=args.worker_id,
            grace_seconds=args.grace_seconds,
            describe=describe,
        )
    finally:
        await aclose_clients()


if __name__ == "__main__":
    main()
