"""End to end: `benchmark.py` runs its parts on a tiny configuration and reports what it should.

Structure only, never timings: the tables and the JSON keys are there, the figures are positive,
the Nexum re-run executed nothing (counted by the local web fixture, not by the client), the peer
comparison ran every engine on every workload and printed the README's table, and the processes
the benchmark started are gone when it returns.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nexum_devtools.postgres import PostgresMissing, find_bindir
from nexum_devtools.procs import DOTENV_KEYS, ROOT
from tests.conftest import CI

TOOL_CALLS = 4
RUN_TIMEOUT_SECONDS = 150
PROJECT_VARIABLES = ("NEXUM_", "SESSION_ID")
TABLE_ROWS = (
    "Agent runs",
    "1 cold",
    "2 re-run",
    "Pydantic AI + Nexum, new session",
    "Pydantic AI + Nexum, same session",
    "Per-call latency",
    "bare round trip, GET /health",
    "cached call",
    "cold overhead (cold - direct)",
    "polling-pattern call",
    "Throughput, end to end",
    "tool alone, in process",
    "Nexum, 1 worker",
    "Nexum, 2 workers",
    "Targets",
    "cold overhead p99",
    "throughput, 1 server + 1 worker",
    "blocking bare round trip, GET /health",
    "blocking cached call",
    "throughput, 2 workers / 1 worker",
    "Backends: the instant tool",
    "SQLite, 1 server",
)
LATENCIES = (
    "bare_round_trip_ms",
    "cached_call_ms",
    "bare_round_trip_blocking_ms",
    "cached_call_blocking_ms",
    "direct_tool_ms",
    "cold_call_ms",
    "cold_outside_worker_ms",
    "polling_call_ms",
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """Run the benchmark once for every test here: its output and its JSON figures."""
    figures = tmp_path_factory.mktemp("bench") / "bench.json"
    command = [
        sys.executable,
        "benchmark.py",
        "--agent",
        "--resume",
        "--calls",
        "--quick",
        "--tool-calls",
        str(TOOL_CALLS),
        "--search-latency",
        "0.01",
        "--page-latency",
        "0.01",
        "--samples",
        "10",
        "--polling-samples",
        "3",
        "--clients",
        "4",
        "--throughput-calls",
        "20",
        "--throughput-seconds",
        "1",
        "--json",
        str(figures),
    ]
    # A module fixture runs before the per-test environment scrub, so it scrubs for itself. Wide
    # enough that no table cell is wrapped or cut, so rows can be found as text.
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES) and not k.endswith("_API_KEY")}
    env.update(dict.fromkeys(DOTENV_KEYS, ""), COLUMNS="200")  # blank: a developer's .env stays out
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(figures.read_text())


def test_tables_have_every_row(bench: tuple[str, dict[str, Any]]) -> None:
    output, _ = bench
    missing = [row for row in TABLE_ROWS if row not in output]
    assert not missing, output


def test_json_has_the_machine_and_every_figure(bench: tuple[str, dict[str, Any]]) -> None:
    _, figures = bench
    assert set(figures) == {"machine", "config", "agent", "resume", "calls", "backends"}
    assert {"cpu_count", "cpu_model", "python", "platform"} <= set(figures["machine"])
    assert figures["machine"]["cpu_count"] > 0
    assert {"runs", "cold_overhead_seconds", "rerun_speedup"} <= set(figures["agent"])
    calls = figures["calls"]
    for key in LATENCIES:
        assert calls[key]["n"] > 0 and calls[key]["p50"] > 0, (key, calls[key])
    assert {"p50", "p95", "p99"} <= set(calls["cold_overhead_ms"]) and {"p50"} <= set(calls["polling_overhead_ms"])
    assert [r["workers"] for r in calls["throughput"]] == [0, 1, 2]
    assert all(r["calls"] > 0 and r["calls_per_second"] > 0 for r in calls["throughput"])
    assert len(calls["targets"]) == 7
    assert all(t["met"] in (True, False, None) and t["goal"] and t["measured"] for t in calls["targets"])
    setups = [(r["backend"], r["servers"]) for r in figures["backends"]]
    assert setups == [("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2)] if _has_postgres() else [("SQLite", 1)]
    for row in figures["backends"]:
        assert row["cached_call_ms"]["p50"] > 0 and row["cold_call_ms"]["p99"] > 0 and row["calls_per_second"] > 0


def test_nexum_rerun_executes_nothing(bench: tuple[str, dict[str, Any]]) -> None:
    _, figures = bench
    runs = {(r["scenario"], r["session"] is not None): r for r in figures["agent"]["runs"]}
    assert len(runs) == 4
    assert all(r["tool_calls"] == TOOL_CALLS and r["failed"] == 0 and r["seconds"] > 0 for r in runs.values())
    for scenario in ("cold", "rerun"):
        plain = runs[(scenario, False)]
        assert plain["executed"] == plain["web_requests"] == TOOL_CALLS
    assert runs[("cold", True)]["executed"] == runs[("cold", True)]["web_requests"] == TOOL_CALLS
    rerun = runs[("rerun", True)]
    assert rerun["session"] == runs[("cold", True)]["session"]
    assert (rerun["executed"], rerun["cached"], rerun["web_requests"]) == (0, TOOL_CALLS, 0)


def test_a_full_journal_resume_asks_the_model_once_and_fetches_nothing(bench: tuple[str, dict[str, Any]]) -> None:
    _, figures = bench
    resumes = {r["design"]: r for r in figures["resume"]}
    assert set(resumes) == {"tool calls only", "full journal"}
    for r in resumes.values():
        # Both died at the same point: three model requests asked (the third never answered), 1 + 3 pages read.
        assert (r["first_model_requests"], r["first_web_requests"]) == (3, 4), r
    assert (resumes["full journal"]["model_requests"], resumes["full journal"]["web_requests"]) == (1, 0)
    # The model is asked everything again (and, as it words its search anew, usually reads other pages).
    assert resumes["tool calls only"]["model_requests"] == 3


def test_started_processes_are_stopped(bench: tuple[str, dict[str, Any]]) -> None:
    output, _ = bench
    line = next(line for line in output.splitlines() if line.startswith("Nexum "))
    urls = re.findall(r"http://127\.0\.0\.1:\d+", line)
    assert len(urls) == 2, output  # the Nexum server and the web fixture
    for url in urls:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
    # Workers are found by the server URL on their command line (Linux's /proc; elsewhere skipped).
    leftovers = [path for path in Path("/proc").glob("[0-9]*/cmdline") if _reads(path, urls[0])]
    assert not leftovers
    postgres_ports = re.findall(r"PostgreSQL postgresql://postgres@127\.0\.0\.1:(\d+)/", output)
    assert len(postgres_ports) == (1 if _has_postgres() else 0), output
    for port in postgres_ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()


def _has_postgres() -> bool:
    try:
        find_bindir()
    except PostgresMissing:
        return False
    return True


def _reads(path: Path, text: str) -> bool:
    try:
        return text.encode() + b"\0" in path.read_bytes()
    except OSError:  # the process ended while being looked at
        return False


PEER_ENGINES = (
    "plain",
    "Pydantic AI durable machinery, nothing journaled",
    "DBOS (SQLite, WAL)",
    "Nexum, tools in process",
    "Nexum, tools in the worker",
)
PEER_ROWS = ("A. fresh", "B. replay", "C. resume after `kill -9`", "D. ", "E. per-step overhead")


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """`benchmark.py --peers --quick --markdown` once: its output and its JSON figures."""
    figures = tmp_path_factory.mktemp("peers") / "peers.json"
    command = [sys.executable, "benchmark.py", "--peers", "--quick", "--markdown", "--json", str(figures)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES) and not k.endswith("_API_KEY")}
    env.update(dict.fromkeys(DOTENV_KEYS, ""), COLUMNS="200")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(figures.read_text())["peers"]


def test_peers_runs_every_engine_on_every_workload(
    peers: tuple[str, dict[str, Any]], pytestconfig: pytest.Config
) -> None:
    output, figures = peers
    if figures["dbos_missing"]:
        # DBOS is in the test extra: missing, it is a broken install, not a machine without it.
        if pytestconfig.stash[CI]:
            pytest.fail(f"NEXUM_CI=1 and {figures['dbos_missing']}")
        assert figures["dbos_missing"] in output
        engines = tuple(e for e in PEER_ENGINES if not e.startswith("DBOS"))
    else:
        engines = PEER_ENGINES
    assert tuple(figures["engines"]) == engines
    floor = figures["fresh"]["Pydantic AI durable machinery, nothing journaled"]
    assert floor["overhead_per_unit_ms"]["n"] >= 1 and floor["replay_vs_plain"]["p50"] > 0
    durable = engines[2:]
    for name in durable:
        # A replay that ran a unit, or a resume that asked the model again, fails the benchmark itself.
        assert figures["fresh"][name]["replay_vs_plain"]["p50"] > 0
        assert figures["fresh"][name]["overhead_per_unit_ms"]["n"] >= 1
        assert figures["resume"][name]["resume_ms"]["p50"] > 0
        assert figures["long"][name]["steps"] == figures["config"]["long_steps"]
    assert all(figures["concurrent"][name]["runs_per_second"] > 0 for name in engines)
    assert {"cpu_count", "cpu_model", "load_average_1m"} <= set(figures["machine"])
    assert any(line.startswith("Temporal: not run") for line in figures["absent"])


def test_peers_prints_the_readme_table(peers: tuple[str, dict[str, Any]]) -> None:
    output, figures = peers
    lines = output.splitlines()
    header = "| workload | " + " | ".join(figures["engines"]) + " |"
    start = lines.index(header)
    rows = lines[start + 2 : start + 2 + len(PEER_ROWS)]
    assert [row.split(" | ")[0].removeprefix("| ")[: len(p)] for row, p in zip(rows, PEER_ROWS, strict=True)] == list(
        PEER_ROWS
    )
    assert all(row.count(" | ") == len(figures["engines"]) for row in rows)
    assert any(line.startswith("Machine: ") and "load (1 min)" in line for line in lines[start:])


def test_peers_stops_what_it_started(peers: tuple[str, dict[str, Any]]) -> None:
    output, _ = peers
    line = next(line for line in output.splitlines() if line.startswith("Nexum "))
    urls = re.findall(r"http://127\.0\.0\.1:\d+", line)
    for url in urls:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
    # The workers and the resume's children are found by the server URL on their command line.
    assert not [path for path in Path("/proc").glob("[0-9]*/cmdline") if _reads(path, urls[0])]
