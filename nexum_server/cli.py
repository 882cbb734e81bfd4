"""The `nexum` command: run the server (`dev`), look at executions (`ps`, `show`, `cancel`) and
sessions (`sessions`, `forget`).

Run with:
    nexum dev                      # http://127.0.0.1:50051 (page at /ui), database .nexum/local.db
    nexum dev --retain 30d         # also delete executions 30 days after they ended
    nexum ps --session demo        # executions, newest first (--json for scripts)
    nexum show 3f2a                # one execution, by its id or a unique start of it
    nexum cancel 3f2a
    nexum sessions                 # sessions, latest activity first, with their counts
    nexum forget SESSION           # delete a session's stored calls (asks first; --yes does not)
    nexum show 3f2a --full         # a model request: what it was sent and its response, unfolded
    nexum fork SESSION NEW --until 3   # NEW gets SESSION's first 3 steps' completed units
    nexum export SESSION -o run.json   # the session as a file (format in the README)
    nexum import run.json --as NEW
    nexum waits                    # what waits for an answer; nexum approve / deny / resolve TOKEN

Exit codes: 0 done; 1 refused or failed (no such id, nothing to cancel); 2 cannot start: a bad
setting, no server at the URL, or the token refused (for `dev`: also a port in use, a bad database).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import socket
import sys
import types
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import cli_waits, config, slowclients
from .config import Settings
from .errors import (
    ConfigError,
    InvalidSessionId,
    NexumError,
    RequestRejected,
    SchemaError,
    ServerUnavailable,
    StoreUnavailable,
)
from .ids import SESSION_ID_RULE, validate_session_id
from .models import Execution, SessionSummary, Status, before_last_attempt, ran_seconds

console = Console()
errors = Console(stderr=True)
LISTEN_BACKLOG = 2048
"""Connections the kernel queues while the server is busy (uvicorn's default)."""
STATUS_STYLE = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "INTERRUPTED": "magenta",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "dim",
}


DEV_DESCRIPTION = """\
Run the Nexum server: an HTTP API on a SQLite file (or PostgreSQL, for several servers on one
database), with a long-poll task queue for workers.

Every flag has a NEXUM_* variable of the same name (--lease-seconds is NEXUM_LEASE_SECONDS), read
from the environment or from .env in the current directory; a flag beats both. The token is the
exception: it is read only from NEXUM_TOKEN, so it never shows in the process list. With a token,
every request but /health needs `Authorization: Bearer <token>`; without one, keep the server on
loopback (the default)."""
URL_HELP = f"server URL (NEXUM_URL, default {config.DEFAULT_URL})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexum",
        description="The Nexum server (`nexum dev`) and commands to look at what it stored.",
        epilog="Exit codes: 0 done; 1 refused or failed; 2 cannot start (bad setting, no server, token "
        "refused). Settings come from flags, then the environment, then .env in the current directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev", help="run the server", description=DEV_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kind, text in (
        ("--host", str, f"address to bind; beyond loopback, set NEXUM_TOKEN (default {config.DEFAULT_HOST})"),
        ("--port", int, f"port, 0 for any free one (default {config.DEFAULT_PORT})"),
        (
            "--db",
            str,
            f"SQLite file (its folder is created), or postgresql://user@host:port/dbname "
            f"for several servers on one database (default {config.DEFAULT_DB})",
        ),
        (
            "--lease-seconds",
            float,
            f"how long a claimed task is a worker's without a heartbeat (default {config.LEASE_SECONDS:g})",
        ),
        ("--max-attempts", int, f"attempts per execution before it is FAILED (default {config.MAX_ATTEMPTS})"),
        (
            "--retry-backoff-seconds",
            float,
            f"first retry delay, doubling with each attempt (default {config.RETRY_BACKOFF_SECONDS:g})",
        ),
        ("--retry-backoff-max-seconds", float, f"longest retry delay (default {config.RETRY_BACKOFF_MAX_SECONDS:g})"),
        ("--max-body-bytes", int, f"largest request body; larger get 413 (default {config.MAX_BODY_BYTES})"),
        ("--max-wait-seconds", float, f"longest a long-poll is held (default {config.MAX_WAIT_SECONDS:g})"),
        (
            "--header-timeout-seconds",
            float,
            f"a request's headers must arrive within this long, else 408 (default {config.HEADER_TIMEOUT_SECONDS:g})",
        ),
        ("--max-header-bytes", int, f"largest request headers; larger get 431 (default {config.MAX_HEADER_BYTES})"),
        (
            "--max-connections",
            int,
            f"open connections; past it, idle ones are closed first (default {config.MAX_CONNECTIONS})",
        ),
        (
            "--sqlite-synchronous",
            str.upper,
            f"NORMAL survives a crash, FULL also a power cut (default {config.SQLITE_SYNCHRONOUS})",
        ),
        ("--retain", str, "delete executions this long after they ended, e.g. 30d, 12h, 90m (default: keep forever)"),
    ):
        key = "NEXUM_" + flag.removeprefix("--").replace("-", "_").upper()
        dev.add_argument(flag, type=kind, help=f"{text}; {key}")
    dev.add_argument("--access-log", action="store_true", help="log every request")

    for name, help_text in (
        ("ps", "list executions, newest first"),
        ("show", "one execution, with its result or error"),
        ("cancel", "cancel a PENDING, RUNNING or INTERRUPTED execution"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        sub.add_argument("--url", help=URL_HELP)
        sub.add_argument("--json", action="store_true", help="print JSON (the API's shape) instead of text")
        if name == "ps":
            sub.add_argument("--session", help=f"only this session ({SESSION_ID_RULE})")
            sub.add_argument("--status", choices=[s.value for s in Status], type=str.upper, help="only this status")
            sub.add_argument("--limit", type=int, default=50, help="most executions to list (default 50)")
        else:
            sub.add_argument("execution_id", metavar="ID", help="the execution id, or a unique start of it")
        if name == "show":
            sub.add_argument("--full", action="store_true", help="do not fold long parts of a model request")

    sessions = commands.add_parser("sessions", help="list sessions with their counts, latest activity first")
    sessions.add_argument("--url", help=URL_HELP)
    sessions.add_argument("--contains", metavar="TEXT", help="only session ids holding TEXT")
    sessions.add_argument("--limit", type=int, default=50, help="sessions to show (default 50, at most 500)")
    forget = commands.add_parser("forget", help="delete a session's stored calls: they run again next time")
    forget.add_argument("--url", help=URL_HELP)
    forget.add_argument("session_id", metavar="SESSION", help=f"the session id ({SESSION_ID_RULE})")
    forget.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    fork = commands.add_parser("fork", help="make a new session holding copies of a session's completed units")
    fork.add_argument("--url", help=URL_HELP)
    fork.add_argument("session_id", metavar="SESSION")
    fork.add_argument("new_session_id", metavar="NEW")
    fork.add_argument(
        "--until",
        type=int,
        metavar="K",
        help="copy only the completed units of the first K steps; "
        "a run of NEW serves them in order, whatever their keys",
    )
    export = commands.add_parser("export", help="write a session's completed units and their messages to a file")
    export.add_argument("--url", help=URL_HELP)
    export.add_argument("session_id", metavar="SESSION")
    export.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write it; - for stdout")
    load = commands.add_parser("import", help="load a file `nexum export` wrote as a session")
    load.add_argument("--url", help=URL_HELP)
    load.add_argument("file", metavar="FILE")
    load.add_argument("--as", dest="as_session", metavar="NEW", help="the session to load it as (default: its own)")
    cli_waits.add_commands(commands, URL_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dev":
            serve(args)
        else:
            asyncio.run(inspect(args))
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
    except ServerUnavailable as e:
        errors.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except (RequestRejected, ConfigError, InvalidSessionId) as e:
        errors.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1 if isinstance(e, RequestRejected) and e.status != 401 else 2)  # a bad id: cannot start
    except (NexumError, ValueError) as e:
        errors.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(1)


def serve(args: argparse.Namespace) -> None:
    """Run the server until Ctrl-C or SIGTERM; either ends it in one line, without a traceback."""
    try:
        _serve(args)
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on the first Ctrl-C, then raises it again for the caller.
        console.print("Nexum server stopped.", highlight=False)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .api import create_app
    from .store import open_store

    flags = {name: getattr(args, name, None) for name in Settings.model_fields if name != "token"}
    try:
        settings = Settings.from_env(**flags)
    except ConfigError as e:
        errors.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
    # The port first: a start that cannot listen leaves no database file and no lock behind.
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        sock.close()
        errors.print(
            f"[red]error:[/] cannot listen on {settings.host}:{settings.port}: {e.strerror}. "
            "Is another `nexum dev` running? Use --port to pick another port.",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    try:
        store = open_store(settings)
    except (SchemaError, StoreUnavailable, ConfigError) as e:
        sock.close()
        errors.print(f"[red]error:[/] cannot open the database: {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    # Listening before the ready line is printed (uvicorn listens only after the app's start-up):
    # a client that connects as soon as it reads the line queues in the backlog, never refused.
    sock.listen(LISTEN_BACKLOG)
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    url = f"http://{host}:{port}"

    exposed = not settings.token and not _is_loopback(settings.host)

    def ready() -> None:
        store.announce(url)
        auth = "bearer token required" if settings.token else "no token" if exposed else "no token (loopback only)"
        retain = f"retain {settings.retain}" if settings.retain else "keep forever"
        console.print(f"Nexum server listening on {url}", highlight=False)
        console.print(f"  page {url}/ui", highlight=False)
        console.print(
            f"  db {store.location}  lease {settings.lease_seconds:g}s  max attempts "
            f"{settings.max_attempts}  {retain}  {auth}",
            style="dim",
            highlight=False,
        )
        if exposed:
            errors.print(
                f"[bold red]WARNING:[/] listening on {settings.host}, beyond loopback, with no token: "
                f"anyone who can reach port {port} can read, start and cancel executions. Set "
                "NEXUM_TOKEN (environment or .env) and restart, or bind to 127.0.0.1.",
                highlight=False,
            )
        sys.stdout.flush()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, store, on_ready=ready)
    NexumUvicorn = _uvicorn_server_class()
    http = slowclients.protocol(
        settings.header_timeout_seconds, settings.max_header_bytes, _connection_bound(settings.max_connections)
    )
    server_config = uvicorn.Config(
        app,
        loop="auto",
        http=http,
        access_log=args.access_log,
        log_level="warning",
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    if args.access_log:
        # log_level="warning" quiets uvicorn's start-up chatter, and with it the INFO access lines asked for.
        access = logging.getLogger("uvicorn.access")
        access.setLevel(logging.INFO)
        access.addFilter(_without_query)
    NexumUvicorn(server_config, app).run(sockets=[sock])


FILES_KEPT = 256
"""Open files kept beside connections: the database, its WAL, the log, the store's threads."""


def _connection_bound(wanted: int) -> int:
    """`wanted`, or fewer when the process may not open that many files: past its open-file limit
    the kernel refuses new connections before the server can choose which to close."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_KEPT
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    bound = max(soft - FILES_KEPT, 16)
    errors.print(
        f"[yellow]warning:[/] the open-file limit ({soft}) allows {bound} connections, not "
        f"NEXUM_MAX_CONNECTIONS={wanted}; raise it with `ulimit -n`",
        highlight=False,
    )
    return bound


def _without_query(record: logging.LogRecord) -> bool:
    """Access lines show the path only: a token a client put in a URL's query never reaches the log."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(path := args[2], str):
        record.args = (*args[:2], path.split("?", 1)[0], *args[3:])
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _uvicorn_server_class() -> type:
    import uvicorn

    class NexumUvicorn(uvicorn.Server):
        """Releases held long-polls as soon as shutdown starts, so Ctrl-C never waits them out."""

        def __init__(self, config: uvicorn.Config, app: object) -> None:
            super().__init__(config)
            self.service = app.state.service  # type: ignore[attr-defined]

        def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if self.service.loop is not None:
                self.service.loop.call_soon_threadsafe(self.service.close_requests)

    return NexumUvicorn


async def inspect(args: argparse.Namespace) -> None:
    from .client import NexumClient

    for given in (getattr(args, "session", None), getattr(args, "session_id", None)):
        if given is not None:
            validate_session_id(given)
    if args.command == "forget":
        await forget(args)
        return
    async with NexumClient(args.url) as client:
        await client.check()
        if args.command in ("fork", "export", "import"):
            await journal_command(client, args)
            return
        if args.command in cli_waits.COMMANDS:
            await cli_waits.run(args, client)
            return
        if args.command == "sessions":
            if not 1 <= args.limit <= 500:
                raise ConfigError("--limit must be between 1 and 500")
            show_sessions((await client.sessions(limit=args.limit, contains=args.contains)).sessions)
            return
        if args.command == "ps":
            if not 1 <= args.limit <= 1000:
                raise ConfigError("--limit must be between 1 and 1000")
            executions = await client.list(args.session, args.status, limit=args.limit)
            if args.json:
                print_json({"executions": [e.model_dump(mode="json") for e in executions]})
            else:
                show_table(executions, one_session=args.session is not None)
            return
        execution = await resolve(client, args.execution_id)
        if args.command == "cancel":
            execution = await client.cancel(execution.id)
        else:
            execution = await client.get(execution.id)  # a list carries no result; the execution does
        sent = await client.sent(execution.id) if args.command == "show" else None
        if args.json:
            print_json(
                {
                    **execution.model_dump(mode="json"),
                    **({"sent": sent.model_dump(mode="json")} if sent and sent.messages else {}),
                }
            )
        elif args.command == "show":
            show_one(execution)
            if sent is not None and sent.messages:
                show_model_request(execution, sent, args.full)
        else:
            console.print(f"{execution.id} is {_status(execution.status)}", highlight=False)


async def resolve(client: Any, given: str) -> Execution:
    """The execution whose id is `given`, or the only one whose id starts with it."""
    if not given.strip():
        raise ConfigError("give an execution id, or a unique start of one; `nexum ps` lists them")
    matches = await client.list(id_prefix=given, limit=2)
    exact = [e for e in matches if e.id == given]
    if exact or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise NexumError(f"no execution id starts with {given!r}; `nexum ps` lists them")
    raise NexumError(
        f"{given!r} starts more than one execution id ({matches[0].id}, {matches[1].id}, ...); give more of it"
    )


def print_json(value: object) -> None:
    """JSON on stdout as is: no wrapping, no colour, whatever the terminal."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


async def forget(args: argparse.Namespace) -> None:
    from rich.prompt import Confirm

    from .client import NexumClient

    validate_session_id(args.session_id)
    async with NexumClient(args.url) as client:
        await client.check()
        try:
            session = await client.session(args.session_id)
        except RequestRejected as e:
            raise NexumError(str(e)) from e
        if not args.yes:
            if not sys.stdin.isatty():
                raise NexumError(
                    f"not forgetting session {args.session_id!r} without confirmation; "
                    "pass --yes to forget it without asking"
                )
            question = (
                f"Forget session [bold]{escape(args.session_id)}[/]: "
                f"delete its {_count(session.calls, 'stored call')}, so a re-run executes them all again?"
            )
            if not Confirm.ask(question, console=console, default=False):
                console.print("nothing deleted")
                return
        try:
            done = await client.forget(args.session_id)
        except RequestRejected as e:
            raise NexumError(str(e)) from e
        console.print(
            f"session {escape(done.session_id)} forgotten: {_count(done.deleted, 'execution')} deleted", highlight=False
        )


def show_sessions(sessions: list[SessionSummary]) -> None:
    # The session id is never cut (`nexum forget` needs all of it): a long one folds onto more lines.
    # "ran": calls executed to a result; "live": running or waiting for a worker or a retry.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    longest = max((len(s.session_id) for s in sessions), default=7)
    table.add_column("session", overflow="fold", min_width=min(longest, SESSION_MIN_WIDTH))
    for name in ("calls", "cached", "ran", "failed", "live"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("last active", no_wrap=True, min_width=11)
    # Saved: the last attempt's running time of each cached hit, tool calls and model requests apart.
    table.add_column("saved tools", justify="right", no_wrap=True, min_width=6)
    table.add_column("model", justify="right", no_wrap=True, min_width=6)
    for s in sessions:
        table.add_row(
            escape(s.session_id),
            str(s.calls),
            str(s.cached_hits),
            str(s.completed),
            str(s.failed),
            str(s.running + s.pending),
            datetime.fromtimestamp(s.last_activity).strftime("%m-%d %H:%M"),
            f"{s.tool_seconds_saved:.1f}s",
            f"{s.model_seconds_saved:.1f}s",
        )
    console.print(table if sessions else "[dim]no sessions[/]")


SESSION_MIN_WIDTH = 17
"""What the session column keeps at 80 columns; longer ids fold onto more lines, never cut."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


PS_FIXED = {"id": 32, "status": 11, "try": 3, "took": 6}
"""Columns `nexum ps` never cuts (an id is 32 hex digits; INTERRUPTED is the longest status)."""
PS_TOOK_FROM_WIDTH = 100
"""Below this width the `took` column gives its room to the call and the error."""


def show_table(executions: list[Execution], width: int | None = None, one_session: bool = False) -> None:
    # One execution, one line, at any width from 80 columns: id and status are never cut (`nexum
    # show` takes the id); session, call and error share what is left, each cut with an ellipsis.
    # The session column is left out when only one session was asked for, the error column when
    # no execution has an error.
    width = width or console.width
    fixed = {k: v for k, v in PS_FIXED.items() if k != "took" or width >= PS_TOOK_FROM_WIDTH}
    with_error = any(e.error for e in executions)
    columns = len(fixed) + 1 + (not one_session) + with_error
    flexible = max(width - sum(fixed.values()) - (columns - 1), 24)
    session = 0 if one_session else max(min(20, flexible // 4), len("session"))
    error = (flexible - session) * 2 // 5 if with_error else 0
    widths = {**fixed, "session": session, "call": flexible - session - error, "error": error}
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    names = [name for name, width in widths.items() if width]
    for name in names:
        table.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            width=widths[name],
            justify="right" if name in ("try", "took") else "left",
        )
    for e in executions:
        took = f"{ran_seconds(e):.2f}s" if e.completed_at else ""
        cells: dict[str, str] = {
            "id": e.id,
            "status": _status(e.status),
            "try": str(e.attempts),
            "took": took,
            "session": escape(e.session_id),
            "call": escape(_short_input(e.input, widths["call"])),
            "error": f"[red]{escape(e.error or '')}[/]",
        }
        table.add_row(*(cells[name] for name in names))
    console.print(table if executions else "[dim]no executions[/]", highlight=False, width=width)


def show_one(e: Execution) -> None:
    console.print(f"[bold]{e.id}[/]  {_status(e.status)}  attempt {e.attempts} of {e.max_attempts}")
    console.print(
        f"workflow {e.workflow_id} {e.version_hash}\nsession  {e.session_id}\nkey      {e.key}", highlight=False
    )
    console.print("input    " + json.dumps(e.input, ensure_ascii=False))
    for label, value in (
        ("created", e.created_at),
        ("started", e.started_at),
        ("finished", e.completed_at),
        ("next try", e.next_attempt_at),
        ("lease to", e.lease_expires_at),
    ):
        if value:
            console.print(f"{label:<8} {_time(value)}")
    if e.completed_at:
        console.print(f"ran      {ran_seconds(e):.2f}s (attempt {e.attempts})")
    if before := before_last_attempt(e):
        console.print(f"before   {before:.2f}s of earlier attempts and waits between them")
    if e.worker_id:
        console.print(f"worker   {e.worker_id}")
    if e.error:
        console.print(f"[red]error[/]    {e.error}")
    if e.result is not None and _is_response(e.result):
        return  # shown part by part by show_model_request
    if e.result is not None:
        console.print("result:")
        console.print(
            e.result["result"]
            if isinstance(e.result, dict) and "result" in e.result
            else json.dumps(e.result, indent=2, ensure_ascii=False)
        )


def _status(status: Status) -> str:
    return f"[{STATUS_STYLE[status.value]}]{status.value}[/]"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short_input(value: object, width: int = 60) -> str:
    if isinstance(value, dict) and "tool_name" in value:
        args = ", ".join(f"{v!r}" for v in (value.get("tool_args") or {}).values())
        text = f"{value['tool_name']}({args})"
    elif isinstance(value, dict) and value.get("unit") == "model_request":
        text = f"model request ({value.get('model')})"
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


# --- the journal: a model request read, forks, exports ---------------------------------------------


def _is_response(result: object) -> bool:
    return isinstance(result, dict) and result.get("kind") == "response"


def show_model_request(e: Execution, sent: Any, full: bool) -> None:
    """What the model was sent, new messages marked `+`, then its response; stored text stays text."""
    from rich.text import Text

    from .render import fold, parts_of, usage_line

    new = sum(m.new for m in sent.messages)
    console.print(
        Text(
            f"\nsent {_count(len(sent.messages), 'message')}, {new} new since the session's previous "
            "model request" + ("" if sent.complete else " (older messages deleted by retention)"),
            style="bold",
        )
    )
    for message in sent.messages:
        body = message.body if message.body is not None else {"parts": [{"content": "(no longer stored)"}]}
        for part in parts_of(body, message.new):
            mark = "+ " if part.new else "  "
            console.print(Text(f"{mark}{part.label}: ", style="bold green" if part.new else "bold"), end="")
            console.print(Text(fold(part.text, full)))
    if e.result is not None:
        console.print(Text("\nresponse", style="bold"))
        for part in parts_of(e.result):
            console.print(Text(f"  {part.label}: ", style="bold"), end="")
            console.print(Text(fold(part.text, full)))
        usage = usage_line(e.result)
        if usage:
            console.print(Text(f"  usage: {usage}"))


async def journal_command(client: Any, args: argparse.Namespace) -> None:
    from pathlib import Path

    from .models import SessionExport

    if args.command == "fork":
        done = await client.fork(args.session_id, args.new_session_id, args.until)
        first = "" if done.fork_until is None else f" (the first {done.fork_until} are served in order)"
        console.print(
            f"session {escape(done.session_id)} forked from {escape(args.session_id)}: "
            f"{_count(done.copied, 'unit')} copied{first}",
            highlight=False,
        )
    elif args.command == "export":
        text = (await client.export(args.session_id)).model_dump_json(indent=1) + "\n"
        if args.output == "-":
            sys.stdout.write(text)
            return
        Path(args.output).write_text(text, encoding="utf-8")
        console.print(f"session {escape(args.session_id)} written to {escape(args.output)}", highlight=False)
    else:
        try:
            raw = Path(args.file).read_bytes()
        except OSError as e:
            raise NexumError(f"cannot read {args.file}: {e.strerror}") from e
        document = SessionExport.model_validate_json(raw)
        done = await client.import_session(document, args.as_session)
        console.print(f"session {escape(done.session_id)} imported: {_count(done.copied, 'unit')}", highlight=False)
