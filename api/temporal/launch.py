"""Start a stored test's or trigger's workflow after the request has been answered.

The row is committed first and the answer does not wait for Temporal: the workflow starts in the
background, and a row whose workflow cannot start ends ``failed`` at once with the reason. One that
never got the chance (the API stopped in between) is ended by the reaper, which finds no workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from airlock.logging import bind_work
from airlock.states import TriggerState
from airlock.workloads import ConnectionTestOutcome
from api.db.models import ConnectionTest, Trigger
from api.deps import Runtime
from api.services import slots, triggers
from api.temporal.background import spawn
from api.temporal.client import start_connection_test, start_trigger, wake_slot_holders

log = structlog.get_logger(__name__)


def _why(exc: Exception) -> str:
    return f"could not start its workflow: {type(exc).__name__}"


def launch_connection_test(runtime: Runtime, test: ConnectionTest, secrets: Sequence[str]) -> None:
    spawn(_start_connection_test(runtime, test, secrets))


async def _start_connection_test(runtime: Runtime, test: ConnectionTest, secrets: Sequence[str]) -> None:
    try:
        if runtime.temporal is None:
            raise RuntimeError("no Temporal client")
        await start_connection_test(runtime.temporal, runtime.settings, test, secrets=secrets)
    except Exception as exc:
        log.warning("connection test failed: its workflow could not start", error=type(exc).__name__)
        cap = runtime.settings.max_connection_test_concurrency
        async with runtime.sessions.begin() as session:
            _, granted = await slots.finish(
                session, runtime.box, cap, test.id, ConnectionTestOutcome(False, _why(exc))
            )
        wake_slot_holders(runtime.temporal, granted)


def launch_trigger(runtime: Runtime, trigger: Trigger) -> None:
    bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=None)
    fire_at = triggers.fire_at(
        trigger.classpath, triggers.kwargs_of(trigger, runtime.box), trigger.created_at
    )
    log.info("trigger created", classpath=trigger.classpath, fire_at=fire_at and fire_at.isoformat())
    spawn(_start_trigger(runtime, trigger, fire_at))


async def _start_trigger(runtime: Runtime, trigger: Trigger, fire_at: datetime | None) -> None:
    try:
        if runtime.temporal is None:
            raise RuntimeError("no Temporal client")
        await start_trigger(runtime.temporal, runtime.settings, trigger, fire_at)
    except Exception as exc:
        log.warning("trigger failed: its workflow could not start", error=type(exc).__name__)
        async with runtime.sessions.begin() as session:
            await triggers.end(session, trigger.id, state=TriggerState.FAILED, reason=_why(exc))
