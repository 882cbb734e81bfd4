"""Nexum server: durable, idempotent executions with a long-poll task queue over HTTP."""

__version__ = "0.1.0"
