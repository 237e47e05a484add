"""What a trigger is: a Python async generator that yields a :class:`TriggerEvent` when its condition holds.

Part of the public plugin API: import it from :mod:`airlock.sdk`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from airlock.protocol import EVENT, TASK_FAILED, TASK_SKIPPED, TASK_SUCCESS, TERMINAL_EVENT_TYPES
from airlock.secrets import scrub, sensitive_values

if TYPE_CHECKING:
    from airlock.connection import ConnectionFields

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "MIN_POLL_INTERVAL",
    "BaseTrigger",
    "PollingTrigger",
    "TaskFailedEvent",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "TriggerContext",
    "TriggerEvent",
    "positive_seconds",
]

DEFAULT_POLL_INTERVAL = 5.0
# A floor, so that no trigger polls in a busy loop: below it a triggerer's polls (and the databases,
# servers and filesystems they reach) would be spent on one trigger's impatience.
MIN_POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class TriggerEvent:
    """What a trigger yields. ``payload`` must be serializable by :mod:`airlock.serde`."""

    payload: Any
    event_type: str = EVENT

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENT_TYPES


@dataclass(frozen=True)
class TaskSuccessEvent(TriggerEvent):
    """Ends the task as succeeded without resuming it on a worker."""

    payload: Any = None
    event_type: str = field(default=TASK_SUCCESS, init=False)


@dataclass(frozen=True)
class TaskFailedEvent(TriggerEvent):
    """Ends the task as failed without resuming it on a worker."""

    payload: Any = None
    event_type: str = field(default=TASK_FAILED, init=False)


@dataclass(frozen=True)
class TaskSkippedEvent(TriggerEvent):
    """Ends the task as skipped without resuming it on a worker."""

    payload: Any = None
    event_type: str = field(default=TASK_SKIPPED, init=False)


@runtime_checkable
class TriggerContext(Protocol):
    """What the runner gives a trigger: its way to Airlock's state, and a logger that reaches the task log."""

    log: logging.Logger

    async def get_connection(self, conn_id: str) -> ConnectionFields: ...


class BaseTrigger(ABC):
    """A trigger: constructed from JSON-friendly kwargs, run as an async generator of events.

    The runner builds the trigger with ``cls(**kwargs)``, sets :attr:`context`, iterates
    :meth:`run` until the first event, and always awaits :meth:`cleanup` afterwards, whether the
    trigger fired, failed or was cancelled. Keep kwargs to what :mod:`airlock.serde` can carry:
    they are stored and sent to whichever triggerer picks the trigger up.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs: dict[str, Any] = dict(kwargs)
        self.log = logging.getLogger(f"{type(self).__module__}.{type(self).__qualname__}")
        self._context: TriggerContext | None = None

    @classmethod
    def classpath(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The (classpath, kwargs) pair that rebuilds this trigger elsewhere."""
        return self.classpath(), dict(self.kwargs)

    @property
    def context(self) -> TriggerContext:
        if self._context is None:
            raise RuntimeError(f"{self.classpath()} has no context: the runner sets it before run()")
        return self._context

    @context.setter
    def context(self, context: TriggerContext) -> None:
        self._context = context

    @abstractmethod
    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield events; the runner acts on the first one and then closes the generator."""
        raise NotImplementedError
        # The unreachable yield makes this an async generator, so overrides type-check against it.
        yield

    async def cleanup(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release what :meth:`run` acquired; called after the trigger ends or is cancelled."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.kwargs.items())
        return scrub(f"<{self.classpath()} {args}>", *sensitive_values(self.kwargs))


class PollingTrigger(BaseTrigger):
    """A trigger that checks a condition every ``poll_interval`` seconds until :meth:`poll` returns an event.

    The first check happens at once, the next ones on the triggerer's ticks of ``poll_interval``
    (multiples of it on the event loop's clock): triggers of one interval poll together, so that a
    triggerer wakes once per tick, not once per trigger. The trigger ends after yielding its one event.
    """

    def __init__(self, *, poll_interval: float = DEFAULT_POLL_INTERVAL, **kwargs: Any) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.poll_interval = positive_seconds("poll_interval", poll_interval)
        if self.poll_interval < MIN_POLL_INTERVAL:
            raise ValueError(f"poll_interval must be at least {MIN_POLL_INTERVAL:g} s, not {poll_interval!r}")

    @abstractmethod
    async def poll(self) -> TriggerEvent | None:
        """Check once: an event when the condition holds, None to check again later."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            event = await self.poll()
            if event is not None:
                yield event
                return
            now = asyncio.get_running_loop().time()
            await asyncio.sleep(self.poll_interval - now % self.poll_interval)


def positive_seconds(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)
