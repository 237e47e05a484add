"""The global cap on running connection tests, kept in the metadata database.

A test holds a slot while it is ``queued`` or ``running``; a ``pending`` test waits for one. Slots go to
pending tests in the order they were submitted, at most ``max_connection_test_concurrency`` held at
once, and a slot is free again in the same transaction that records the test's end: the cap holds
exactly as the API shows it. Every transaction that hands out or frees a slot locks the one row of
``connection_test_slot_lock`` first, so that they take turns on SQLite, PostgreSQL and MySQL alike,
and no two of them count the same free slot.

Whoever frees a slot grants it at once to the next tests; their workflows are then told to ask again
(``SLOT_GRANTED_SIGNAL``, sent after the commit by the caller). A lost signal only delays a test: the
reaper nudges a test left ``queued`` with its workflow waiting, and the workflow asks again on its own
every ``SLOT_RECHECK`` (workflows/connection_test.py).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.states import ConnectionTestState
from airlock.workloads import ConnectionTestOutcome
from api.core.crypto import SecretBox
from api.db.models import ConnectionTest, ConnectionTestSlotLock, utcnow
from api.services import connection_tests

S = ConnectionTestState
HOLDING = (S.QUEUED.value, S.RUNNING.value)


async def _lock(session: AsyncSession) -> None:
    # The first statement of the transaction: on MySQL its snapshot, too, starts once the lock is held.
    locked = await session.scalar(
        select(ConnectionTestSlotLock.id).where(ConnectionTestSlotLock.id == 1).with_for_update()
    )
    if locked is None:
        raise RuntimeError("the connection_test_slot_lock row is missing: run `airlock db upgrade`")


async def _grant(session: AsyncSession, capacity: int) -> list[str]:
    held = await session.scalar(
        select(func.count()).select_from(ConnectionTest).where(ConnectionTest.state.in_(HOLDING))
    )
    free = capacity - (held or 0)
    if free <= 0:
        return []
    waiting = await session.scalars(
        select(ConnectionTest)
        .where(ConnectionTest.state == S.PENDING)
        .order_by(ConnectionTest.created_at, ConnectionTest.id)
        .limit(free)
    )
    granted = []
    now = utcnow()
    for test in waiting:
        test.state = S.QUEUED
        test.queued_at = now
        granted.append(test.id)
    await session.flush()
    return granted


async def take(session: AsyncSession, capacity: int, test_id: str) -> tuple[ConnectionTest, list[str]]:
    """Hand out the free slots in order; the test (its state says whether it holds one now) and the
    ids of the tests that got one in this call."""
    await _lock(session)
    granted = await _grant(session, capacity)
    return await connection_tests.get(session, test_id), granted


async def finish(
    session: AsyncSession, box: SecretBox, capacity: int, test_id: str, outcome: ConnectionTestOutcome
) -> tuple[bool, list[str]]:
    """Record the test's end (``connection_tests.finish``) and hand its slot to the next test: whether
    this call recorded it, and the ids of the tests that got a slot."""
    await _lock(session)
    changed = await connection_tests.finish(session, box, test_id, outcome)
    return changed, await _grant(session, capacity) if changed else []
