"""Airlock's plugin API: everything a third-party tester or trigger needs, from one stable module.

A **tester** is a function ``(fields: ConnectionFields, timeout: float) -> (ok, message)``, registered
under its conn_type::

    [project.entry-points."airlock.connection_testers"]
    mongodb = "mypkg.testers:test_mongodb"

A **trigger** subclasses :class:`BaseTrigger` (or :class:`PollingTrigger` for "check every N seconds")
and is registered by name; a task defers to it by classpath (``mypkg.triggers.S3KeyTrigger``), and
a triggerer runs registered triggers without listing them in its allowlist::

    [project.entry-points."airlock.triggers"]
    s3_key = "mypkg.triggers:S3KeyTrigger"

Triggers run on a triggerer, which has no database: what they need from Airlock (a connection, say)
comes through their :class:`TriggerContext`. Names imported from anywhere else are not part of this
API and may move.
"""

from airlock.connection import ConnectionFields
from airlock.plugins import TESTERS_GROUP, TRIGGERS_GROUP
from airlock.sdk.testers import Tester
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
from airlock.secrets import connection_secrets, scrub

__all__ = [
    "TESTERS_GROUP",
    "TRIGGERS_GROUP",
    "BaseTrigger",
    "ConnectionFields",
    "PollingTrigger",
    "TaskFailedEvent",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "Tester",
    "TriggerContext",
    "TriggerEvent",
    "connection_secrets",
    "positive_seconds",
    "scrub",
]
