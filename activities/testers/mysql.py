"""MySQL and MariaDB: connect with PyMySQL and run ``select 1``."""

from __future__ import annotations

from typing import Any

import pymysql

from activities.testers import ExtraNotAllowed, missing, network_failure, scrubbed, timed_out
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied, pinned_resolution
from worker.egress import current_policy

DEFAULT_PORT = 3306
# MariaDB announces itself as "5.5.5-<real version>" so that old replication clients cope.
MARIADB_PREFIX = "5.5.5-"

# Server error codes (mysqld_error.h / errmsg.h).
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_HOST_NOT_PRIVILEGED = 1130
CR_SERVER_LOST = 2013


# Keys of extra's "ssl" object that are passed on: none names a file, so a connection can make the
# driver read no certificate or key on the worker (ca, capath, cert, key are refused).
SSL_OPTIONS = frozenset({"check_hostname", "cipher", "verify_mode"})


def driver_options(extra: dict[str, Any]) -> dict[str, Any]:
    """Only options that change how the driver connects; local_infile and friends stay off.

    Raises :class:`ExtraNotAllowed` for an "ssl" key outside :data:`SSL_OPTIONS`.
    """
    options: dict[str, Any] = {}
    if isinstance(extra.get("charset"), str):
        options["charset"] = extra["charset"]
    ssl = extra.get("ssl")
    if isinstance(ssl, dict):
        refused = sorted(set(ssl) - SSL_OPTIONS)
        if refused:
            raise ExtraNotAllowed(
                f"extra ssl keys not allowed for a MySQL connection: {', '.join(map(repr, refused))} "
                f"(they make the driver read files on the worker; allowed: {', '.join(sorted(SSL_OPTIONS))})"
            )
        options["ssl"] = ssl
    return options


@scrubbed
def test_mysql(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    problem = missing(conn, "host")
    if problem:
        return False, problem
    assert conn.host is not None
    port = conn.port or DEFAULT_PORT
    try:
        options = driver_options(conn.extra)
    except ExtraNotAllowed as exc:
        return False, str(exc)
    try:
        # PyMySQL resolves the name itself (and keeps it for TLS): it gets the checked addresses.
        with pinned_resolution(current_policy(), conn.host, port):
            db = pymysql.connect(
                host=conn.host,
                port=port,
                user=conn.login,
                password=conn.password or "",
                database=conn.schema_,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
                **options,
            )
        try:
            with db.cursor() as cursor:
                cursor.execute("select 1")
                cursor.fetchone()
            version = server_version(db.get_server_info())
        finally:
            db.close()
    except EgressDenied as exc:
        return False, str(exc)
    except pymysql.MySQLError as exc:
        return False, classify(exc, conn, conn.host, port, timeout)
    except OSError as exc:  # the name did not resolve, before the driver was called
        message = network_failure(exc, conn.host, port, timeout)
        return False, message or f"cannot connect to {conn.host}:{port}: {exc}"
    return True, f"{version}: select 1 ok"


def server_version(info: str) -> str:
    info = info.removeprefix(MARIADB_PREFIX)
    number = info.split("-", 1)[0]
    return f"MariaDB {number}" if "mariadb" in info.lower() else f"MySQL {number}"


def classify(exc: pymysql.MySQLError, conn: ConnectionFields, host: str, port: int, timeout: float) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    user = conn.login or ""
    if code == ER_ACCESS_DENIED:
        return f"authentication failed for user {user!r}"
    if code == ER_BAD_DB:
        return f"database {conn.schema_!r} does not exist"
    if code == ER_DBACCESS_DENIED:
        return f"user {user!r} has no access to database {conn.schema_!r}"
    if code == ER_HOST_NOT_PRIVILEGED:
        return f"the server at {host}:{port} does not accept connections from this worker: {text}"
    network = network_failure(exc, host, port, timeout)
    if network:
        return network
    if code == CR_SERVER_LOST and "timed out" in text:
        return timed_out(timeout)
    return f"MySQL at {host}:{port}: {text}"
