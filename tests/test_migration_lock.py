"""Replicas starting together: each runs the migrations at start, and they must not race. Two processes
upgrade the same fresh database at the same moment; both succeed, once, and the schema is at head."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from api.db.migrate import alembic_config
from api.db.models import Base
from api.db.session import sync_url
from tests.reliability import record

# What a replica does at start (`airlock api` runs `upgrade` before serving), with the start delayed to
# a moment shared by both processes so that their upgrades overlap.
REPLICA = """
import sys, time
from api.db.migrate import upgrade
moment, url = float(sys.argv[1]), sys.argv[2]
time.sleep(max(0.0, moment - time.time()))
upgrade(url)
"""
REPLICAS = 2


def _start_together(database_url: str) -> list[subprocess.CompletedProcess[str]]:
    # Far enough ahead for both interpreters to have imported Alembic and the models.
    moment = time.time() + 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, str(moment), database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out))
    return results


@pytest.mark.parametrize("database_url", ["postgresql", "mysql", "sqlite"], indirect=True)
def test_two_replicas_migrate_a_fresh_database_at_once(database_url: str) -> None:
    results = _start_together(database_url)
    failures = [r.stdout[-2000:] for r in results if r.returncode != 0]
    assert not failures, "a replica failed to migrate:\n" + "\n---\n".join(failures)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("select version_num from alembic_version")).scalars().all()
            assert versions == [head]
            assert MigrationContext.configure(conn).get_current_revision() == head
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert not diff, f"the schema differs from the models: {diff}"
    kind = database_url.split(":", 1)[0]
    record(
        f"two replicas migrating at once ({kind})", REPLICAS, "both succeeded", f"alembic_version = {head}"
    )
