"""Prometheus metrics of one server, in a registry of its own (tests run several apps in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .models import Status


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter("nexum_executions_started", "Executions created", registry=r)
        self.completed = Counter("nexum_executions_completed", "Executions COMPLETED", registry=r)
        self.failed = Counter("nexum_executions_failed", "Executions FAILED", registry=r)
        self.cancelled = Counter("nexum_executions_cancelled", "Executions CANCELLED", registry=r)
        self.cache_hits = Counter("nexum_cache_hits", "Starts answered with an already COMPLETED result", registry=r)
        self.claims = Counter("nexum_task_claims", "Tasks leased to workers", registry=r)
        self.lease_expiries = Counter("nexum_lease_expiries", "Leases that ran out before a report", registry=r)
        self.retries = Counter("nexum_retries", "Retryable failures scheduled for another attempt", registry=r)
        self.stale_reports = Counter("nexum_stale_reports", "Reports refused for a stale lease token", registry=r)
        self.deleted = Counter(
            "nexum_executions_deleted", "Executions deleted: a session forgotten, or retention", ["reason"], registry=r
        )
        self.executions = Gauge("nexum_executions", "Executions by status", ["status"], registry=r)
        self.held = Gauge(
            "nexum_held_requests",
            "Long-poll requests being held: task_poll, execution_wait or event_wait",
            ["kind"],
            registry=r,
        )
        for kind in ("task_poll", "execution_wait", "event_wait"):
            self.held.labels(kind)  # exported as 0 before the first long-poll
        self.queue_depth = Gauge("nexum_queue_depth", "PENDING executions (waiting or retrying)", registry=r)
        self.latency = Histogram(
            "nexum_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def set_counts(self, counts: dict[Status, int]) -> None:
        for status, count in counts.items():
            self.executions.labels(status.value).set(count)
        self.queue_depth.set(counts.get(Status.PENDING, 0))
