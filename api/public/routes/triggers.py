from __future__ import annotations

import structlog
from fastapi import APIRouter, Query, status

from airlock.logging import bind_work
from airlock.states import TriggerState
from api.db.models import Trigger
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import (
    MAX_DB_INT,
    TriggerCreate,
    TriggerList,
    TriggerLogLine,
    TriggerLogs,
    TriggerResponse,
)
from api.services import triggers
from api.temporal.client import cancel_trigger
from api.temporal.launch import launch_trigger

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/triggers", tags=["triggers"])


def to_response(trigger: Trigger) -> TriggerResponse:
    return TriggerResponse.model_validate(trigger, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        429: {"description": "the queue has as many active triggers as it may (Retry-After)"},
    },
)
async def create_trigger(body: TriggerCreate, runtime: RuntimeDep) -> TriggerResponse:
    """A standalone trigger. Its kwargs are encrypted at rest; the API never imports its classpath."""
    queue = body.queue or runtime.settings.default_trigger_queue
    triggers.check_queue(queue, runtime.settings.control_queue)
    async with runtime.sessions.begin() as session:
        trigger = await triggers.create(
            session,
            runtime.box,
            classpath=body.classpath,
            kwargs=body.kwargs,
            queue=queue,
            timeout=body.timeout,
            max_active=runtime.settings.max_active_triggers_per_queue,
        )
    launch_trigger(runtime, trigger)
    return to_response(trigger)


@router.get("")
async def list_triggers(
    session: SessionDep,
    state: TriggerState | None = None,
    queue: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> TriggerList:
    rows, total = await triggers.list_(session, state=state, queue=queue, limit=limit, offset=offset)
    return TriggerList(triggers=[to_response(t) for t in rows], total_entries=total)


@router.get("/{trigger_id}", responses={404: {"description": "not found"}})
async def get_trigger(trigger_id: str, session: SessionDep) -> TriggerResponse:
    trigger = await triggers.get(session, trigger_id)
    bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=trigger.triggerer)  # for the access log
    return to_response(trigger)


@router.delete("/{trigger_id}", responses={404: {"description": "not found"}})
async def cancel(trigger_id: str, runtime: RuntimeDep) -> TriggerResponse:
    """Cancel: the workflow is cancelled and the triggerer runs the trigger's cleanup()."""
    async with runtime.sessions.begin() as session:
        changed = await triggers.end(
            session, trigger_id, state=TriggerState.CANCELLED, reason="cancelled through the API"
        )
        trigger = await triggers.get(session, trigger_id)
    bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=trigger.triggerer)
    if changed:
        log.info("trigger cancelled through the API")
    if runtime.temporal is not None:
        await cancel_trigger(runtime.temporal, trigger_id)
    return to_response(trigger)


@router.get("/{trigger_id}/logs", responses={404: {"description": "not found"}})
async def get_logs(
    trigger_id: str,
    session: SessionDep,
    after_id: int = Query(
        0, ge=0, le=MAX_DB_INT, description="only lines after this id (for following a live trigger)"
    ),
    limit: int = Query(1000, ge=1, le=10_000),
) -> TriggerLogs:
    """What the trigger logged on its triggerer, each line tagged with the triggerer job that ran it."""
    rows, dropped = await triggers.logs(session, trigger_id, after_id=after_id, limit=limit)
    trigger = await triggers.get(session, trigger_id)  # no query: the session has it
    bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=trigger.triggerer)
    return TriggerLogs(
        lines=[TriggerLogLine.model_validate(r, from_attributes=True) for r in rows], dropped_lines=dropped
    )
