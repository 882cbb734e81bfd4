"""Settings of the Nexum server and its clients.

Every tunable is a named constant with its unit, overridable by a `pydantic-settings` class: a flag
beats the environment, the environment beats `.env` (in the current directory), and both beat the
default. An empty value counts as unset. A bad value fails loudly, naming the key and where it came
from (`ConfigError`). `.env.example` lists every key.

    Settings         nexum dev                       NEXUM_HOST, NEXUM_PORT, NEXUM_DB, NEXUM_TOKEN, ...
    ClientSettings   every client of the server      NEXUM_URL, NEXUM_TOKEN

Applications build their own settings on `NexumSettings` (the research example's tools and agent do).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, PositiveInt, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

ENV_FILE = ".env"
ENV_PREFIX = "NEXUM_"
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
HEADER_TIMEOUT_SECONDS = 10.0
"""Longest a request's head (request line and headers) may take to arrive (`slowclients.py`)."""
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECTIONS = 4096
"""Open connections per server; past it, connections still waiting for their head are closed first."""
"""Longest a long-poll request is held; clients ask again for longer waits."""
RETAIN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
"""Units of a retention period: `30d`, `12h`, `90m`, `45s`."""
SQLITE_SYNCHRONOUS = "NORMAL"
"""WAL with NORMAL survives a crash of the process; FULL also survives a power cut, at a cost."""


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A positive, finite number of seconds."""


class NexumSettings(BaseSettings):
    """What every settings class shares: the prefix, `.env`, blank means unset, errors name the key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        # An empty variable in the environment still hides the same key in .env (the tests rely on
        # that to keep a developer's .env out of their processes), and then means "the default".
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data

    @classmethod
    def from_env(cls, **flags: Any) -> Self:
        """The settings from the environment and `.env`, with `flags` that are not None on top."""
        try:
            return cls(**{name: value for name, value in flags.items() if value is not None})
        except ValidationError as e:
            raise ConfigError(_describe(cls, e, flags)) from None

    @classmethod
    def key(cls, field: str) -> str:
        """The variable that sets `field`, e.g. `NEXUM_PORT` for `port`."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return str(alias) if alias else f"{ENV_PREFIX}{field.upper()}"

    @classmethod
    def origin(cls, field: str, flags: dict[str, Any] | None = None) -> str:
        """Where the value of `field` comes from: `--flag`, `KEY in the environment`, `KEY in .env`, `default`."""
        key = cls.key(field)
        if flags and flags.get(field) is not None:
            return f"--{field.replace('_', '-')}"
        if os.environ.get(key):
            return f"{key} in the environment"
        if key not in os.environ and dotenv_values(ENV_FILE).get(key):
            return f"{key} in {ENV_FILE}"
        return "default"


def _describe(cls: type[NexumSettings], error: ValidationError, flags: dict[str, Any]) -> str:
    """One line per problem: the key, its value, where it came from, and what is expected."""
    problems = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        field = str(item["loc"][0]) if item["loc"] else ""
        if field not in cls.model_fields:
            problems.append(message)
            continue
        where = cls.origin(field, flags)
        label = where if where.startswith("--") else cls.key(field)
        source = where.removeprefix(f"{cls.key(field)} ") if where.startswith(cls.key(field)) else ""
        problems.append(
            f"{label}={item.get('input')!r}{f' ({source})' if source else ''} is not valid: "
            f"{message[:1].lower()}{message[1:]}"
        )
    return "; ".join(problems)


def _duration(text: str | None) -> float | None:
    """Seconds in `30d`, `12h`, `90m` or `45s`; None for no value or a malformed one."""
    if text is None:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if found is None or float(found.group(1)) <= 0:
        return None
    return float(found.group(1)) * RETAIN_UNITS[found.group(2)]


def http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


class Settings(NexumSettings):
    """The server's settings (`nexum dev`); each is also a flag of `nexum dev` but the token."""

    host: str = DEFAULT_HOST
    """Address to bind; loopback unless you mean to expose the server (then set a token)."""
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """TCP port to listen on; 0 picks a free one."""
    db: str = DEFAULT_DB
    """Path of the SQLite database file (its folder is created), or a `postgresql://` URL."""
    token: str | None = Field(None, repr=False)
    """When set, every request but /health needs `Authorization: Bearer <token>`."""
    lease_seconds: Seconds = LEASE_SECONDS
    """How long a claimed task belongs to its worker without a heartbeat."""
    max_attempts: PositiveInt = MAX_ATTEMPTS
    """Attempts per execution before it is FAILED (expired leases count as attempts)."""
    retry_backoff_seconds: Seconds = RETRY_BACKOFF_SECONDS
    """Delay before the first retry; doubles with every further attempt."""
    retry_backoff_max_seconds: Seconds = RETRY_BACKOFF_MAX_SECONDS
    """Upper bound of the retry delay."""
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_wait_seconds: Seconds = MAX_WAIT_SECONDS
    """Longest a long-poll request is held."""
    header_timeout_seconds: Seconds = HEADER_TIMEOUT_SECONDS
    """A request's head must arrive within this long of the connection opening (or of the previous
    answer on a kept-alive connection); else 408 and the connection is closed."""
    max_header_bytes: int = Field(MAX_HEADER_BYTES, ge=1024)
    """Largest request head (request line and headers); larger get 431."""
    max_connections: int = Field(MAX_CONNECTIONS, ge=16)
    """Open connections per server (held long-polls count)."""
    sqlite_synchronous: Literal["NORMAL", "FULL"] = SQLITE_SYNCHRONOUS
    """SQLite `synchronous` pragma: NORMAL or FULL."""
    retain: str | None = None
    """Delete terminal executions this long after they ended, e.g. `30d`; unset keeps them forever."""

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("retain")
    @classmethod
    def _check_retain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value)
        if found is None or float(found.group(1)) <= 0:
            raise ValueError(
                "expected a positive number and a unit, e.g. 30d, 12h, 90m or 45s (leave it unset to keep everything)"
            )
        return value

    @property
    def retain_seconds(self) -> float | None:
        """The retention period in seconds; None keeps everything."""
        return _duration(self.retain)

    @property
    def db_path(self) -> Path:
        return Path(self.db).expanduser()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number `attempt` (1-based)."""
        return min(self.retry_backoff_seconds * 2 ** (attempt - 1), self.retry_backoff_max_seconds)


class ClientSettings(NexumSettings):
    """What every client of the server reads: where it is, and the token it wants."""

    url: str = DEFAULT_URL
    """Base URL of the Nexum server."""
    token: str | None = Field(None, repr=False)
    """The server's token, sent as `Authorization: Bearer <token>`."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str | None:
        return http_url(value)
