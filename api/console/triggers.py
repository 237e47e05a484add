"""Triggers: the list, filtered by state and queue; each trigger's page (state, event, payload as
stored, failure, timestamps, triggerer) with its log lines following live while it waits
(static/console.js), and **Cancel**."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from airlock.states import TriggerState
from api.console.web import PREFIX, ConsoleSessionDep, FormDep, not_found, page, redirect
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import TriggerLogs, TriggerResponse
from api.public.routes.triggers import cancel, get_logs, get_trigger, list_triggers
from api.services.errors import ServiceError

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
# The page shows the newest lines this many at most; the script follows from the last one.
LOG_LINES = 1000


@router.get("/triggers")
async def triggers_page(
    request: Request,
    console: ConsoleSessionDep,
    session: SessionDep,
    state: str = Query("", max_length=20),
    queue: str = Query("", max_length=200),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    # An empty field of the filter form means "any".
    chosen = TriggerState(state) if state in set(TriggerState) else None
    listed = await list_triggers(session, state=chosen, queue=queue or None, limit=PAGE_SIZE, offset=offset)
    filters = {k: v for k, v in (("state", chosen), ("queue", queue)) if v}
    return page(
        request,
        "triggers.html",
        csrf=console.csrf,
        section="triggers",
        triggers=listed.triggers,
        total=listed.total_entries,
        offset=offset,
        page_size=PAGE_SIZE,
        states=list(TriggerState),
        filters=filters,
        query=urlencode(filters),
    )


@router.get("/triggers/{trigger_id}")
async def trigger_page(
    request: Request, trigger_id: str, console: ConsoleSessionDep, session: SessionDep
) -> Response:
    try:
        trigger = await get_trigger(trigger_id, session)
        logs = await get_logs(trigger_id, session, after_id=0, limit=LOG_LINES)
    except ServiceError as exc:
        return not_found(request, console.csrf, exc)
    return page(request, "trigger.html", csrf=console.csrf, section="triggers", trigger=trigger, logs=logs)


@router.get("/triggers/{trigger_id}/state")
async def trigger_state(trigger_id: str, _: ConsoleSessionDep, session: SessionDep) -> TriggerResponse:
    """The trigger as the public API shows it, for the page's script."""
    return await get_trigger(trigger_id, session)


@router.get("/triggers/{trigger_id}/logs")
async def trigger_logs(
    trigger_id: str,
    _: ConsoleSessionDep,
    session: SessionDep,
    after_id: int = Query(0, ge=0, le=2**62),
) -> TriggerLogs:
    """The lines after ``after_id``, for the page's script."""
    return await get_logs(trigger_id, session, after_id=after_id, limit=LOG_LINES)


@router.post("/triggers/{trigger_id}/cancel")
async def cancel_trigger(
    request: Request, trigger_id: str, console: ConsoleSessionDep, _: FormDep, runtime: RuntimeDep
) -> Response:
    try:
        await cancel(trigger_id, runtime)
    except ServiceError as exc:
        return not_found(request, console.csrf, exc)
    return redirect(request, f"/triggers/{trigger_id}")
