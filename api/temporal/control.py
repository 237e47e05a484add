"""The API's own Temporal worker (the control queue): it runs the workflows and the activities that
write to the metadata database, so that the database never leaves the API process."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from airlock.logging import bind_work
from airlock.protocol import (
    CONTROL_REFUSED_ERROR,
    DISPATCH_TRIGGER_ACTIVITY,
    END_TRIGGER_ACTIVITY,
    EVENT,
    RECORD_RESULT_ACTIVITY,
    RECORD_TIMER_FIRED_ACTIVITY,
    TAKE_SLOT_ACTIVITY,
    connection_test_workflow_id,
    trigger_workflow_id,
)
from airlock.serde import serialize
from airlock.states import ConnectionTestState, TriggerState
from airlock.summaries import shorten
from airlock.workloads import (
    ConnectionTestRecord,
    ControlCall,
    DispatchPlan,
    SlotDecision,
    TriggerEnd,
    TriggerPlan,
)
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.core.security import workflow_grant
from api.db.models import utcnow
from api.services import connection_tests, slots, triggers
from api.services.errors import Conflict
from api.temporal.client import wake_slot_holders
from workflows.connection_test import ConnectionTestWorkflow
from workflows.trigger import TriggerWorkflow

log = structlog.get_logger(__name__)

# Temporal's names of the two workflows whose rows control activities write (their class names).
CONNECTION_TEST_WORKFLOW = ConnectionTestWorkflow.__name__
TRIGGER_WORKFLOW = TriggerWorkflow.__name__
# How long a stopping API lets its control activities finish before cancelling them; api/main.py waits
# twice as long for the whole worker to stop.
CONTROL_SHUTDOWN_SECONDS = 5


def check_caller(settings: Settings, workflow_id: str, workflow_type: str, grant: str) -> None:
    """A control activity acts only for the workflow the API started for that row: its id and type
    come from Temporal, and its grant (a MAC over the id, sealed in its input) only the API can make."""
    info = activity.info()
    if (
        info.workflow_id != workflow_id
        or info.workflow_type != workflow_type
        or not hmac.compare_digest(grant.encode(), workflow_grant(settings, workflow_id).encode())
    ):
        log.warning(
            "refused a control call from a workflow that does not own the row",
            caller=info.workflow_id,
            caller_type=info.workflow_type,
            row_workflow=workflow_id,
        )
        raise ApplicationError(
            f"refused: workflow {info.workflow_id} ({info.workflow_type}) does not own {workflow_id}",
            type=CONTROL_REFUSED_ERROR,
            non_retryable=True,
        )


@dataclass
class ControlActivities:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    # Nudges the tests granted a slot to ask for it again.
    client: Client | None

    def _check(self, test_id: str, grant: str) -> None:
        check_caller(self.settings, connection_test_workflow_id(test_id), CONNECTION_TEST_WORKFLOW, grant)

    @activity.defn(name=TAKE_SLOT_ACTIVITY)
    async def take_connection_test_slot(self, call: ControlCall) -> SlotDecision:
        """A local activity of the test's workflow: its slot and where to run it, or why it waits."""
        self._check(call.row_id, call.grant)
        cap = self.settings.max_connection_test_concurrency
        async with self.sessions.begin() as session:
            test, granted = await slots.take(session, cap, call.row_id)
            bind_work(test_id=test.id, queue=test.queue, worker=test.worker)
            state = ConnectionTestState(test.state)
        wake_slot_holders(self.client, [t for t in granted if t != test.id])
        if state.is_terminal:
            log.info("connection test not dispatched: it ended already", state=state)
            return SlotDecision(ended=f"test already ended ({state})")
        if state == ConnectionTestState.PENDING:
            return SlotDecision()
        log.info("connection test queued", timeout=test.timeout)
        return SlotDecision(
            DispatchPlan(
                queue=test.queue,
                timeout=test.timeout,
                dispatch_timeout=self.settings.connection_test_dispatch_timeout,
                heartbeat_timeout=self.settings.connection_test_heartbeat_timeout,
            )
        )

    @activity.defn(name=RECORD_RESULT_ACTIVITY)
    async def record_connection_test_result(self, record: ConnectionTestRecord) -> bool:
        """A local activity of the test's workflow: the outcome, and the freed slot to the next test."""
        self._check(record.test_id, record.grant)
        cap = self.settings.max_connection_test_concurrency
        async with self.sessions.begin() as session:
            changed, granted = await slots.finish(session, self.box, cap, record.test_id, record.outcome)
            test = await connection_tests.get(session, record.test_id)  # no query: the session has it
            bind_work(test_id=test.id, queue=test.queue, worker=test.worker)
        wake_slot_holders(self.client, granted)
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
    box: SecretBox

    def _check(self, trigger_id: str, grant: str) -> None:
        check_caller(self.settings, trigger_workflow_id(trigger_id), TRIGGER_WORKFLOW, grant)

    @activity.defn(name=DISPATCH_TRIGGER_ACTIVITY)
    async def dispatch_trigger(self, call: ControlCall) -> TriggerPlan | None:
        """Where the trigger runs. None when it has ended already: its workflow is a rerun (reset)."""
        self._check(call.row_id, call.grant)
        async with self.sessions() as session:
            trigger = await triggers.get(session, call.row_id)
            bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=trigger.triggerer)
            if TriggerState(trigger.state).is_terminal:
                log.info("trigger not dispatched: it ended already", state=trigger.state)
                return None
        log.info("trigger dispatched to its queue", classpath=trigger.classpath)
        return TriggerPlan(queue=trigger.queue, heartbeat_timeout=self.settings.trigger_run_heartbeat_timeout)

    @activity.defn(name=RECORD_TIMER_FIRED_ACTIVITY)
    async def record_timer_fired(self, call: ControlCall) -> bool:
        self._check(call.row_id, call.grant)
        payload = serialize({"moment": utcnow()})
        async with self.sessions.begin() as session:
            trigger = await triggers.get(session, call.row_id)
            # A timer: no worker holds it.
            bind_work(trigger_id=trigger.id, queue=trigger.queue, worker=None)
            kwargs = triggers.kwargs_of(trigger, self.box)
            due = triggers.fire_at(trigger.classpath, kwargs, trigger.created_at)
            if due is None or due > utcnow():
                # The moment comes from the row, not from whoever says the timer fired.
                raise ApplicationError(f"trigger {trigger.id} is not a timer due now", non_retryable=True)
            try:
                changed = await triggers.record_event(session, trigger.id, event_type=EVENT, payload=payload)
            except Conflict:
                log.info("timer fired after the trigger ended: nothing to resume")
                return False
        log.info("trigger fired (timer)", event_type=EVENT, applied=changed)
        return changed

    @activity.defn(name=END_TRIGGER_ACTIVITY)
    async def end_trigger(self, end: TriggerEnd) -> bool:
        self._check(end.trigger_id, end.grant)
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
        workflows=[ConnectionTestWorkflow, TriggerWorkflow],
        workflow_runner=(
            SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()
        ),
        activities=[
            activities.take_connection_test_slot,
            activities.record_connection_test_result,
            trigger_activities.dispatch_trigger,
            trigger_activities.record_timer_fired,
            trigger_activities.end_trigger,
        ],
        graceful_shutdown_timeout=timedelta(seconds=CONTROL_SHUTDOWN_SECONDS),
    )
