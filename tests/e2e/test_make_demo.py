"""`make demo` as a newcomer runs it: the query arrives as typed, the page address and where the data
lives are printed, and Ctrl-C stops everything without a traceback. Real processes, stand-in web."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nexum_devtools.procs import ROOT

DEMO_TIMEOUT = 120.0
ODD_QUERY = "say \"hi\" $5 `echo x` $(HOME) 'single' café"


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keeps the network guard
    return {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "NEXUM_DB": str(tmp_path / "local.db"),
        "COLUMNS": "200",
        "PYTHONIOENCODING": "utf-8",
        **extra,
    }


def fake_venv(tmp_path: Path) -> Path:
    """A venv directory `make` takes as installed: its stamp is newer than the requirements."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".app").touch()
    return venv


def test_make_demo_passes_the_query_as_typed_and_says_where_to_look(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-s", "demo", f"VENV={fake_venv(tmp_path)}", f"PY={sys.executable}", f"QUERY={ODD_QUERY}"],
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=DEMO_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Query    {ODD_QUERY}\n" in done.stdout
    assert "/ui\n" in done.stdout and "Watch the calls arrive on its page: http://127.0.0.1:" in done.stdout
    assert f"is stored in {tmp_path / 'local.db'}: `nexum dev` shows it" in done.stdout
    assert (tmp_path / "local.db").exists()


def test_make_demo_refuses_an_unknown_web(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-s", "demo", f"VENV={fake_venv(tmp_path)}", f"PY={sys.executable}", "WEB=nope"],
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    assert done.returncode != 0 and "invalid choice: 'nope'" in done.stderr


def test_ctrl_c_stops_the_demo_and_what_it_started_without_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        # Its own process group, like a terminal's foreground job: Ctrl-C reaches every process in it.
        demo = subprocess.Popen(
            [sys.executable, "scripts/demo_stack.py", "q"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=demo_env(tmp_path, NEXUM_OFFLINE_THINK_SECONDS="60"),
        )
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT
        while "Model    offline" not in log.read_text():  # demo.py is up and asking the model
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert (
        "interrupted: the demo, the worker and the server are stopped." in text
        and "Stopped the worker and the server." in text
    )
