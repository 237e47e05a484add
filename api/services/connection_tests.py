"""Connection-test rows: every state change goes through here, under a row lock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.execution import MAX_RESULT_MESSAGE_CHARS
from airlock.plugins import installed_conn_types
from airlock.states import ACTIVE_TEST_STATES, ConnectionTestState
from airlock.workloads import ConnectionTestOutcome
from api import metrics
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.db.models import ConnectionTest, WorkerCredential, utcnow
from api.public.datamodels import ConnectionTestRequest
from api.services import connections, jobs
from api.services.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unprocessable

S = ConnectionTestState


async def get(session: AsyncSession, test_id: str, *, lock: bool = False) -> ConnectionTest:
    test = await session.get(ConnectionTest, test_id, with_for_update=lock)
    if test is None:
        raise NotFound(f"connection test {test_id} not found")
    return test


async def list_(
    session: AsyncSession,
    *,
    state: ConnectionTestState | None,
    connection_id: str | None,
    limit: int,
    offset: int,
    queue: str | None = None,
) -> tuple[Sequence[ConnectionTest], int]:
    query = select(ConnectionTest)
    if state is not None:
        query = query.where(ConnectionTest.state == state)
    if connection_id is not None:
        query = query.where(ConnectionTest.connection_id == connection_id)
    if queue is not None:
        query = query.where(ConnectionTest.queue == queue)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(ConnectionTest.created_at.desc(), ConnectionTest.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def submit(
    session: AsyncSession, settings: Settings, box: SecretBox, request: ConnectionTestRequest
) -> ConnectionTest:
    """Insert the test as ``pending``, or straight as ``failed`` when no live worker could take it."""
    fields = request.unsaved_fields()
    if fields is None:
        assert request.connection_id is not None
        fields = connections.fields_of(await connections.get(session, request.connection_id), box)
    await _check_conn_type(session, settings, fields.conn_type)
    timeout = request.timeout or settings.connection_test_timeout
    if timeout > settings.max_connection_test_timeout:
        raise Unprocessable(
            f"timeout {timeout} s exceeds the maximum of {settings.max_connection_test_timeout} s"
        )
    queue = request.queue or settings.default_queue
    test = ConnectionTest(
        id=str(uuid.uuid4()),
        connection_id=request.connection_id,
        state=S.PENDING,
        queue=queue,
        timeout=timeout,
        commit_on_success=request.commit_on_success,
        description=request.description,
    )
    connections.apply_fields(test, box, fields.model_dump())
    if request.connection_id is not None:
        test.connection_revision = await connections.revision_of(session, request.connection_id)
    refusal = await _no_worker_reason(session, settings, queue, fields.conn_type)
    if refusal is not None:
        test.state = S.FAILED
        test.result_message = refusal
        test.finished_at = utcnow()
    else:
        await _check_waiting(session, settings, queue)
        test.active_connection_id = request.connection_id
    try:
        async with session.begin_nested():
            session.add(test)
    except IntegrityError:
        active = await session.scalar(
            select(ConnectionTest.id).where(ConnectionTest.active_connection_id == request.connection_id)
        )
        raise Conflict(
            f"connection {request.connection_id!r} already has an active test: {active}; "
            "wait for it to finish"
        ) from None
    metrics.connection_test_stored(session, test)
    return test


# Waiting to run: for a slot (pending) or for a worker to pick the test up (queued).
WAITING_STATES = (S.PENDING.value, S.QUEUED.value)


async def _check_waiting(session: AsyncSession, settings: Settings, queue: str) -> None:
    """Refuse a test past the caps on waiting tests: in its queue, and in all. Requests racing each
    other may pass a cap by as many as run at that moment."""
    waiting = select(func.count()).select_from(ConnectionTest).where(ConnectionTest.state.in_(WAITING_STATES))
    in_queue = await session.scalar(waiting.where(ConnectionTest.queue == queue)) or 0
    cap = settings.max_pending_tests_per_queue
    if in_queue >= cap:
        raise TooManyRequests(
            f"queue {queue!r} already has {in_queue} connection tests waiting to run, the most it may have "
            f"(AIRLOCK_MAX_PENDING_TESTS_PER_QUEUE={cap}); nothing was stored, retry later"
        )
    in_all = await session.scalar(waiting) or 0
    cap = settings.max_pending_tests
    if in_all >= cap:
        raise TooManyRequests(
            f"{in_all} connection tests are waiting to run across all queues, the most there may be "
            f"(AIRLOCK_MAX_PENDING_TESTS={cap}); nothing was stored, retry later"
        )


async def _check_conn_type(session: AsyncSession, settings: Settings, conn_type: str) -> None:
    """Refuse a conn_type that no tester knows: neither one installed here nor one that a live worker
    announced (a worker may carry a plugin the API does not)."""
    known = set(installed_conn_types())
    if conn_type in known or conn_type.lower() in known:
        return
    for job in await jobs.live(session, settings.job_liveness_timeout):
        known.update(job.conn_types)
    if conn_type in known or conn_type.lower() in known:
        return
    raise Unprocessable(
        f"unknown conn_type {conn_type!r}: no tester is installed for it here or on a live worker "
        f"(known: {', '.join(sorted(known))})"
    )


async def _no_worker_reason(
    session: AsyncSession, settings: Settings, queue: str, conn_type: str
) -> str | None:
    live = await jobs.live_for_queue(session, queue, settings.job_liveness_timeout)
    if not live:
        return f"no worker is serving queue {queue!r}"
    testable = sorted({t for job in live for t in job.conn_types})
    if conn_type not in testable:
        return (
            f"no worker serving queue {queue!r} can test conn_type {conn_type!r} "
            f"(they can test: {', '.join(testable) or 'nothing'})"
        )
    return None


async def mark_running(session: AsyncSession, test_id: str, worker: str | None) -> None:
    test = await get(session, test_id, lock=True)
    if S(test.state).is_terminal:
        raise Conflict(f"connection test {test_id} already ended ({test.state})")
    test.state = S.RUNNING
    test.worker = worker
    test.started_at = test.started_at or utcnow()


async def claim(session: AsyncSession, test_id: str, holder: WorkerCredential, worker: str) -> ConnectionTest:
    """A worker takes a dispatched test with its own credential: only a connection-test worker of the
    test's queue may, and the claim records which credential holds it (a second dispatch attempt,
    after the first worker died, moves it)."""
    test = await get(session, test_id, lock=True)
    if holder.triggerer:
        raise Forbidden("a triggerer's credential does not run connection tests")
    if test.queue not in holder.queues:
        raise Forbidden(f"connection test {test_id} is on a queue this worker's credential does not cover")
    if S(test.state).is_terminal:
        raise Conflict(f"connection test {test_id} already ended ({test.state})")
    if test.state != S.QUEUED and test.state != S.RUNNING:
        raise Conflict(f"connection test {test_id} has not been dispatched ({test.state})")
    test.state = S.RUNNING
    test.worker = worker
    test.credential = holder.name
    test.started_at = test.started_at or utcnow()
    return test


async def finish(session: AsyncSession, box: SecretBox, test_id: str, outcome: ConnectionTestOutcome) -> bool:
    """Record the terminal state once; later reports change nothing and return False."""
    test = await get(session, test_id, lock=True)
    if S(test.state).is_terminal:
        return False
    test.state = S.SUCCESS if outcome.ok else S.FAILED
    test.result_message = outcome.message[:MAX_RESULT_MESSAGE_CHARS]
    test.worker = outcome.worker or test.worker
    test.finished_at = utcnow()
    test.active_connection_id = None
    if outcome.ok and test.commit_on_success and test.connection_id:
        refusal = await connections.save_unless_changed(
            session, box, test.connection_id, connections.fields_of(test, box), test.connection_revision
        )
        if refusal is not None:
            # The test's own result stands; only the write-back is refused.
            test.result_message = _with_note(outcome.message, f"not saved: {refusal}")
    await session.flush()
    metrics.connection_test_finished(session, test)
    return True


def _with_note(message: str, note: str) -> str:
    suffix = f"; {note}" if message else note
    return message[: MAX_RESULT_MESSAGE_CHARS - len(suffix)] + suffix


async def stale_active(
    session: AsyncSession, older_than_seconds: float, limit: int = 200
) -> list[ConnectionTest]:
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    rows = await session.scalars(
        select(ConnectionTest)
        .where(
            ConnectionTest.state.in_([s.value for s in ACTIVE_TEST_STATES]),
            ConnectionTest.updated_at < cutoff,
        )
        .order_by(ConnectionTest.created_at)
        .limit(limit)
    )
    return list(rows)


async def latest_per_connection(
    session: AsyncSession, connection_ids: Sequence[str]
) -> dict[str, ConnectionTest]:
    """The newest test of each of these connections (one query, for a page of them)."""
    if not connection_ids:
        return {}
    newest = (
        select(ConnectionTest.connection_id, func.max(ConnectionTest.created_at).label("created_at"))
        .where(ConnectionTest.connection_id.in_(connection_ids))
        .group_by(ConnectionTest.connection_id)
        .subquery()
    )
    rows = await session.scalars(
        select(ConnectionTest).join(
            newest,
            (ConnectionTest.connection_id == newest.c.connection_id)
            & (ConnectionTest.created_at == newest.c.created_at),
        )
    )
    return {test.connection_id: test for test in rows if test.connection_id is not None}


async def count_active(session: AsyncSession) -> dict[tuple[str, str], int]:
    """How many tests not yet ended each queue has in each state (pending, queued, running)."""
    rows = await session.execute(
        select(ConnectionTest.queue, ConnectionTest.state, func.count())
        .where(ConnectionTest.state.in_([s.value for s in ACTIVE_TEST_STATES]))
        .group_by(ConnectionTest.queue, ConnectionTest.state)
    )
    return {(queue, state): count for queue, state, count in rows.all()}


async def queues_with_waiting_tests(session: AsyncSession) -> dict[str, int]:
    """How many tests wait (pending or queued) on each queue that has any."""
    waiting: dict[str, int] = {}
    for (queue, state), count in (await count_active(session)).items():
        if state != ConnectionTestState.RUNNING:
            waiting[queue] = waiting.get(queue, 0) + count
    return waiting
