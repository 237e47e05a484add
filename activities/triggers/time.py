"""Time triggers: wait until a moment, or for a duration after the task deferred.

These are not meant to run on a triggerer: the API computes their due moment
(:func:`airlock.timers.due_moment`) and the workflow waits on a durable Temporal timer, which costs no
triggerer capacity and survives every restart. Their :meth:`run` still works, so a triggerer that is
handed one anyway does the right thing.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airlock.sdk import BaseTrigger, TriggerEvent
from airlock.timers import datetime_due, parse_delta, parse_moment, timedelta_due

# Sleep in slices, so a wall clock that is stepped while we wait is noticed within this many seconds.
MAX_SLEEP = 60.0


async def _sleep_until(due: datetime) -> None:
    while True:
        remaining = (due - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, MAX_SLEEP))


class TimeTrigger(BaseTrigger):
    """A trigger whose moment follows from its kwargs alone, so a workflow timer can stand in for it."""

    @classmethod
    @abstractmethod
    def fire_at(cls, kwargs: dict[str, Any], created_at: datetime) -> datetime:
        """The aware UTC moment to fire for a task deferred at ``created_at``; ValueError on bad kwargs."""


class DateTimeTrigger(TimeTrigger):
    """Fires at ``moment`` (ISO-8601 with an offset, or an aware datetime) with ``{"moment": <iso, UTC>}``."""

    def __init__(self, *, moment: str | datetime) -> None:
        super().__init__(moment=moment)
        self.moment = parse_moment(moment)

    @classmethod
    def fire_at(cls, kwargs: dict[str, Any], created_at: datetime) -> datetime:
        return datetime_due(kwargs, created_at)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await _sleep_until(self.moment)
        yield TriggerEvent({"moment": self.moment.isoformat()})


class TimeDeltaTrigger(TimeTrigger):
    """Fires ``delta`` after the task deferred, with ``{"moment": <iso, UTC>}``.

    ``delta`` is seconds (a number), an object of timedelta units (``{"minutes": 5}``) or a
    timedelta. The runner sets :attr:`created_at` to when the task deferred; without it, the
    delta counts from when :meth:`run` starts.
    """

    def __init__(self, *, delta: float | dict[str, float] | timedelta) -> None:
        super().__init__(delta=delta)
        self.delta = parse_delta(delta)
        self.created_at: datetime | None = None

    @classmethod
    def fire_at(cls, kwargs: dict[str, Any], created_at: datetime) -> datetime:
        return timedelta_due(kwargs, created_at)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        due = self.fire_at(self.kwargs, self.created_at or datetime.now(UTC))
        await _sleep_until(due)
        yield TriggerEvent({"moment": due.isoformat()})
