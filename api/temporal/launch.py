"""Start a stored trigger's workflow; a trigger whose workflow cannot start ends at once, with the reason."""

from __future__ import annotations

import structlog

from airlock.logging import bind_work
from airlock.states import TriggerState
from api.db.models import Trigger
from api.deps import Runtime
from api.services import triggers
from api.services.errors import Unavailable
from api.temporal.client import start_trigger

log = structlog.get_logger(__name__)


async def launch_trigger(runtime: Runtime, trigger: Trigger) -> None:
    bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=None)
    fire_at = triggers.fire_at(
        trigger.classpath, triggers.kwargs_of(trigger, runtime.box), trigger.created_at
    )
    log.info("trigger created", classpath=trigger.classpath, fire_at=fire_at and fire_at.isoformat())
    try:
        if runtime.temporal is None:
            raise RuntimeError("no Temporal client")
        await start_trigger(runtime.temporal, runtime.settings, trigger, fire_at)
    except Exception as exc:
        log.warning("trigger failed: its workflow could not start", error=type(exc).__name__)
        async with runtime.sessions.begin() as session:
            await triggers.end(
                session,
                trigger.id,
                state=TriggerState.FAILED,
                reason=f"could not start its workflow: {type(exc).__name__}",
            )
        raise Unavailable(f"Temporal is unreachable; trigger {trigger.id} was recorded as failed") from None
