"""Retention: what ended long ago is deleted, so that the tables stop growing.

Finished connection tests, ended triggers with their log lines, ended task instances and the jobs of
workers silent since (completed or dead) go once they are older than ``retention_days``; log lines of
ended triggers may go sooner (``trigger_log_retention_days``). Nothing that has not ended is touched:
every delete repeats the terminal-state condition. Rows go in batches of ``retention_batch_size``, each
in its own short transaction, so a large backlog never holds locks for long. Every API replica sweeps;
two sweeping at once delete nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Delete, Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from airlock.states import TERMINAL_TEST_STATES, TaskInstanceState, TriggerState
from api.core.config import Settings
from api.db.models import ConnectionTest, Job, TaskInstance, Trigger, TriggerLog, utcnow

ENDED_TRIGGER_STATES = [s.value for s in TriggerState if s.is_terminal]
FINISHED_TEST_STATES = [s.value for s in TERMINAL_TEST_STATES]
ENDED_TASK_INSTANCE_STATES = [
    TaskInstanceState.SUCCESS.value,
    TaskInstanceState.FAILED.value,
    TaskInstanceState.SKIPPED.value,
]


@dataclass
class Swept:
    """Rows deleted by one sweep, per table."""

    connection_tests: int = 0
    triggers: int = 0
    trigger_logs: int = 0
    task_instances: int = 0
    jobs: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return None if not days else now - timedelta(days=days)


async def sweep(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
) -> Swept:
    now = now or utcnow()
    batch = settings.retention_batch_size
    swept = Swept()
    cutoff = _cutoff(now, settings.retention_days)
    log_days = settings.trigger_log_retention_days
    log_cutoff = _cutoff(now, settings.retention_days if log_days is None else log_days)
    # A trigger's lines go with it at the latest.
    if cutoff is not None and (log_cutoff is None or cutoff > log_cutoff):
        log_cutoff = cutoff

    if log_cutoff is not None:
        ended_before = select(Trigger.id).where(
            Trigger.state.in_(ENDED_TRIGGER_STATES), Trigger.finished_at < log_cutoff
        )
        swept.trigger_logs = await _in_batches(
            sessions,
            batch,
            lambda: (
                select(TriggerLog.id).where(TriggerLog.trigger_id.in_(ended_before)).order_by(TriggerLog.id)
            ),
            lambda ids: delete(TriggerLog).where(
                TriggerLog.id.in_(ids), TriggerLog.trigger_id.in_(ended_before)
            ),
        )
    if cutoff is None:
        return swept

    ended = (Trigger.state.in_(ENDED_TRIGGER_STATES), Trigger.finished_at < cutoff)
    swept.triggers = await _in_batches(
        sessions,
        batch,
        lambda: select(Trigger.id).where(*ended).order_by(Trigger.finished_at),
        lambda ids: delete(Trigger).where(Trigger.id.in_(ids), *ended),
        # A line that arrived after the sweep above (a late batch from a triggerer) goes with its trigger.
        before=lambda ids: delete(TriggerLog).where(TriggerLog.trigger_id.in_(ids)),
    )
    finished = (ConnectionTest.state.in_(FINISHED_TEST_STATES), ConnectionTest.finished_at < cutoff)
    swept.connection_tests = await _in_batches(
        sessions,
        batch,
        lambda: select(ConnectionTest.id).where(*finished).order_by(ConnectionTest.finished_at),
        lambda ids: delete(ConnectionTest).where(ConnectionTest.id.in_(ids), *finished),
    )
    done = (TaskInstance.state.in_(ENDED_TASK_INSTANCE_STATES), TaskInstance.updated_at < cutoff)
    swept.task_instances = await _in_batches(
        sessions,
        batch,
        lambda: select(TaskInstance.id).where(*done).order_by(TaskInstance.updated_at),
        lambda ids: delete(TaskInstance).where(TaskInstance.id.in_(ids), *done),
    )
    # Completed, or silent so long that its worker is long gone.
    silent: tuple[ColumnElement[bool], ...] = (Job.latest_heartbeat < cutoff,)
    swept.jobs = await _in_batches(
        sessions,
        batch,
        lambda: select(Job.id).where(*silent).order_by(Job.latest_heartbeat),
        lambda ids: delete(Job).where(Job.id.in_(ids), *silent),
    )
    return swept


async def _in_batches(
    sessions: async_sessionmaker[AsyncSession],
    batch: int,
    candidates: Callable[[], Select[Any]],
    remove: Callable[[list[Any]], Delete],
    before: Callable[[list[Any]], Delete] | None = None,
) -> int:
    deleted = 0
    while True:
        async with sessions.begin() as session:
            ids = list(await session.scalars(candidates().limit(batch)))
            if not ids:
                return deleted
            if before is not None:
                await session.execute(before(ids))
            result = await session.execute(remove(ids))
            deleted += int(getattr(result, "rowcount", 0) or 0)
        if len(ids) < batch:
            return deleted
