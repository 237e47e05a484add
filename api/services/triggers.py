"""Triggers and the task instances they resume. Every transition happens here, under a row lock;
a trigger's event is applied to its task instance exactly once."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock import triggers as builtin
from airlock.execution import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS, TriggerEventItem
from airlock.plugins import DEFAULT_TRIGGER_ALLOWLIST, is_allowed
from airlock.protocol import EVENT_KWARG, FAIL_METHOD
from airlock.states import TERMINAL_EVENT_STATES, TaskInstanceState, TriggerState
from airlock.timers import due_moment
from airlock.validation import QUEUE_PATTERN
from api.core.crypto import SecretBox
from api.db.models import Job, TaskInstance, Trigger, TriggerLog, WorkerCredential, utcnow
from api.services import jobs
from api.services.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    TooManyRequests,
    Unprocessable,
)

ACTIVE_TRIGGER_STATES = (TriggerState.SCHEDULED.value, TriggerState.RUNNING.value)
MAX_FAILURE_CHARS = MAX_ERROR_CHARS + 1 + MAX_TRACEBACK_CHARS


async def get(session: AsyncSession, trigger_id: str, *, lock: bool = False) -> Trigger:
    trigger = await session.get(Trigger, trigger_id, with_for_update=lock)
    if trigger is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return trigger


async def list_(
    session: AsyncSession, *, state: TriggerState | None, limit: int, offset: int, queue: str | None = None
) -> tuple[Sequence[Trigger], int]:
    query = select(Trigger)
    if state is not None:
        query = query.where(Trigger.state == state)
    if queue is not None:
        query = query.where(Trigger.queue == queue)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Trigger.created_at.desc(), Trigger.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def create(
    session: AsyncSession,
    box: SecretBox,
    *,
    classpath: str,
    kwargs: dict[str, Any],
    queue: str,
    timeout: float | None,
    max_active: int,
    task_instance_id: str | None = None,
    timeout_at: datetime | None = None,
) -> Trigger:
    """Store a trigger, unless ``queue`` already has ``max_active`` triggers that have not ended."""
    classpath = builtin.canonical(classpath)
    check_classpath(classpath)
    if timeout_at is None and timeout is not None:
        timeout_at = utcnow() + timedelta(seconds=timeout)
    fire_at(classpath, kwargs, utcnow())  # refuse bad time-trigger kwargs before storing
    active = await session.scalar(
        select(func.count())
        .select_from(Trigger)
        .where(Trigger.queue == queue, Trigger.state.in_(ACTIVE_TRIGGER_STATES))
    )
    if (active or 0) >= max_active:
        raise TooManyRequests(
            f"queue {queue!r} already has {active} triggers scheduled or running, the most it may have "
            f"(AIRLOCK_MAX_ACTIVE_TRIGGERS_PER_QUEUE={max_active}); nothing was stored, retry later"
        )
    trigger = Trigger(
        id=str(uuid.uuid4()),
        classpath=classpath,
        kwargs=box.encrypt_json(kwargs),
        queue=queue,
        state=TriggerState.SCHEDULED,
        task_instance_id=task_instance_id,
        timeout_at=timeout_at,
    )
    session.add(trigger)
    await session.flush()
    return trigger


def check_queue(queue: str, control_queue: str) -> None:
    if not re.fullmatch(QUEUE_PATTERN, queue):
        raise Unprocessable(f"queue {queue[:200]!r} is not a valid queue name (pattern {QUEUE_PATTERN})")
    if queue == control_queue:
        raise Unprocessable(f"{queue!r} is the API's own control queue: triggers cannot run there")


def check_classpath(classpath: str) -> None:
    """Refuse a classpath in Airlock's own trigger namespace that names none of its triggers (a typo
    would otherwise wait for a triggerer to refuse it). Classpaths elsewhere belong to the triggerers'
    allowlists, which only they know; the API never imports them."""
    known = builtin.builtin_classpaths()
    if classpath in known or not is_allowed(classpath, DEFAULT_TRIGGER_ALLOWLIST):
        return
    raise Unprocessable(f"unknown trigger class {classpath!r}: Airlock's triggers are {', '.join(known)}")


def kwargs_of(trigger: Trigger, box: SecretBox) -> dict[str, Any]:
    return box.decrypt_json(trigger.kwargs)


def named_connections(kwargs: dict[str, Any]) -> set[str]:
    """The saved connections a trigger may read: those its kwargs name as ``conn_id`` or ``*_conn_id``."""
    return {v for k, v in kwargs.items() if (k == "conn_id" or k.endswith("_conn_id")) and isinstance(v, str)}


async def mark_running(session: AsyncSession, trigger_id: str) -> bool:
    trigger = await get(session, trigger_id, lock=True)
    if TriggerState(trigger.state).is_terminal:
        return False
    trigger.state = TriggerState.RUNNING
    trigger.started_at = trigger.started_at or utcnow()
    return True


async def claim(
    session: AsyncSession, trigger_id: str, holder: WorkerCredential, *, job_id: str | None, triggerer: str
) -> Trigger:
    """A triggerer takes the trigger with its own credential: only a triggerer of the trigger's queue
    may. Who runs it is noted (a retry on another triggerer moves it there)."""
    trigger = await get(session, trigger_id, lock=True)
    if not holder.triggerer:
        raise Forbidden("only a triggerer's credential runs triggers")
    if trigger.queue not in holder.queues:
        raise Forbidden(f"trigger {trigger_id} is on a queue this worker's credential does not cover")
    if TriggerState(trigger.state).is_terminal:
        raise Conflict(f"trigger {trigger_id} already ended ({trigger.state})")
    trigger.state = TriggerState.RUNNING
    trigger.job_id = job_id
    trigger.triggerer = triggerer
    trigger.credential = holder.name
    trigger.started_at = trigger.started_at or utcnow()
    return trigger


async def still_held(
    session: AsyncSession, trigger_ids: Sequence[str], *, job_id: str, credential: str
) -> set[str]:
    """Of ``trigger_ids``, those still running under this job and this worker credential."""
    rows = await session.scalars(
        select(Trigger.id).where(
            Trigger.id.in_(trigger_ids),
            Trigger.state == TriggerState.RUNNING,
            Trigger.job_id == job_id,
            Trigger.credential == credential,
        )
    )
    return set(rows)


async def orphaned(session: AsyncSession, silent_for: float) -> list[Trigger]:
    """Running triggers whose triggerer's job has been silent for ``silent_for`` seconds, or ended."""
    cutoff = utcnow() - timedelta(seconds=silent_for)
    rows = await session.scalars(
        select(Trigger)
        .join(Job, Job.id == Trigger.job_id)
        .where(
            Trigger.state == TriggerState.RUNNING,
            or_(Job.state != jobs.RUNNING, Job.latest_heartbeat < cutoff),
        )
    )
    return list(rows)


async def unclaimed(session: AsyncSession, silent_for: float, *, limit: int) -> list[Trigger]:
    """Triggers a triggerer should have claimed ``silent_for`` seconds ago and has not: not timers,
    still scheduled, on a queue one of whose live triggerers runs fewer triggers than it may (so their
    run was handed out, perhaps to a triggerer that never got it). The oldest, at most ``limit``."""
    running = await running_per_job(session)
    queues = {
        queue
        for job in await jobs.live(session, silent_for, kind="triggerer")
        if running.get(job.id, 0) < (job.capacity or 0)
        for queue in job.queues
    }
    if not queues:
        return []
    rows = await session.scalars(
        select(Trigger)
        .where(
            Trigger.state == TriggerState.SCHEDULED,
            Trigger.queue.in_(sorted(queues)),
            Trigger.classpath.notin_(builtin.TIME_TRIGGERS),
            Trigger.updated_at < utcnow() - timedelta(seconds=silent_for),
        )
        .order_by(Trigger.updated_at)
        .limit(limit)
    )
    return list(rows)


def check_active(trigger: Trigger) -> None:
    if TriggerState(trigger.state).is_terminal:
        raise Conflict(f"trigger {trigger.id} has ended ({trigger.state})")


async def record_event(session: AsyncSession, trigger_id: str, *, event_type: str, payload: str) -> bool:
    """The first event wins and resumes the task instance; later ones change nothing (False)."""
    trigger = await get(session, trigger_id, lock=True)
    if trigger.state == TriggerState.FIRED:
        return False
    if TriggerState(trigger.state).is_terminal:
        raise Conflict(f"trigger {trigger_id} already ended ({trigger.state})")
    _fire(trigger, await _task_instance(session, trigger), event_type, payload)
    await session.flush()
    return True


async def record_events(
    session: AsyncSession,
    events: Sequence[TriggerEventItem],
    *,
    credential: str,
    job_id: str | None,
    triggerer: str | None,
    keep: int,
) -> list[tuple[Trigger | None, ServiceError | None]]:
    """Events of triggers one triggerer's ``credential`` holds, each after its last log lines, judged
    one by one as ``POST /triggers/{id}/event`` judges one: each event's trigger (None if unknown),
    and None when applied or a repeat (the first event wins), else why not; a refused event writes
    nothing. Two queries load and lock every trigger and task instance involved, in id order (as
    concurrent batches must), and one flush writes them."""
    trigger_ids = sorted({event.trigger_id for event in events})
    locked = select(Trigger).where(Trigger.id.in_(trigger_ids)).order_by(Trigger.id).with_for_update()
    rows = {trigger.id: trigger for trigger in await session.scalars(locked)}
    ti_ids = sorted({t.task_instance_id for t in rows.values() if t.task_instance_id is not None})
    waiting = select(TaskInstance).where(TaskInstance.id.in_(ti_ids)).order_by(TaskInstance.id)
    tis = {ti.id: ti for ti in await session.scalars(waiting.with_for_update())} if ti_ids else {}
    outcomes: list[tuple[Trigger | None, ServiceError | None]] = []
    chatty: set[str] = set()
    for event in events:
        trigger = rows.get(event.trigger_id)
        try:
            if trigger is None:
                raise NotFound(f"trigger {event.trigger_id} not found")
            if trigger.credential != credential:
                raise Forbidden(f"trigger {trigger.id} is held by another worker")
            if trigger.state != TriggerState.FIRED:
                check_active(trigger)
        except ServiceError as exc:
            outcomes.append((trigger, exc))
            continue
        outcomes.append((trigger, None))
        if trigger.state == TriggerState.FIRED:
            continue
        session.add_all(_log_rows(trigger, event.lines, job_id=job_id, triggerer=triggerer))
        if trigger.log_lines > keep:
            chatty.add(trigger.id)
        ti = tis.get(trigger.task_instance_id or "")
        _fire(
            trigger,
            ti if ti is not None and _waits_on(ti, trigger) else None,
            event.event_type,
            event.payload,
        )
    await session.flush()
    for trigger_id in sorted(chatty):
        await _trim_logs(session, trigger_id, keep)
    return outcomes


def _fire(trigger: Trigger, ti: TaskInstance | None, event_type: str, payload: str) -> None:
    trigger.state = TriggerState.FIRED
    trigger.event_type = event_type
    trigger.event_payload = payload
    trigger.finished_at = utcnow()
    if ti is None:
        return
    terminal = TERMINAL_EVENT_STATES.get(event_type)
    if terminal is not None:
        ti.state = terminal
        ti.next_method = None
        ti.next_kwargs = None
    else:
        ti.state = TaskInstanceState.SCHEDULED
        ti.next_kwargs = splice_event(ti.next_kwargs, payload)
    ti.trigger_id = None
    ti.trigger_timeout = None


async def end(
    session: AsyncSession, trigger_id: str, *, state: TriggerState, reason: str, traceback: str = ""
) -> bool:
    """Fail, time out or cancel a trigger; its task instance resumes with ``__fail__`` and the reason."""
    trigger = await get(session, trigger_id, lock=True)
    if TriggerState(trigger.state).is_terminal:
        return False
    trigger.state = state
    # Cut only what no client may send (the failure endpoint's own limits): the rest is kept whole.
    trigger.failure = (reason + ("\n" + traceback if traceback else ""))[:MAX_FAILURE_CHARS]
    trigger.finished_at = utcnow()
    ti = await _task_instance(session, trigger)
    if ti is not None and state != TriggerState.CANCELLED:
        ti.state = TaskInstanceState.SCHEDULED
        ti.next_method = FAIL_METHOD
        ti.next_kwargs = json_text({"error": reason, "traceback": traceback or None})
        ti.trigger_id = None
        ti.trigger_timeout = None
    await session.flush()
    return True


async def _task_instance(session: AsyncSession, trigger: Trigger) -> TaskInstance | None:
    if trigger.task_instance_id is None:
        return None
    ti = await session.get(TaskInstance, trigger.task_instance_id, with_for_update=True)
    return ti if ti is not None and _waits_on(ti, trigger) else None


def _waits_on(ti: TaskInstance, trigger: Trigger) -> bool:
    # Only the task instance still waiting on this trigger is resumed by it.
    return ti.trigger_id == trigger.id and ti.state == TaskInstanceState.DEFERRED


def json_text(value: dict[str, Any]) -> str:
    """JSON as next_kwargs stores it: UTF-8 as sent, not ASCII escapes (up to three times longer)."""
    return json.dumps(value, ensure_ascii=False)


def splice_event(next_kwargs: str | None, payload: str) -> str:
    """Put the worker's payload text in as ``next_kwargs["event"]`` without decoding either."""
    body = (next_kwargs or "{}").strip()
    rest = body[1:-1].strip()
    return "{" + json.dumps(EVENT_KWARG) + ": " + payload + (", " + rest if rest else "") + "}"


async def add_logs(
    session: AsyncSession,
    trigger_id: str,
    *,
    job_id: str | None,
    triggerer: str | None,
    lines: Sequence[Any],
    keep: int,
) -> None:
    """Store the lines; past ``keep`` lines for this trigger, the oldest go, so that a chatty trigger
    keeps its latest lines and cannot fill the database."""
    # Locked: batches of one trigger (from two triggerers, after a handover) count one after the other.
    trigger = await get(session, trigger_id, lock=True)
    session.add_all(_log_rows(trigger, lines, job_id=job_id, triggerer=triggerer))
    await session.flush()
    if trigger.log_lines > keep:
        await _trim_logs(session, trigger_id, keep)


def _log_rows(
    trigger: Trigger, lines: Sequence[Any], *, job_id: str | None, triggerer: str | None
) -> list[TriggerLog]:
    """The rows of ``lines``, counted on the trigger."""
    trigger.log_lines += len(lines)
    return [
        TriggerLog(
            trigger_id=trigger.id,
            job_id=job_id,
            triggerer=triggerer,
            logged_at=line.timestamp,
            level=line.level,
            message=line.message,
        )
        for line in lines
    ]


async def _trim_logs(session: AsyncSession, trigger_id: str, keep: int) -> None:
    newest_dropped = await session.scalar(
        select(TriggerLog.id)
        .where(TriggerLog.trigger_id == trigger_id)
        .order_by(TriggerLog.id.desc())
        .offset(keep)
        .limit(1)
    )
    if newest_dropped is not None:
        await session.execute(
            delete(TriggerLog).where(TriggerLog.trigger_id == trigger_id, TriggerLog.id <= newest_dropped)
        )


async def logs(
    session: AsyncSession, trigger_id: str, *, after_id: int, limit: int
) -> tuple[list[TriggerLog], int]:
    """Lines after ``after_id``, and how many lines the trigger logged that are no longer kept."""
    trigger = await get(session, trigger_id)
    rows = await session.scalars(
        select(TriggerLog)
        .where(TriggerLog.trigger_id == trigger_id, TriggerLog.id > after_id)
        .order_by(TriggerLog.id)
        .limit(limit)
    )
    kept = await session.scalar(
        select(func.count()).select_from(TriggerLog).where(TriggerLog.trigger_id == trigger_id)
    )
    return list(rows), max(0, trigger.log_lines - (kept or 0))


async def count_by_queue_and_state(session: AsyncSession) -> dict[tuple[str, str], int]:
    """How many triggers each queue has in each state (one pass over the queue-and-state index)."""
    rows = await session.execute(
        select(Trigger.queue, Trigger.state, func.count()).group_by(Trigger.queue, Trigger.state)
    )
    return {(queue, state): count for queue, state, count in rows.all()}


async def running_per_job(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Trigger.job_id, func.count())
        .where(Trigger.state == TriggerState.RUNNING)
        .group_by(Trigger.job_id)
    )
    return {job_id: count for job_id, count in rows.all() if job_id}


def fire_at(classpath: str, kwargs: dict[str, Any], created_at: datetime) -> datetime | None:
    """For Airlock's time triggers, the moment the workflow's timer fires; None for the others."""
    try:
        return due_moment(classpath, kwargs, created_at)
    except ValueError as exc:
        raise Unprocessable(f"invalid kwargs for {classpath}: {exc}") from None
