"""TCP: can this worker open a connection to host:port? Nothing is sent."""

from __future__ import annotations

import socket

from activities.testers import missing, network_failure, scrubbed
from airlock.connection import ConnectionFields


@scrubbed
def test_tcp(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host", "port")
    if problem:
        return False, problem
    assert conn.host is not None and conn.port is not None
    try:
        with socket.create_connection((conn.host, conn.port), timeout=timeout):
            pass
    except OSError as exc:
        message = network_failure(exc, conn.host, conn.port, timeout)
        return False, message or f"cannot connect to {conn.host}:{conn.port}: {exc}"
    return True, f"TCP connection to {conn.host}:{conn.port} ok"
