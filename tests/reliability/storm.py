"""One process of a duplicate storm: many concurrent submits of the same tool call, released together.

It prints `ready`, waits for SIGUSR1 (so every process of the storm starts at the same moment),
runs `--concurrency` concurrent `call_tool`s through one client, and prints one JSON line per call.

Run with:
    python -m tests.reliability.storm URL SESSION visit_webpage '{"url": "..."}' --concurrency 10
    kill -USR1 <pid>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from nexum_server.client import NexumClient
from submit_task import call_tool

TIMEOUT = 60.0


async def storm(url: str, session: str, tool: str, args: dict[str, object], concurrency: int) -> None:
    async with NexumClient(url, max_connections=concurrency) as client:
        outcomes = await asyncio.gather(
            *(call_tool(tool, args, session, TIMEOUT, client=client) for _ in range(concurrency))
        )
    for outcome in outcomes:
        print(
            json.dumps(
                {"execution_id": outcome.execution.id, "attempts": outcome.execution.attempts, "result": outcome.result}
            ),
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("session")
    parser.add_argument("tool")
    parser.add_argument("args", type=json.loads)
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    print("ready", flush=True)
    signal.sigwait({signal.SIGUSR1})
    asyncio.run(storm(options.url, options.session, options.tool, options.args, options.concurrency))


if __name__ == "__main__":
    main()
