"""One error shape for every 4xx and 5xx of every route: `{"error": {"code", "message"}}`.

Validation errors add `details`, one `{loc, msg, type}` per problem, and never the input itself:
FastAPI's own 422 echoes the input, and an input holding what JSON cannot carry (a number too
large for a float, a lone surrogate) made rendering the answer fail with a 500. Every text that
goes into an answer is made encodable here (`_text`), whatever it holds.

The OpenAPI document says the same: every error response of every operation is `ErrorBody`
(`document_errors`), so a client generated from it, or the fuzzer, reads the shape it gets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

MESSAGE_CHARS = 2000
"""Longest message or detail text in an answer: an error never becomes a large answer."""
DETAILS = 20
"""Most validation problems listed in one answer (a huge body can fail on every element)."""
VALIDATION_CODE = "invalid_request"
OWN_CODES = frozenset({"invalid_session_id"})
"""Validation errors of ours with a code of their own: a 422 holding only those answers with it."""


def error_json(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The body of an error answer, renderable whatever `message` and `details` hold."""
    error: dict[str, Any] = {"code": _text(code), "message": _text(message)}
    if details:
        error["details"] = details
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_json(code, message, details), status_code=status, media_type="application/json", headers=headers
    )


def _text(value: object) -> str:
    """`value` as text any JSON encoder and UTF-8 can carry: lone surrogates become `\\udXXX`, cut
    to `MESSAGE_CHARS`."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def _where(loc: Sequence[Any]) -> str:
    return ".".join(_text(part) for part in loc) or "request"


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without their `input` (and `ctx`, which may quote it), made renderable."""
    details = []
    for error in list(errors)[:DETAILS]:
        msg = str(error.get("msg", "invalid"))
        reason = (error.get("ctx") or {}).get("error")
        if error.get("type") == "json_invalid" and reason:
            msg = f"{msg}: {reason}"  # our own decoder's words (jsonbody.py), not the input
        details.append(
            {
                "loc": [p if isinstance(p, int) else _text(p) for p in error.get("loc", ())],
                "msg": _text(msg),
                "type": _text(error.get("type", "value_error")),
            }
        )
    return details


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    details = validation_details(exc.errors())
    message = "; ".join(f"{_where(d['loc'])}: {d['msg']}" for d in details)
    more = len(exc.errors()) - len(details)
    if more > 0:
        message += f"; and {more} more"
    kinds = {d["type"] for d in details}
    code = kinds.pop() if len(kinds) == 1 and kinds <= OWN_CODES else VALIDATION_CODE
    return error_response(422, code, message or "the request is not valid", details)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # Unknown routes, wrong methods and undecodable bodies answer in the same shape as our errors.
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets the shape and a message that says so. Starlette raises the error
    again after this answer, so uvicorn logs its traceback."""
    return error_response(
        500, "internal_error", f"the server failed on this request ({type(exc).__name__}); its log has the details"
    )


def document_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make every 4xx and 5xx response in the document `ErrorBody`, and drop FastAPI's own
    validation-error schemas, which no answer has."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status[:1] in ("4", "5"):
                    response["content"] = {"application/json": {"schema": ref}}
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return openapi
