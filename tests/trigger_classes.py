"""Trigger classes the trigger tests run on real triggerers (allowed by the tests' allowlist)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airlock.sdk import BaseTrigger, TaskSuccessEvent, TriggerEvent


class RaisingTrigger(BaseTrigger):
    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("about to fail")
        raise ValueError("the sensor broke")
        yield  # pragma: no cover


class WaitForeverTrigger(BaseTrigger):
    """Logs, then waits; its cleanup leaves a marker file so a test can see that cleanup ran."""

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        super().__init__(marker=marker, **kwargs)
        self.marker = Path(marker)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("waiting for nothing")
        while True:
            await asyncio.sleep(3600)
        yield  # pragma: no cover

    async def cleanup(self) -> None:
        self.marker.write_text("cleaned up")


class SucceedTaskTrigger(BaseTrigger):
    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TaskSuccessEvent({"rows": 3})


class TickingTrigger(BaseTrigger):
    """Logs a line every half second until it is cancelled; its cleanup leaves a marker file."""

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        super().__init__(marker=marker, **kwargs)
        self.marker = Path(marker)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        tick = 0
        while True:
            tick += 1
            self.log.info("tick %d", tick)
            await asyncio.sleep(0.5)
        yield  # pragma: no cover

    async def cleanup(self) -> None:
        self.marker.write_text("cleaned up")
