"""Settings of the Nexum server and its clients.

Every tunable is a named constant with its unit, overridable by one `Settings` object: a flag beats
the environment, the environment beats `.env` (loaded by the entry points, never overriding what
is already set), and both beat the default. A bad value fails loudly, naming the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_DB = ".nexum/local.db"
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
LEASE_SECONDS = 30.0
MAX_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 1.0
RETRY_BACKOFF_MAX_SECONDS = 60.0
MAX_BODY_BYTES = 1024 * 1024
MAX_WAIT_SECONDS = 60.0
"""Longest a long-poll request is held; clients ask again for longer waits."""
RETAIN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
"""Units of a retention period: `30d`, `12h`, `90m`, `45s`."""
SQLITE_SYNCHRONOUS = "NORMAL"
"""WAL with NORMAL survives a crash of the process; FULL also survives a power cut, at a cost."""


@dataclass(frozen=True)
class Settings:
    """Server settings; `from_env` reads the `NEXUM_*` environment variable of each field."""

    host: str = DEFAULT_HOST
    """Address to bind; loopback unless you mean to expose the server."""
    port: int = DEFAULT_PORT
    """TCP port to listen on."""
    db: str = DEFAULT_DB
    """Path of the SQLite database file (its folder is created), or a `postgresql://` URL."""
    token: str | None = None
    """When set, every request but /health needs `Authorization: Bearer <token>`."""
    lease_seconds: float = LEASE_SECONDS
    """How long a claimed task belongs to its worker without a heartbeat."""
    max_attempts: int = MAX_ATTEMPTS
    """Attempts per execution before it is FAILED (expired leases count as attempts)."""
    retry_backoff_seconds: float = RETRY_BACKOFF_SECONDS
    """Delay before the first retry; doubles with every further attempt."""
    retry_backoff_max_seconds: float = RETRY_BACKOFF_MAX_SECONDS
    """Upper bound of the retry delay."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Largest request body accepted; larger ones get 413."""
    max_wait_seconds: float = MAX_WAIT_SECONDS
    """Longest a long-poll request is held."""
    sqlite_synchronous: str = SQLITE_SYNCHRONOUS
    """SQLite `synchronous` pragma: NORMAL or FULL."""
    retain: str | None = None
    """Delete terminal executions this long after they ended, e.g. `30d`; unset keeps them forever."""

    def __post_init__(self) -> None:
        for name in ("lease_seconds", "retry_backoff_seconds", "retry_backoff_max_seconds", "max_wait_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"NEXUM_{name.upper()} must be a positive number of seconds")
        if self.max_attempts < 1:
            raise ConfigError("NEXUM_MAX_ATTEMPTS must be at least 1")
        if self.max_body_bytes < 1024:
            raise ConfigError("NEXUM_MAX_BODY_BYTES must be at least 1024")
        if not 0 < self.port < 65536 and self.port != 0:
            raise ConfigError("NEXUM_PORT must be between 0 and 65535")
        if self.sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
            raise ConfigError("NEXUM_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        parse_duration("NEXUM_RETAIN", self.retain)

    @property
    def retain_seconds(self) -> float | None:
        """The retention period in seconds; None keeps everything."""
        return parse_duration("NEXUM_RETAIN", self.retain)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `NEXUM_<FIELD>` variables, then `overrides` (flags) that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            key = f"NEXUM_{field.name.upper()}"
            raw = environ.get(key)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(key, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def db_path(self) -> Path:
        return Path(self.db).expanduser()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number `attempt` (1-based)."""
        return min(self.retry_backoff_seconds * 2 ** (attempt - 1), self.retry_backoff_max_seconds)


def parse_duration(key: str, text: str | None) -> float | None:
    """Seconds in `30d`, `12h`, `90m` or `45s`; None for no value."""
    if text is None or text == "":
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if found is None or float(found.group(1)) <= 0:
        raise ConfigError(f"{key}={text!r} is not a retention period: use a positive number and a unit, "
                          "e.g. 30d, 12h, 90m or 45s (leave it unset to keep everything)")
    return float(found.group(1)) * RETAIN_UNITS[found.group(2)]


def _parse(key: str, raw: str, type_name: object) -> object:
    kind = str(type_name)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a valid {kind.split(' ')[0]}") from None
    return raw


def client_url(environ: Mapping[str, str] | None = None) -> str:
    """The server URL the clients use: `NEXUM_URL`, or the local default."""
    environ = os.environ if environ is None else environ
    return (environ.get("NEXUM_URL") or DEFAULT_URL).rstrip("/")


def client_token(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get("NEXUM_TOKEN") or None
