"""The trigger base classes' old home: they moved to :mod:`airlock.sdk`, and this alias keeps plugins
written against it working."""

from airlock.sdk.triggers import (
    BaseTrigger,
    PollingTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerContext,
    TriggerEvent,
    positive_seconds,
)

__all__ = [
    "BaseTrigger",
    "PollingTrigger",
    "TaskFailedEvent",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "TriggerContext",
    "TriggerEvent",
    "positive_seconds",
]
