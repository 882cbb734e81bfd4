"""Runs one conformance scenario in a process of its own: the second process of a replay, or a run
killed with SIGKILL at a model request (`--crash-at N`) and its resume.

Prints `RESULT <json>` (what the scenario returned) or `ERROR <type>: <message>`.

Run with:
    python -m tests.durable.run SCENARIO --url URL --session S --ledger FILE [--crash-at N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.durable.scenarios import SCENARIOS, Env

RESULT = "RESULT "
ERROR = "ERROR "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--ledger", required=True, type=Path)
    parser.add_argument("--crash-at", type=int)
    args = parser.parse_args(argv)
    env = Env(args.session, args.url, args.ledger, crash_at=args.crash_at)
    try:
        result = asyncio.run(SCENARIOS[args.scenario](env))
    except Exception as e:
        print(f"{ERROR}{type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print(RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
