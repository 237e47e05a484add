"""PostgreSQL: connect with psycopg 3 and run ``select 1``."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import psycopg
from psycopg import pq

from activities.testers import ExtraNotAllowed, missing, network_failure, scrubbed, timed_out
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied, checked_addresses
from worker.egress import current_policy

DEFAULT_PORT = 5432
# libpq counts connect_timeout in whole seconds and raises anything below 2 to 2.
MIN_CONNECT_TIMEOUT = 2
# Set from the connection's own fields (and the test's timeout): the same keys in extra are ignored.
OWN_PARAMS = frozenset({"host", "port", "user", "password", "dbname", "connect_timeout"})
# The libpq options extra may set: how to reach and authenticate the server the fields name, nothing
# else. Every other libpq option is refused, among them those that read or write files on the worker
# (sslkey, sslcert, sslrootcert, sslcrl, sslkeylogfile, passfile, service), lead elsewhere (hostaddr),
# forward the worker's credentials (gssdelegation, oauth_*) or set any server setting (options: a
# SqlTrigger's default_transaction_read_only and statement_timeout among them). An allowlist, so that an
# option a newer libpq brings is refused until someone has looked at it.
EXTRA_PARAMS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "fallback_application_name",
        "gssencmode",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "require_auth",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcompression",
        "sslmode",
        "sslnegotiation",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)
# Allowed options that name a file take only values that name none: "system" is the OS's CA store.
FILE_FREE_VALUES = {"sslrootcert": frozenset({"system"})}


@functools.cache
def libpq_params() -> frozenset[str]:
    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


def extra_params(extra: dict[str, Any]) -> dict[str, str]:
    """The libpq options in extra, checked against :data:`EXTRA_PARAMS`.

    Airflow keeps libpq options (sslmode, ...) in extra next to hook options libpq would reject
    (cursor, iam, aws_conn_id, ...): those are not libpq's and are left out. Raises
    :class:`ExtraNotAllowed` for a libpq option that is not allowed, or a value that is not plain.
    """
    params: dict[str, str] = {}
    for key, value in extra.items():
        if key in OWN_PARAMS or key not in libpq_params():
            continue
        if key not in EXTRA_PARAMS:
            raise ExtraNotAllowed(
                f"extra {key!r} is not allowed for a PostgreSQL connection: it could read or write files "
                f"on the worker or reach past the connection's fields (allowed libpq options: "
                f"{', '.join(sorted(EXTRA_PARAMS))})"
            )
        # A bool would reach libpq as "True"; a value silently dropped could turn TLS off.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ExtraNotAllowed(f"extra {key!r} must be a string or an integer, not {type(value).__name__}")
        if key in FILE_FREE_VALUES and value not in FILE_FREE_VALUES[key]:
            raise ExtraNotAllowed(
                f"extra {key!r} may only be {', '.join(sorted(FILE_FREE_VALUES[key]))}: "
                "a PostgreSQL connection reads no file on the worker"
            )
        params[key] = str(value)
    return params


@scrubbed
def test_postgres(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host")
    if problem:
        return False, problem
    assert conn.host is not None
    port = conn.port or DEFAULT_PORT
    connect_timeout = max(MIN_CONNECT_TIMEOUT, math.ceil(timeout))
    try:
        extra = extra_params(conn.extra)
        # libpq resolves names itself: it is given the address the egress policy checked (hostaddr),
        # and keeps the name for TLS.
        hostaddr = checked_hostaddr(conn.host, port)
    except (ExtraNotAllowed, EgressDenied) as exc:
        return False, str(exc)
    except OSError as exc:  # the name did not resolve
        return False, network_failure(exc, conn.host, port, timeout) or f"cannot resolve {conn.host}: {exc}"
    params: dict[str, Any] = {
        **extra,
        **hostaddr,
        "host": conn.host,
        "port": port,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema_,
        "connect_timeout": connect_timeout,
    }
    try:
        with psycopg.connect(autocommit=True, **params) as db:
            db.execute("select 1").fetchone()
            version = server_version(db.info.server_version)
    except psycopg.Error as exc:
        return False, classify(exc, conn, conn.host, port, connect_timeout)
    return True, f"PostgreSQL {version}: select 1 ok"


def checked_hostaddr(host: str, port: int) -> dict[str, str]:
    """libpq's ``hostaddr`` for ``host``: the address the egress policy of the work running here
    checked (libpq then connects there, and keeps the name for TLS). Raises ``EgressDenied``."""
    policy = current_policy()
    if host.startswith("/"):
        # A Unix socket on the worker itself: local, like loopback.
        if not policy.allow_loopback:
            raise EgressDenied(f"egress to the local socket {host} is not allowed on this worker")
        return {}
    return {"hostaddr": checked_addresses(policy, host, port)[0]}


def server_version(number: int) -> str:
    major, rest = divmod(number, 10000)
    if major >= 10:
        return f"{major}.{rest}"
    return f"{major}.{rest // 100}.{rest % 100}"


def classify(exc: psycopg.Error, conn: ConnectionFields, host: str, port: int, timeout: float) -> str:
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return timed_out(timeout)
    # Connection failures carry no SQLSTATE (there is no result yet), so libpq's text is all we have.
    text = str(exc)
    user = quoted(text, "user") or quoted(text, "role") or conn.login or "(default)"
    if "does not exist" in text and 'role "' in text:
        return f"authentication failed for user {user!r} (the role does not exist)"
    if "authentication failed" in text:
        return f"authentication failed for user {user!r}"
    if "no password supplied" in text:
        return f"authentication failed for user {user!r}: the server requires a password"
    if "no pg_hba.conf entry" in text:
        return f"authentication failed for user {user!r}: pg_hba.conf has no entry for this client"
    if 'database "' in text and "does not exist" in text:
        return f"database {quoted(text, 'database') or conn.schema_!r} does not exist"
    if "failed to resolve host" in text or "could not translate host name" in text:
        if "Temporary failure" in text:
            return f"cannot resolve host {host!r}: temporary DNS failure"
        return f"unknown host {host!r}"
    if "Connection refused" in text:
        return f"connection refused by {host}:{port}"
    if "timeout expired" in text:
        return timed_out(timeout)
    return network_failure(exc, host, port, timeout) or f"PostgreSQL at {host}:{port}: {reason(text)}"


def quoted(text: str, word: str) -> str | None:
    match = re.search(word + r' "([^"]*)"', text)
    return match.group(1) if match else None


def reason(text: str) -> str:
    # libpq prefixes the reason with the address it tried and a severity; keep only the reason.
    first = text.rsplit(" failed: ", 1)[-1].strip().splitlines()[0]
    return re.sub(r"^(FATAL|ERROR):\s+", "", first)
