"""One rule for session ids (`nexum_server/ids.py`), at every entry point: exit 2, one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nexum_devtools.procs import ROOT
from nexum_server.ids import SESSION_ID_RULE, InvalidSessionId, validate_session_id

BAD = ["a/b", " ", "", "x" * 129, "with space", "naïve", "a\nb", "50%"]
GOOD = ["a", "session-0b96423b", "user@example.com:ticket_42.v2", "x" * 128]


@pytest.mark.parametrize("session_id", GOOD)
def test_a_good_session_id_is_kept_as_is(session_id: str) -> None:
    assert validate_session_id(session_id) == session_id


@pytest.mark.parametrize("session_id", BAD)
def test_a_bad_session_id_is_refused_naming_the_rule(session_id: str) -> None:
    with pytest.raises(InvalidSessionId, match="1 to 128 characters") as raised:
        validate_session_id(session_id)
    assert raised.value.code == "invalid_session_id"


COMMANDS = {
    "demo.py": ([sys.executable, "demo.py", "a query"], "SESSION_ID"),
    "submit_task.py": ([sys.executable, "submit_task.py", "web_search", '{"query": "q"}', "--session"], None),
    "nexum ps": ([sys.executable, "-m", "nexum_server", "ps", "--session"], None),
    "nexum forget": ([sys.executable, "-m", "nexum_server", "forget", "--yes"], None),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("session_id", ["a/b", " ", "x" * 300])
def test_every_entry_point_exits_2_with_one_line_naming_the_rule(command: str, session_id: str) -> None:
    args, variable = COMMANDS[command]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if variable:
        env[variable] = session_id
    else:
        args = [*args, session_id]
    # No server is running at the default URL: the id is refused before anything is asked of one.
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: session id") and SESSION_ID_RULE in lines[0], lines
