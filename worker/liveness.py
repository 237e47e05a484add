"""A worker's liveness job: registered, heartbeated and completed through the Execution API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from airlock.execution import JobRegistration
from worker.client import ExecutionAPIClient, ExecutionAPIError

log = structlog.get_logger(__name__)


class LivenessJob:
    def __init__(
        self, api: ExecutionAPIClient, *, interval: float, on_refused: Callable[[], None] = lambda: None
    ) -> None:
        self._api = api
        self._interval = interval
        self._on_refused = on_refused
        self.job_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, registration: JobRegistration) -> str:
        self.job_id = (await self._api.jobs.register(registration)).id
        self._task = asyncio.create_task(self._beat(self.job_id))
        return self.job_id

    async def _beat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._api.jobs.heartbeat(job_id)
            except ExecutionAPIError as exc:
                # Keep beating through an API outage; a rejection (the credential revoked, the job ended
                # with it) is final: this worker stops.
                log.warning("job heartbeat failed", job_id=job_id, error=str(exc))
                if not exc.retryable:
                    log.error("the API refused this worker's heartbeat: stopping", job_id=job_id)
                    self._on_refused()
                    return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.job_id is not None:
            with contextlib.suppress(ExecutionAPIError):
                await self._api.jobs.complete(self.job_id)
