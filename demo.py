"""A Pydantic AI research agent whose tool calls are durable: each one is stored by the Nexum server.

The agent's `web_search` and `visit_webpage` tools do not run here: each call is submitted to the
Nexum server and run by `worker.py`. Run the same query again with the same session and every
completed call comes back from the store at once, with nothing executed again; `--crash-after N`
kills this process after N calls to show exactly that.

Run with:
    nexum dev                                       # terminal 1
    python worker.py                                # terminal 2
    python demo.py "What is durable execution?"     # terminal 3
    SESSION_ID=<the session it printed> python demo.py "What is durable execution?"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from dotenv import load_dotenv
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import AgentRunError, UserError
from pydantic_ai.models import Model
from rich.console import Console
from rich.logging import RichHandler
from rich.markdown import Markdown

from nexum_server.client import NexumClient
from nexum_server.errors import NexumError, ServerUnavailable
from offline_model import offline_model
from submit_task import ToolCallFailed, ToolCallOutcome, call_tool
from workflow import VISIT_WEBPAGE, WEB_SEARCH

GEMINI_MODEL = "google:gemini-3.8-flash"
OPENAI_MODEL = "openai:gpt-5-mini"
INSTRUCTIONS = ("You are a research assistant. Use web_search to find sources and visit_webpage to read "
                "the most relevant ones, then answer in Markdown and cite the URLs you used.")
ToolRunner = Callable[[str, dict[str, Any]], Awaitable[str]]
Reporter = Callable[[str, dict[str, Any], ToolCallOutcome | None, str | None], None]

console = Console()


def build_agent(model: Model | str, session_id: str, *, client: NexumClient | None = None,
                on_call: Reporter | None = None, call: ToolRunner | None = None) -> Agent[None, str]:
    """The research agent; its tools go through Nexum in `session_id`.

    `call` replaces the durable path with another way to run a tool (the benchmark's plain agent
    runs them in process), so both agents show the model exactly the same tools.
    """

    async def durable(tool_name: str, tool_args: dict[str, Any]) -> str:
        try:
            outcome = await call_tool(tool_name, tool_args, session_id, client=client)
        except ToolCallFailed as e:
            if on_call is not None:
                on_call(tool_name, tool_args, None, str(e.execution.error or e))
            raise ModelRetry(str(e)) from e
        if on_call is not None:
            on_call(tool_name, tool_args, outcome, None)
        return outcome.result

    run = call or durable

    async def web_search(query: str, max_results: int = 5) -> str:
        """Search the web; returns a JSON list of results with title, url and snippet."""
        return await run(WEB_SEARCH, {"query": query, "max_results": max_results})

    async def visit_webpage(url: str) -> str:
        """Read a web page; returns its title and text as Markdown (long pages are truncated)."""
        return await run(VISIT_WEBPAGE, {"url": url})

    return Agent(model, instructions=INSTRUCTIONS, tools=[web_search, visit_webpage], retries=3)


def pick_model(name: str | None) -> tuple[Model | str, str]:
    """The model to use and how to describe it: a name, else an API key's default, else offline."""
    if not name:
        if os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY"):
            name = GEMINI_MODEL
        elif os.environ.get("OPENAI_API_KEY"):
            name = OPENAI_MODEL
        else:
            name = "offline"
    if name == "offline":
        return offline_model(), "offline (quotes pages; not a language model: set an API key or --model)"
    return name, name


class Progress:
    """Prints one line per tool call and keeps the totals; kills the process on `--crash-after`."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.outcomes: list[ToolCallOutcome] = []
        self.failed = 0
        self.crash_after = crash_after

    def __call__(self, tool: str, args: dict[str, Any], outcome: ToolCallOutcome | None, error: str | None) -> None:
        shown = ", ".join(_clip(repr(v), 60) for k, v in args.items() if k != "max_results")
        call = f"{tool}({shown})"
        if outcome is None:
            self.failed += 1
            console.print(f"  {call}  [red]failed ✗[/] {error}", highlight=False)
        elif outcome.cached:
            self.outcomes.append(outcome)
            console.print(f"  {call}  [green]cached ⚡[/] {outcome.seconds * 1000:.1f} ms", highlight=False)
        else:
            self.outcomes.append(outcome)
            console.print(f"  {call}  [cyan]executed ✓[/] {outcome.seconds:.2f} s", highlight=False)
        if self.crash_after is not None and len(self.outcomes) >= self.crash_after:
            console.print(f"[bold red]--crash-after {self.crash_after}: killing this process now[/]")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def summary(self) -> str:
        cached = [o for o in self.outcomes if o.cached]
        saved = sum(o.tool_seconds - o.seconds for o in cached)
        return (f"{len(self.outcomes) + self.failed} tool calls: {len(cached)} cached, "
                f"{len(self.outcomes) - len(cached)} executed, {self.failed} failed; "
                f"about {max(saved, 0):.2f} s of tool time saved")


def _clip(text: str, width: int) -> str:
    """Keep both ends of a long argument: the host and the page of a URL say the most."""
    return text if len(text) <= width else f"{text[: width // 2 - 1]}…{text[-(width // 2):]}"


async def run(query: str, session_id: str, model_name: str | None, crash_after: int | None) -> int:
    model, label = pick_model(model_name)
    async with NexumClient() as client:
        try:
            await client.health()
        except ServerUnavailable as e:
            console.print(f"[red]error:[/] {e}")
            return 2
        console.print(f"[bold]Query[/]    {query}\n[bold]Session[/]  {session_id}\n[bold]Model[/]    {label}",
                      highlight=False)
        progress = Progress(crash_after)
        agent = build_agent(model, session_id, client=client, on_call=progress)
        try:
            with console.status("agent working; its tool calls run in the worker", spinner="dots"):
                result = await agent.run(query)
        except ServerUnavailable as e:
            console.print(f"[red]error:[/] {e}")
            return 2
    console.print()
    console.print(Markdown(result.output))
    console.print(f"\n[bold]Summary[/]  {progress.summary()}")
    console.print(f"Re-run with SESSION_ID={session_id} to get every completed call from the store.",
                  style="dim", highlight=False)
    return 0


def main(argv: list[str] | None = None) -> None:
    load_dotenv()
    parser = argparse.ArgumentParser(description="Research agent with durable tool calls.")
    parser.add_argument("query")
    parser.add_argument("--session", default=os.environ.get("SESSION_ID"), help="session id (SESSION_ID)")
    parser.add_argument("--model", default=os.environ.get("NEXUM_MODEL"),
                        help="any Pydantic AI model name, or 'offline' (NEXUM_MODEL)")
    parser.add_argument("--crash-after", type=int, metavar="N", help="kill this process after N tool calls")
    args = parser.parse_args(argv)
    session_id = args.session or f"session-{uuid.uuid4().hex[:8]}"
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    try:
        sys.exit(asyncio.run(run(args.query, session_id, args.model, args.crash_after)))
    except (NexumError, AgentRunError, UserError) as e:
        # The model failed (bad key, unknown model, out of retries): what ran so far is stored.
        console.print(f"[red]error:[/] {type(e).__name__}: {e}\nCompleted tool calls are stored; resume "
                      f"with SESSION_ID={session_id}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print(f"\n[yellow]interrupted[/]: completed tool calls are stored; resume with "
                      f"SESSION_ID={session_id}", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
