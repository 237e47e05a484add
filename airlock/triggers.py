"""Airlock's own triggers under their stable names: ``airlock.triggers.SqlTrigger`` and so on.

A task defers to one of these classpaths and stored triggers hold them. The classes live with the
activities that run them; each name here is resolved on first use through the ``airlock.triggers``
entry points Airlock registers, so importing this module loads no driver and the shared layer imports
nothing of the worker side. The module paths the classes had before (``activities.triggers.sql.SqlTrigger``)
keep working as aliases.
"""

from __future__ import annotations

from typing import Any

from airlock.plugins import own_triggers

PREFIX = "airlock.triggers."
# The two the workflow runs as durable timers, whatever triggerers exist.
DATETIME_TRIGGER = PREFIX + "DateTimeTrigger"
TIMEDELTA_TRIGGER = PREFIX + "TimeDeltaTrigger"
# Durable timers inside the workflow: no triggerer runs them.
TIME_TRIGGERS = (DATETIME_TRIGGER, TIMEDELTA_TRIGGER)


def builtin_classpaths() -> list[str]:
    return sorted(PREFIX + name for name in own_triggers())


def canonical(classpath: str) -> str:
    """The stable name of one of Airlock's triggers given by its module path; anything else unchanged."""
    for name, ep in own_triggers().items():
        if classpath == f"{ep.module}.{name}":
            return PREFIX + name
    return classpath


def __getattr__(name: str) -> Any:
    ep = own_triggers().get(name)
    if ep is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return ep.load()


def __dir__() -> list[str]:
    return sorted({*globals(), *own_triggers()})
