"""Connection testers, found through the ``airlock.connection_testers`` entry-point group, and the
helpers Airlock's own testers share.

Only the standard library and the shared layer are imported here: the isolated child imports this
package first, and a driver should load only when its conn_type is tested.
"""

from __future__ import annotations

import functools
import socket
from typing import TypeVar

from airlock.connection import ConnectionFields
from airlock.plugins import tester_entry_points
from airlock.sdk.testers import Tester
from airlock.secrets import connection_secrets, scrub

E = TypeVar("E", bound=BaseException)


class UnknownConnType(ValueError):
    """No tester can be loaded for a conn_type on this worker."""


class ExtraNotAllowed(ValueError):
    """A connection's extra sets a driver option Airlock does not pass on; the message names it."""


def available_conn_types() -> list[str]:
    names = []
    for name, ep in tester_entry_points().items():
        try:
            ep.load()
        # A tester whose driver is missing, or a broken third-party plugin, must not stop
        # the worker from announcing the types it can test.
        except Exception:  # noqa: S112
            continue
        names.append(name)
    return sorted(names)


def load_tester(conn_type: str) -> Tester:
    eps = tester_entry_points()
    ep = eps.get(conn_type) or eps.get(conn_type.lower())
    if ep is None:
        available = ", ".join(available_conn_types()) or "none"
        raise UnknownConnType(
            f"no tester for conn_type {conn_type!r} is installed on this worker (available: {available})"
        )
    try:
        tester: Tester = ep.load()
    except ImportError as exc:
        raise UnknownConnType(
            f"the tester for conn_type {conn_type!r} cannot load on this worker: {exc}"
        ) from None
    return tester


def scrubbed(tester: Tester) -> Tester:
    """Decorate a tester so that whatever it returns is scrubbed, whoever calls it."""

    @functools.wraps(tester)
    def run(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
        ok, message = tester(conn, timeout)
        return ok, scrub(message, *connection_secrets(conn))

    return run


def missing(conn: ConnectionFields, *fields: str) -> str | None:
    """The message for the first required field that is empty, or None when all are set."""
    for field in fields:
        if getattr(conn, field) in (None, ""):
            name = "schema" if field == "schema_" else field
            return f"{name} is required for a {conn.conn_type} connection"
    return None


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """Drivers wrap socket errors in their own types; walk the chain to the original."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def network_failure(exc: BaseException, host: str, port: int | None, timeout: float) -> str | None:
    """Classify a failure to reach host:port, or None when the network was not the problem."""
    where = f"{host}:{port}" if port is not None else host
    gai = find_cause(exc, socket.gaierror)
    if gai is not None:
        if gai.errno == socket.EAI_AGAIN:
            return f"cannot resolve host {host!r}: temporary DNS failure"
        return f"unknown host {host!r}"
    if find_cause(exc, ConnectionRefusedError) is not None:
        return f"connection refused by {where}"
    if find_cause(exc, TimeoutError) is not None:
        return timed_out(timeout)
    os_error = find_cause(exc, OSError)
    if os_error is not None:
        return f"cannot connect to {where}: {os_error.strerror or os_error}"
    return None


def timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g} s"


def as_bool(value: object, default: bool) -> bool:
    """Read a flag from extra; values parsed from a URI query arrive as strings."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def tester_modules(conn_types: list[str]) -> list[str]:
    """The modules behind these conn_types' testers: what a fork server imports ahead of time."""
    entry_points = tester_entry_points()
    return sorted({entry_points[name].module for name in conn_types if name in entry_points})


def fork_server_preload(conn_types: list[str]) -> list[str]:
    """What a worker's fork server imports: the child's entry point and these conn_types' testers."""
    return ["activities.testers.child", *tester_modules(conn_types)]
