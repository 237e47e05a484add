"""A worker's liveness job: registered, heartbeated and completed through the Execution API."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from temporalio.exceptions import ApplicationError

from worker.client import API_REJECTED, ExecutionAPIClient

log = structlog.get_logger(__name__)


class LivenessJob:
    def __init__(self, api: ExecutionAPIClient, *, interval: float) -> None:
        self._api = api
        self._interval = interval
        self.job_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(
        self,
        *,
        kind: str,
        hostname: str,
        queues: list[str],
        conn_types: list[str],
        capacity: int | None = None,
    ) -> str:
        self.job_id = await self._api.register_job(
            kind=kind, hostname=hostname, queues=queues, conn_types=conn_types, capacity=capacity
        )
        self._task = asyncio.create_task(self._beat(self.job_id))
        return self.job_id

    async def _beat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._api.heartbeat_job(job_id)
            except ApplicationError as exc:
                # Keep beating through an API outage; a rejection (job completed elsewhere) is final.
                log.warning("job heartbeat failed", job_id=job_id, error=str(exc))
                if exc.type == API_REJECTED:
                    return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.job_id is not None:
            with contextlib.suppress(ApplicationError):
                await self._api.complete_job(self.job_id)
