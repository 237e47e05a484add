"""conn_type ``greeting``: connect to host:port and expect the server's first line to start with
``extra["expect"]`` (default ``HELLO``)."""

from __future__ import annotations

import socket

from airlock.sdk import ConnectionFields


def test_greeting(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    if not conn.host or conn.port is None:
        return False, "host and port are required for a greeting connection"
    expected = str(conn.extra.get("expect", "HELLO"))
    try:
        with socket.create_connection((conn.host, conn.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            line = sock.makefile("rb").readline(200).decode(errors="replace").strip()
    except OSError as exc:
        return False, f"cannot reach {conn.host}:{conn.port}: {exc.strerror or exc}"
    if not line.startswith(expected):
        return False, f"{conn.host}:{conn.port} greeted with {line!r}, expected {expected!r}"
    return True, f"{conn.host}:{conn.port} greeted with {line!r}"
