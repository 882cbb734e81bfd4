"""What the research demo prints: one line per unit, the summary, a wait's commands; and its model.

`demo.py` is the script; this is its console, kept apart so the script reads as the agent it runs.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import Any

from pydantic_ai.models import Model
from rich.console import Console
from rich.status import Status

from nexum_pydantic_ai import UnitEvent

from .offline_model import offline_model
from .settings import AgentSettings

GEMINI_MODEL = "google:gemini-3.8-flash"
OPENAI_MODEL = "openai:gpt-5-mini"

console = Console()


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
