"""What a trigger may do on a triggerer, against real databases and files: SqlTrigger queries run
read-only, one statement at a time, under a statement timeout, with only the libpq options the
allowlist admits; blocked polls of one kind stall neither other kinds nor the loop's default pool.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from activities.testers import ExtraNotAllowed
from activities.triggers import POOL_SIZES
from activities.triggers.sql import MAX_STATEMENT_TIMEOUT
from airlock.connection import ConnectionFields
from airlock.egress import EgressDenied
from airlock.triggers import FileTrigger, SqlTrigger
from tests import services
from tests.test_triggers_classes import FAST, StaticContext, first_event


@pytest.fixture(autouse=True)
def _local_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every database these triggers query listens on loopback, which the egress policy refuses
    unless a worker opts in (tests/test_egress.py tries the refusal)."""
    monkeypatch.setenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK", "true")


# One row, id 1, in every table these tests give a trigger: whatever the trigger tries, it stays so.
WRITES = [
    "insert into {table} values (2)",
    "update {table} set id = 3",
    "delete from {table}",
    "create table {table}_new (x int)",
]


def trigger(conn: ConnectionFields, sql: str, **kwargs: Any) -> SqlTrigger:
    made = SqlTrigger(conn_id="warehouse", sql=sql, poll_interval=FAST, **kwargs)
    made.context = StaticContext({"warehouse": conn})
    return made


# --- PostgreSQL ---------------------------------------------------------------------------------


def pg_rows(sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(services.postgres_url(), autocommit=True) as db:
        cursor = db.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def pg_table() -> Iterator[tuple[ConnectionFields, str]]:
    table = f"limits_{uuid.uuid4().hex[:10]}"
    pg_rows(f"create table {table} (id int); insert into {table} values (1)")
    try:
        yield ConnectionFields.from_uri(services.postgres_url()), table
    finally:
        pg_rows(f"drop table if exists {table}, {table}_new")


async def test_sql_trigger_obeys_the_egress_policy(
    pg_table: tuple[ConnectionFields, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A triggerer whose policy refuses loopback queries no database there (PostgreSQL's libpq gets the
    checked address, MySQL's driver too): the trigger fails naming the refusal."""
    conn, table = pg_table
    monkeypatch.delenv("AIRLOCK_EGRESS_ALLOW_LOOPBACK")
    with pytest.raises(EgressDenied, match=r"egress to 127\.0\.0\.1:5432 is not allowed on this worker: loopback"):
        await first_event(trigger(conn, f"select count(*) from {table}"))
    maria = ConnectionFields.from_uri(services.mariadb_url())
    with pytest.raises(EgressDenied, match="loopback"):
        await first_event(trigger(maria, "select 1"))


async def test_sql_trigger_is_read_only_on_postgres(pg_table: tuple[ConnectionFields, str]) -> None:
    conn, table = pg_table
    for write in WRITES:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="in a read-only transaction"):
            await first_event(trigger(conn, write.format(table=table)))
    # One statement per query: a first one cannot turn read-only off (nor the statement timeout).
    undo = f"set default_transaction_read_only = off; insert into {table} values (4)"
    with pytest.raises(psycopg.errors.SyntaxError, match="cannot insert multiple commands"):
        await first_event(trigger(conn, undo))
    assert pg_rows(f"select id from {table}") == [(1,)]
    assert pg_rows(f"select to_regclass('{table}_new') is null") == [(True,)]
    event = await first_event(trigger(conn, f"select count(*) from {table}"))
    assert event.payload == {"value": 1}


async def test_sql_trigger_passes_allowed_libpq_options(pg_table: tuple[ConnectionFields, str]) -> None:
    conn, _ = pg_table
    name = f"airlock-probe-{uuid.uuid4().hex[:6]}"
    allowed = conn.model_copy(update={"extra": {"sslmode": "disable", "application_name": name, "iam": True}})
    event = await first_event(
        trigger(allowed, "select application_name from pg_stat_activity where pid = pg_backend_pid()")
    )
    assert event.payload == {"value": name}


@pytest.mark.parametrize("option", ["sslkeylogfile", "sslkey", "sslrootcert", "options"])
async def test_sql_trigger_refuses_libpq_options_outside_the_allowlist(
    pg_table: tuple[ConnectionFields, str], tmp_path: Path, option: str
) -> None:
    conn, _ = pg_table
    target = tmp_path / "worker-file"
    refused = conn.model_copy(update={"extra": {"sslmode": "prefer", option: str(target)}})
    with pytest.raises(ExtraNotAllowed, match=rf"^extra '{option}' (is not allowed|may only be system)"):
        await first_event(trigger(refused, "select 1"))
    assert not target.exists()


async def test_a_postgres_query_ends_at_its_statement_timeout(
    pg_table: tuple[ConnectionFields, str], caplog: pytest.LogCaptureFixture
) -> None:
    conn, _ = pg_table
    slow = trigger(conn, "select pg_sleep(30)", statement_timeout=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=slow.log.name):
        assert await slow.poll() is None
    assert time.monotonic() - started < 3
    assert "will retry: canceling statement due to statement timeout" in caplog.text


# --- MariaDB ------------------------------------------------------------------------------------


def maria_rows(sql: str) -> list[tuple[Any, ...]]:
    conn = ConnectionFields.from_uri(services.mariadb_url())
    db = pymysql.connect(
        host=conn.host,
        port=conn.port or 3306,
        user=conn.login,
        password=conn.password or "",
        database=conn.schema_,
        autocommit=True,
    )
    try:
        with db.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        db.close()


@pytest.fixture
def maria_table() -> Iterator[tuple[ConnectionFields, str]]:
    table = f"limits_{uuid.uuid4().hex[:10]}"
    maria_rows(f"create table {table} (id int)")
    maria_rows(f"insert into {table} values (1)")
    try:
        yield ConnectionFields.from_uri(services.mariadb_url()), table
    finally:
        maria_rows(f"drop table if exists {table}, {table}_new")


async def test_sql_trigger_is_read_only_on_mariadb(maria_table: tuple[ConnectionFields, str]) -> None:
    conn, table = maria_table
    for write in WRITES:
        with pytest.raises(
            pymysql.OperationalError, match="Cannot execute statement in a READ ONLY transaction"
        ):
            await first_event(trigger(conn, write.format(table=table)))
    with pytest.raises(pymysql.ProgrammingError, match="SQL syntax"):
        await first_event(
            trigger(conn, f"set session transaction read write; insert into {table} values (4)")
        )
    assert maria_rows(f"select id from {table}") == [(1,)]
    assert maria_rows(f"show tables like '{table}_new'") == []
    event = await first_event(trigger(conn, f"select count(*) from {table}"))
    assert event.payload == {"value": 1}


async def test_a_mariadb_query_ends_at_its_statement_timeout(
    maria_table: tuple[ConnectionFields, str], caplog: pytest.LogCaptureFixture
) -> None:
    conn, _ = maria_table
    slow = trigger(conn, "select sleep(30)", statement_timeout=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=slow.log.name):
        assert await slow.poll() is None
    assert time.monotonic() - started < 3
    assert "max_statement_time exceeded" in caplog.text


async def test_sql_trigger_refuses_mysql_ssl_files(maria_table: tuple[ConnectionFields, str]) -> None:
    conn, _ = maria_table
    refused = conn.model_copy(update={"extra": {"ssl": {"ca": "/etc/ssl/private/ca.pem"}}})
    with pytest.raises(ExtraNotAllowed, match=r"^extra ssl keys not allowed for a MySQL connection: 'ca'"):
        await first_event(trigger(refused, "select 1"))


# --- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> ConnectionFields:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:
        db.execute("create table jobs (id int)")
        db.execute("insert into jobs values (1)")
    db.close()
    return ConnectionFields.model_validate({"conn_type": "sqlite", "host": str(path)})


async def test_sql_trigger_is_read_only_on_sqlite(sqlite_db: ConnectionFields, tmp_path: Path) -> None:
    for write in WRITES:
        with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
            await first_event(trigger(sqlite_db, write.format(table="jobs")))
    # ATTACH would open, or create, any file on the triggerer; VACUUM INTO would write one.
    elsewhere = tmp_path / "elsewhere.db"
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        await first_event(trigger(sqlite_db, f"attach database '{elsewhere}' as other"))
    with pytest.raises(sqlite3.DatabaseError, match="authorization denied"):
        await first_event(trigger(sqlite_db, f"vacuum into '{elsewhere}'"))
    assert not elsewhere.exists()
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        await first_event(trigger(sqlite_db, "pragma query_only = off; insert into jobs values (4)"))
    # query_only holds where mode=ro cannot: an in-memory database.
    memory = ConnectionFields.model_validate({"conn_type": "sqlite", "host": ":memory:"})
    with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
        await first_event(trigger(memory, "create table t (x int)"))
    with sqlite3.connect(sqlite_db.host or "") as db:
        assert db.execute("select id from jobs").fetchall() == [(1,)]
        assert db.execute("select count(*) from sqlite_master").fetchone() == (1,)
    db.close()
    event = await first_event(trigger(sqlite_db, "select count(*) from jobs"))
    assert event.payload == {"value": 1}


async def test_a_sqlite_query_ends_at_its_statement_timeout(
    sqlite_db: ConnectionFields, caplog: pytest.LogCaptureFixture
) -> None:
    endless = "with recursive n(i) as (select 1 union all select i + 1 from n) select count(*) from n"
    slow = trigger(sqlite_db, endless, statement_timeout=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=slow.log.name):
        assert await slow.poll() is None
    assert 0.5 <= time.monotonic() - started < 3
    assert "will retry: interrupted" in caplog.text


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (0, "statement_timeout must be a positive number"),
        ("30", "statement_timeout must be a positive number"),
        (MAX_STATEMENT_TIMEOUT + 1, "statement_timeout must be at most 300 s"),
    ],
)
def test_statement_timeout_is_validated(timeout: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SqlTrigger(conn_id="c", sql="select 1", statement_timeout=timeout)


# --- bounded pools ------------------------------------------------------------------------------


def sleeping_queries(marker: str) -> int:
    [(count,)] = pg_rows(
        "select count(*) from pg_stat_activity "
        f"where state = 'active' and query like '%{marker}%' and pid <> pg_backend_pid()"
    )
    return int(count)


async def test_blocked_sql_polls_stall_neither_file_triggers_nor_the_default_pool(tmp_path: Path) -> None:
    conn = ConnectionFields.from_uri(services.postgres_url())
    marker = f"blocked_{uuid.uuid4().hex[:8]}"
    size = POOL_SIZES["sql"]
    # Two more than the SQL pool has threads, each holding its thread for a while.
    blocked = [trigger(conn, f"select pg_sleep(2) as {marker}") for _ in range(size + 2)]
    polls = [asyncio.create_task(one.poll()) for one in blocked]
    try:
        deadline = time.monotonic() + 1
        while sleeping_queries(marker) < size and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

        started = time.monotonic()
        await asyncio.to_thread(lambda: None)
        default_pool = time.monotonic() - started

        (tmp_path / "ready").write_text("")
        started = time.monotonic()
        event = await first_event(FileTrigger(filepath=str(tmp_path / "ready")))
        file_trigger = time.monotonic() - started

        sleeping = sleeping_queries(marker)
    finally:
        results = await asyncio.gather(*polls)
    assert event.payload == {"filepath": str(tmp_path / "ready")}
    assert default_pool < 0.5, f"asyncio.to_thread waited {default_pool:.2f} s behind blocked queries"
    assert file_trigger < 0.5, f"a FileTrigger waited {file_trigger:.2f} s behind blocked queries"
    # Bounded: the two polls past the pool's size wait for a thread instead of taking more.
    assert sleeping == size
    assert results == [None] * (size + 2)
