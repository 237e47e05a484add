"""Connection testers, found through the ``airlock.connection_testers`` entry-point group.

A tester is ``(ConnectionFields, timeout) -> (ok, message)``; it runs in the isolated child process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from urllib.parse import quote

from airlock.connection import ConnectionFields

ENTRY_POINT_GROUP = "airlock.connection_testers"
Tester = Callable[[ConnectionFields, float], tuple[bool, str]]


class UnknownConnType(ValueError):
    pass


def tester_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


@cache
def available_conn_types() -> list[str]:
    """The conn_types whose tester (and its driver) imports here: what a worker announces."""
    names = []
    for name, ep in sorted(tester_entry_points().items()):
        try:
            ep.load()
        except ImportError:
            continue
        names.append(name)
    return names


def load_tester(conn_type: str) -> Tester:
    ep = tester_entry_points().get(conn_type)
    if ep is None:
        available = ", ".join(sorted(tester_entry_points())) or "none"
        raise UnknownConnType(
            f"no tester for conn_type {conn_type!r} is installed on this worker (available: {available})"
        )
    tester: Tester = ep.load()
    return tester


def scrub(message: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return message
