"""The API's own Temporal worker (the control queue): it runs the workflows and the activities that
write to the metadata database, so that the database never leaves the API process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from airlock.workloads import (
    MARK_QUEUED_ACTIVITY,
    RECORD_RESULT_ACTIVITY,
    ConnectionTestResult,
    DispatchTicket,
)
from api.core.config import Settings
from api.core.crypto import SecretBox
from api.core.security import mint_workload_token
from api.services import connection_tests
from workflows.connection_test import START_TO_CLOSE_MARGIN, ConnectionTestWorkflow
from workflows.slots import ConnectionTestSlotsWorkflow


@dataclass
class ControlActivities:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox

    @activity.defn(name=MARK_QUEUED_ACTIVITY)
    async def mark_connection_test_queued(self, test_id: str) -> DispatchTicket:
        async with self.sessions.begin() as session:
            test = await connection_tests.get(session, test_id)
            if not await connection_tests.mark_queued(session, test_id):
                raise ApplicationError(f"test already ended ({test.state})", non_retryable=True)
            timeout = test.timeout
        # The token outlives the test's deadline only by a small margin.
        ttl = self.settings.connection_test_dispatch_timeout + timeout + START_TO_CLOSE_MARGIN + 30
        return DispatchTicket(token=mint_workload_token(self.settings, test_id, ttl))

    @activity.defn(name=RECORD_RESULT_ACTIVITY)
    async def record_connection_test_result(self, result: ConnectionTestResult) -> bool:
        async with self.sessions.begin() as session:
            return await connection_tests.finish(
                session, self.box, result.test_id, ok=result.ok, message=result.message, worker=result.worker
            )


def control_worker(client: Client, settings: Settings, activities: ControlActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.control_queue,
        workflows=[ConnectionTestWorkflow, ConnectionTestSlotsWorkflow],
        activities=[activities.mark_connection_test_queued, activities.record_connection_test_result],
    )
