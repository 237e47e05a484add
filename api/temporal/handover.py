"""Handing a silent triggerer's triggers over to another triggerer of their queue.

A waiting trigger heartbeats to Temporal rarely (a thousand frequent heartbeats cost most of a core),
so Temporal's heartbeat timeout on a trigger's run is only a backstop. A triggerer's liveness is its
job's heartbeat to the API instead: one per triggerer. When a job has been silent for
``trigger_heartbeat_timeout``, this pass fails the run of each trigger it held, as the worker that
died would have, and Temporal retries the run on another triggerer of the queue.

It runs in every API replica; failing a run is guarded by the attempt's worker identity, so replicas
cannot fail the attempt another triggerer has started since.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from airlock.logging import work_bound
from airlock.protocol import RUN_TRIGGER_ACTIVITY, TRIGGERER_LOST_ERROR, trigger_workflow_id
from api.core.config import Settings
from api.services import triggers
from api.temporal.reaper import reap_forever

log = structlog.get_logger(__name__)

# Runs failed at once: a dead triggerer may have held thousands.
CONCURRENT_HANDOVERS = 16


class TriggerHandover:
    def __init__(
        self, client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._client = client
        self._timeout = settings.trigger_heartbeat_timeout
        self._sessions = sessions
        # Heartbeats cannot land while the database is out of reach: after an outage (or at start), a
        # job gets a whole timeout to beat again before it is presumed dead.
        self._reachable_since = time.monotonic()

    async def run_forever(self) -> None:
        await reap_forever("trigger handover", self.hand_over_once, self._timeout / 3)

    async def hand_over_once(self) -> int:
        """Fail the runs of triggers whose triggerer went silent; returns how many were failed."""
        try:
            async with self._sessions() as session:
                orphans = [
                    (t.id, t.queue, t.triggerer) for t in await triggers.orphaned(session, self._timeout)
                ]
        except Exception:
            self._reachable_since = time.monotonic()
            raise
        if time.monotonic() - self._reachable_since < self._timeout:
            return 0
        gate = asyncio.Semaphore(CONCURRENT_HANDOVERS)

        async def one(trigger_id: str, queue: str, triggerer: str | None) -> bool:
            async with gate:
                with work_bound(trigger_id=trigger_id, queue=queue, worker=triggerer):
                    return await self._fail_run(trigger_id, triggerer)

        return sum(await asyncio.gather(*(one(*orphan) for orphan in orphans)))

    async def _fail_run(self, trigger_id: str, triggerer: str | None) -> bool:
        handle = self._client.get_workflow_handle(trigger_workflow_id(trigger_id))
        try:
            description = await handle.describe()
            for pending in description.raw_description.pending_activities:
                # Only the attempt the silent triggerer started: a retry elsewhere is left alone.
                if (
                    pending.activity_type.name == RUN_TRIGGER_ACTIVITY
                    and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    and pending.last_worker_identity == triggerer
                ):
                    run = self._client.get_async_activity_handle(
                        workflow_id=handle.id, run_id=description.run_id, activity_id=pending.activity_id
                    )
                    reason = f"its triggerer {triggerer} stopped heartbeating"
                    await run.fail(ApplicationError(reason, type=TRIGGERER_LOST_ERROR))
                    log.warning("trigger handed over", reason=reason, attempt=pending.attempt)
                    return True
        except RPCError as exc:
            # The workflow or the attempt ended meanwhile: nothing left to hand over.
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        return False
