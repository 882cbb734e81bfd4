"""`make demo`: the three-terminal demo in one command, then the re-run that is served from the store.

Starts `nexum dev` (database `.nexum/demo.db`) and `worker.py` in the background, runs
`demo.py "QUERY"` in a new session, runs it again in the same session (every call cached), and
stops what it started. Without internet access (no DNS answer for DuckDuckGo) it says so and uses
the project's local stand-in web (`nexum-web`: a SearXNG-style search and pages), so
the whole pipeline still runs; `--web real` insists on the real web.

Run with:
    python scripts/demo_stack.py "What is durable execution?" [--web auto|real|local]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from nexum_devtools.procs import ROOT, SERVER_READY, WORKER_READY, Proc
from nexum_devtools.web import READY as WEB_READY
from nexum_devtools.web import tools_env

DNS_TIMEOUT_SECONDS = 3.0


def internet_reachable(host: str = "duckduckgo.com") -> bool:
    """Whether the search engine's name resolves; a closed network answers at once or not at all."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return bool(pool.submit(socket.getaddrinfo, host, 443).result(DNS_TIMEOUT_SECONDS))
    except (OSError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("query")
    parser.add_argument("--web", choices=("auto", "real", "local"), default="auto")
    args = parser.parse_args(argv)

    use_local = args.web == "local" or (args.web == "auto" and not internet_reachable())
    started: list[Proc] = []
    env: dict[str, str] = {}
    try:
        if use_local:
            print("No internet access here: using the local stand-in web (nexum-web) for search and pages. "
                  "Pass --web real to use DuckDuckGo.\n", flush=True)
            web = Proc([sys.executable, "-m", "nexum_devtools.web", "--port", "0", "--search-latency", "0.3",
                        "--page-latency", "0.5"], ready=WEB_READY)
            started.append(web)
            assert web.match is not None
            env = tools_env(web.match.group(1))
        server = Proc([sys.executable, "-m", "nexum_server", "dev", "--port", "0", "--db", ".nexum/demo.db"],
                      ready=SERVER_READY)
        started.append(server)
        assert server.match is not None
        env["NEXUM_URL"] = server.match.group(1)
        started.append(Proc([sys.executable, "worker.py"], env=env, ready=WORKER_READY))
        print(f"Started nexum dev at {env['NEXUM_URL']} and worker.py.\n", flush=True)

        session = f"demo-{uuid.uuid4().hex[:8]}"
        demo_env = {**os.environ, **env, "SESSION_ID": session}
        for title in ("First run: every tool call executes", "Re-run, same SESSION_ID: served from the store"):
            print(f"\n=== {title} ===\n", flush=True)
            code = subprocess.call([sys.executable, "demo.py", args.query], cwd=ROOT, env=demo_env)
            if code != 0:
                sys.exit(code)
    finally:
        for proc in reversed(started):
            proc.stop()
        print("\nStopped the worker and the server.")


if __name__ == "__main__":
    main()
