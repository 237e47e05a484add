from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.states import TaskInstanceState
from api.core.crypto import SecretBox
from api.db.models import TaskInstance, Trigger
from api.services import triggers
from api.services.errors import Conflict, Forbidden, NotFound


async def get(session: AsyncSession, ti_id: str, *, lock: bool = False) -> TaskInstance:
    ti = await session.get(TaskInstance, ti_id, with_for_update=lock)
    if ti is None:
        raise NotFound(f"task instance {ti_id} not found")
    return ti


async def create(
    session: AsyncSession,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    allowed_queues: list[str],
    allowed_connections: list[str],
) -> TaskInstance:
    ti = TaskInstance(
        id=str(uuid.uuid4()),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        state=TaskInstanceState.RUNNING,
        allowed_queues=sorted(set(allowed_queues)),
        allowed_connections=sorted(set(allowed_connections)),
    )
    session.add(ti)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"task instance {dag_id}/{run_id}/{task_id}[{map_index}] already exists") from None
    return ti


def check_allowed(ti: TaskInstance, queue: str, kwargs: dict[str, Any]) -> None:
    """Task code defers only onto what an administrator allowed this task instance: its trigger's
    queue, and the saved connections its kwargs name (which the trigger's token may then read)."""
    if queue not in ti.allowed_queues:
        raise Forbidden(f"task instance {ti.id} may not defer onto queue {queue!r}")
    outside = sorted(triggers.named_connections(kwargs) - set(ti.allowed_connections))
    if outside:
        raise Forbidden(f"task instance {ti.id} may not name connection(s) {', '.join(outside)}")


async def defer(
    session: AsyncSession,
    box: SecretBox,
    ti: TaskInstance,
    *,
    classpath: str,
    kwargs: dict[str, object],
    queue: str,
    next_method: str,
    next_kwargs: dict[str, Any] | None,
    trigger_timeout: datetime | None,
    max_active_triggers: int,
    by_task: bool,
) -> Trigger:
    """A running task (``ti``, locked or created in this transaction) defers: it waits on a new trigger
    and resumes in ``next_method``. ``by_task``: the task's own code asks (the Execution API), within
    what it was allowed; else an administrator."""
    if by_task:
        check_allowed(ti, queue, kwargs)
    if ti.state != TaskInstanceState.RUNNING:
        raise Conflict(f"task instance {ti.id} is {ti.state}; only a running task can defer")
    trigger = await triggers.create(
        session,
        box,
        classpath=classpath,
        kwargs=kwargs,
        queue=queue,
        timeout=None,
        timeout_at=trigger_timeout,
        max_active=max_active_triggers,
        task_instance_id=ti.id,
    )
    ti.state = TaskInstanceState.DEFERRED
    ti.trigger_id = trigger.id
    ti.next_method = next_method
    ti.next_kwargs = triggers.json_text(next_kwargs) if next_kwargs is not None else None
    ti.trigger_timeout = trigger_timeout
    await session.flush()
    return trigger


async def clear(session: AsyncSession, ti_id: str) -> str | None:
    """Reset a task instance to run again; returns the trigger it was waiting on, now to be cancelled."""
    ti = await get(session, ti_id, lock=True)
    trigger_id = ti.trigger_id
    ti.state = TaskInstanceState.SCHEDULED
    ti.trigger_id = None
    ti.next_method = None
    ti.next_kwargs = None
    ti.trigger_timeout = None
    await session.flush()
    return trigger_id
