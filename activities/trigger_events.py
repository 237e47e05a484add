"""A triggerer's fired events, posted together: a thousand triggers firing at once cost a few requests
and a few transactions, not two thousand of each (an event and its last log lines)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from activities.triggers import settle
from airlock.execution import MAX_BATCH_EVENTS, TriggerEventBatch, TriggerEventItem
from worker.client import ExecutionAPIClient, ExecutionAPIError

# A batch stays well under the API's default request size limit (1 MiB).
BATCH_CHARS = 256 * 1024


class EventPoster:
    """One batch is on the wire at a time; the events that fire meanwhile make the next one. An event
    alone goes at once: batching adds no wait."""

    def __init__(self, api: ExecutionAPIClient, triggerer: str, *, job_id: Callable[[], str | None]) -> None:
        self._api = api
        self._triggerer = triggerer
        self._job_id = job_id
        self._pending: list[tuple[TriggerEventItem, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def post(self, event: TriggerEventItem) -> None:
        """Post one trigger's event; raises :class:`ExecutionAPIError` as its own request would."""
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, landed))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending())
        await landed

    async def _send_pending(self) -> None:
        while self._pending:
            batch = self._next_batch()
            events = [event for event, _ in batch]
            body = TriggerEventBatch(job_id=self._job_id(), triggerer=self._triggerer, events=events)
            try:
                outcomes = (await self._api.triggers.post_events(body)).outcomes
            except Exception as exc:
                for _, landed in batch:
                    settle(landed, None, exc)
                continue
            for (_, landed), outcome in zip(batch, outcomes, strict=True):
                if outcome.status_code < 300:
                    settle(landed, None, None)
                else:
                    error = ExecutionAPIError(
                        f"Execution API rejected the event of trigger {outcome.trigger_id}: "
                        f"{outcome.status_code} {outcome.detail}",
                        status_code=outcome.status_code,
                        retryable=False,
                    )
                    settle(landed, None, error)

    def _next_batch(self) -> list[tuple[TriggerEventItem, asyncio.Future[None]]]:
        taken, chars = 0, 0
        for event, _ in self._pending[:MAX_BATCH_EVENTS]:
            chars += _chars(event)
            if taken and chars > BATCH_CHARS:
                break
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch


def _chars(event: TriggerEventItem) -> int:
    return 200 + len(event.payload) + sum(100 + len(line.message) for line in event.lines)
