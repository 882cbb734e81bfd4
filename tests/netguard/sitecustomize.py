"""The test suite's network guard: no connection and no name look-up beyond loopback.

Imported by `tests/conftest.py` for the test process, and by every Python subprocess a test starts
(this directory is on their PYTHONPATH, and Python imports `sitecustomize` at start-up). A refused
attempt raises `NetworkRefused` (an OSError, so code that handles "offline" sees one) and is
appended to the file named by NETGUARD_LOG; after each test the conftest fails the test if the
file grew. Processes that are not Python (Chromium, PostgreSQL) are not covered.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import traceback

LOG_VARIABLE = "NETGUARD_LOG"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class NetworkRefused(ConnectionRefusedError):
    """A test tried to reach beyond loopback."""


def is_local(host: object) -> bool:
    if host is None or host == "" or host == b"":
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    name = name.strip("[]").rstrip(".").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    name = name.split("%", 1)[0]
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:  # the forms the resolver also takes: 127.1, 0x7f.1, 2130706433
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    return address.is_loopback or address.is_unspecified


def install(log_path: str) -> None:
    if getattr(socket, "_netguard_installed", False):
        return
    socket._netguard_installed = True  # type: ignore[attr-defined]
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def refuse(what: str) -> NetworkRefused:
        where = "".join(traceback.format_stack(limit=8)[:-2])
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}): {what}\n{where}\n")
        return NetworkRefused(f"the test suite's network guard refused {what}: tests stay on loopback")

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not is_local(host):
            raise refuse(f"a look-up of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def checked(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and not is_local(address[0]):
            raise refuse(f"a connection to {address!r}")

    def connect(self, address):  # type: ignore[no-untyped-def]
        checked(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        checked(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


if os.environ.get(LOG_VARIABLE):
    install(os.environ[LOG_VARIABLE])
