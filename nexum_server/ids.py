"""The one rule for session ids, checked at every entry point (routes, bodies, the CLI, the demo).

A session id names a row on the page, a path segment of `/v1/sessions/{id}` and a shell word in a
resume hint, so it is kept to characters that are the same in all three: no `/` (which would route
`a/runs/b` to the session-run endpoints), no spaces, no control characters.
"""

from __future__ import annotations

import re

from .errors import InvalidSessionId

SESSION_ID_MAX_CHARS = 128
SESSION_ID_RULE = f"1 to {SESSION_ID_MAX_CHARS} characters, each an ASCII letter, a digit or one of . _ : - @"
SESSION_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:@-]{{1,{SESSION_ID_MAX_CHARS}}}")


def validate_session_id(session_id: object) -> str:
    """`session_id` when it follows the rule; `InvalidSessionId` (code `invalid_session_id`) naming it."""
    if isinstance(session_id, str) and SESSION_ID_PATTERN.fullmatch(session_id):
        return session_id
    shown = (
        repr(session_id)
        if not isinstance(session_id, str) or len(session_id) <= 60
        else repr(session_id[:60]) + f"... ({len(session_id)} characters)"
    )
    raise InvalidSessionId(f"session id {shown} is not valid: a session id is {SESSION_ID_RULE}")
