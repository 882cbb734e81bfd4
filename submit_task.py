"""Submit one research tool call to the Nexum server and wait for its result.

A call already completed in this session comes back from the server in one HTTP round trip, with
no re-execution. A new call is started and awaited in the same request (the server holds it until
a worker has written the result back); nothing here sleeps or polls. The arguments are checked
against the tool's own schema before anything is submitted.

Run with:
    nexum dev & nexum-web python worker.py &
    python submit_task.py web_search '{"query": "durable execution"}' --session demo

Exit codes: 0 the result is printed; 1 the call failed (or bad input); 2 cannot start (a bad
setting, no server at the URL, a refused token); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import nexum_pydantic_ai as library
from nexum_pydantic_ai import DEFAULT_TIMEOUT, InvalidToolCall, ToolCallFailed, ToolCallOutcome
from nexum_server.client import NexumClient, NexumSyncClient
from nexum_server.client import run as client_run
from nexum_server.config import DEFAULT_URL
from nexum_server.errors import ConfigError, NexumError, RequestRejected, ServerUnavailable
from nexum_server.ids import InvalidSessionId, validate_session_id
from workflow import TOOL_NAMES, TOOLSET_ID

__all__ = [
    "InvalidToolCall",
    "ToolCallFailed",
    "ToolCallOutcome",
    "call_tool",
    "call_tool_sync",
    "main",
    "submit_tool_call",
    "submit_tool_call_async",
]


def check_call(tool_name: str, tool_args: dict[str, Any]) -> None:
    """Refuse a call the research toolset would refuse, before it is submitted: a typo must not
    wait for a worker to store a failure."""
    from nexum_research.tools import PermanentToolError, check_tool_args

    try:
        check_tool_args(tool_name, tool_args)
    except PermanentToolError as e:
        raise InvalidToolCall(str(e)) from e


async def call_tool(
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumClient | None = None,
) -> ToolCallOutcome:
    """Run one research tool call durably; raises `ToolCallFailed`, `ServerUnavailable` or `WaitTimeout`."""
    check_call(tool_name, tool_args)
    return await library.call_tool(TOOLSET_ID, tool_name, tool_args, session_id, timeout, client=client)


def call_tool_sync(
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumSyncClient | None = None,
) -> ToolCallOutcome:
    """The blocking twin of `call_tool`, safe from any number of threads at once."""
    check_call(tool_name, tool_args)
    return library.call_tool_sync(TOOLSET_ID, tool_name, tool_args, session_id, timeout, client=client)


async def submit_tool_call_async(
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumClient | None = None,
) -> Any:
    """The tool's result; the same call in the same session runs once."""
    return (await call_tool(tool_name, tool_args, session_id, timeout, client=client)).result


def submit_tool_call(
    tool_name: str,
    tool_args: dict[str, Any],
    session_id: str = "default",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    client: NexumSyncClient | None = None,
) -> Any:
    """Blocking form for scripts and sync tools; safe from any number of threads at once."""
    return call_tool_sync(tool_name, tool_args, session_id, timeout, client=client).result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=f"Reads NEXUM_URL (default {DEFAULT_URL}) and NEXUM_TOKEN from the environment or from .env "
        "in the current directory. Exit codes: 0 done, 1 the call failed, 2 cannot start (bad setting, "
        "no server, token refused), 130 Ctrl-C.",
    )
    parser.add_argument("tool_name", metavar="TOOL", help="the tool to run: " + ", ".join(TOOL_NAMES))
    parser.add_argument(
        "tool_args", metavar="ARGS", help='its arguments as a JSON object, e.g. \'{"query": "durable execution"}\''
    )
    parser.add_argument(
        "--session",
        default="default",
        help="session id: the same call in the same session runs once (default: default)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the result (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--url", help=f"server URL (NEXUM_URL, default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    try:
        tool_args = json.loads(args.tool_args)
    except json.JSONDecodeError as e:
        parser.error(f'ARGS is not valid JSON ({e}); pass an object like \'{{"query": "..."}}\'')
    if not isinstance(tool_args, dict):
        parser.error('ARGS must be a JSON object, like \'{"query": "..."}\'')
    try:
        validate_session_id(args.session)
    except InvalidSessionId as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        result = client_run(_submit(args, tool_args))
        print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False))
    except NexumError as e:
        print(f"error: {e}", file=sys.stderr)
        refused = isinstance(e, RequestRejected) and e.status == 401
        sys.exit(2 if isinstance(e, ServerUnavailable | ConfigError) or refused else 1)
    except KeyboardInterrupt:
        print("interrupted: the call stays on the server; the same command gets its result later", file=sys.stderr)
        sys.exit(130)


async def _submit(args: argparse.Namespace, tool_args: dict[str, Any]) -> Any:
    async with NexumClient(args.url) as client:
        await client.check()
        return await submit_tool_call_async(args.tool_name, tool_args, args.session, args.timeout, client=client)


if __name__ == "__main__":
    main()
