"""The `nexum` command as a user runs it: `python -m nexum_server ...` as a subprocess.

Output goes through rich at 80 columns (`COLUMNS=80`, a small terminal), so messages are compared
with their whitespace folded; tables must fit that width with ids and statuses whole.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nexum_devtools.procs import ROOT, NexumServer
from nexum_server.store import SCHEMA_VERSION
from tests.server.conftest import Api

COMMAND_TIMEOUT = 30
WIDTH = 80


def nexum(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": str(WIDTH), "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nexum_server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=COMMAND_TIMEOUT,
        env=full_env,
    )


def said(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed, with rich's line wrapping folded back into single spaces."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def executions(api: Api, session_id: str) -> dict[str, dict]:
    """One COMPLETED and one PENDING execution in `session_id`."""
    done = api.start(session_id, "done", {"tool_name": "web_search", "tool_args": {"query": "durable"}})
    api.complete(api.poll_one(), {"result": "the answer text"})
    pending = api.start(session_id, "pending")
    return {"done": api.get(done["id"]), "pending": pending}


def test_ps_lists_executions_with_their_ids_and_statuses(
    server: NexumServer, executions: dict[str, dict], session_id: str
) -> None:
    result = nexum("ps", "--url", server.url, "--session", session_id)
    assert result.returncode == 0, said(result)
    assert executions["done"]["id"] in result.stdout
    assert executions["pending"]["id"] in result.stdout
    assert "COMPLETED" in result.stdout and "PENDING" in result.stdout
    assert result.stdout.index(executions["pending"]["id"]) < result.stdout.index(executions["done"]["id"])

    completed_only = nexum("ps", "--url", server.url, "--status", "completed")
    assert completed_only.returncode == 0, said(completed_only)
    assert executions["done"]["id"] in completed_only.stdout
    assert executions["pending"]["id"] not in completed_only.stdout

    nobody = nexum("ps", "--url", server.url, "--session", "nobody")
    assert nobody.returncode == 0 and "no executions" in nobody.stdout


def test_show_prints_one_execution_and_its_result(server: NexumServer, executions: dict[str, dict]) -> None:
    done = executions["done"]
    result = nexum("show", done["id"], "--url", server.url)
    assert result.returncode == 0, said(result)
    text = said(result)
    assert done["id"] in text and "COMPLETED" in text and "attempt 1 of 3" in text
    assert done["session_id"] in text and "the answer text" in text

    missing = nexum("show", "no-such-id", "--url", server.url)
    assert missing.returncode == 1
    assert "no execution id starts with 'no-such-id'" in said(missing) and "nexum ps" in said(missing)


def test_show_and_cancel_take_a_unique_start_of_the_id(server: NexumServer, api: Api, session_id: str) -> None:
    ids = [api.start(session_id, f"k{n}")["id"] for n in range(40)]
    # Among 40 random hex ids, some two share a first digit: that digit alone is ambiguous.
    first = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    ambiguous = nexum("show", first, "--url", server.url)
    assert ambiguous.returncode == 1
    assert f"'{first}' starts more than one execution id" in said(ambiguous) and "give more of it" in said(ambiguous)

    target = ids[0]
    prefix = next(target[:n] for n in range(1, 33) if sum(i.startswith(target[:n]) for i in ids) == 1)
    shown = nexum("show", prefix, "--url", server.url)
    assert shown.returncode == 0, said(shown)
    assert target in said(shown) and "PENDING" in said(shown)
    cancelled = nexum("cancel", prefix, "--url", server.url, "--json")
    assert cancelled.returncode == 0, said(cancelled)
    assert json.loads(cancelled.stdout)["id"] == target
    assert api.get(target)["status"] == "CANCELLED"


def test_cancel_cancels_a_pending_execution_and_refuses_a_completed_one(
    server: NexumServer, api: Api, executions: dict[str, dict]
) -> None:
    pending = executions["pending"]
    result = nexum("cancel", pending["id"], "--url", server.url)
    assert result.returncode == 0, said(result)
    assert f"{pending['id']} is CANCELLED" in said(result)
    assert api.get(pending["id"])["status"] == "CANCELLED"

    refused = nexum("cancel", executions["done"]["id"], "--url", server.url)
    assert refused.returncode == 1
    assert "409" in said(refused) and "already COMPLETED" in said(refused)
    assert api.get(executions["done"]["id"])["status"] == "COMPLETED"


def test_the_url_comes_from_nexum_url(
    server: NexumServer, executions: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUM_URL", server.url)
    result = nexum("ps")
    assert result.returncode == 0, said(result)
    assert executions["done"]["id"] in result.stdout


def test_ps_fits_80_columns_with_ids_statuses_and_errors(server: NexumServer, api: Api, session_id: str) -> None:
    long_input = {"tool_name": "visit_webpage", "tool_args": {"url": "http://127.0.0.1/pages/" + "x" * 200}}
    done = api.start(session_id, "done", long_input)
    api.complete(api.poll_one(), {"result": "text"})
    failed = api.start(f"{session_id}-with-a-long-session-name", "failed", long_input)
    api.report(api.poll_one(), "fail", error="HTTP 404 Not Found for " + "y" * 200, retryable=False)
    cancelled = api.start(session_id, "cancelled")
    api.http.post(f"/v1/executions/{cancelled['id']}/cancel").raise_for_status()

    result = nexum("ps", "--url", server.url)
    assert result.returncode == 0, said(result)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "try", "session", "call", "error"]  # took: 100 columns and up
    assert len(lines) == 4 and all(len(line) <= WIDTH for line in lines), lines
    by_id = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_id[cancelled["id"]][1] == "CANCELLED"
    assert by_id[done["id"]][1] == "COMPLETED"
    assert by_id[failed["id"]][1] == "FAILED" and "HTTP" in by_id[failed["id"]][-2:][0] + by_id[failed["id"]][-1]

    one_session = nexum("ps", "--url", server.url, "--session", session_id)
    assert one_session.stdout.splitlines()[0].split() == ["id", "status", "try", "call"]


def test_ps_json_is_the_api_shape_whatever_the_width(server: NexumServer, api: Api, session_id: str) -> None:
    failed = api.start(session_id, "failed", {"tool_name": "web_search", "tool_args": {"query": "q" * 300}})
    api.report(api.poll_one(), "fail", error="e" * 300, retryable=False)
    result = nexum("ps", "--url", server.url, "--session", session_id, "--json")
    assert result.returncode == 0, said(result)
    [execution] = json.loads(result.stdout)["executions"]
    assert execution["id"] == failed["id"] and execution["status"] == "FAILED"
    assert execution["error"] == "e" * 300 and execution["input"]["tool_args"]["query"] == "q" * 300


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_ps_without_a_server_exits_2_naming_the_url_and_nexum_dev(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = nexum("ps", "--url", url)
    assert result.returncode == 2
    text = said(result)
    assert f"no Nexum server answers at {url} (from --url): connection refused" in text
    assert "`nexum dev`" in text and "Traceback" not in text


def test_a_missing_token_and_a_wrong_token_get_different_messages(start_server: Callable[..., NexumServer]) -> None:
    server = start_server(token="s3cret")
    missing = nexum("ps", "--url", server.url)
    wrong = nexum("ps", "--url", server.url, env={"NEXUM_TOKEN": "wrong"})
    assert missing.returncode == wrong.returncode == 2
    assert "this server needs a token and none was sent" in said(missing)
    assert "the token sent is wrong" in said(wrong)
    for result in (missing, wrong):
        assert "set NEXUM_TOKEN" in said(result) and server.url in said(result)
        assert "s3cret" not in said(result)
    assert nexum("ps", "--url", server.url, env={"NEXUM_TOKEN": "s3cret"}).returncode == 0


def test_dev_help_describes_the_settings_and_the_token() -> None:
    result = nexum("dev", "--help")
    assert result.returncode == 0
    text = said(result)
    assert "Run the Nexum server" in text and "NEXUM_TOKEN" in text
    from nexum_server.config import Settings

    for field in Settings.model_fields:
        if field != "token":
            assert f"--{field.replace('_', '-')}" in text and f"NEXUM_{field.upper()}" in text, field


def test_dev_refuses_a_bad_setting_naming_it(tmp_path: Path) -> None:
    result = nexum("dev", "--port", "0", "--db", str(tmp_path / "x.db"), env={"NEXUM_LEASE_SECONDS": "soon"})
    assert result.returncode == 2
    assert "NEXUM_LEASE_SECONDS='soon' (in the environment) is not valid" in said(result)
    assert "Traceback" not in said(result)


def test_ctrl_c_stops_dev_in_one_line_without_a_traceback(start_server: Callable[..., NexumServer]) -> None:
    server = start_server()
    server.signal(signal.SIGINT)
    assert server.popen.wait(10) == 0
    server.stop()  # joins the output reader
    assert "Nexum server stopped." in server.output
    assert "Traceback" not in server.output and "KeyboardInterrupt" not in server.output


def test_dev_warns_loudly_beyond_loopback_without_a_token(start_server: Callable[..., NexumServer]) -> None:
    # Bound to every interface on a free port for the moment it takes to read the ready lines;
    # nothing connects to it but the start-up check on loopback.
    exposed = start_server(host="0.0.0.0")
    exposed.wait_for(re.compile("WARNING"))
    text = " ".join(exposed.output.split())
    assert "listening on 0.0.0.0, beyond loopback, with no token" in text and "Set NEXUM_TOKEN" in text
    assert "loopback only" not in text
    exposed.stop()
    local = start_server()
    local.wait_for(re.compile(r"no token \(loopback only\)"))
    assert "WARNING" not in local.output


def test_every_entry_point_reads_dotenv_and_fails_fast_on_a_dead_url(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    (tmp_path / ".env").write_text(f"NEXUM_URL={url}\n")
    monkeypatch.delenv("NEXUM_URL")  # unset, not blank: blank would hide .env
    commands = {
        "nexum ps": [sys.executable, "-m", "nexum_server", "ps"],
        "submit_task.py": [sys.executable, str(ROOT / "submit_task.py"), "web_search", '{"query": "q"}'],
        "worker.py": [sys.executable, str(ROOT / "worker.py")],
        "demo.py": [sys.executable, str(ROOT / "demo.py"), "a question"],
    }
    for name, command in commands.items():
        started = time.monotonic()
        result = subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=COMMAND_TIMEOUT,
            env={**os.environ, "COLUMNS": str(WIDTH)},
        )
        took = time.monotonic() - started
        text = said(result)
        assert result.returncode == 2, (name, text)
        assert f"no Nexum server answers at {url} (from NEXUM_URL in .env): connection refused" in text, (name, text)
        assert "Traceback" not in text, name
        assert took < 5.0, (name, took)  # the check itself gives up after 1 s; the rest is start-up


def test_dev_refuses_a_database_from_a_newer_server(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    result = nexum("dev", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    text = said(result)
    assert "cannot open the database" in text and "newer Nexum server" in text
    assert str(db) in "".join(text.split())  # a long path may wrap anywhere
    assert "Traceback" not in text and "listening" not in text
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_dev_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 100)
    result = nexum("dev", "--port", "0", "--db", str(db))
    assert result.returncode == 2
    text = said(result)
    assert "cannot open the database" in text and "Traceback" not in text


def test_dev_on_a_port_in_use_exits_2_and_says_so(server: NexumServer, tmp_path: Path) -> None:
    result = nexum("dev", "--port", str(server.port), "--db", str(tmp_path / "second.db"))
    assert result.returncode == 2
    text = said(result)
    assert f"cannot listen on 127.0.0.1:{server.port}" in text
    assert "another `nexum dev` running" in text and "--port" in text
    assert text.startswith("error: ") and "Traceback" not in text
    assert not list(tmp_path.glob("second.db*"))  # no database file and no lock left behind
    with server.http() as http:
        assert http.get("/health").status_code == 200  # the first server is unaffected


def test_a_second_dev_on_the_same_sqlite_file_exits_at_once_naming_the_first(server: NexumServer) -> None:
    result = nexum("dev", "--port", "0", "--db", str(server.db))
    assert result.returncode == 2
    text = said(result)
    assert text.startswith("error: ") and "already served by" in text and server.url in text
    assert f"pid {server.popen.pid}" in text
    assert "postgresql://" in text and "Traceback" not in text and "listening" not in text
    with server.http() as http:
        assert http.get("/health").status_code == 200  # the first server is unaffected
    server.stop()
    again = NexumServer(server.db)  # the lock went with the first server
    again.stop()


def test_dev_refuses_a_db_url_of_an_unsupported_scheme(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nexum_server", "dev", "--port", "0", "--db", "mysql://root@127.0.0.1:3306/nexum"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 2
    text = said(result)
    assert "mysql://... is not supported" in text and "postgresql://" in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == [], "nothing is created for a refused --db"


def test_dev_on_an_unreachable_postgresql_exits_2_naming_it(closed_port: int) -> None:
    url = f"postgresql://nexum@127.0.0.1:{closed_port}/nexum"
    result = nexum("dev", "--port", "0", "--db", url)
    assert result.returncode == 2
    text = said(result)
    assert "cannot use the PostgreSQL database" in text and url in "".join(text.split())
    assert "Traceback" not in text and "listening" not in text


def test_dev_on_postgresql_names_the_database_without_its_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@")  # the cluster trusts loopback
    server = NexumServer(with_password)  # type: ignore[arg-type]
    try:
        server.wait_for(re.compile(r"^\s*db "))
        assert "s3cret" not in server.output
        assert "postgres:***@" in "".join(server.output.split())
    finally:
        server.stop()


def on_a_terminal(args: list[str], answer: str) -> str:
    """Run `nexum ARGS` on a pseudo-terminal, type `answer` once it asks; everything it printed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexum_server", *args], cwd=ROOT, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    seen = b""
    answered = False
    deadline = time.monotonic() + COMMAND_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"[y/n]" in seen:
                os.write(main, answer.encode() + b"\r")
                answered = True
        assert proc.wait(COMMAND_TIMEOUT) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    return " ".join(seen.decode(errors="replace").split())


def test_sessions_lists_each_session_with_its_counts(server: NexumServer, api: Api, session_id: str) -> None:
    other = f"{session_id}-zz"
    api.start(session_id, "a", {"tool_name": "web_search", "tool_args": {"query": "q"}})
    api.complete(api.poll_one(), {"result": "r"})
    assert api.start(session_id, "a")["cached"]
    api.start(other, "k")

    def sessions(*args: str) -> dict[str, list[str]]:
        result = subprocess.run(
            [sys.executable, "-m", "nexum_server", "sessions", "--url", server.url, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env={**os.environ, "COLUMNS": "120"},
        )  # every id on one line
        assert result.returncode == 0, said(result)
        rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("test-")]
        return {row[0]: row[1:6] for row in rows}

    listed = sessions()
    assert listed[session_id] == ["1", "1", "1", "0", "0"]  # calls, cached, ran, failed, live
    assert listed[other] == ["1", "0", "0", "0", "1"]
    assert list(listed) == [other, session_id]  # latest activity first
    assert list(sessions("--contains", "zz")) == [other]


def test_forget_asks_first_and_yes_deletes_the_session(server: NexumServer, api: Api, session_id: str) -> None:
    done = api.start(session_id, "a")
    api.complete(api.poll_one(), {"result": "r"})

    unconfirmed = nexum("forget", session_id, "--url", server.url)
    assert unconfirmed.returncode == 1
    assert "without confirmation; pass --yes" in said(unconfirmed)
    assert api.get(done["id"])["status"] == "COMPLETED"

    answered_no = on_a_terminal(["forget", session_id, "--url", server.url], answer="n")
    assert "Forget session" in answered_no and "nothing deleted" in answered_no
    assert api.get(done["id"])["status"] == "COMPLETED"

    forgotten = nexum("forget", session_id, "--url", server.url, "--yes")
    assert forgotten.returncode == 0, said(forgotten)
    assert f"session {session_id} forgotten: 1 execution deleted" in said(forgotten)
    assert api.http.get(f"/v1/executions/{done['id']}").status_code == 404

    again = nexum("forget", session_id, "--url", server.url, "--yes")
    assert again.returncode == 1 and f"no session '{session_id}'" in said(again)


def test_forget_of_a_session_with_a_running_call_is_refused_with_the_reason(
    server: NexumServer, api: Api, session_id: str
) -> None:
    api.start(session_id, "a")
    api.poll_one()
    refused = nexum("forget", session_id, "--url", server.url, "--yes")
    assert refused.returncode == 1
    assert "1 call(s) still pending or running" in said(refused)
    assert api.http.get(f"/v1/sessions/{session_id}").json()["running"] == 1


def test_https_to_the_plain_server_says_try_http_and_names_the_flag(server: NexumServer) -> None:
    tls = nexum("ps", "--url", f"https://127.0.0.1:{server.port}")
    assert tls.returncode == 2
    assert "try http:// instead of https://" in said(tls) and "WRONG_VERSION_NUMBER" not in said(tls)
    # Something answers, but not as a Nexum server does: the hint names where the URL came from.
    web = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert web.stdout is not None
        port = int(re.search(r"port (\d+)", web.stdout.readline()).group(1))  # type: ignore[union-attr]
        wrong = nexum("ps", "--url", f"http://127.0.0.1:{port}")
    finally:
        web.terminate()
        web.wait(10)
    assert wrong.returncode == 2 and "is --url right?" in said(wrong), said(wrong)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["show", ""], "give an execution id"),
        (["ps", "--limit", "0"], "--limit must be between 1 and 1000"),
        (["sessions", "--limit", "0"], "--limit must be between 1 and 500"),
        (["forget", "a/runs/b", "--yes"], "session id 'a/runs/b' is not valid: a session id is 1 to 128 characters"),
        (["forget", " ", "--yes"], "session id ' ' is not valid"),
    ],
)
def test_refused_input_is_one_error_sentence_and_exit_2(server: NexumServer, args: list[str], expected: str) -> None:
    result = nexum(*args, "--url", server.url)
    assert result.returncode == 2, said(result)
    assert said(result).startswith("error: ") and expected in said(result)
    assert "{" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_server_refusal_prints_the_servers_message_not_a_body(server: NexumServer, session_id: str) -> None:
    result = nexum("ps", "--session", "a b", "--url", server.url)
    assert result.returncode == 2, said(result)  # refused before any request, by the same rule
    assert "session id 'a b' is not valid" in said(result)
    assert "{" not in result.stderr and "detail" not in result.stderr, result.stderr
