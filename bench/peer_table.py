"""The peer comparison's table: one row per workload, one column per engine, for the terminal and
for the README (Markdown), with the machine, the load and what each figure means underneath."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from bench.peer_workloads import DBOS, MACHINERY
from bench.peers import DBOS_POLL_SECONDS


def _cells(figures: dict[str, Any], name: str) -> list[str]:
    fresh, resume = figures["fresh"].get(name, {}), figures["resume"].get(name)
    conc, long = figures["concurrent"][name], figures["long"].get(name)
    if "overhead_per_unit_ms" not in fresh:  # plain: the baseline
        a, b, c, e = "–", "1.00x", "–", "–"
    else:
        unit, ratio = fresh["overhead_per_unit_ms"], fresh["replay_vs_plain"]
        a = f"{unit['p50']:.2f} ms (p99 {unit['p99']:.2f})"
        b = f"{ratio['p50']:.2f}x (p99 {ratio['p99']:.2f})"
        c = f"{resume['resume_ms']['p50']:,.0f} ms (p99 {resume['resume_ms']['p99']:,.0f})" if resume else "–"
        e = (
            f"{long['first_steps_ms']['p50']:.1f} → {long['last_steps_ms']['p50']:.1f} ms "
            f"({long['slope_ms_per_step']:+.3f} ms/step)"
        )
    d = f"{conc['runs_per_second']:.1f} (run p99 {conc['run_ms']['p99']:,.0f} ms)"
    return [a, b, c, d, e]


def peer_rows(figures: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and the rows (one per workload), shared by the terminal table and the Markdown."""
    c = figures["config"]
    labels = [
        f"A. fresh {c['steps']}-step run, overhead per journaled unit",
        "B. replay of the finished run (0 model calls, 0 tools), vs a fresh plain run",
        f"C. resume after `kill -9` at request {c['crash_at']} of {c['steps'] + 1}, after imports → done",
        f"D. {c['concurrent']} concurrent {c['concurrent_steps']}-step runs, runs/s",
        f"E. per-step overhead, steps 1–{c['window']} → steps {c['long_steps'] - c['window'] + 1}–{c['long_steps']}",
    ]
    columns = [_cells(figures, name) for name in figures["engines"]]
    return ["workload", *figures["engines"]], [[label, *(col[i] for col in columns)] for i, label in enumerate(labels)]


def notes(figures: dict[str, Any]) -> list[str]:
    box = figures["machine"]
    lines = [
        f"Machine: {box['cpu_count']} CPUs, {box['cpu_model']}, Python {box['python']}; load (1 min) "
        f"{box['load_average_1m']:.2f} at the start, {figures['load_average_1m_end']:.2f} at the end. "
        "Medians, p99 in brackets; overheads paired with the plain run of the same round.",
        "Tools in the worker: `web_search` run by worker.py on the stand-in web's instant search; its "
        "baseline in A and E is the same search run in process.",
    ]
    if MACHINERY in figures["engines"]:
        lines.append(
            f"{MACHINERY}: the same agent under a `BaseDurabilityCapability` whose backend runs every "
            "operation as it is (no journal); its B is a second run, not a replay: the floor under every "
            "engine built on `pydantic_ai.durable_exec`."
        )
    if DBOS in figures["engines"]:
        lines.append(
            f"DBOS: SQLite in WAL mode; B forks the finished workflow from after its last step onto a "
            f"queue polled every {DBOS_POLL_SECONDS * 1000:g} ms; C is DBOS's own recovery on "
            "launch (its internal queue, polled every second by default)."
        )
    if figures["dbos_missing"]:
        lines.append(figures["dbos_missing"])
    return lines + figures["absent"]


def peers_table(figures: dict[str, Any]) -> Table:
    header, rows = peer_rows(figures)
    table = Table(
        title="Peers: the same FunctionModel agent under each engine, instant tools",
        title_justify="left",
        caption="\n".join(notes(figures)),
        caption_justify="left",
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def peers_markdown(figures: dict[str, Any]) -> str:
    header, rows = peer_rows(figures)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*lines, "", *notes(figures)]) + "\n"
