"""Time triggers: wait until a moment, or for a duration after the task deferred.

These are not meant to run on a triggerer: the workflow recognises their classpaths
(:data:`DATETIME_TRIGGER`, :data:`TIMEDELTA_TRIGGER`), computes :meth:`fire_at` and waits on a
durable Temporal timer, which costs no triggerer capacity and survives every restart. Their
:meth:`run` still works, so a triggerer that is handed one anyway does the right thing.

This module is imported inside Temporal's workflow sandbox: module-level imports stay within
the standard library and :mod:`activities.triggers.base`, and nothing here reads the clock
except :meth:`run`, which the workflow never calls.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from activities.triggers.base import BaseTrigger, TriggerEvent

DATETIME_TRIGGER = "activities.triggers.time.DateTimeTrigger"
TIMEDELTA_TRIGGER = "activities.triggers.time.TimeDeltaTrigger"

# timedelta's own keywords: {"seconds": 90} and {"minutes": 1, "seconds": 30} mean the same.
DELTA_UNITS = frozenset({"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"})
# Sleep in slices, so a wall clock that is stepped while we wait is noticed within this many seconds.
MAX_SLEEP = 60.0


def _check_kwargs(kind: str, kwargs: Any, name: str) -> Any:
    if not isinstance(kwargs, dict):
        raise ValueError(f"{kind} kwargs must be an object, not {type(kwargs).__name__}")
    unknown = sorted(str(key) for key in kwargs if key != name)
    if unknown:
        raise ValueError(f"{kind} takes only {name!r}; unexpected: {', '.join(unknown)}")
    if name not in kwargs:
        raise ValueError(f"{kind} needs {name!r}")
    return kwargs[name]


def _require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()!r} has no timezone; give an offset such as +00:00 or Z")
    return value.astimezone(UTC)


def parse_moment(moment: Any) -> datetime:
    """An aware UTC datetime from an ISO-8601 string or an aware datetime."""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(f"moment {moment!r} is not an ISO-8601 date and time") from None
        return _require_aware(parsed, "moment")
    if isinstance(moment, datetime):
        return _require_aware(moment, "moment")
    raise ValueError(f"moment must be an ISO-8601 string or a datetime, not {type(moment).__name__}")


def parse_delta(delta: Any) -> timedelta:
    """A non-negative timedelta from seconds, a dict of timedelta units, or a timedelta."""
    try:
        if isinstance(delta, timedelta):
            result = delta
        elif isinstance(delta, int | float) and not isinstance(delta, bool):
            if not math.isfinite(delta):
                raise ValueError(f"delta must be a finite number of seconds, not {delta!r}")
            result = timedelta(seconds=delta)
        elif isinstance(delta, dict):
            unknown = sorted(str(key) for key in delta if key not in DELTA_UNITS)
            if unknown or not delta:
                raise ValueError(
                    f"delta object keys must be among {', '.join(sorted(DELTA_UNITS))}, not {delta!r}"
                )
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in delta.values()
            ):
                raise ValueError(f"delta object values must be finite numbers, not {delta!r}")
            result = timedelta(**delta)
        else:
            raise ValueError(
                f"delta must be seconds (a number) or an object such as {{'seconds': 30}}, not {delta!r}"
            )
    except OverflowError:
        raise ValueError(f"delta {delta!r} is too large") from None
    if result < timedelta(0):
        raise ValueError(f"delta must not be negative, not {result}")
    return result


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
        """When the trigger fires: the moment itself, whenever the task deferred."""
        _require_aware(created_at, "created_at")
        return parse_moment(_check_kwargs("DateTimeTrigger", kwargs, "moment"))

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
        """When the trigger fires: ``created_at`` (when the task deferred) plus the delta."""
        start = _require_aware(created_at, "created_at")
        delta = parse_delta(_check_kwargs("TimeDeltaTrigger", kwargs, "delta"))
        try:
            return start + delta
        except OverflowError:
            raise ValueError(
                f"{start.isoformat()} plus {delta} is past the last representable date"
            ) from None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        due = self.fire_at(self.kwargs, self.created_at or datetime.now(UTC))
        await _sleep_until(due)
        yield TriggerEvent({"moment": due.isoformat()})


TIME_TRIGGERS: dict[str, type[TimeTrigger]] = {
    DATETIME_TRIGGER: DateTimeTrigger,
    TIMEDELTA_TRIGGER: TimeDeltaTrigger,
}


def time_trigger_fire_at(classpath: str, kwargs: dict[str, Any], created_at: datetime) -> datetime | None:
    """The due moment of a built-in time trigger; None for other classpaths, which are never imported."""
    kind = TIME_TRIGGERS.get(classpath)
    return None if kind is None else kind.fire_at(kwargs, created_at)
