"""The network guard (`tests/netguard/`) refuses what is beyond loopback, here and in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sitecustomize import NetworkRefused, is_local  # tests/netguard, put on sys.path by conftest


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]", "0.0.0.0", None, "x.localhost", "127.1", "0x7f.1"]
)
def test_loopback_names_and_addresses_pass(host: object) -> None:
    assert is_local(host)


@pytest.mark.parametrize(
    "host", ["duckduckgo.com", "8.8.8.8", "2001:4860:4860::8888", "10.0.0.1", "localhost.evil.com"]
)
def test_anything_else_is_refused(host: str) -> None:
    log = Path(os.environ["NETGUARD_LOG"])
    size = log.stat().st_size
    with pytest.raises(NetworkRefused):
        socket.getaddrinfo(host, 443)
    # Undo the record: this test tried on purpose, so it must not fail for it.
    os.truncate(log, size)


def test_a_subprocess_is_guarded_too() -> None:
    log = Path(os.environ["NETGUARD_LOG"])
    size = log.stat().st_size
    code = (
        "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), 1)\n"
        "except ConnectionRefusedError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "network guard refused" in done.stdout, done.stdout + done.stderr
    assert "192.0.2.1" in log.read_text()[size:]
    os.truncate(log, size)
