"""Airlock's plugin API: everything a third-party tester or trigger needs, from one stable module.

A **tester** is a function ``(fields: ConnectionFields, timeout: float) -> (ok, message)``, registered
under its conn_type::

    [project.entry-points."airlock.connection_testers"]
    mongodb = "mypkg.testers:test_mongodb"

The console shows a conn_type's form as its :class:`ConnectionForm` says (fields hidden, labels,
placeholders), registered in a module that imports no driver::

    [project.entry-points."airlock.connection_forms"]
    mongodb = "mypkg.forms:MONGODB_FORM"

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
from airlock.plugins import FORMS_GROUP, TESTERS_GROUP, TRIGGERS_GROUP
from airlock.sdk.forms import ConnectionForm
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
    "FORMS_GROUP",
    "TESTERS_GROUP",
    "TRIGGERS_GROUP",
    "BaseTrigger",
    "ConnectionFields",
    "ConnectionForm",
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
