"""Handing a silent triggerer's triggers over to another triggerer of their queue.

A waiting trigger heartbeats to Temporal rarely (a thousand frequent heartbeats cost most of a core),
so Temporal's heartbeat timeout on a trigger's run is only a backstop. A triggerer's liveness is its
job's heartbeat to the API instead: one per triggerer. When a job has been silent for
``trigger_heartbeat_timeout``, this pass fails the run of each trigger it held, as the worker that
died would have, and Temporal retries the run on another triggerer of the queue.

The same pass retries a run a triggerer took from Temporal but never claimed (the answer to its poll
was lost on the way, say): a trigger still unclaimed that long while its queue's triggerers have room.

It runs in every API replica; failing a run is guarded by the attempt's worker identity or start time,
so replicas cannot fail the attempt another triggerer has started since.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from airlock.logging import work_bound
from airlock.protocol import RUN_TRIGGER_ACTIVITY, TRIGGERER_LOST_ERROR, trigger_workflow_id
from api import metrics
from api.core.config import Settings
from api.services import triggers
from api.temporal.reaper import reap_forever

log = structlog.get_logger(__name__)

# Runs failed at once: a dead triggerer may have held thousands.
CONCURRENT_HANDOVERS = 16
# Unclaimed triggers looked at per pass (a describe each), oldest first.
MAX_UNCLAIMED = 100


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
        """Fail the runs of triggers whose triggerer went silent, and of runs handed to a triggerer
        that never claimed them (a poll's answer lost on the way); returns how many were failed."""
        try:
            async with self._sessions() as session:
                silent = [
                    (t.id, t.queue, t.triggerer) for t in await triggers.orphaned(session, self._timeout)
                ]
                unclaimed = [
                    t.id for t in await triggers.unclaimed(session, self._timeout, limit=MAX_UNCLAIMED)
                ]
        except Exception:
            self._reachable_since = time.monotonic()
            raise
        if time.monotonic() - self._reachable_since < self._timeout:
            return 0
        started_before = datetime.now(UTC) - timedelta(seconds=self._timeout)
        gate = asyncio.Semaphore(CONCURRENT_HANDOVERS)

        async def one(trigger_id: str, queue: str | None, holder: str | None) -> bool:
            async with gate:
                with work_bound(trigger_id=trigger_id, queue=queue, worker=holder):
                    return await self._fail_run(trigger_id, holder, started_before)

        runs = [one(*row) for row in silent] + [one(t, None, None) for t in unclaimed]
        return sum(await asyncio.gather(*runs))

    async def _fail_run(self, trigger_id: str, holder: str | None, started_before: datetime) -> bool:
        """Fail the run attempt of ``holder``, the silent triggerer; with none, an attempt started
        before ``started_before`` that was never claimed."""
        handle = self._client.get_workflow_handle(trigger_workflow_id(trigger_id))
        try:
            description = await handle.describe()
            for pending in description.raw_description.pending_activities:
                if (
                    pending.activity_type.name != RUN_TRIGGER_ACTIVITY
                    or pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                ):
                    continue
                # Only that attempt: a retry another triggerer has started since is left alone.
                if holder is not None and pending.last_worker_identity == holder:
                    reason = f"its triggerer {holder} stopped heartbeating"
                    action = "silent_triggerer"
                elif holder is None and pending.last_started_time.ToDatetime(UTC) < started_before:
                    reason = f"its triggerer {pending.last_worker_identity} took the run and never claimed it"
                    action = "unclaimed"
                else:
                    continue
                run = self._client.get_async_activity_handle(
                    workflow_id=handle.id, run_id=description.run_id, activity_id=pending.activity_id
                )
                await run.fail(ApplicationError(reason, type=TRIGGERER_LOST_ERROR))
                metrics.reaper_action("trigger_handover", action)
                log.warning("trigger handed over", reason=reason, attempt=pending.attempt)
                return True
        except RPCError as exc:
            # The workflow or the attempt ended meanwhile: nothing left to hand over.
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        return False
