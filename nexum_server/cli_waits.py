"""The `nexum` commands for waits: see what waits for an answer, and give it.

Run with:
    nexum waits                                  # what waits: token, session, since when, the pending calls
    nexum approve TOKEN                          # approve every pending call (--call ID: only those)
    nexum deny TOKEN --reason "not that site"    # deny them; the model is told the reason
    nexum resolve TOKEN --json '{"calls": {"c1": 42}}'   # any other answer, as JSON

`--by NAME` records who resolved it (default: `token holder`). A wait resolved already, or timed
out, is refused (exit 1) and keeps its first answer.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .models import Wait

COMMANDS = frozenset({"waits", "approve", "deny", "resolve"})
ARGS_CHARS = 200
"""A pending call's arguments are cut to this many characters in `nexum waits` (all of them with --json)."""

console = Console()


def add_commands(commands: Any, url_help: str) -> None:
    """Add the waits commands to the `nexum` parser's subcommands."""
    waits = commands.add_parser("waits", help="list what waits for an answer (approvals, results)")
    waits.add_argument("--url", help=url_help)
    waits.add_argument("--session", help="only this session")
    waits.add_argument("--all", action="store_true", help="also waits that are over, with who resolved them")
    waits.add_argument("--json", action="store_true", help="print JSON (the API's shape) instead of text")
    for name, help_text in (
        ("approve", "approve a wait's pending tool calls"),
        ("deny", "deny a wait's pending tool calls, telling the model why"),
        ("resolve", "resolve a wait with a JSON payload"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        sub.add_argument("--url", help=url_help)
        sub.add_argument("token", metavar="TOKEN", help="the wait's token (`nexum waits` lists them)")
        sub.add_argument("--by", metavar="NAME", help="who resolves it, recorded and shown (default: token holder)")
        if name == "approve":
            sub.add_argument(
                "--call",
                action="append",
                metavar="ID",
                dest="calls",
                help="approve only this call (repeatable); the others are denied",
            )
        elif name == "deny":
            sub.add_argument("--reason", required=True, metavar="TEXT", help="what the model is told")
        else:
            sub.add_argument(
                "--json", required=True, metavar="PAYLOAD", dest="payload", help="the answer, as JSON text"
            )


async def run(args: argparse.Namespace, client: Any) -> None:
    if args.command == "waits":
        listed = await client.waits(None if args.all else "WAITING", session_id=args.session)
        if args.json:
            print(json.dumps(listed.model_dump(mode="json"), indent=2, ensure_ascii=False))
        else:
            show_waits(listed.waits, listed.server_time)
        return
    if args.command == "approve":
        wait = await client.resolve_wait(args.token, decision="approve", calls=args.calls, by=args.by)
    elif args.command == "deny":
        wait = await client.resolve_wait(args.token, decision="deny", reason=args.reason, by=args.by)
    else:
        try:
            payload = json.loads(args.payload)
        except ValueError as e:
            raise ValueError(f"--json is not JSON text: {e}") from e
        wait = await client.resolve_wait(args.token, payload=payload, with_payload=True, by=args.by)
    console.print(
        f"wait {escape(wait.token)} of session {escape(wait.session_id)}: {wait.status.value} "
        f"by {escape(wait.resolved_by or '?')}",
        highlight=False,
    )


def show_waits(waits: list[Wait], now: float | None = None) -> None:
    # One block per wait, the token on a line of its own: it is what the next command needs whole,
    # and a table at 80 columns would fold it.
    now = now or time.time()
    if not waits:
        console.print("[dim]nothing waits[/]")
        return
    for wait in waits:
        state = "waiting" if wait.resolved_by is None else f"{wait.status.value} by {escape(wait.resolved_by)}"
        console.print(f"[bold]{escape(wait.token)}[/]", highlight=False, soft_wrap=True)
        console.print(
            f"  session {escape(wait.session_id)} · {state} · since {_ago(now - wait.created_at)}"
            f" · {escape(wait.name)}",
            highlight=False,
        )
        for call in wait.request.calls:
            console.print(
                f"  {escape(call.tool_call_id)}  {escape(call.tool_name)}({escape(_args(call.args))})",
                highlight=False,
                markup=True,
            )
    console.print(
        "[dim]nexum approve TOKEN [--call ID] · nexum deny TOKEN --reason TEXT · nexum resolve TOKEN --json PAYLOAD[/]",
        highlight=False,
    )


def _args(args: Any) -> str:
    text = json.dumps(args, ensure_ascii=False)
    return text if len(text) <= ARGS_CHARS else text[: ARGS_CHARS - 1] + "…"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
