"""An agent whose one tool needs approval through `RequestInput`, durable in a Nexum session: what the
waits tests run as a real process, to kill it while it waits and to run the same command again.

Every call that matters appends a line to a file in `--log`: `ask` (asked for approval), `tool`
(the approved tool ran), `model` (the model was asked something not replayed). `--direct` waits
with `wait_for_external_event` from a tool-less run, with an `ask` that answers at once.

Run with:
    python -m tests.e2e.approval_agent --url URL --session S --log DIR [--timeout SECONDS] [--detach]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import RequestInput
from pydantic_ai.external_events import ExternalEventError, wait_for_external_event
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

from nexum_pydantic_ai import NexumDurability
from nexum_pydantic_ai._events import WaitDetached
from nexum_server.client import NexumClient

WAITING = "waiting on token "


def note(log: Path, what: str) -> None:
    with (log / "calls.log").open("a") as f:
        f.write(what + "\n")


def build_agent(
    log: Path, session_id: str, client: NexumClient, timeout: float | None, detach: bool, direct: bool
) -> Agent[None, str]:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        note(log, "model")
        if direct:
            return ModelResponse(parts=[TextPart("no tools")])
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(
                parts=[
                    ToolCallPart("visit_webpage", {"url": "https://a.example/<b>page</b>"}, tool_call_id="call-visit")
                ]
            )
        return ModelResponse(parts=[TextPart(f"answer from: {returns[0].content}")])

    def ask(ctx: RunContext[None], requests: DeferredToolRequests, token: str) -> None:
        note(log, "ask")
        return None

    def on_wait(wait: Any) -> None:
        print(WAITING + wait.token, flush=True)

    capabilities: list[Any] = [
        NexumDurability(session_id=session_id, client=client, on_wait=on_wait, detach_waits=detach)
    ]
    if not direct:
        capabilities.append(RequestInput(ask, timeout=None if timeout is None else timedelta(seconds=timeout)))
    agent = Agent(FunctionModel(model), name="approval", capabilities=capabilities)

    @agent.tool_plain(requires_approval=True)
    def visit_webpage(url: str) -> str:
        note(log, "tool")
        return f"the page at {url}"

    return agent


async def run(args: argparse.Namespace) -> int:
    log = Path(args.log)
    async with NexumClient(args.url) as client:
        agent = build_agent(log, args.session, client, args.timeout, args.detach, args.direct)
        try:
            if args.direct:

                async def direct_ask(token: str) -> Any:
                    note(log, "ask")
                    return {"answer": "at once", "token_seen": bool(token)}

                @agent.output_validator
                async def wait_here(ctx: RunContext[None], output: str) -> str:
                    payload = await wait_for_external_event("direct", ask=direct_ask)
                    return f"{output}: {json.dumps(payload)}"

            result = await agent.run("read the page")
        except WaitDetached as e:
            print(f"detached: {e}", flush=True)
            return 3
        except ExternalEventError as e:
            print(f"external event error: {e}", flush=True)
            return 4
    print("OUTPUT " + result.output, flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--direct", action="store_true")
    sys.exit(asyncio.run(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
