"""The API's own Temporal worker (the control queue): it runs the workflows and the activities that
write to the metadata database, so that the database never leaves the API process."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from airlock.logging import bind_work
from airlock.protocol import (
    DISPATCH_TRIGGER_ACTIVITY,
    END_TRIGGER_ACTIVITY,
    EVENT,
    MARK_QUEUED_ACTIVITY,
    RECORD_RESULT_ACTIVITY,
    RECORD_TIMER_FIRED_ACTIVITY,
)
from airlock.serde import serialize
from airlock.states import TriggerState
from airlock.summaries import shorten
from airlock.workloads import ConnectionTestRecord, DispatchTicket, TriggerEnd
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.core.security import mint_trigger_token, mint_workload_token
from api.db.models import utcnow
from api.services import connection_tests, triggers
from api.services.errors import Conflict
from workflows.connection_test import DISPATCH_ATTEMPTS, START_TO_CLOSE_MARGIN, ConnectionTestWorkflow
from workflows.slots import ConnectionTestSlotsWorkflow
from workflows.trigger import TriggerWorkflow

log = structlog.get_logger(__name__)


@dataclass
class ControlActivities:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox

    @activity.defn(name=MARK_QUEUED_ACTIVITY)
    async def mark_connection_test_queued(self, test_id: str) -> DispatchTicket:
        async with self.sessions.begin() as session:
            test = await connection_tests.get(session, test_id)
            bind_work(test_id=test_id, queue=test.queue, worker=test.worker)
            if not await connection_tests.mark_queued(session, test_id):
                log.info("connection test not dispatched: it ended already", state=test.state)
                raise ApplicationError(f"test already ended ({test.state})", non_retryable=True)
            timeout = test.timeout
        log.info("connection test queued", timeout=timeout)
        # The token outlives the test's last possible deadline only by a small margin.
        attempt = self.settings.connection_test_dispatch_timeout + timeout + START_TO_CLOSE_MARGIN
        ttl = DISPATCH_ATTEMPTS * attempt + 30
        return DispatchTicket(token=mint_workload_token(self.settings, test_id, ttl))

    @activity.defn(name=RECORD_RESULT_ACTIVITY)
    async def record_connection_test_result(self, record: ConnectionTestRecord) -> bool:
        async with self.sessions.begin() as session:
            changed = await connection_tests.finish(session, self.box, record.test_id, record.outcome)
            test = await connection_tests.get(session, record.test_id)  # no query: the session has it
            bind_work(test_id=test.id, queue=test.queue, worker=test.worker)
        outcome = "success" if record.outcome.ok else "failed"
        if changed:
            log.info("connection test finished", outcome=outcome, message=shorten(record.outcome.message))
        else:
            log.info("connection test ended already; outcome not recorded", outcome=outcome, state=test.state)
        return changed


@dataclass
class TriggerControlActivities:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    @activity.defn(name=DISPATCH_TRIGGER_ACTIVITY)
    async def dispatch_trigger(self, trigger_id: str, ttl_seconds: float) -> str | None:
        """The token a triggerer runs this trigger with; it expires soon after the trigger's deadline.

        None when the trigger has ended already: its workflow is a rerun (reset in Temporal)."""
        async with self.sessions() as session:
            trigger = await triggers.get(session, trigger_id)
            bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=trigger.triggerer)
            if TriggerState(trigger.state).is_terminal:
                log.info("trigger not dispatched: it ended already", state=trigger.state)
                return None
        log.info("trigger dispatched to its queue", classpath=trigger.classpath)
        return mint_trigger_token(self.settings, trigger_id, ttl_seconds + 3600)

    @activity.defn(name=RECORD_TIMER_FIRED_ACTIVITY)
    async def record_timer_fired(self, trigger_id: str) -> bool:
        payload = serialize({"moment": utcnow()})
        async with self.sessions.begin() as session:
            trigger = await triggers.get(session, trigger_id)
            # A timer: no worker holds it.
            bind_work(trigger_id=trigger_id, queue=trigger.queue, worker=None)
            try:
                changed = await triggers.record_event(session, trigger_id, event_type=EVENT, payload=payload)
            except Conflict:
                log.info("timer fired after the trigger ended: nothing to resume")
                return False
        log.info("trigger fired (timer)", event_type=EVENT, applied=changed)
        return changed

    @activity.defn(name=END_TRIGGER_ACTIVITY)
    async def end_trigger(self, end: TriggerEnd) -> bool:
        async with self.sessions.begin() as session:
            changed = await triggers.end(
                session, end.trigger_id, state=TriggerState(end.state), reason=end.reason
            )
            trigger = await triggers.get(session, end.trigger_id)  # no query: the session has it
            bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=trigger.triggerer)
        if changed:
            log.info("trigger ended", state=end.state, reason=shorten(end.reason))
        return changed


def control_worker(
    client: Client,
    settings: Settings,
    activities: ControlActivities,
    trigger_activities: TriggerControlActivities,
) -> Worker:
    return Worker(
        client,
        task_queue=settings.control_queue,
        workflows=[ConnectionTestWorkflow, ConnectionTestSlotsWorkflow, TriggerWorkflow],
        activities=[
            activities.mark_connection_test_queued,
            activities.record_connection_test_result,
            trigger_activities.dispatch_trigger,
            trigger_activities.record_timer_fired,
            trigger_activities.end_trigger,
        ],
    )
