"""The reapers: a test or trigger whose workflow ended without recording its end still ends, with the
reason.

They run in every API replica; ``finish`` and ``end`` are idempotent under a row lock, so replicas
cannot clash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from airlock.logging import work_bound
from airlock.protocol import (
    CONNECTION_TEST_FAILED_ERROR,
    KIND_TRIGGER,
    connection_test_workflow_id,
    trigger_id_of,
)
from airlock.states import ConnectionTestState, TriggerState
from airlock.summaries import shorten
from airlock.workloads import ConnectionTestOutcome
from api import metrics
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.db.models import Trigger
from api.services import connection_tests, slots, triggers
from api.services.errors import NotFound
from api.temporal.client import wake_slot_holders

log = structlog.get_logger(__name__)

# A row younger than this may belong to a workflow that is being started right now: leave it.
MIN_AGE_SECONDS = 10.0


async def reap_forever(name: str, reap_once: Callable[[], Awaitable[int]], interval: float) -> None:
    """Run a reaper pass every ``interval`` seconds; a pass that fails is logged and the next one runs."""
    while True:
        try:
            await reap_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reaper pass failed", reaper=name, error=f"{type(exc).__name__}: {exc}")
            metrics.REAPER_FAILURES.labels(name.replace(" ", "_")).inc()
        await asyncio.sleep(interval)


class ConnectionTestReaper:
    def __init__(
        self, client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession], box: SecretBox
    ) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._box = box

    async def run_forever(self) -> None:
        await reap_forever("connection tests", self.reap_once, self._settings.connection_test_reaper_interval)

    async def reap_once(self, older_than: float | None = None) -> int:
        """End tests untouched for ``older_than`` seconds whose workflow is no longer running."""
        age = MIN_AGE_SECONDS if older_than is None else older_than
        async with self._sessions() as session:
            stale = [
                (t.id, t.queue, t.worker, t.state) for t in await connection_tests.stale_active(session, age)
            ]
        reaped = 0
        for test_id, queue, worker, state in stale:
            with work_bound(test_id=test_id, queue=queue, worker=worker):
                verdict = await self._verdict(test_id)
                if verdict is None:
                    if state == ConnectionTestState.QUEUED:
                        # Granted a slot a while ago: in case the nudge was lost, its workflow asks again.
                        wake_slot_holders(self._client, [test_id])
                        metrics.reaper_action("connection_tests", "nudged")
                    continue
                cap = self._settings.max_connection_test_concurrency
                async with self._sessions.begin() as session:
                    changed, granted = await slots.finish(session, self._box, cap, test_id, verdict)
                wake_slot_holders(self._client, granted)
                if changed:
                    reaped += 1
                    metrics.reaper_action("connection_tests", "ended")
                    log.warning("reaped connection test", reason=shorten(verdict.message))
        return reaped

    async def _verdict(self, test_id: str) -> ConnectionTestOutcome | None:
        handle = self._client.get_workflow_handle(connection_test_workflow_id(test_id))
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return ConnectionTestOutcome(False, "reaped: its workflow does not exist in Temporal")
            raise
        status = description.status
        if status in (None, WorkflowExecutionStatus.RUNNING):
            return None
        if status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
            # The workflow ended but could not record its outcome (the API was away): record it now. A
            # successful test's workflow completes with the outcome; a failed test's fails with it.
            outcome = await _outcome_of(self._client, handle.id)
            if outcome is not None:
                return outcome
        reason = await _closing_reason(handle)
        return ConnectionTestOutcome(
            False, f"reaped: its workflow was {status.name.lower().replace('_', ' ')} in Temporal{reason}"
        )


async def _outcome_of(client: Client, workflow_id: str) -> ConnectionTestOutcome | None:
    """The outcome a closed connection-test workflow carries; None when it failed some other way."""
    typed = client.get_workflow_handle(workflow_id, result_type=ConnectionTestOutcome)
    try:
        outcome: ConnectionTestOutcome = await typed.result()
        return outcome
    except WorkflowFailureError as exc:
        cause = exc.cause
        failed_test = isinstance(cause, ApplicationError) and cause.type == CONNECTION_TEST_FAILED_ERROR
        details = cause.details if isinstance(cause, ApplicationError) else ()
        if failed_test and details and isinstance(details[0], dict):
            return ConnectionTestOutcome(**details[0])
        return None


async def _closing_reason(handle: WorkflowHandle[Any, Any]) -> str:
    close_only = WorkflowHistoryEventFilterType.CLOSE_EVENT
    async for event in handle.fetch_history_events(event_filter_type=close_only):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            return f" ({reason})" if reason else ""
    return ""


class TriggerReaper:
    """Ends triggers whose workflow closed without ending them (terminated from the Temporal UI, say).

    Triggers wait for hours, so asking Temporal about each open row would cost an RPC per trigger per
    pass; instead each pass lists the trigger workflows that closed since the previous pass.
    """

    LOOKBACK = timedelta(days=1)
    # Visibility lags a little behind the close: look back over the previous pass too.
    OVERLAP = timedelta(minutes=1)

    def __init__(
        self, client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._since = datetime.now(UTC) - self.LOOKBACK

    async def run_forever(self) -> None:
        await reap_forever("triggers", self.reap_once, self._settings.trigger_reaper_interval)

    async def reap_once(self) -> int:
        started = datetime.now(UTC)
        query = (
            f"AirlockKind = '{KIND_TRIGGER}' AND ExecutionStatus != 'Running' "
            f"AND CloseTime > '{self._since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        )
        reaped = 0
        async for execution in self._client.list_workflows(query):
            trigger_id = trigger_id_of(execution.id)
            async with self._sessions() as session:
                try:
                    row: Trigger | None = await triggers.get(session, trigger_id)
                except NotFound:
                    row = None
            if row is not None and TriggerState(row.state).is_terminal:
                continue
            queue, worker = (row.queue, row.triggerer) if row is not None else (None, None)
            latest = await self._client.get_workflow_handle(execution.id).describe()
            if latest.status == WorkflowExecutionStatus.RUNNING:
                continue  # an earlier run, closed by a reset: the trigger carries on in the new run
            status = execution.status.name.lower().replace("_", " ") if execution.status else "closed"
            reason = await _closing_reason(
                self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
            )
            async with self._sessions.begin() as session:
                with contextlib.suppress(NotFound):
                    if await triggers.end(
                        session,
                        trigger_id,
                        state=TriggerState.FAILED,
                        reason=f"reaped: its workflow was {status} in Temporal{reason}",
                    ):
                        reaped += 1
                        metrics.reaper_action("triggers", "ended")
                        log.warning(
                            "reaped trigger", trigger_id=trigger_id, queue=queue, worker=worker, status=status
                        )
        self._since = started - self.OVERLAP
        return reaped
