"""Strict JSON request bodies: refuse, as a 422, what Python's `json` accepts but the store cannot keep.

`json.loads` takes `NaN` and `Infinity` (and reads `1e999999` as infinity), lone UTF-16
surrogates such as `"\\ud800"` (not Unicode: SQLite cannot bind them and no response could carry
them), and nesting far deeper than pydantic can serialise back. Stored, any of these turns every
later read or poll of that execution into a 500. They are refused while decoding, as FastAPI's
own `json_invalid` validation error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a body (pydantic-core stops serialising at 255)."""


def loads_strict(body: bytes) -> Any:
    """Decode `body`; `json.JSONDecodeError` for malformed JSON and for the values described above."""
    value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, body)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", _doc(body), 0)
            if isinstance(item, dict):
                for key in item:
                    _check_text(key, body)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
    return value


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON; send null or a string instead", "", 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError(f"{text[:40]} is too large for a float; send it as a string", "", 0)
    return value


def _check_text(text: str, body: bytes) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise json.JSONDecodeError(
            f"lone surrogate \\u{ord(text[e.start]):04x} is not Unicode text", _doc(body), 0
        ) from None


def _doc(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = loads_strict(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """An API route whose body is decoded by `loads_strict` (FastAPI's custom-request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
