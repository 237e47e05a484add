"""SqlTrigger: run a query every ``poll_interval`` seconds until its first cell is truthy.

The database drivers load only when a query runs, and only the one the connection needs: a
triggerer without PyMySQL can still run PostgreSQL and SQLite triggers. Every query runs read-only,
one statement at a time, under a statement timeout, in the bounded pool of SQL polls.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic
from typing import Any
from uuid import UUID

from activities.triggers import run_blocking
from airlock.connection import ConnectionFields
from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent, positive_seconds
from airlock.secrets import connection_secrets, scrub

POSTGRES = "postgres"
MYSQL = "mysql"
SQLITE = "sqlite"
DIALECTS = {"postgres": POSTGRES, "postgresql": POSTGRES, "mysql": MYSQL, "mariadb": MYSQL, "sqlite": SQLITE}

# Seconds; libpq counts whole seconds and raises anything below 2 to 2.
CONNECT_TIMEOUT = 10
# Seconds one query may run (the statement_timeout kwarg): the default, and the most a trigger may ask.
# A poll holds one of the SQL pool's threads for that long at worst.
DEFAULT_STATEMENT_TIMEOUT = 30.0
MAX_STATEMENT_TIMEOUT = 300.0
# MySQL's client-side read timeout is the statement timeout plus this: a statement that lifts the
# server's limit for itself (MariaDB's SET STATEMENT, MySQL's MAX_EXECUTION_TIME hint) still frees
# its thread.
MYSQL_READ_GRACE = 5
# SQLite checks the deadline every this many virtual-machine steps (a few milliseconds of work).
SQLITE_PROGRESS_STEPS = 10_000

# MySQL/MariaDB server errors that a later poll can outlive: too many connections, shutdown in
# progress, lock wait timeout, deadlock, connection killed, statement timeouts (MariaDB, MySQL).
MYSQL_TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 1969, 3024})
# Codes from 2000 up are the client's own (CR_*): lost connection, server gone away, and so on.
MYSQL_CLIENT_ERRORS = 2000
# "interrupted": the statement timeout, transient as PostgreSQL's and MySQL's are.
SQLITE_TRANSIENT_TEXT = ("locked", "busy", "unable to open database file", "interrupted")

Params = Sequence[Any] | Mapping[str, Any] | None
Query = Callable[[ConnectionFields, str, Params, float], Any]


class TransientError(Exception):
    """The database could not be reached or was busy; the next poll may succeed."""


def dialect_of(conn: ConnectionFields) -> str:
    dialect = DIALECTS.get(conn.conn_type.lower())
    if dialect is None:
        supported = ", ".join(sorted(DIALECTS))
        raise ValueError(f"SqlTrigger does not support conn_type {conn.conn_type!r} (use one of {supported})")
    if dialect == SQLITE and not (conn.host or conn.schema_):
        raise ValueError("host (the database file path) is required for a sqlite connection")
    if dialect != SQLITE and not conn.host:
        raise ValueError(f"host is required for a {conn.conn_type} connection")
    return dialect


def is_truthy(cell: Any) -> bool:
    """Airflow's SqlSensor rule: None, 0, '0' and '' mean "not yet"."""
    if cell is None:
        return False
    if isinstance(cell, str):
        return cell not in ("", "0")
    if isinstance(cell, bytes | bytearray | memoryview):
        # A MySQL BIT(1) reads as b"\x00" or b"\x01": a non-empty bytes value is not enough.
        return any(bytes(cell))
    try:
        return bool(cell)
    except (TypeError, ValueError):
        return True


def json_friendly(cell: Any) -> Any:
    """Turn a driver's value into plain JSON data, so the event payload needs no tags to travel."""
    if cell is None or isinstance(cell, bool | int | str):
        return cell
    if isinstance(cell, float):
        return cell if math.isfinite(cell) else str(cell)
    if isinstance(cell, Decimal):
        if not cell.is_finite():
            return str(cell)
        return int(cell) if cell == cell.to_integral_value() else float(cell)
    if isinstance(cell, datetime | date | time):
        return cell.isoformat()
    if isinstance(cell, timedelta):
        return cell.total_seconds()
    if isinstance(cell, bytes | bytearray | memoryview):
        raw = bytes(cell)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(cell, UUID):
        return str(cell)
    if isinstance(cell, list | tuple):
        return [json_friendly(item) for item in cell]
    if isinstance(cell, dict):
        return {str(key): json_friendly(item) for key, item in cell.items()}
    return str(cell)


def query_postgres(conn: ConnectionFields, sql: str, parameters: Params, timeout: float) -> Any:
    import psycopg

    from activities.testers.postgres import checked_hostaddr, extra_params

    params: dict[str, Any] = {
        # A libpq option extra may not set raises ExtraNotAllowed, a ValueError: the trigger fails.
        **extra_params(conn.extra),
        # A destination the queue's egress policy refuses raises EgressDenied: the trigger fails.
        **checked_hostaddr(conn.host or "", conn.port or 5432),
        "host": conn.host,
        "port": conn.port or 5432,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema_,
        "connect_timeout": CONNECT_TIMEOUT,
        # For the whole session; a single statement cannot lift either (extra cannot set options).
        "options": f"-c default_transaction_read_only=on -c statement_timeout={round(timeout * 1000)}",
    }
    try:
        # Autocommit: each poll must see rows committed since the last one, and hold no transaction.
        db = psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise TransientError(str(exc)) from exc
    try:
        # stream() sends the query with the extended protocol, which takes one statement only (no
        # "set default_transaction_read_only = off; insert ..."), and reads rows one at a time: a
        # poll needs the first, not the whole result in memory.
        rows = db.cursor().stream(sql, parameters)
        return next(rows, None)
    except psycopg.OperationalError as exc:
        # Lost connections, shutdowns, deadlocks, statement timeouts; syntax, missing tables and
        # writes refused by the read-only transaction are not.
        raise TransientError(str(exc)) from exc
    finally:
        # Closed while the stream is open: closing drops the rest of the result, where ending the
        # stream first would send the server a cancel request on a connection of its own.
        db.close()


def query_mysql(conn: ConnectionFields, sql: str, parameters: Params, timeout: float) -> Any:
    import pymysql

    from activities.testers.mysql import driver_options
    from airlock.egress import checked_addresses
    from worker.egress import current_policy

    # An ssl option extra may not set raises ExtraNotAllowed, a ValueError: the trigger fails.
    options = driver_options(conn.extra)
    port = conn.port or 3306
    # Checked against the queue's egress policy (EgressDenied fails the trigger); without TLS the
    # driver is given the checked address itself, so a second lookup cannot lead elsewhere.
    addresses = checked_addresses(current_policy(), conn.host or "", port)
    try:
        db = pymysql.connect(
            host=conn.host if "ssl" in options else addresses[0],
            port=port,
            user=conn.login,
            password=conn.password or "",
            database=conn.schema_,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=math.ceil(timeout) + MYSQL_READ_GRACE,
            write_timeout=math.ceil(timeout) + MYSQL_READ_GRACE,
            autocommit=True,
            **options,
        )
    except pymysql.MySQLError as exc:
        raise TransientError(str(exc)) from exc
    try:
        with db.cursor() as cursor:
            # Every transaction of the session read-only (without the MULTI_STATEMENTS flag the
            # server takes one statement at a time, so the query cannot undo it first), and each
            # statement bounded: MariaDB counts seconds, MySQL milliseconds and only for SELECT, all
            # that a read-only transaction lets through.
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            if "mariadb" in db.get_server_info().lower():
                cursor.execute("SET SESSION max_statement_time = %s", (timeout,))
            else:
                cursor.execute("SET SESSION max_execution_time = %s", (round(timeout * 1000),))
            cursor.execute(sql, parameters)
            return cursor.fetchone()
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        if (
            isinstance(exc, pymysql.InterfaceError)
            or code >= MYSQL_CLIENT_ERRORS
            or code in MYSQL_TRANSIENT_CODES
        ):
            raise TransientError(str(exc)) from exc
        raise
    finally:
        db.close()


def refuse_attach(action: int, *_: str | None) -> int:
    # ATTACH would open (or create) any file on the triggerer, and what is attached is not read-only.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def query_sqlite(conn: ConnectionFields, sql: str, parameters: Params, timeout: float) -> Any:
    from activities.testers.sqlite import MEMORY, read_only_uri

    path = conn.host or conn.schema_
    assert path is not None
    deadline = monotonic() + timeout
    # Read-only: a trigger only looks, and a missing file must not be created empty by the first poll.
    target, uri = (MEMORY, False) if path == MEMORY else (read_only_uri(path), True)
    try:
        db = sqlite3.connect(target, timeout=min(CONNECT_TIMEOUT, timeout), uri=uri)
        try:
            # query_only covers what mode=ro cannot (":memory:"); no database can be attached.
            db.execute("PRAGMA query_only = ON")
            db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            db.set_authorizer(refuse_attach)
            # The statement timeout: a true answer interrupts the query ("interrupted").
            db.set_progress_handler(lambda: monotonic() > deadline, SQLITE_PROGRESS_STEPS)
            # execute() takes one statement only, so the query cannot turn query_only off first.
            return db.execute(sql, parameters if parameters is not None else ()).fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if any(text in str(exc) for text in SQLITE_TRANSIENT_TEXT):
            raise TransientError(str(exc)) from exc
        raise


QUERIES: dict[str, Query] = {POSTGRES: query_postgres, MYSQL: query_mysql, SQLITE: query_sqlite}


class SqlTrigger(PollingTrigger):
    """Fires with ``{"value": <first cell of the first row, as plain JSON data>}`` once that cell is truthy.

    ``parameters`` use the driver's placeholders: ``%s`` / ``%(name)s`` for PostgreSQL and MySQL,
    ``?`` / ``:name`` for SQLite. A cell of None, 0, '0' or '' (or no row at all) means "not yet".
    Failing to reach the database, or a query running past ``statement_timeout`` seconds, is logged
    and retried at the next poll; an error in the query itself (a write: the query runs read-only,
    one statement only), or a conn_type the trigger does not support, fails the trigger.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        sql: str,
        parameters: list[Any] | dict[str, Any] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    ) -> None:
        super().__init__(
            conn_id=conn_id,
            sql=sql,
            parameters=parameters,
            poll_interval=poll_interval,
            statement_timeout=statement_timeout,
        )
        if not isinstance(conn_id, str) or not conn_id:
            raise ValueError(f"conn_id must be a non-empty string, not {conn_id!r}")
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("sql must be a non-empty query")
        if parameters is not None and not (
            isinstance(parameters, list | tuple)
            or (isinstance(parameters, dict) and all(isinstance(key, str) for key in parameters))
        ):
            raise ValueError(f"parameters must be a list or an object with string keys, not {parameters!r}")
        self.statement_timeout = positive_seconds("statement_timeout", statement_timeout)
        if self.statement_timeout > MAX_STATEMENT_TIMEOUT:
            raise ValueError(
                f"statement_timeout must be at most {MAX_STATEMENT_TIMEOUT:g} s, not {statement_timeout!r}"
            )
        self.conn_id = conn_id
        self.sql = sql
        self.parameters = parameters
        self._conn: ConnectionFields | None = None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Once per run: the connection does not change between polls, and each fetch costs an API call.
        self._conn = await self._fetch_connection()
        try:
            async for event in super().run():
                yield event
        finally:
            self._conn = None

    async def _fetch_connection(self) -> ConnectionFields:
        conn = await self.context.get_connection(self.conn_id)
        dialect_of(conn)
        return conn

    async def poll(self) -> TriggerEvent | None:
        if self._conn is None:
            self._conn = await self._fetch_connection()
        conn = self._conn
        query = QUERIES[dialect_of(conn)]
        try:
            row = await run_blocking("sql", query, conn, self.sql, self.parameters, self.statement_timeout)
        except TransientError as exc:
            reason = scrub(str(exc), *connection_secrets(conn))
            self.log.warning("cannot query connection %r, will retry: %s", self.conn_id, reason)
            return None
        cell = row[0] if row else None
        if not is_truthy(cell):
            return None
        return TriggerEvent({"value": json_friendly(cell)})
