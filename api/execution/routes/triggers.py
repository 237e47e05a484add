from __future__ import annotations

from typing import Any

import structlog
from cadwyn import VersionedAPIRouter
from fastapi import HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.connection import ConnectionFields
from airlock.execution import (
    HeldTriggers,
    TriggerClaim,
    TriggerEventBatch,
    TriggerEventBody,
    TriggerEventOutcome,
    TriggerEventOutcomes,
    TriggerFailureBody,
    TriggerLogBatch,
    TriggersToStop,
    TriggerWorkload,
)
from airlock.logging import bind_work, work_bound
from airlock.states import TriggerState
from airlock.summaries import shorten
from api.core.security import Principal, mint_trigger_token
from api.db.models import Trigger, utcnow
from api.deps import RuntimeDep, SessionDep
from api.execution.security import TriggererDep, TriggerTokenDep, WorkerDep, check_holder
from api.services import connections, jobs, triggers
from workflows.trigger import NO_TIMEOUT_LIMIT

log = structlog.get_logger(__name__)
router = VersionedAPIRouter(prefix="/triggers", tags=["triggers"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or forged token"},
    403: {"description": "token of another trigger or kind"},
    404: {"description": "no such trigger"},
}


@router.post(
    "/{trigger_id}/workload",
    responses={
        **_RESPONSES,
        403: {"description": "not a triggerer of the trigger's queue"},
        409: {"description": "trigger ended"},
    },
)
async def claim_workload(
    trigger_id: str, body: TriggerClaim, worker: WorkerDep, session: SessionDep, runtime: RuntimeDep
) -> TriggerWorkload:
    """A triggerer takes the trigger (again, after another triggerer died) with its own credential:
    classpath, kwargs, deadline, and a token for this trigger that dies when the trigger ends."""
    identity = body.triggerer or worker.name
    bind_work(trigger_id=trigger_id, queue=None, worker=identity)  # a refused claim names it too
    trigger = await triggers.claim(session, trigger_id, worker, job_id=body.job_id, triggerer=identity)
    bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=identity)
    log.info("trigger claimed", classpath=trigger.classpath, job_id=body.job_id)
    return TriggerWorkload(
        token=mint_trigger_token(runtime.settings, trigger.id, worker.name, _token_ttl(trigger)),
        trigger_id=trigger.id,
        classpath=trigger.classpath,
        kwargs=triggers.kwargs_of(trigger, runtime.box),
        timeout_at=trigger.timeout_at,
    )


@router.post(
    "/held",
    responses={
        401: {"description": "missing or invalid credential"},
        403: {"description": "not a triggerer's credential, or another worker's job"},
        404: {"description": "no such job"},
    },
)
async def check_held(body: HeldTriggers, worker: TriggererDep, session: SessionDep) -> TriggersToStop:
    """A triggerer's running triggers, sent every job heartbeat interval: the answer names those it must
    stop (ended, claimed since by another job, or gone). Answers only about what the caller sent."""
    await jobs.get_owned(session, body.job_id, worker.name)
    held = await triggers.still_held(session, body.trigger_ids, job_id=body.job_id, credential=worker.name)
    return TriggersToStop(trigger_ids=[t for t in body.trigger_ids if t not in held])


@router.post(
    "/events",
    responses={
        401: {"description": "missing or invalid credential"},
        403: {"description": "not a triggerer's credential"},
    },
)
async def post_events(
    body: TriggerEventBatch, worker: TriggererDep, session: SessionDep, runtime: RuntimeDep
) -> TriggerEventOutcomes:
    """Events of triggers this triggerer holds, each after its last log lines, in one transaction: a
    thousand triggers firing together cost a few requests, not two thousand. Each event gets the
    status its own ``POST /triggers/{id}/event`` would have; a refused one writes nothing."""
    judged = await triggers.record_events(
        session,
        body.events,
        credential=worker.name,
        job_id=body.job_id,
        triggerer=body.triggerer,
        keep=runtime.settings.max_log_lines_per_trigger,
    )
    outcomes = []
    for event, (trigger, refused) in zip(body.events, judged, strict=True):
        queue = trigger.queue if trigger is not None else None
        with work_bound(trigger_id=event.trigger_id, queue=queue, worker=body.triggerer):
            if refused is None:
                log.info("trigger fired", event_type=event.event_type)
                outcomes.append(TriggerEventOutcome(trigger_id=event.trigger_id, status_code=204))
            else:
                log.warning("trigger event refused", error=refused.detail, status=refused.status_code)
                outcomes.append(
                    TriggerEventOutcome(
                        trigger_id=event.trigger_id, status_code=refused.status_code, detail=refused.detail
                    )
                )
    return TriggerEventOutcomes(outcomes=outcomes)


@router.post(
    "/{trigger_id}/event",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 409: {"description": "trigger ended otherwise"}},
)
async def post_event(
    trigger_id: str, body: TriggerEventBody, principal: TriggerTokenDep, session: SessionDep
) -> None:
    """The trigger fired. Idempotent: a repeated event (a retried triggerer) changes nothing."""
    bind_work(trigger_id=trigger_id, queue=None, worker=None)  # a refused event names it too
    await _held(session, trigger_id, principal)
    event_type, payload = body.event_type, body.payload
    applied = await triggers.record_event(session, trigger_id, event_type=event_type, payload=payload)
    await _bind(session, trigger_id)
    log.info("trigger fired", event_type=body.event_type, applied=applied)


@router.post(
    "/{trigger_id}/failure",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 409: {"description": "trigger ended"}},
)
async def post_failure(
    trigger_id: str, body: TriggerFailureBody, principal: TriggerTokenDep, session: SessionDep
) -> None:
    """The trigger raised: it fails, and its task instance resumes in ``__fail__`` with the error."""
    bind_work(trigger_id=trigger_id, queue=None, worker=None)  # a refused report names it too
    triggers.check_active(await _held(session, trigger_id, principal))
    changed = await triggers.end(
        session, trigger_id, state=TriggerState.FAILED, reason=body.error, traceback=body.traceback or ""
    )
    await _bind(session, trigger_id)
    log.info("trigger failed", error=shorten(body.error), applied=changed)


@router.post(
    "/{trigger_id}/logs",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 409: {"description": "trigger ended"}},
)
async def post_logs(
    trigger_id: str,
    body: TriggerLogBatch,
    principal: TriggerTokenDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> None:
    triggers.check_active(await _held(session, trigger_id, principal))
    await triggers.add_logs(
        session,
        trigger_id,
        job_id=body.job_id,
        triggerer=body.triggerer,
        lines=body.lines,
        keep=runtime.settings.max_log_lines_per_trigger,
    )
    await _bind(session, trigger_id, worker=body.triggerer)


@router.get(
    "/{trigger_id}/connections/{connection_id}",
    responses={**_RESPONSES, 409: {"description": "trigger ended"}},
)
async def get_connection(
    trigger_id: str,
    connection_id: str,
    principal: TriggerTokenDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConnectionFields:
    """A saved connection the trigger names in its kwargs (``conn_id``, ``*_conn_id``): a SQL trigger's
    database, say, while the trigger runs. Any other connection is out of this trigger's reach."""
    trigger = await _held(session, trigger_id, principal)
    triggers.check_active(trigger)
    if connection_id not in triggers.named_connections(triggers.kwargs_of(trigger, runtime.box)):
        log.warning("refused: the trigger's kwargs do not name that connection", connection_id=connection_id)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this trigger's kwargs do not name that connection")
    log.info("trigger read a connection", connection_id=connection_id)
    return connections.fields_of(await connections.get(session, connection_id), runtime.box)


async def _held(session: AsyncSession, trigger_id: str, principal: Principal) -> Trigger:
    trigger = await triggers.get(session, trigger_id)
    bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=trigger.triggerer)
    check_holder(principal, trigger.credential, f"trigger {trigger_id}")
    return trigger


def _token_ttl(trigger: Trigger) -> float:
    # The token dies with the trigger anyway; expiry bounds a token that leaks from a live one.
    if trigger.timeout_at is None:
        return NO_TIMEOUT_LIMIT.total_seconds()
    return max(0.0, (trigger.timeout_at - utcnow()).total_seconds()) + 300


async def _bind(session: AsyncSession, trigger_id: str, worker: str | None = None) -> None:
    # The row is in the session already (the service loaded it): no query.
    trigger = await triggers.get(session, trigger_id)
    bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=worker or trigger.triggerer)
