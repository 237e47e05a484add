"""Triggers: what a deferred task waits on, run by triggerer workers.

Importing this package stays light (the standard library and :mod:`activities.triggers.base`):
``activities.triggers.time`` is imported inside Temporal's workflow sandbox, and Python imports
this package first. Trigger modules with drivers (HTTP, SQL) are imported only when a trigger of
theirs is loaded.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
from collections.abc import Sequence

from activities.triggers.base import (
    ENTRY_POINT_GROUP,
    TERMINAL_EVENT_TYPES,
    BaseTrigger,
    PollingTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerContext,
    TriggerEvent,
    trigger_entry_points,
)

__all__ = [
    "DEFAULT_TRIGGER_ALLOWLIST",
    "ENTRY_POINT_GROUP",
    "TERMINAL_EVENT_TYPES",
    "BaseTrigger",
    "PollingTrigger",
    "TaskFailedEvent",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "TriggerContext",
    "TriggerEvent",
    "TriggerNotAllowed",
    "is_allowed",
    "load_trigger_class",
    "trigger_entry_points",
]

DEFAULT_TRIGGER_ALLOWLIST: tuple[str, ...] = ("activities.triggers.*",)

_CLASSPATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class TriggerNotAllowed(PermissionError):
    """The classpath does not match this triggerer's allowlist; nothing was imported."""


def is_allowed(classpath: str, allowlist: Sequence[str]) -> bool:
    if isinstance(allowlist, str):
        # A bare string is a sequence of one-character patterns, and "*" would allow everything.
        raise TypeError("allowlist must be a sequence of patterns, not a single string")
    return any(fnmatch.fnmatchcase(classpath, pattern) for pattern in allowlist)


def load_trigger_class(classpath: str, allowlist: Sequence[str]) -> type[BaseTrigger]:
    """Import the trigger class at ``module.Class``, but only when ``allowlist`` (fnmatch patterns) allows it.

    Raises :class:`TriggerNotAllowed` before importing anything, ``ValueError`` for a malformed
    classpath, ``ImportError`` when the module or class is missing, and ``TypeError`` when the
    target is not a concrete :class:`BaseTrigger` subclass.
    """
    if not isinstance(classpath, str) or not _CLASSPATH.match(classpath):
        raise ValueError(f"trigger classpath must look like 'package.module.Class', not {classpath!r}")
    # Checked before the import: importing a module runs its code.
    if not is_allowed(classpath, allowlist):
        patterns = ", ".join(allowlist) or "empty"
        raise TriggerNotAllowed(
            f"trigger class {classpath!r} is not in this triggerer's allowlist ({patterns})"
        )
    module_name, _, class_name = classpath.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import trigger class {classpath!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ImportError(f"cannot import trigger class {classpath!r}: {module_name} has no {class_name!r}")
    if not isinstance(cls, type) or not issubclass(cls, BaseTrigger):
        raise TypeError(f"{classpath!r} is not a trigger: it must be a subclass of {BaseTrigger.classpath()}")
    if inspect.isabstract(cls):
        raise TypeError(
            f"{classpath!r} is abstract: it leaves {', '.join(sorted(cls.__abstractmethods__))} unimplemented"
        )
    return cls
