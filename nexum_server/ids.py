"""Session ids: one rule, checked at every entry point (the CLI, the demo, `submit_task.py`, the API).

A session id is 1 to 128 characters of letters, digits and `._:-@`: it goes into URL paths
(`/v1/sessions/{id}`), the page's links and shell commands, where any other character needs quoting
or escaping somewhere.
"""

from __future__ import annotations

import re

from .errors import InvalidValue

SESSION_ID_MAX = 128
SESSION_ID_RULE = f"1 to {SESSION_ID_MAX} characters of letters, digits and ._:-@"
_SESSION_ID = re.compile(r"[A-Za-z0-9._:@-]{1,%d}" % SESSION_ID_MAX)


class InvalidSessionId(InvalidValue):
    """A session id that breaks the rule (`SESSION_ID_RULE`)."""

    code = "invalid_session_id"


def validate_session_id(session_id: str) -> str:
    """`session_id` itself when it keeps the rule; `InvalidSessionId` naming the rule otherwise."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        text = str(session_id)
        shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}… ({len(text)} characters)"
        raise InvalidSessionId(f"session id {shown} is not valid: a session id is {SESSION_ID_RULE}")
    return session_id
