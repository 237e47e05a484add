"""SQLite: open the database file read-only and run ``select 1``."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from activities.testers import scrubbed
from airlock.connection import ConnectionFields

MEMORY = ":memory:"


def read_only_uri(path: str) -> str:
    # mode=ro makes SQLite refuse to create a missing file, so a test never leaves one behind.
    return f"file:{quote(path, safe='/')}?mode=ro"


@scrubbed
def test_sqlite(conn: ConnectionFields, timeout: float) -> tuple[bool, str]:
    path = conn.host or conn.schema_
    if not path:
        return False, "host (the database file path) is required for a sqlite connection"
    if path != MEMORY:
        if not os.path.exists(path):
            return False, f"SQLite database file {path!r} does not exist"
        if os.path.isdir(path):
            return False, f"SQLite database path {path!r} is a directory"
    target, uri = (MEMORY, False) if path == MEMORY else (read_only_uri(path), True)
    try:
        db = sqlite3.connect(target, timeout=timeout, uri=uri)
        try:
            db.execute("select 1").fetchone()
            # select 1 never reads the file; reading the schema proves it is a database.
            tables = db.execute("select count(*) from sqlite_master where type = 'table'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return False, classify(exc, path)
    return True, f"SQLite {sqlite3.sqlite_version}: select 1 ok ({tables} tables)"


def classify(exc: sqlite3.DatabaseError, path: str) -> str:
    text = str(exc)
    if "file is not a database" in text:
        return f"{path!r} is not a SQLite database"
    if "unable to open database file" in text:
        return f"cannot open SQLite database {path!r}: permission denied or unreadable"
    if "locked" in text:
        return f"SQLite database {path!r} is locked by another connection"
    return f"SQLite database {path!r}: {text}"
