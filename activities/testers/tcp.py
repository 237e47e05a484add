"""A plain TCP port check: can this worker open a connection to host:port?"""

from __future__ import annotations

import socket

from airlock.connection import ConnectionFields


def test_tcp(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    if not conn.host or conn.port is None:
        return False, "a tcp test needs a host and a port"
    try:
        with socket.create_connection((conn.host, conn.port), timeout=timeout):
            return True, f"TCP connection to {conn.host}:{conn.port} opened"
    except socket.gaierror:
        return False, f"unknown host {conn.host!r}"
    except ConnectionRefusedError:
        return False, f"connection refused by {conn.host}:{conn.port}"
    except TimeoutError:
        return False, f"timed out after {timeout:g} s connecting to {conn.host}:{conn.port}"
    except OSError as exc:
        return False, f"cannot reach {conn.host}:{conn.port}: {exc.strerror or exc}"
