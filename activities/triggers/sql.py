"""SqlTrigger: run a query every ``poll_interval`` seconds until its first cell is truthy.

The database drivers load only when a query runs, and only the one the connection needs: a
triggerer without PyMySQL can still run PostgreSQL and SQLite triggers.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from airlock.connection import ConnectionFields
from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent
from airlock.secrets import connection_secrets, scrub

POSTGRES = "postgres"
MYSQL = "mysql"
SQLITE = "sqlite"
DIALECTS = {"postgres": POSTGRES, "postgresql": POSTGRES, "mysql": MYSQL, "mariadb": MYSQL, "sqlite": SQLITE}

# Seconds; libpq counts whole seconds and raises anything below 2 to 2.
CONNECT_TIMEOUT = 10
MYSQL_IO_TIMEOUT = 60

# MySQL/MariaDB server errors that a later poll can outlive: too many connections, shutdown in
# progress, lock wait timeout, deadlock, connection killed, statement timeouts (MariaDB, MySQL).
MYSQL_TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 1969, 3024})
# Codes from 2000 up are the client's own (CR_*): lost connection, server gone away, and so on.
MYSQL_CLIENT_ERRORS = 2000
SQLITE_TRANSIENT_TEXT = ("locked", "busy", "unable to open database file")

Params = Sequence[Any] | Mapping[str, Any] | None
Query = Callable[[ConnectionFields, str, Params], Any]


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


def query_postgres(conn: ConnectionFields, sql: str, parameters: Params) -> Any:
    import psycopg

    from activities.testers.postgres import extra_params

    params: dict[str, Any] = {
        **extra_params(conn.extra),
        "host": conn.host,
        "port": conn.port or 5432,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema_,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    try:
        # Autocommit: each poll must see rows committed since the last one, and hold no transaction.
        db = psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise TransientError(str(exc)) from exc
    try:
        with db:
            return db.execute(sql, parameters).fetchone()
    except psycopg.OperationalError as exc:
        # Lost connections, shutdowns, deadlocks, cancelled statements; syntax and missing tables are not.
        raise TransientError(str(exc)) from exc


def query_mysql(conn: ConnectionFields, sql: str, parameters: Params) -> Any:
    import pymysql

    from activities.testers.mysql import driver_options

    try:
        db = pymysql.connect(
            host=conn.host,
            port=conn.port or 3306,
            user=conn.login,
            password=conn.password or "",
            database=conn.schema_,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=MYSQL_IO_TIMEOUT,
            write_timeout=MYSQL_IO_TIMEOUT,
            autocommit=True,
            **driver_options(conn.extra),
        )
    except pymysql.MySQLError as exc:
        raise TransientError(str(exc)) from exc
    try:
        with db.cursor() as cursor:
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


def query_sqlite(conn: ConnectionFields, sql: str, parameters: Params) -> Any:
    from activities.testers.sqlite import MEMORY, read_only_uri

    path = conn.host or conn.schema_
    assert path is not None
    # Read-only: a trigger only looks, and a missing file must not be created empty by the first poll.
    target, uri = (MEMORY, False) if path == MEMORY else (read_only_uri(path), True)
    try:
        db = sqlite3.connect(target, timeout=CONNECT_TIMEOUT, uri=uri)
        try:
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
    Failing to reach the database is logged and retried at the next poll; an error in the query
    itself, or a conn_type the trigger does not support, fails the trigger.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        sql: str,
        parameters: list[Any] | dict[str, Any] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        super().__init__(conn_id=conn_id, sql=sql, parameters=parameters, poll_interval=poll_interval)
        if not isinstance(conn_id, str) or not conn_id:
            raise ValueError(f"conn_id must be a non-empty string, not {conn_id!r}")
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("sql must be a non-empty query")
        if parameters is not None and not (
            isinstance(parameters, list | tuple)
            or (isinstance(parameters, dict) and all(isinstance(key, str) for key in parameters))
        ):
            raise ValueError(f"parameters must be a list or an object with string keys, not {parameters!r}")
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
            row = await asyncio.to_thread(query, conn, self.sql, self.parameters)
        except TransientError as exc:
            reason = scrub(str(exc), *connection_secrets(conn))
            self.log.warning("cannot query connection %r, will retry: %s", self.conn_id, reason)
            return None
        cell = row[0] if row else None
        if not is_truthy(cell):
            return None
        return TriggerEvent({"value": json_friendly(cell)})
