"""A Pydantic AI research agent whose runs are durable: every model request and tool call is stored by Nexum.

The agent's `web_search` and `visit_webpage` tools do not run here: each call is submitted to the
Nexum server and run by `worker.py`. Its model requests run here, each recorded in the session too.
Run the same query again with the same session and every completed step comes back from the store
at once: the model is asked only what it never answered, and no page is fetched twice.
`--crash-after N` kills this process after N steps to show exactly that.

Run with:
    nexum dev                                       # terminal 1
    nexum-web python worker.py                      # terminal 2 (or `python worker.py` for the real web)
    python demo.py "What is durable execution?"     # terminal 3
    SESSION_ID=<the session it printed> python demo.py "What is durable execution?"
    python demo.py --approve "What is durable execution?"   # asks before reading each page:
    nexum approve TOKEN                                      # in another terminal (or the page /ui)

Exit codes: 0 answered; 1 the model failed, or every tool call failed; 2 cannot start (no server at
NEXUM_URL, token refused, a bad setting); 3 stopped while waiting for approval (--detach); 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Callable
from types import NoneType
from typing import Any

import pydantic_ai
from pydantic_ai import Agent
from pydantic_ai.capabilities import RequestInput
from pydantic_ai.exceptions import AgentRunError, UserError
from pydantic_ai.models import Model
from pydantic_ai.toolsets import AbstractToolset
from rich.logging import RichHandler
from rich.markdown import Markdown

from nexum_pydantic_ai import DEFAULT_TIMEOUT, NexumDurability, UnitEvent, WaitDetached, WorkerToolset
from nexum_research import AGENT_NAME
from nexum_research.console import Progress, console, pick_model, show_wait
from nexum_research.settings import AgentSettings
from nexum_research.tools import TOOLSET
from nexum_server.client import NexumClient
from nexum_server.errors import ConfigError, NexumError, RequestRejected, ServerUnavailable
from nexum_server.ids import SESSION_ID_RULE, InvalidSessionId, validate_session_id

INSTRUCTIONS = (
    "You are a research assistant. Use web_search to find sources and visit_webpage to read "
    "the most relevant ones, then answer in Markdown and cite the URLs you used."
)

APPROVE_TOOLS = frozenset({"visit_webpage"})
"""The tools `--approve` asks about before they run."""
__all__ = ["AGENT_NAME", "INSTRUCTIONS", "Progress", "build_agent", "main", "pick_model", "run"]


def build_agent(
    model: Model | str,
    session_id: str | None,
    *,
    client: NexumClient | None = None,
    on_unit: Callable[[UnitEvent], None] | None = None,
    toolset: AbstractToolset[None] = TOOLSET,
    timeout: float = DEFAULT_TIMEOUT,
    approve: bool = False,
    detach: bool = False,
) -> Agent[None, str]:
    """The research agent; with a session, durable in Nexum.

    In a session, every model request and tool call of a run is an execution of the session on the
    Nexum server (`NexumDurability`), and the web tools run in `worker.py` (`WorkerToolset`): a
    re-run replays what completed and asks the model only what it never answered. With
    `session_id=None` it is plain Pydantic AI, running `toolset` in this process.
    """
    if session_id is None:
        return Agent(
            model, name=AGENT_NAME, deps_type=NoneType, instructions=INSTRUCTIONS, toolsets=[toolset], retries=3
        )
    tools: AbstractToolset[None] = WorkerToolset(toolset, client=client, timeout=timeout)
    capabilities: list[Any] = [
        NexumDurability(session_id=session_id, client=client, on_unit=on_unit, on_wait=show_wait, detach_waits=detach)
    ]
    if approve:  # the pages wait for a person: `nexum approve`, or the page /ui, resolves the wait
        tools = tools.approval_required(lambda ctx, tool_def, args: tool_def.name in APPROVE_TOOLS)
        capabilities.append(RequestInput(lambda ctx, requests, token: None))
    return Agent(
        model,
        name=AGENT_NAME,
        deps_type=NoneType,
        instructions=INSTRUCTIONS,
        retries=3,
        toolsets=[tools],
        capabilities=capabilities,
    )


async def run(
    query: str,
    session_id: str,
    model_name: str | None,
    progress: Progress,
    timeout: float = DEFAULT_TIMEOUT,
    approve: bool = False,
    detach: bool = False,
) -> int:
    model, label = pick_model(model_name)
    async with NexumClient() as client:
        try:
            await client.check()
        except (ServerUnavailable, RequestRejected) as e:
            console.print(f"[red]error:[/] {e}", highlight=False)
            return 2
        console.print(
            f"[bold]Query[/]    {query}\n[bold]Session[/]  {session_id}\n[bold]Model[/]    {label}", highlight=False
        )
        agent = build_agent(
            model, session_id, client=client, on_unit=progress, timeout=timeout, approve=approve, detach=detach
        )
        try:
            with console.status("agent working; its web tools run in the worker", spinner="dots") as spinner:
                progress.spinner, progress.session_id = spinner, session_id
                result = await agent.run(query)
        except ServerUnavailable as e:
            console.print(f"[red]error:[/] {e}\n{progress.resume_hint(session_id)}", highlight=False)
            return 2
        except WaitDetached:
            console.print(
                f"Stopped while waiting (--detach); the wait stays on the server. Once it is resolved, "
                f"continue with SESSION_ID={session_id} (the same query and flags).",
                highlight=False,
            )
            return 3
    console.print()
    console.print(Markdown(result.output))
    console.print(f"\n[bold]Summary[/]  {progress.summary()}", highlight=False)
    if failed := progress.all_tools_failed():
        console.print(
            f"[bold red]Every tool call failed[/] ({len(failed)} of {len(failed)}), so the answer above "
            f"has no sources behind it. The first error: {failed[0].name}: {failed[0].error}\n"
            "The worker's terminal says more. Without internet access, run the worker as "
            "`nexum-web python worker.py` (a stand-in web on this machine).",
            highlight=False,
        )
        return 1
    console.print(
        f"Re-run with SESSION_ID={session_id} to replay every completed step from the store.",
        style="dim",
        highlight=False,
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    # Pydantic AI's first-run banner would come between the query and its answer.
    pydantic_ai.BANNER_ENABLED = False
    try:
        settings = AgentSettings.from_env()
    except ConfigError as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
    settings.export_provider_keys()
    parser = argparse.ArgumentParser(
        description="A research agent whose model requests and tool calls are durable in the Nexum server.",
        epilog="Reads NEXUM_URL, NEXUM_TOKEN, NEXUM_MODEL, SESSION_ID and the model providers' keys "
        "(GOOGLE_API_KEY, GEMINI_API_KEY, OPENAI_API_KEY) from the environment or from .env in the "
        "current directory. Exit codes: 0 answered; 1 the model failed, or every tool call failed; "
        "2 cannot start (no server, token refused, bad setting); 130 Ctrl-C.",
    )
    parser.add_argument("query", help='the question to research, in quotes: "What is durable execution?"')
    parser.add_argument(
        "--session",
        default=settings.session_id,
        help="session id; a run of an existing session replays what completed in it "
        f"(SESSION_ID, default: a new session; {SESSION_ID_RULE})",
    )
    parser.add_argument(
        "--model",
        default=settings.model,
        help="any Pydantic AI model name, or 'offline' (NEXUM_MODEL, default: picked from the "
        "API key present, else offline)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long one tool call may wait for the worker (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--crash-after", type=int, metavar="N", help="kill this process after N steps (model requests and tool calls)"
    )
    parser.add_argument(
        "--approve",
        action="store_true",
        help="ask before reading each page: the run waits for `nexum approve` or the page /ui",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="with --approve: stop instead of waiting; the same command goes on once approved",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.crash_after is not None and args.crash_after < 1:
        parser.error("--crash-after must be 1 or more (the steps to let complete before the kill)")
    try:
        session_id = validate_session_id(args.session) if args.session else f"session-{uuid.uuid4().hex[:8]}"
    except InvalidSessionId as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_time=False, show_path=False)],
    )
    progress = Progress(args.crash_after, args.query)
    try:
        sys.exit(
            asyncio.run(run(args.query, session_id, args.model, progress, args.timeout, args.approve, args.detach))
        )
    except ConfigError as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except (NexumError, AgentRunError, UserError) as e:
        # The model failed (bad key, unknown model, out of retries): what ran so far is stored.
        console.print(f"[red]error:[/] {type(e).__name__}: {e}\n{progress.resume_hint(session_id)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted[/]: {progress.resume_hint(session_id)}", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
