"""Alembic, driven from code: ``airlock db upgrade`` and the API's start both call :func:`upgrade`.

Every replica migrates at start, so two replicas starting together would both create the same tables:
the upgrade runs under a database-wide lock, and the second replica finds the schema at head.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from api.db.session import sync_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The advisory lock key on PostgreSQL (its advisory locks are per database): "Airlock" in ASCII.
PG_LOCK_KEY = 0x41_69_72_6C_6F_63_6B
# On MySQL/MariaDB, GET_LOCK names are server-wide: the name includes the database (64 characters at most).
LOCK_NAME_PREFIX = "airlock-migrate:"
# How long a replica waits for another one's upgrade before giving up.
LOCK_TIMEOUT_SECONDS = 600


class MigrationLockTimeout(RuntimeError):
    pass


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    if sync_url(database_url).get_backend_name() == "sqlite":
        database = sync_url(database_url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    with migration_lock(sync_url(database_url)):
        command.upgrade(alembic_config(database_url), revision)


@contextlib.contextmanager
def migration_lock(url: URL) -> Iterator[None]:
    """Hold the deployment's migration lock: an advisory lock on PostgreSQL, ``GET_LOCK`` on
    MySQL/MariaDB (both held by a connection of their own, released if the process dies), a lock file
    next to a SQLite database."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        with _file_lock(url.database):
            yield
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                return
            name = (LOCK_NAME_PREFIX + (url.database or ""))[:64]
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": LOCK_TIMEOUT_SECONDS}
            ).scalar()
            if got != 1:
                raise MigrationLockTimeout(
                    f"another process held the migration lock for {LOCK_TIMEOUT_SECONDS} s"
                )
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    finally:
        engine.dispose()


@contextlib.contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield  # a private in-memory database: nobody to race with
        return
    path = Path(database).with_name(Path(database).name + ".migrate-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
