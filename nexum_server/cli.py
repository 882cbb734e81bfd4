"""The `nexum` command: run the server (`dev`), look at executions (`ps`, `show`, `cancel`) and
sessions (`sessions`, `forget`).

Run with:
    nexum dev                      # http://127.0.0.1:50051 (page at /ui), database .nexum/local.db
    nexum dev --retain 30d         # also delete executions 30 days after they ended
    nexum ps --session demo        # executions, newest first
    nexum show EXECUTION_ID
    nexum cancel EXECUTION_ID
    nexum sessions                 # sessions, latest activity first, with their counts
    nexum forget SESSION           # delete a session's stored calls (asks first; --yes does not)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from collections.abc import Sequence
from datetime import datetime

from dotenv import load_dotenv
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .config import Settings
from .errors import ConfigError, NexumError, RequestRejected, SchemaError, ServerUnavailable, StoreUnavailable
from .models import Execution, SessionSummary, Status

console = Console()
errors = Console(stderr=True)
LISTEN_BACKLOG = 2048
"""Connections the kernel queues while the server is busy (uvicorn's default)."""
STATUS_STYLE = {"PENDING": "yellow", "RUNNING": "cyan", "COMPLETED": "green", "FAILED": "red", "CANCELLED": "dim"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexum", description="Nexum server and inspection commands.")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the server (SQLite or PostgreSQL, long-poll task queue)")
    dev.add_argument("--host", help="address to bind (NEXUM_HOST, default 127.0.0.1)")
    dev.add_argument("--port", type=int, help="port, 0 for any free one (NEXUM_PORT, default 50051)")
    dev.add_argument("--db", help="SQLite file, or postgresql://user@host:port/dbname for several servers "
                                   "on one database (NEXUM_DB, default .nexum/local.db)")
    dev.add_argument("--lease-seconds", type=float, help="task lease (NEXUM_LEASE_SECONDS, default 30)")
    dev.add_argument("--max-attempts", type=int, help="attempts per execution (NEXUM_MAX_ATTEMPTS, default 3)")
    dev.add_argument("--retry-backoff-seconds", type=float,
                     help="first retry delay, doubling (NEXUM_RETRY_BACKOFF_SECONDS, default 1)")
    dev.add_argument("--retry-backoff-max-seconds", type=float,
                     help="longest retry delay (NEXUM_RETRY_BACKOFF_MAX_SECONDS, default 60)")
    dev.add_argument("--max-body-bytes", type=int, help="largest request body (NEXUM_MAX_BODY_BYTES, default 1 MiB)")
    dev.add_argument("--retain", metavar="PERIOD",
                     help="delete executions this long after they ended, e.g. 30d, 12h, 90m "
                          "(NEXUM_RETAIN, default: keep forever)")
    dev.add_argument("--access-log", action="store_true", help="log every request")

    for name, help_text in (("ps", "list executions"), ("show", "one execution"), ("cancel", "cancel one")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--url", help="server URL (NEXUM_URL, default http://127.0.0.1:50051)")
        if name == "ps":
            sub.add_argument("--session", help="only this session")
            sub.add_argument("--status", choices=[s.value for s in Status], type=str.upper)
            sub.add_argument("--limit", type=int, default=50)
        else:
            sub.add_argument("execution_id")

    sessions = commands.add_parser("sessions", help="list sessions with their counts, latest activity first")
    sessions.add_argument("--url", help="server URL (NEXUM_URL, default http://127.0.0.1:50051)")
    sessions.add_argument("--contains", metavar="TEXT", help="only session ids holding TEXT")
    sessions.add_argument("--limit", type=int, default=50, help="sessions to show (default 50, at most 500)")
    forget = commands.add_parser("forget", help="delete a session's stored calls: they run again next time")
    forget.add_argument("--url", help="server URL (NEXUM_URL, default http://127.0.0.1:50051)")
    forget.add_argument("session_id", metavar="SESSION")
    forget.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    load_dotenv()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dev":
            serve(args)
        else:
            asyncio.run(inspect(args))
    except ServerUnavailable as e:
        errors.print(f"[red]error:[/] {e}")
        sys.exit(2)
    except (NexumError, ValueError) as e:
        errors.print(f"[red]error:[/] {e}")
        sys.exit(1)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .api import create_app
    from .store import open_store

    settings = Settings.from_env(
        host=args.host, port=args.port, db=args.db, lease_seconds=args.lease_seconds,
        max_attempts=args.max_attempts, retry_backoff_seconds=args.retry_backoff_seconds,
        retry_backoff_max_seconds=args.retry_backoff_max_seconds, max_body_bytes=args.max_body_bytes,
        retain=args.retain)
    try:
        store = open_store(settings)
    except (SchemaError, StoreUnavailable, ConfigError) as e:
        errors.print(f"[red]cannot open the database:[/] {e}", highlight=False)
        sys.exit(2)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        store.shutdown()
        errors.print(f"[red]cannot listen on {settings.host}:{settings.port}:[/] {e.strerror}. "
                      "Is another `nexum dev` running? Use --port to pick another port.")
        sys.exit(2)
    # Listening before the ready line is printed (uvicorn listens only after the app's start-up):
    # a client that connects as soon as it reads the line queues in the backlog, never refused.
    sock.listen(LISTEN_BACKLOG)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    url = f"http://{host}:{port}"

    def ready() -> None:
        store.announce(url)
        auth = "bearer token required" if settings.token else "no auth (loopback)"
        retain = f"retain {settings.retain}" if settings.retain else "keep forever"
        console.print(f"Nexum server listening on {url}", highlight=False)
        console.print(f"  page {url}/ui", highlight=False)
        console.print(f"  db {store.location}  lease {settings.lease_seconds:g}s  max attempts "
                      f"{settings.max_attempts}  {retain}  {auth}", style="dim", highlight=False)
        sys.stdout.flush()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, store, on_ready=ready)
    NexumUvicorn = _uvicorn_server_class()
    config = uvicorn.Config(app, loop="auto", http="auto", access_log=args.access_log,
                            log_level="warning", timeout_graceful_shutdown=5, lifespan="on")
    if args.access_log:
        # log_level="warning" quiets uvicorn's start-up chatter, and with it the INFO access lines asked for.
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    NexumUvicorn(config, app).run(sockets=[sock])


def _uvicorn_server_class() -> type:
    import uvicorn

    class NexumUvicorn(uvicorn.Server):
        """Releases held long-polls as soon as shutdown starts, so Ctrl-C never waits them out."""

        def __init__(self, config: uvicorn.Config, app: object) -> None:
            super().__init__(config)
            self.service = app.state.service  # type: ignore[attr-defined]

        def handle_exit(self, sig: int, frame: object) -> None:
            super().handle_exit(sig, frame)
            if self.service.loop is not None:
                self.service.loop.call_soon_threadsafe(self.service.close_requests)

    return NexumUvicorn


async def inspect(args: argparse.Namespace) -> None:
    from .client import NexumClient

    if args.command == "forget":
        await forget(args)
        return
    async with NexumClient(args.url) as client:
        if args.command == "sessions":
            if not 1 <= args.limit <= 500:
                raise ValueError("--limit must be between 1 and 500")
            show_sessions((await client.sessions(limit=args.limit, contains=args.contains)).sessions)
        elif args.command == "ps":
            show_table(await client.list(args.session, args.status, limit=args.limit))
        elif args.command == "show":
            try:
                show_one(await client.get(args.execution_id))
            except RequestRejected as e:
                raise NexumError(str(e)) from e
        else:
            execution = await client.cancel(args.execution_id)
            console.print(f"{execution.id} is {_status(execution.status)}")


async def forget(args: argparse.Namespace) -> None:
    from rich.prompt import Confirm

    from .client import NexumClient

    async with NexumClient(args.url) as client:
        try:
            session = await client.session(args.session_id)
        except RequestRejected as e:
            raise NexumError(str(e)) from e
        if not args.yes:
            if not sys.stdin.isatty():
                raise NexumError(f"not forgetting session {args.session_id!r} without confirmation; "
                                 "pass --yes to forget it without asking")
            question = (f"Forget session [bold]{escape(args.session_id)}[/]: delete its {session.calls} stored "
                        "call(s), so a re-run executes them all again?")
            if not Confirm.ask(question, console=console, default=False):
                console.print("nothing deleted")
                return
        try:
            done = await client.forget(args.session_id)
        except RequestRejected as e:
            raise NexumError(str(e)) from e
        console.print(f"session {escape(done.session_id)} forgotten: {done.deleted} execution(s) deleted",
                      highlight=False)


def show_sessions(sessions: list[SessionSummary]) -> None:
    # The session id is never cut (`nexum forget` needs all of it): a long one folds onto more lines.
    # "ran": calls executed to a result; "live": running or waiting for a worker or a retry.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    longest = max((len(s.session_id) for s in sessions), default=7)
    table.add_column("session", overflow="fold", min_width=min(longest, SESSION_MIN_WIDTH))
    for name in ("calls", "cached", "ran", "failed", "live"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("last active", no_wrap=True, min_width=11)
    table.add_column("saved", justify="right", no_wrap=True, min_width=6)
    for s in sessions:
        table.add_row(escape(s.session_id), str(s.calls), str(s.cached_hits), str(s.completed), str(s.failed),
                      str(s.running + s.pending), datetime.fromtimestamp(s.last_activity).strftime("%m-%d %H:%M"),
                      f"{s.seconds_saved:.1f}s")
    console.print(table if sessions else "[dim]no sessions[/]")


SESSION_MIN_WIDTH = 17
"""What the session column keeps at 80 columns; longer ids fold onto more lines, never cut."""


def show_table(executions: list[Execution]) -> None:
    # One execution, one line: the id is never cut (`nexum show ID` needs all of it); session and
    # input give way with an ellipsis when the terminal is narrow.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("tries", no_wrap=True, justify="right", min_width=5)
    table.add_column("took", no_wrap=True, justify="right", min_width=6)
    table.add_column("session", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("tool / input", no_wrap=True, overflow="ellipsis")
    for e in executions:
        took = f"{e.completed_at - (e.started_at or e.created_at):.2f}s" if e.completed_at else ""
        table.add_row(e.id, _status(e.status), str(e.attempts), took, e.session_id, _short_input(e.input))
    console.print(table if executions else "[dim]no executions[/]")


def show_one(e: Execution) -> None:
    console.print(f"[bold]{e.id}[/]  {_status(e.status)}  attempt {e.attempts} of {e.max_attempts}")
    console.print(f"workflow {e.workflow_id} {e.version_hash}\nsession  {e.session_id}\nkey      {e.key}",
                  highlight=False)
    console.print("input    " + json.dumps(e.input, ensure_ascii=False))
    for label, value in (("created", e.created_at), ("started", e.started_at), ("finished", e.completed_at),
                         ("next try", e.next_attempt_at), ("lease to", e.lease_expires_at)):
        if value:
            console.print(f"{label:<8} {_time(value)}")
    if e.worker_id:
        console.print(f"worker   {e.worker_id}")
    if e.error:
        console.print(f"[red]error[/]    {e.error}")
    if e.result is not None:
        console.print("result:")
        console.print(e.result["result"] if isinstance(e.result, dict) and "result" in e.result
                      else json.dumps(e.result, indent=2, ensure_ascii=False))


def _status(status: Status) -> str:
    return f"[{STATUS_STYLE[status.value]}]{status.value}[/]"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short_input(value: object, width: int = 60) -> str:
    if isinstance(value, dict) and "tool_name" in value:
        args = ", ".join(f"{v!r}" for v in (value.get("tool_args") or {}).values())
        text = f"{value['tool_name']}({args})"
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"
