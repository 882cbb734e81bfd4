"""Benchmark durable tool calls: a Pydantic AI agent plain and through Nexum, and the cost per call.

Agent runs (the default): one query, the same two tools, four runs. Scenario 1, cold: plain
Pydantic AI (tools called in this process) against Pydantic AI + Nexum in a new session, which
shows the overhead. Scenario 2, re-run: plain again (every tool runs again) against Nexum in the
same session (every call comes from the store), which shows the speed-up. Offline by default: a
planned model makes `--tool-calls` distinct calls to a local web fixture with added latency, which
also counts the requests that reach it. `--model NAME` or `--live` use a real model and the web.

Resume (`--resume`), scenario 3: an agent killed when it asks for its third answer, resumed by a
new process whose model words its search anew, as a real model does: tool calls journaled alone
(the original design) against model requests journaled too (`NexumDurability`).

Per-call cost (`--calls`): the bare round trip, a cached call, the overhead of a cold call, the
upstream polling pattern and throughput, each next to its target; then a cached call, a cold call
and throughput on each backend: SQLite, and PostgreSQL with one and with two servers (a throwaway
PostgreSQL, when the machine has one).

Peers (`--peers`, `bench/peer_workloads.py`): the same FunctionModel agent under plain Pydantic AI,
DBOS (`pip install -e '.[peers]'`; skipped with a line saying so when it is missing) and Nexum with
tools in process and in the worker, interleaved, workloads A-E; `--markdown` prints the README table.

It starts the web fixture, `nexum dev` on a temporary database and `worker.py`, on free loopback
ports (or uses the server at `--nexum-url`), and stops all it started, on Ctrl-C too.

Run with:
    python benchmark.py                                # agent runs, offline, about 20 s
    python benchmark.py --calls --json benchmark.json  # per-call cost, under a minute
    python benchmark.py --resume                       # scenario 3, about 10 s
    python benchmark.py --peers --markdown             # plain, DBOS and Nexum side by side, ~2 minutes
    python benchmark.py --agent --resume --calls --quick   # every part, small sizes, a few seconds
    python benchmark.py --model openai:gpt-5-mini      # a real model and the real web
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.agent import agent_figures, agent_table, run_scenarios
from bench.calls import CallsConfig, calls_tables, measure_calls
from bench.peer_table import peers_markdown, peers_table
from bench.peer_workloads import QUICK as PEERS_QUICK
from bench.peer_workloads import PeersConfig, run_peers
from bench.resume import resume_table, run_resumes
from bench.scaling import backends_table, measure_backends
from bench.stack import Stack, scoped_env, start_stack
from bench.stats import machine
from demo import pick_model
from nexum_research import tools
from nexum_research.offline_model import default_plan, planned_model
from nexum_research.settings import AgentSettings
from nexum_server.client import NexumClient
from nexum_server.errors import NexumError

QUERY = "What is durable execution?"
DEFAULTS: dict[str, Any] = {
    "tool_calls": 10,
    "batch": 1,
    "search_latency": 0.3,
    "page_latency": 0.5,
    "samples": 200,
    "polling_samples": 30,
    "clients": 32,
    "workers": (1, 2),
    "throughput_calls": 2000,
    "throughput_seconds": 5.0,
    "worker_concurrency": 64,
    "model_latency": 0.5,
}
QUICK: dict[str, Any] = {
    "tool_calls": 4,
    "search_latency": 0.01,
    "page_latency": 0.01,
    "samples": 20,
    "polling_samples": 5,
    "clients": 8,
    "throughput_calls": 100,
    "throughput_seconds": 1.0,
    "model_latency": 0.01,
}

console = Console()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    part = parser.add_argument_group("what to run (the agent runs when neither is given)")
    part.add_argument("--agent", action="store_true", help="the agent runs, scenarios 1 and 2")
    part.add_argument("--resume", action="store_true", help="scenario 3: resume after a crash")
    part.add_argument("--calls", action="store_true", help="the per-call cost")
    part.add_argument("--peers", action="store_true", help="plain Pydantic AI, DBOS and Nexum side by side")
    part.add_argument("--markdown", action="store_true", help="with --peers: also print the table as Markdown")
    part.add_argument("--quick", action="store_true", help="small sizes, for a smoke test; flags still win")
    part.add_argument("--json", type=Path, metavar="FILE", help="also write every figure and the machine to FILE")
    agent = parser.add_argument_group("agent runs")
    agent.add_argument("--query", default=QUERY, help="what the agent is asked (a planned model ignores it)")
    agent.add_argument("--tool-calls", type=int, metavar="N", help="calls the planned model makes (10)")
    agent.add_argument("--batch", type=int, metavar="N", help="tool calls per model response (1)")
    agent.add_argument("--search-latency", type=float, metavar="S", help="fixture delay per search (0.3)")
    agent.add_argument("--page-latency", type=float, metavar="S", help="fixture delay per page (0.5)")
    agent.add_argument("--model", help="a Pydantic AI model name: a real model and the real web")
    agent.add_argument(
        "--model-latency", type=float, metavar="S", help="scenario 3: seconds the offline model takes per answer (0.5)"
    )
    agent.add_argument("--live", action="store_true", help="the real model an API key in the environment picks")
    calls = parser.add_argument_group("per-call cost")
    calls.add_argument("--samples", type=int, metavar="N", help="samples per latency measure (200)")
    calls.add_argument("--polling-samples", type=int, metavar="N", help="samples of the polling pattern (30)")
    calls.add_argument("--clients", type=int, metavar="K", help="concurrent clients for throughput (32)")
    calls.add_argument("--workers", type=_counts, metavar="W,...", help="worker counts for throughput (1,2)")
    calls.add_argument("--throughput-calls", type=int, metavar="N", help="most calls per throughput run (2000)")
    calls.add_argument("--throughput-seconds", type=float, metavar="S", help="longest throughput run (5)")
    calls.add_argument(
        "--no-backends",
        dest="backends",
        action="store_false",
        help="skip the same calls on SQLite and on PostgreSQL with 1 and 2 servers",
    )
    stack = parser.add_argument_group("processes")
    stack.add_argument(
        "--nexum-url",
        metavar="URL",
        help="use this running server instead of starting one (stop its own workers first)",
    )
    stack.add_argument("--worker-concurrency", type=int, metavar="N", help="--concurrency of each worker (64)")
    return parser


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("expected worker counts of 1 or more, like 1,2")
    return counts


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, str | None]:
    """The arguments with presets filled in, and the real model to use (None: offline)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK.get(key, default) if args.quick else default)
    args.agent = args.agent or not (args.calls or args.resume or args.peers)
    small = [
        k
        for k in (
            "tool_calls",
            "batch",
            "samples",
            "polling_samples",
            "clients",
            "throughput_calls",
            "worker_concurrency",
        )
        if getattr(args, k) < 1
    ]
    if small or min(args.search_latency, args.page_latency) < 0 or args.throughput_seconds <= 0:
        parser.error(f"sizes must be 1 or more and times positive: {', '.join(small) or 'a latency or time'}")
    model = args.model
    if args.live and not model:
        model, _ = pick_model(None)
        if not isinstance(model, str):
            parser.error("--live needs GOOGLE_API_KEY, GEMINI_API_KEY or OPENAI_API_KEY (or use --model NAME)")
    if model and (args.calls or args.resume or args.peers):
        parser.error(
            "--calls, --resume and --peers measure against the local web fixture: run them without --model/--live"
        )
    return args, model


async def run(args: argparse.Namespace, stack: Stack, model: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "config": {**vars(args), "json": str(args.json or "")}}

    def report(line: str) -> None:
        console.print(line, style="dim", highlight=False)

    async with NexumClient(stack.nexum_url, max_connections=args.clients + 8) as client:
        await client.health()
        if args.agent:
            console.print(f"[bold]Agent runs[/]  {model or f'planned model, {args.tool_calls} tool calls'}")
            agent_model = model or planned_model(default_plan(args.tool_calls, stack.require_web().url), args.batch)
            runs = await run_scenarios(agent_model, args.query, client, stack.web, report)
            console.print(agent_table(runs))
            results["agent"] = agent_figures(runs)
        if args.resume:
            console.print("[bold]Resume after a crash[/]")
            resumes = await run_resumes(args.query, client, stack.require_web(), args.model_latency, report)
            console.print(resume_table(resumes, args.model_latency))
            results["resume"] = [r.json() for r in resumes]
        if args.calls:
            console.print("[bold]Per-call cost[/]")
            config = CallsConfig(
                args.samples,
                args.polling_samples,
                args.clients,
                args.workers,
                args.throughput_calls,
                args.throughput_seconds,
            )
            results["calls"] = await measure_calls(stack, client, config, report)
            for table in calls_tables(results["calls"]):
                console.print(table)
            if args.backends:
                console.print("[bold]Backends[/]")
                results["backends"] = await measure_backends(stack, config, report)
                console.print(backends_table(results["backends"]))
        if args.peers:
            console.print("[bold]Peers[/]")
            results["peers"] = await run_peers(stack, PEERS_QUICK if args.quick else PeersConfig(), report)
            console.print(peers_table(results["peers"]))
            if args.markdown:
                print(peers_markdown(results["peers"]), flush=True)
    await tools.aclose_clients()  # the plain agent's searches ran on this loop
    return results


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    # Model keys found only in .env go where Pydantic AI's providers look for them.
    AgentSettings.from_env().export_provider_keys()
    args, model = parse_args(argv)
    if not console.is_terminal:
        # Piped or redirected: no terminal to fit, so do not squeeze the tables into 80 columns.
        console.width = max(console.width, 120)
    box = machine()
    console.print(
        f"[bold]Machine[/]  {box['cpu_count']} CPUs, {box['cpu_model']}, Python {box['python']}, "
        f"load {box['load_average_1m']}",
        highlight=False,
    )
    # Ctrl-C and SIGTERM interrupt at once, rather than asyncio's polite cancel of the main task,
    # which an agent run holds until its tool calls end (a minute or two if the server is gone);
    # either way the stack's clean-up stops every process started here.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            start_stack(
                nexum_url=args.nexum_url,
                offline=model is None,
                search_latency=args.search_latency,
                page_latency=args.page_latency,
                worker_concurrency=args.worker_concurrency,
            ) as stack,
            scoped_env(stack.tool_env),
        ):
            web = f", web fixture {stack.web.url}" if stack.web else ", the real web"
            console.print(f"[bold]Nexum[/]    {stack.nexum_url}{web}", highlight=False)
            results = asyncio.run(run(args, stack, model))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: every process started here has been stopped")
        sys.exit(130)
    except NexumError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"Figures written to {args.json}", style="dim")


if __name__ == "__main__":
    main()
