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
import os
import shlex
import signal
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
from rich.console import Console
from rich.logging import RichHandler
from rich.markdown import Markdown
from rich.status import Status

from nexum_pydantic_ai import DEFAULT_TIMEOUT, NexumDurability, UnitEvent, WaitDetached, WorkerToolset
from nexum_research import AGENT_NAME
from nexum_research.offline_model import offline_model
from nexum_research.settings import AgentSettings
from nexum_research.tools import TOOLSET
from nexum_server.client import NexumClient
from nexum_server.errors import ConfigError, NexumError, RequestRejected, ServerUnavailable
from nexum_server.ids import SESSION_ID_RULE, InvalidSessionId, validate_session_id

GEMINI_MODEL = "google:gemini-3.8-flash"
OPENAI_MODEL = "openai:gpt-5-mini"
INSTRUCTIONS = (
    "You are a research assistant. Use web_search to find sources and visit_webpage to read "
    "the most relevant ones, then answer in Markdown and cite the URLs you used."
)

APPROVE_TOOLS = frozenset({"visit_webpage"})
"""The tools `--approve` asks about before they run."""

console = Console()


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


def show_wait(wait: Any) -> None:
    """What the run waits for, and the commands that answer it."""
    pages = "\n".join(
        f"    {call.tool_name}({_clip(repr((call.args or {}).get('url', call.args)), 90)})"
        for call in wait.request.calls
    )
    console.print(
        f"[bold yellow]Waiting for approval[/] to read:\n{pages}\n  approve: nexum approve {wait.token}"
        f'\n  deny:    nexum deny {wait.token} --reason "not this one"\n  or on the page /ui',
        highlight=False,
        soft_wrap=True,
    )


def pick_model(name: str | None) -> tuple[Model | str, str]:
    """The model to use and how to describe it: a name, else an API key's default, else offline."""
    settings = AgentSettings.from_env()
    if not name:
        if settings.google_api_key or settings.gemini_api_key:
            name = GEMINI_MODEL
        elif settings.openai_api_key:
            name = OPENAI_MODEL
        else:
            name = "offline"
    think = settings.offline_think_seconds
    if name == "offline":
        return (
            offline_model(think_seconds=think),
            "offline (quotes pages; not a language model: set an API key or --model)",
        )
    if name == "offline-varying":
        return (
            offline_model(3, vary=True, think_seconds=think),
            "offline-varying (words its search differently in every process, like a real model)",
        )
    return name, name


class Progress:
    """Prints one line per model request and tool call; kills the process on `--crash-after`."""

    def __init__(self, crash_after: int | None = None, query: str = "") -> None:
        self.events: list[UnitEvent] = []
        self.crash_after = crash_after
        self.query = query
        self.spinner: Status | None = None
        """The spinner on screen while the agent works: cleared before a `--crash-after` kill."""
        self.session_id = ""

    def __call__(self, event: UnitEvent) -> None:
        self.events.append(event)
        if event.kind == "model":
            what = "model request"
        else:
            shown = ", ".join(_clip(repr(v), 60) for k, v in (event.args or {}).items() if k != "max_results")
            what = f"{event.name}({shown})"
        if event.error is not None:
            console.print(f"  {what}  [red]failed ✗[/] {event.error}", highlight=False)
        elif event.cached:
            console.print(f"  {what}  [green]cached ⚡[/] {event.seconds * 1000:.1f} ms", highlight=False)
        else:
            console.print(f"  {what}  [cyan]executed ✓[/] {event.seconds:.2f} s", highlight=False)
        if self.crash_after is not None and len(self.events) >= self.crash_after:
            if self.spinner is not None:
                self.spinner.stop()
            console.print(
                f"[bold red]--crash-after {self.crash_after}: killing this process now[/]\n"
                f"{self.resume_hint(self.session_id)}",
                highlight=False,
            )
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def completed(self) -> int:
        """Steps that completed (executed or replayed): what a re-run of the session gets back."""
        return sum(e.error is None for e in self.events)

    def all_tools_failed(self) -> list[UnitEvent]:
        """The failed tool calls, when there were some and none of them succeeded; else []."""
        tools = [e for e in self.events if e.kind == "tool"]
        return tools if tools and all(e.error is not None for e in tools) else []

    def resume_hint(self, session_id: str) -> str:
        if not self.completed:
            return "Nothing had completed, so there is nothing to resume."
        # Quoted for the shell: the line is meant to be pasted as it is.
        return (
            f"{_plural(self.completed, 'completed step')} stored; resume with: "
            f"SESSION_ID={shlex.quote(session_id)} python demo.py {shlex.quote(self.query)}"
        )

    def summary(self) -> str:
        models = [e for e in self.events if e.kind == "model"]
        tools = [e for e in self.events if e.kind == "tool"]
        replayed = [e for e in models if e.cached]
        cached = [e for e in tools if e.cached]
        failed = [e for e in tools if e.error is not None]
        tokens = sum(e.tokens for e in replayed)
        saved_tools = sum(e.saved_seconds for e in cached)
        saved_model = sum(e.saved_seconds for e in replayed)
        return (
            f"{_plural(len(models), 'model request')}: {len(replayed)} replayed, "
            f"{len(models) - len(replayed)} made ({tokens:,} tokens not spent again); "
            f"{_plural(len(tools), 'tool call')}: {len(cached)} cached, "
            f"{len(tools) - len(cached) - len(failed)} executed, {len(failed)} failed; "
            f"saved about {saved_tools:.2f} s of tool time and {saved_model:.2f} s of model time"
        )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _clip(text: str, width: int) -> str:
    """Keep both ends of a long argument: the host and the page of a URL say the most."""
    return text if len(text) <= width else f"{text[: width // 2 - 1]}…{text[-(width // 2) :]}"


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
