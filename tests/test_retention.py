"""Retention: finished tests, ended triggers with their log lines, ended task instances and silent jobs
older than the retention age are deleted, in batches; everything younger, and everything still active
however old, stays. On SQLite, PostgreSQL and MariaDB; and the API's own loop does it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from api.db.migrate import upgrade
from api.db.models import Base, ConnectionTest, Job, TaskInstance, Trigger, TriggerLog, utcnow
from api.db.session import create_engine as create_async_engine
from api.db.session import sessionmaker, sync_url
from api.services.retention import sweep
from tests.reliability import record
from tests.stack import stack_settings

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)
DAYS = 30
LOG_DAYS = 7


def _test(state: str, age_days: float, now: datetime) -> ConnectionTest:
    moment = now - timedelta(days=age_days)
    finished = state in ("success", "failed")
    return ConnectionTest(
        id=str(uuid.uuid4()),
        state=state,
        queue="q",
        timeout=10,
        conn_type="tcp",
        created_at=moment,
        updated_at=moment,
        finished_at=moment if finished else None,
    )


def _trigger(state: str, age_days: float, now: datetime) -> Trigger:
    moment = now - timedelta(days=age_days)
    ended = state not in ("scheduled", "running")
    return Trigger(
        id=str(uuid.uuid4()),
        classpath="airlock.triggers.FileTrigger",
        queue="q",
        state=state,
        log_lines=3,
        created_at=moment,
        updated_at=moment,
        finished_at=moment if ended else None,
    )


def _lines(trigger: Trigger) -> list[TriggerLog]:
    return [
        TriggerLog(trigger_id=trigger.id, logged_at=trigger.created_at, level="INFO", message=f"line {n}")
        for n in range(3)
    ]


def _task_instance(state: str, age_days: float, now: datetime) -> TaskInstance:
    moment = now - timedelta(days=age_days)
    return TaskInstance(
        id=str(uuid.uuid4()),
        dag_id="d",
        run_id=str(uuid.uuid4()),
        task_id="t",
        map_index=-1,
        state=state,
        created_at=moment,
        updated_at=moment,
    )


def _job(state: str, silent_days: float, now: datetime) -> Job:
    moment = now - timedelta(days=silent_days)
    return Job(
        id=str(uuid.uuid4()),
        kind="worker",
        hostname="h",
        credential="c",
        queues=["q"],
        conn_types=[],
        state=state,
        started_at=moment,
        latest_heartbeat=moment,
        ended_at=moment if state == "completed" else None,
    )


def seed_rows(now: datetime) -> tuple[dict[str, list[Base]], dict[str, list[Base]]]:
    """(rows that must go, rows that must stay), by kind."""
    old, recent = DAYS + 10, DAYS - 10
    gone: dict[str, list[Any]] = {
        "tests": [_test("success", old, now) for _ in range(3)] + [_test("failed", old + 100, now)],
        "triggers": [_trigger(s, old, now) for s in ("fired", "failed", "timed_out", "cancelled")],
        "task_instances": [_task_instance(s, old, now) for s in ("success", "failed", "skipped")],
        "jobs": [_job("completed", old, now), _job("running", old, now)],
    }
    kept: dict[str, list[Any]] = {
        "tests": [_test("success", recent, now), _test("failed", 1, now)]
        + [_test(s, old + 100, now) for s in ("pending", "queued", "running")],
        # Ended 10 days ago: older than the log retention (7 days), so only their lines go.
        "triggers": [_trigger("fired", LOG_DAYS + 3, now), _trigger("fired", 1, now)]
        + [_trigger(s, old + 100, now) for s in ("scheduled", "running")],
        "task_instances": [_task_instance("success", recent, now)]
        + [_task_instance(s, old, now) for s in ("running", "deferred", "scheduled")],
        "jobs": [_job("running", 0, now), _job("completed", recent, now)],
    }
    return gone, kept


async def _seed(database_url: str, now: datetime) -> tuple[dict[str, list[Any]], dict[str, list[Any]], Any]:
    gone, kept = seed_rows(now)
    engine = create_async_engine(database_url)
    sessions = sessionmaker(engine)
    async with sessions.begin() as session:
        for rows in (*gone.values(), *kept.values()):
            session.add_all(rows)
        await session.flush()
        for trigger in gone["triggers"] + kept["triggers"]:
            session.add_all(_lines(trigger))
    return gone, kept, engine


def _ids(database_url: str) -> dict[str, set[str]]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            result = {
                kind: set(conn.execute(select(model.id)).scalars())
                for kind, model in (
                    ("tests", ConnectionTest),
                    ("triggers", Trigger),
                    ("task_instances", TaskInstance),
                    ("jobs", Job),
                )
            }
            result["lines of"] = set(conn.execute(select(TriggerLog.trigger_id)).scalars())
    finally:
        engine.dispose()
    return result


@ALL_DATABASES
async def test_retention_deletes_what_ended_long_ago_and_nothing_else(
    database_url: str, dev_secrets: Any
) -> None:
    upgrade(database_url)
    now = utcnow()
    gone, kept, engine = await _seed(database_url, now)
    settings = stack_settings(
        dev_secrets,
        "127.0.0.1:1",
        database_url,
        retention_days=DAYS,
        trigger_log_retention_days=LOG_DAYS,
        retention_batch_size=2,
    )
    try:
        swept = await sweep(sessionmaker(engine), settings, now)
        again = await sweep(sessionmaker(engine), settings, now)
    finally:
        await engine.dispose()

    ids = await asyncio.to_thread(_ids, database_url)
    for kind in ("tests", "triggers", "task_instances", "jobs"):
        assert ids[kind] == {row.id for row in kept[kind]}, kind
    # Lines survive only for triggers that have not ended, or ended within the log retention.
    assert ids["lines of"] == {
        t.id for t in kept["triggers"] if t.state != "fired" or t.finished_at > now - timedelta(days=LOG_DAYS)
    }
    assert swept.connection_tests == len(gone["tests"]) and swept.triggers == len(gone["triggers"])
    assert swept.task_instances == len(gone["task_instances"]) and swept.jobs == len(gone["jobs"])
    assert swept.trigger_logs == 3 * (len(gone["triggers"]) + 1)
    assert again.total == 0
    record(
        f"retention ({database_url.split(':', 1)[0]})",
        sum(map(len, gone.values())) + sum(map(len, kept.values())),
        f"{swept.total} rows deleted, every kept row still there",
        f"{DAYS} days, logs {LOG_DAYS} days, batches of 2; active rows of any age kept",
    )


async def test_the_api_sweeps_on_its_own(make_stack, database_url: str) -> None:
    stack = await make_stack(retention_days=DAYS, trigger_log_retention_days=LOG_DAYS, retention_interval=0.2)
    now = utcnow()
    _gone, kept, engine = await _seed(database_url, now)
    await engine.dispose()
    expected = {
        kind: {row.id for row in kept[kind]} for kind in ("tests", "triggers", "task_instances", "jobs")
    }
    # A pass that began before the rows were seeded sees only some of them: the next passes take the rest.
    for _ in range(100):
        ids = await asyncio.to_thread(_ids, database_url)
        if all(ids[kind] == rows for kind, rows in expected.items()):
            break
        await asyncio.sleep(0.1)
    # Nothing else runs in this stack: whatever went, its own loop deleted.
    for kind, rows in expected.items():
        assert ids[kind] == rows, kind
    assert stack.api.server is not None
