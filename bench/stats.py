"""Percentiles of latency samples, and a description of the machine the figures came from."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Percentiles of one set of latency samples, in milliseconds."""

    n: int
    """How many samples."""
    p50: float
    p95: float
    p99: float

    def minus(self, other: Summary) -> Summary:
        """Percentile by percentile difference: what `self` adds on top of `other`."""
        return Summary(min(self.n, other.n), self.p50 - other.p50, self.p95 - other.p95, self.p99 - other.p99)


def summarize(seconds: list[float]) -> Summary:
    """p50/p95/p99 of samples given in seconds; interpolated, so a few samples still give figures."""
    if not seconds:
        raise ValueError("no samples to summarize")
    ms = [s * 1000 for s in seconds]
    if len(ms) == 1:
        return Summary(1, ms[0], ms[0], ms[0])
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Summary(len(ms), cuts[49], cuts[94], cuts[98])


def machine() -> dict[str, Any]:
    """CPU count and model, Python, platform and load: enough to tell two result files apart."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # A busy machine explains a slow run; the one-minute load at the start records how busy.
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None
