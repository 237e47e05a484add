"""What the Temporal UI shows of a test or a trigger: the workflow's summary (one line, fixed at start),
its details (fixed at start) and its current details (updated by the workflow as it moves).

The SDK encodes user metadata with the data converter, so the payload codec encrypts these like any
payload; the UI shows them through the codec endpoint. They still hold no secret, whoever reads them:
kind, conn_type, host[:port] without userinfo, path or query, queue, state, and the first
``MAX_MESSAGE_CHARS`` of an outcome message (which the worker scrubbed of the connection's secrets).
Pure functions: the workflows call them too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_MESSAGE_CHARS = 200
MAX_TARGET_CHARS = 120
_SPACES = re.compile(r"\s+")


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line of at most ``limit`` characters."""
    line = _SPACES.sub(" ", text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def target_of(host: str | None, port: int | None) -> str:
    """``host[:port]``, never a credential: no userinfo, and of a URL only its scheme, host and port
    (a path or query may carry a token: a webhook's path, ``?token=``)."""
    text = (host or "").strip()
    if "://" in text:
        scheme = text.split("://", 1)[0].rpartition("@")[2]
        try:
            parts = urlsplit(text)
            hostname, url_port = parts.hostname or "", parts.port
        except ValueError:
            hostname, url_port = "", None
        text = f"{scheme}://{hostname}" + (f":{url_port}" if url_port else "")
    else:
        # user:password@host, and a query string, are not where the connection goes.
        text = text.rpartition("@")[2].split("?", 1)[0].split("#", 1)[0]
    text = shorten(text, MAX_TARGET_CHARS) or "?"
    return f"{text}:{port}" if port is not None else text


def connection_test_summary(conn_type: str, host: str | None, port: int | None, queue: str) -> str:
    return shorten(f"connection test: {conn_type} {target_of(host, port)} on queue {queue}")


def connection_test_details(
    *,
    test_id: str,
    conn_type: str,
    host: str | None,
    port: int | None,
    queue: str,
    connection_id: str | None,
    timeout: int,
) -> str:
    return "\n".join(
        [
            "kind: connection test",
            f"test: {test_id}",
            f"conn_type: {conn_type}",
            f"target: {target_of(host, port)}",
            f"queue: {queue}",
            f"connection: {connection_id or '(unsaved fields)'}",
            f"timeout: {timeout} s",
        ]
    )


def trigger_summary(classpath: str, queue: str, fire_at: str | None) -> str:
    where = f"timer, fires at {fire_at}" if fire_at else f"on queue {queue}"
    return shorten(f"trigger: {classpath} ({where})")


def trigger_details(
    *, trigger_id: str, classpath: str, queue: str, fire_at: str | None, timeout_at: str | None
) -> str:
    lines = ["kind: trigger", f"trigger: {trigger_id}", f"classpath: {shorten(classpath, 250)}"]
    lines.append(f"runs: durable timer, fires at {fire_at}" if fire_at else f"queue: {queue}")
    lines.append(f"timeout: {timeout_at or 'none'}")
    return "\n".join(lines)


def state_details(state: str, message: str | None = None) -> str:
    """Current details: the state on the first line, then what it means (short, one line)."""
    return f"**{state}**" + (f"\n{shorten(message)}" if message else "")
