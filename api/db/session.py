"""Engines for SQLite, PostgreSQL and MySQL/MariaDB: one URL in, an async engine for the app and a
sync URL for Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "mariadb":
        backend = "mysql"
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite, postgresql or mysql/mariadb")
    return parsed.set(drivername=drivers[backend])


def sync_url(url: str) -> URL:
    return _with_driver(url, _SYNC_DRIVERS)


def async_url(url: str) -> URL:
    return _with_driver(url, _ASYNC_DRIVERS)


# A database that accepts TCP and never answers (hung, or behind a stuck proxy) must cost a request
# seconds, not forever: the request then gets a 503 instead of hanging.
CONNECT_TIMEOUT_SECONDS = 5
# Waiting for a pooled connection is bounded too, for when every slot is stuck connecting.
POOL_TIMEOUT_SECONDS = 10


def create_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    }
    if target.get_backend_name() == "sqlite":
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite takes one writer at a time; a single pooled connection makes the API's requests queue
        # on an await instead of sleeping in SQLite's busy handler. Other processes still get the lock.
        kwargs = {"connect_args": {"timeout": 30}, "pool_size": 1, "max_overflow": 0, "pool_timeout": 60}
    elif target.get_backend_name() == "mysql":
        kwargs["pool_recycle"] = 3600
    engine = create_async_engine(target, **kwargs)
    if target.get_backend_name() == "sqlite":
        _sqlite_write_locks(engine)
    return engine


def _sqlite_write_locks(engine: AsyncEngine) -> None:
    # SQLite upgrades a read transaction to a write lazily and fails with "database is locked" when two
    # writers race; taking the write lock at BEGIN makes writers queue instead (busy timeout above).
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
