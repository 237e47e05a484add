from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, whatever the database keeps (SQLite and MySQL keep naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name != "postgresql" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# TEXT holds 64 KiB on MySQL/MariaDB: too little for an encrypted 64 KiB extra or trigger kwargs (Fernet
# adds a third), a 256 Ki-character event payload (up to 1 MiB in UTF-8), a 100 000-character traceback,
# or next_kwargs (the event spliced into JSON-escaped text, up to a few times the request body).
# LONGTEXT holds 4 GiB; the other databases' TEXT is unbounded.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def new_revision() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Connection(Base):
    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(String(250), unique=True)
    conn_type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(500))
    schema_: Mapped[str | None] = mapped_column("schema", String(500))
    login: Mapped[str | None] = mapped_column(Text)
    password: Mapped[str | None] = mapped_column(Text)  # Fernet token
    port: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[str | None] = mapped_column(LongText)  # Fernet token of a JSON object
    # A new value on every write (a new row included): a test that saves the connection it tested
    # compares it with the one it started from, so it never overwrites a change made meanwhile.
    revision: Mapped[str] = mapped_column(String(36), default=new_revision)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ConnectionTest(Base):
    __tablename__ = "connection_test"
    __table_args__ = (
        Index("idx_connection_test_state_created", "state", "created_at"),
        Index("idx_connection_test_queue_state", "queue", "state"),
        Index("idx_connection_test_finished", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    connection_id: Mapped[str | None] = mapped_column(String(250), index=True)
    # Set while the test is active, NULL once terminal. A plain unique constraint on a nullable column
    # gives "one active test per connection" on SQLite, PostgreSQL and MySQL alike (no partial index).
    active_connection_id: Mapped[str | None] = mapped_column(String(250), unique=True)
    state: Mapped[str] = mapped_column(String(20))
    result_message: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(200))
    timeout: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(500))
    # The worker credential that claimed the test: only its workload token acts for the test.
    credential: Mapped[str | None] = mapped_column(String(63))
    commit_on_success: Mapped[bool] = mapped_column(Boolean, default=False)
    conn_type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(500))
    schema_: Mapped[str | None] = mapped_column("schema", String(500))
    login: Mapped[str | None] = mapped_column(Text)
    password: Mapped[str | None] = mapped_column(Text)
    port: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[str | None] = mapped_column(LongText)
    # The saved connection's revision when the test was submitted; NULL when none was saved under
    # connection_id then. commit_on_success writes only if it is still the same.
    connection_revision: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # When the test got its slot (pending -> queued): with created_at and started_at, how long it
    # waited for a slot and then for a worker (api/metrics.py).
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    __tablename__ = "job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    hostname: Mapped[str] = mapped_column(String(500))
    credential: Mapped[str] = mapped_column(String(250))
    queues: Mapped[list[str]] = mapped_column(JSON)
    conn_types: Mapped[list[str]] = mapped_column(JSON)
    capacity: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    latest_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerCredential(Base):
    """A provisioned worker: the queues it serves and the hash of its credential (never the credential)."""

    __tablename__ = "worker_credential"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSON)
    triggerer: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskInstance(Base):
    """The minimal task instance a trigger resumes (Airflow's deferral fields, nothing more)."""

    __tablename__ = "task_instance"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", "task_id", "map_index", name="uq_task_instance_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    state: Mapped[str] = mapped_column(String(20))
    next_method: Mapped[str | None] = mapped_column(String(1000))
    # JSON text written by workers; the event payload is spliced in as text, never deserialized here.
    next_kwargs: Mapped[str | None] = mapped_column(LongText)
    trigger_id: Mapped[str | None] = mapped_column(String(36), index=True)
    trigger_timeout: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the task's code may defer onto, as an administrator allowed it: trigger queues and the saved
    # connections its trigger's kwargs may name.
    allowed_queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_connections: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Trigger(Base):
    __tablename__ = "trigger"
    __table_args__ = (
        Index("idx_trigger_state_created", "state", "created_at"),
        Index("idx_trigger_queue_state", "queue", "state"),
        Index("idx_trigger_finished", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    classpath: Mapped[str] = mapped_column(String(1000))
    kwargs: Mapped[str | None] = mapped_column(LongText)  # Fernet token of a JSON object
    queue: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    task_instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    event_type: Mapped[str | None] = mapped_column(String(50))
    event_payload: Mapped[str | None] = mapped_column(LongText)  # the worker's envelope, stored as is
    failure: Mapped[str | None] = mapped_column(LongText)
    triggerer: Mapped[str | None] = mapped_column(String(500))
    # The worker credential that claimed the trigger last: only its workload token acts for it.
    credential: Mapped[str | None] = mapped_column(String(63))
    job_id: Mapped[str | None] = mapped_column(String(36))
    # Log lines received in all, kept or not: past the per-trigger cap the oldest are deleted.
    log_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    timeout_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TriggerLog(Base):
    __tablename__ = "trigger_log"
    # A trigger's lines in order: reading them, trimming the oldest past the cap, deleting them all.
    __table_args__ = (Index("idx_trigger_log_trigger_line", "trigger_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger_id: Mapped[str] = mapped_column(String(36))
    job_id: Mapped[str | None] = mapped_column(String(36))
    triggerer: Mapped[str | None] = mapped_column(String(500))
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)


class ConnectionTestSlotLock(Base):
    """One row, locked first by every transaction that hands out or frees a connection-test slot, so
    that those transactions take turns and the cap holds on every database (airlock: slots)."""

    __tablename__ = "connection_test_slot_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
