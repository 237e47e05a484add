from __future__ import annotations

from typing import Any

from cadwyn import VersionedAPIRouter
from fastapi import HTTPException, status

from airlock.connection import ConnectionFields
from airlock.execution import (
    TriggerClaim,
    TriggerEventBody,
    TriggerFailureBody,
    TriggerLogBatch,
    TriggerWorkload,
)
from airlock.states import TriggerState
from api.deps import RuntimeDep, SessionDep
from api.execution.security import TriggerTokenDep
from api.services import connections, triggers

router = VersionedAPIRouter(prefix="/triggers", tags=["triggers"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or forged token"},
    403: {"description": "token of another trigger or kind"},
    404: {"description": "no such trigger"},
}


@router.post("/{trigger_id}/workload", responses={**_RESPONSES, 409: {"description": "trigger ended"}})
async def claim_workload(
    trigger_id: str, body: TriggerClaim, _: TriggerTokenDep, session: SessionDep, runtime: RuntimeDep
) -> TriggerWorkload:
    """A triggerer takes the trigger (again, after another triggerer died): classpath, kwargs, deadline."""
    trigger = await triggers.claim(session, trigger_id, job_id=body.job_id, triggerer=body.triggerer)
    return TriggerWorkload(
        trigger_id=trigger.id,
        classpath=trigger.classpath,
        kwargs=triggers.kwargs_of(trigger, runtime.box),
        timeout_at=trigger.timeout_at,
    )


@router.post(
    "/{trigger_id}/event",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 409: {"description": "trigger ended otherwise"}},
)
async def post_event(
    trigger_id: str, body: TriggerEventBody, _: TriggerTokenDep, session: SessionDep
) -> None:
    """The trigger fired. Idempotent: a repeated event (a retried triggerer) changes nothing."""
    await triggers.record_event(session, trigger_id, event_type=body.event_type, payload=body.payload)


@router.post("/{trigger_id}/failure", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def post_failure(
    trigger_id: str, body: TriggerFailureBody, _: TriggerTokenDep, session: SessionDep
) -> None:
    """The trigger raised: it fails, and its task instance resumes in ``__fail__`` with the error."""
    await triggers.end(
        session, trigger_id, state=TriggerState.FAILED, reason=body.error, traceback=body.traceback or ""
    )


@router.post("/{trigger_id}/logs", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def post_logs(
    trigger_id: str, body: TriggerLogBatch, _: TriggerTokenDep, session: SessionDep, runtime: RuntimeDep
) -> None:
    await triggers.add_logs(
        session,
        trigger_id,
        job_id=body.job_id,
        triggerer=body.triggerer,
        lines=body.lines,
        keep=runtime.settings.max_log_lines_per_trigger,
    )


@router.get("/{trigger_id}/connections/{connection_id}", responses=_RESPONSES)
async def get_connection(
    trigger_id: str, connection_id: str, _: TriggerTokenDep, session: SessionDep, runtime: RuntimeDep
) -> ConnectionFields:
    """A saved connection the trigger names in its kwargs (``conn_id``, ``*_conn_id``): a SQL trigger's
    database, say. Any other connection is out of this trigger's reach."""
    trigger = await triggers.get(session, trigger_id)
    if connection_id not in triggers.named_connections(triggers.kwargs_of(trigger, runtime.box)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this trigger's kwargs do not name that connection")
    return connections.fields_of(await connections.get(session, connection_id), runtime.box)
