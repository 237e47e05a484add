"""Migration 0004 on a database with rows in it: revisions filled in (tests in flight get their
connection's), log-line counts taken, LONGTEXT on MariaDB; the schema then matches the models, and the
downgrade and upgrade again both work. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from api.db.migrate import alembic_config, upgrade
from api.db.models import Base
from api.db.session import sync_url

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)
NOW = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns))


def _seed_at_0003(engine: sa.Engine) -> None:
    connection = _table("connection", "connection_id", "conn_type", "created_at", "updated_at")
    test_columns = ("id", "connection_id", "active_connection_id", "state", "queue", "timeout")
    test = _table(
        "connection_test", *test_columns, "commit_on_success", "conn_type", "created_at", "updated_at"
    )
    trigger = _table("trigger", "id", "classpath", "queue", "state", "created_at", "updated_at")
    log = _table("trigger_log", "trigger_id", "logged_at", "level", "message")
    stamps = {"created_at": NOW, "updated_at": NOW}
    with engine.begin() as conn:
        conn.execute(sa.insert(connection).values(connection_id="svc", conn_type="tcp", **stamps))
        for test_id, state in (("in-flight", "running"), ("done", "success")):
            conn.execute(
                sa.insert(test).values(
                    id=test_id,
                    connection_id="svc",
                    active_connection_id="svc" if state == "running" else None,
                    state=state,
                    queue="q",
                    timeout=10,
                    commit_on_success=True,
                    conn_type="tcp",
                    **stamps,
                )
            )
        conn.execute(
            sa.insert(trigger).values(
                id="t1", classpath="airlock.triggers.FileTrigger", queue="q", state="running", **stamps
            )
        )
        for n in range(2):
            conn.execute(sa.insert(log).values(trigger_id="t1", logged_at=NOW, level="INFO", message=f"{n}"))


@contextmanager
def _seeded_at_0003_then_upgraded(database_url: str) -> Iterator[sa.Engine]:
    """A database with rows written at 0003, then upgraded to head: its engine."""
    upgrade(database_url, "0003")
    engine = sa.create_engine(sync_url(database_url))
    try:
        _seed_at_0003(engine)
        upgrade(database_url)
        yield engine
    finally:
        engine.dispose()


@ALL_DATABASES
def test_0004_upgrades_a_database_with_rows_and_downgrades(database_url: str) -> None:
    with _seeded_at_0003_then_upgraded(database_url) as engine:
        with engine.connect() as conn:
            revision = conn.execute(sa.text("select revision from connection")).scalar_one()
            started_from = dict(
                conn.execute(sa.text("select id, connection_revision from connection_test")).all()
            )
            log_lines = conn.execute(_table("trigger", "log_lines").select()).scalar_one()
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            types = {c["name"]: str(c["type"]) for c in sa.inspect(conn).get_columns("trigger")}
        assert len(revision) == 36
        assert started_from == {"in-flight": revision, "done": None}
        assert log_lines == 2
        assert not diff, diff
        if engine.dialect.name == "mysql":
            assert types["event_payload"] == "LONGTEXT" and types["kwargs"] == "LONGTEXT"

        command.downgrade(alembic_config(database_url), "0003")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("connection")}
            assert "revision" not in columns
            assert conn.execute(sa.text("select count(*) from trigger_log")).scalar_one() == 2
        upgrade(database_url)
        with engine.connect() as conn:
            assert not compare_metadata(MigrationContext.configure(conn), Base.metadata)


@ALL_DATABASES
def test_0005_leaves_existing_rows_unclaimed_and_allowed_nothing(database_url: str) -> None:
    """Migration 0005 on a database with rows: tests and triggers in flight are held by no worker
    credential (their old tokens act no more), a running task instance may defer onto nothing until an
    administrator allows it; the downgrade drops the new table and columns and keeps the rows."""
    upgrade(database_url, "0003")
    engine = sa.create_engine(sync_url(database_url))
    try:
        _seed_at_0003(engine)
        upgrade(database_url, "0004")
        columns = ("id", "dag_id", "run_id", "task_id", "map_index", "state", "created_at", "updated_at")
        ti = _table("task_instance", *columns)
        row = {"id": "ti1", "dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "state": "running"}
        with engine.begin() as conn:
            conn.execute(sa.insert(ti).values(**row, created_at=NOW, updated_at=NOW))
        upgrade(database_url, "0005")
        with engine.connect() as conn:
            tests = conn.execute(sa.text("select id, credential from connection_test")).all()
            triggers = conn.execute(_table("trigger", "id", "credential").select()).all()
            allowed = conn.execute(
                sa.text("select allowed_queues, allowed_connections from task_instance")
            ).one()
            workers = conn.execute(sa.text("select count(*) from worker_credential")).scalar_one()
        assert sorted(tests) == [("done", None), ("in-flight", None)]
        assert list(triggers) == [("t1", None)]
        assert [v if isinstance(v, list) else json.loads(v) for v in allowed] == [[], []]
        assert workers == 0

        command.downgrade(alembic_config(database_url), "0004")
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert "worker_credential" not in inspector.get_table_names()
            assert "credential" not in {c["name"] for c in inspector.get_columns("connection_test")}
            assert "credential" not in {c["name"] for c in inspector.get_columns("trigger")}
            assert "allowed_queues" not in {c["name"] for c in inspector.get_columns("task_instance")}
            assert conn.execute(sa.text("select count(*) from task_instance")).scalar_one() == 1
        upgrade(database_url)
        with engine.connect() as conn:
            assert not compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


@ALL_DATABASES
def test_0006_adds_the_slot_lock_row_and_the_schema_matches_the_models(database_url: str) -> None:
    """Tests in flight keep their states (a queued or running one holds a slot under the new cap); the
    lock row the grants take turns on exists once; the downgrade drops it."""
    with _seeded_at_0003_then_upgraded(database_url) as engine:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select id from connection_test_slot_lock")).scalars().all() == [1]
            states = dict(conn.execute(sa.text("select id, state from connection_test")).all())
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert states == {"done": "success", "in-flight": "running"}, states
        assert not diff, diff
        command.downgrade(alembic_config(database_url), "0005")
        with engine.connect() as conn:
            assert "connection_test_slot_lock" not in sa.inspect(conn).get_table_names()
