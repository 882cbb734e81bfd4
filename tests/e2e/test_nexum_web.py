"""`nexum-web`, the stand-in web as a newcomer runs it: alone it prints what to export; with a
command it runs that command with those variables set, and stops with it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx2

from nexum_devtools.procs import ROOT, Proc
from nexum_devtools.web import READY, tools_env

# The command `nexum-web` runs, from this checkout (an installed script may run another checkout's code).
NEXUM_WEB = [sys.executable, "-m", "nexum_devtools.web"]
EXPORT = re.compile(r"^\s*export (.+)$")


def test_alone_it_prints_the_variables_to_export_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    web = Proc([*NEXUM_WEB, "--state-dir", str(tmp_path)], ready=READY)
    try:
        assert web.match is not None
        url = web.match.group(1)
        exports = web.wait_for(EXPORT).group(1)
        assert dict(pair.split("=", 1) for pair in exports.split()) == tools_env(url)
        web.wait_for(re.compile("Ctrl-C stops it"))
        assert "Without these variables the tools use the real web" in web.output
        results = httpx2.get(f"{url}/search", params={"q": "durable execution", "format": "json"}).json()
        assert results["results"][0]["url"].startswith(f"{url}/pages/")
        web.signal(signal.SIGINT)
        assert web.popen.wait(10) == 0
    finally:
        web.stop()
    assert "Traceback" not in web.output


def test_with_a_command_it_runs_it_with_the_variables_and_returns_its_exit_code() -> None:
    script = (
        "import os, sys; print('SEEN', os.environ['NEXUM_SEARXNG_URL'], os.environ['NEXUM_SEARCH_BACKEND']); "
        "sys.exit(3)"
    )
    result = subprocess.run(
        [*NEXUM_WEB, "--port", "0", sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3, result.stdout + result.stderr
    url = READY.match(result.stdout).group(1)
    assert f"SEEN {url} searxng" in result.stdout
    assert f"Running `{sys.executable} -c" in result.stdout


def test_a_command_that_cannot_run_is_named() -> None:
    result = subprocess.run(
        [*NEXUM_WEB, "--port", "0", "no-such-command-here"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 127
    assert "nexum-web: cannot run 'no-such-command-here'" in result.stderr


def test_a_restart_keeps_the_port_so_stored_page_urls_still_answer(tmp_path: Path) -> None:
    # The first start picks a free port and remembers it; a restart from the same state directory takes it again.
    first = Proc([*NEXUM_WEB, "--state-dir", str(tmp_path)], ready=READY)
    try:
        assert first.match is not None
        url = first.match.group(1)
        page = httpx2.get(f"{url}/search", params={"q": "durable", "format": "json"}).json()["results"][0]["url"]
        # A second one while the first runs cannot take the port: it says so, naming where it is kept.
        clash = subprocess.run(
            [*NEXUM_WEB, "--state-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert clash.returncode == 2
        assert clash.stderr.startswith("error: nexum-web: cannot listen") and "web-port" in clash.stderr
        first.signal(signal.SIGINT)
        assert first.popen.wait(10) == 0
    finally:
        first.stop()
    again = Proc([*NEXUM_WEB, "--state-dir", str(tmp_path)], ready=READY)
    try:
        assert again.match is not None and again.match.group(1) == url
        assert httpx2.get(page).status_code == 200
    finally:
        again.stop()
