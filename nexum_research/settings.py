"""The research example's settings: what its tools and its agent read.

    ToolSettings     the tools the worker runs       NEXUM_SEARCH_BACKEND, NEXUM_SEARXNG_URL, ...
    AgentSettings    demo.py                         NEXUM_MODEL, SESSION_ID, the model providers' keys, ...

Built on the engine's `NexumSettings`: a flag beats the environment, the environment beats `.env`,
both beat the default, and a bad value fails loudly naming the key.
"""

from __future__ import annotations

import os
from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

from nexum_server.config import NexumSettings, Seconds, http_url

SEARCH_BACKEND = "duckduckgo"
PAGE_MAX_CHARS = 8000
FETCH_TIMEOUT_SECONDS = 20.0


class ToolSettings(NexumSettings):
    """What the worker's tools read; an incomplete search configuration is refused here."""

    search_backend: Literal["duckduckgo", "searxng"] = SEARCH_BACKEND
    """`duckduckgo` (the ddgs library) or `searxng` (needs `searxng_url`)."""
    searxng_url: str | None = None
    """Base URL of the SearXNG instance; operator-chosen, so not SSRF-guarded."""
    page_max_chars: PositiveInt = PAGE_MAX_CHARS
    """Page text kept before `[Content truncated]`."""
    fetch_timeout: Seconds = FETCH_TIMEOUT_SECONDS
    """Seconds per HTTP request (safe_download caps connecting at 5 s)."""
    allow_private_urls: bool = False
    """Let pages on loopback/private addresses be fetched (the stand-in web is on loopback)."""

    @field_validator("searxng_url")
    @classmethod
    def _check_searxng_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @model_validator(mode="after")
    def _searxng_needs_url(self) -> Self:
        if self.search_backend == "searxng" and not self.searxng_url:
            raise ValueError(
                f"{self.key('search_backend')}=searxng needs {self.key('searxng_url')}, the base URL "
                "of a SearXNG instance with the JSON format enabled (e.g. http://127.0.0.1:8888)"
            )
        return self

    def describe(self) -> str:
        """Where searches go, for the worker's ready line."""
        search = f"SearXNG at {self.searxng_url}" if self.search_backend == "searxng" else "DuckDuckGo (ddgs)"
        return search + ("; private addresses allowed" if self.allow_private_urls else "")


class AgentSettings(NexumSettings):
    """What `demo.py` reads: the model, the session, and the model providers' keys."""

    model: str | None = None
    """Any Pydantic AI model name, or `offline`; unset: picked from the API key present."""
    session_id: str | None = Field(None, validation_alias="SESSION_ID")
    """The session whose completed tool calls a run reuses."""
    offline_think_seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    """The offline stand-in models' time per answer, like a real model's latency."""
    google_api_key: str | None = Field(None, validation_alias="GOOGLE_API_KEY", repr=False)
    gemini_api_key: str | None = Field(None, validation_alias="GEMINI_API_KEY", repr=False)
    openai_api_key: str | None = Field(None, validation_alias="OPENAI_API_KEY", repr=False)

    def export_provider_keys(self) -> None:
        """Put keys found only in `.env` into the environment, where Pydantic AI's providers look."""
        for field in ("google_api_key", "gemini_api_key", "openai_api_key"):
            value = getattr(self, field)
            if value and not os.environ.get(self.key(field)):
                os.environ[self.key(field)] = value
