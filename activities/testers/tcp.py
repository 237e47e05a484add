"""TCP: can this worker open a connection to host:port? Nothing is sent."""

from __future__ import annotations

from activities.testers import missing, network_failure, scrubbed
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied, create_connection
from worker.egress import current_policy


@scrubbed
def test_tcp(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host", "port")
    if problem:
        return False, problem
    assert conn.host is not None and conn.port is not None
    try:
        with create_connection(current_policy(), conn.host, conn.port, timeout):
            pass
    except EgressDenied as exc:
        return False, str(exc)
    except OSError as exc:
        message = network_failure(exc, conn.host, conn.port, timeout)
        return False, message or f"cannot connect to {conn.host}:{conn.port}: {exc}"
    return True, f"TCP connection to {conn.host}:{conn.port} ok"
