"""`make demo`: the three-terminal demo in one command, then the re-run that is served from the store.

Starts `nexum dev` (on the database a later plain `nexum dev` shows: NEXUM_DB, else
`.nexum/local.db`; `.nexum/demo.db` when another server holds that one) and `worker.py` in the
background, runs `demo.py QUERY` in a new session, runs it again in the same session (every call
cached), and stops what it started. The worker uses the project's local stand-in web (`nexum-web`:
a SearXNG-style search and pages), so nothing leaves this machine and no name is looked up;
`--web real` (`make demo WEB=real`) uses the real web instead.

The query comes as an argument or in the environment (`DEMO_QUERY`, which `make demo QUERY=...`
sets without a shell in between: quotes, `$` and backticks arrive as typed).

Run with:
    python scripts/demo_stack.py "What is durable execution?" [--web local|real]
    make demo QUERY='say "hi" café' WEB=real
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import uuid

from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc
from nexum_devtools.web import READY as WEB_READY
from nexum_devtools.web import tools_env
from nexum_server.config import Settings

DEFAULT_QUERY = "What is durable execution?"
FALLBACK_DB = ".nexum/demo.db"


def start_server() -> tuple[Proc, str, bool]:
    """`nexum dev` on the database a plain `nexum dev` uses (NEXUM_DB, .env, else .nexum/local.db),
    so its page shows the demo's sessions afterwards; on FALLBACK_DB when another server holds that
    one. The process, its database, and whether it is the default one."""
    default = Settings.from_env().db
    for db in (default, FALLBACK_DB):
        try:
            return (
                Proc([sys.executable, "-m", "nexum_server", "dev", "--port", "0", "--db", db], ready=SERVER_READY),
                db,
                db == default,
            )
        except RuntimeError as e:
            if "already served" not in str(e) or db == FALLBACK_DB:
                raise
            print(f"{db} is served by another `nexum dev`; this demo uses {FALLBACK_DB}.", flush=True)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "query",
        nargs="?",
        default=os.environ.get("DEMO_QUERY") or DEFAULT_QUERY,
        help="the question (default: DEMO_QUERY, else %(default)r)",
    )
    parser.add_argument(
        "--web",
        choices=("local", "real"),
        default="local",
        help="local: the stand-in web on this machine (default); real: the internet",
    )
    args = parser.parse_args(argv)
    try:
        sys.exit(run(args.query, args.web))
    except KeyboardInterrupt:
        # Ctrl-C reached every process of the terminal; what this one started is stopped by `run`.
        print("interrupted: the demo, the worker and the server are stopped.", flush=True)
        sys.exit(130)


def run(query: str, web_mode: str) -> int:
    started: list[Proc] = []
    env: dict[str, str] = {}
    try:
        if web_mode == "local":
            print(
                "Using the local stand-in web (nexum-web) for search and pages: nothing leaves this machine. "
                "`make demo WEB=real` (or --web real) uses the real web.\n",
                flush=True,
            )
            web = Proc(
                [
                    sys.executable,
                    "-m",
                    "nexum_devtools.web",
                    "--port",
                    "0",
                    "--search-latency",
                    "0.3",
                    "--page-latency",
                    "0.5",
                ],
                ready=WEB_READY,
            )
            started.append(web)
            assert web.match is not None
            env = tools_env(web.match.group(1))
        server, db, default = start_server()
        started.append(server)
        assert server.match is not None
        env["NEXUM_URL"] = server.match.group(1)
        started.append(Proc([sys.executable, "worker.py"], env=env, ready=WORKER_READY))
        print(
            f"Started nexum dev at {env['NEXUM_URL']} (database {db}) and worker.py.\n"
            f"Watch the calls arrive on its page: {env['NEXUM_URL']}/ui\n",
            flush=True,
        )

        session = f"demo-{uuid.uuid4().hex[:8]}"
        demo_env = {**os.environ, **env, "SESSION_ID": session}
        for title in ("First run: every tool call executes", "Re-run, same SESSION_ID: served from the store"):
            print(f"\n=== {title} ===\n", flush=True)
            code = subprocess.call([sys.executable, "demo.py", query], cwd=ROOT, env=demo_env)
            if code != 0:
                return code
        later = "`nexum dev`" if default else f"`nexum dev --db {db}`"
        print(f"\nThe session {session} is stored in {db}: {later} shows it on its page later.", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the stopping short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc in reversed(started):
            proc.stop()
        print("Stopped the worker and the server.", flush=True)


if __name__ == "__main__":
    main()
