"""The entry-point registries: how the parts find each other without importing each other.

An installed distribution (Airlock itself, or a third party's plugin) registers:

* ``airlock.connection_testers``: a tester per conn_type, ``name = "module:function"``;
* ``airlock.connection_forms``: how the console shows a conn_type's fields, ``name = "module:FORM"``;
* ``airlock.triggers``: trigger classes a triggerer may run without listing them in its allowlist;
* ``airlock.worker_roles``: what a worker process runs (connection tests, triggers);
* ``airlock.commands``: subcommands of the ``airlock`` command line (the API's, the worker's).

Reading a registry imports nothing; only ``load`` does, and only the entry asked for.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlock.sdk.forms import ConnectionForm

log = logging.getLogger(__name__)

TESTERS_GROUP = "airlock.connection_testers"
FORMS_GROUP = "airlock.connection_forms"
TRIGGERS_GROUP = "airlock.triggers"
WORKER_ROLES_GROUP = "airlock.worker_roles"
COMMANDS_GROUP = "airlock.commands"
# The distribution whose triggers are Airlock's own (they answer to ``airlock.triggers.<Class>``).
OWN_DISTRIBUTION = "airlock"

# Classpaths a triggerer runs unless configured otherwise: Airlock's own triggers, under their stable
# names and under the paths they had before (rows and clients may still hold those).
DEFAULT_TRIGGER_ALLOWLIST: tuple[str, ...] = ("airlock.triggers.*", "activities.triggers.*")


@functools.cache
def tester_entry_points() -> dict[str, EntryPoint]:
    """Read once per process: reading every installed package's metadata takes about 10 ms, and a
    worker's fork server reads it before forking its drivers (activities/testers/child.py)."""
    return {ep.name: ep for ep in entry_points(group=TESTERS_GROUP)}


@functools.cache
def installed_conn_types() -> frozenset[str]:
    """The conn_types with a tester installed here (Airlock's own and plugins'), without loading any."""
    return frozenset(tester_entry_points())


@functools.cache
def connection_forms() -> dict[str, ConnectionForm]:
    """The console's form of each conn_type that registers one. A form that does not load, or is not
    a ``ConnectionForm``, is left out with a warning: that conn type shows every field."""
    from airlock.sdk.forms import ConnectionForm  # airlock.sdk imports this module

    forms: dict[str, ConnectionForm] = {}
    for ep in entry_points(group=FORMS_GROUP):
        try:
            form = ep.load()
        except Exception as exc:  # a plugin's broken module must not take the console down
            log.warning("connection form %s (%s) did not load: %s", ep.name, ep.value, exc)
            continue
        if not isinstance(form, ConnectionForm):
            log.warning(
                "connection form %s (%s) is a %s, not a ConnectionForm", ep.name, ep.value, type(form)
            )
            continue
        forms[ep.name] = form
    return forms


def trigger_entry_points() -> dict[str, str]:
    """Registered triggers by entry-point name, as the classpaths (``module.Class``) a task defers to."""
    return {ep.name: f"{ep.module}.{ep.attr}" for ep in entry_points(group=TRIGGERS_GROUP) if ep.attr}


@functools.cache
def own_triggers() -> dict[str, EntryPoint]:
    """Airlock's own triggers by class name (``SqlTrigger``), not loaded."""
    return {
        ep.attr: ep
        for ep in entry_points(group=TRIGGERS_GROUP)
        if ep.attr and ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION
    }


def is_allowed(classpath: str, allowlist: Sequence[str]) -> bool:
    """Whether an fnmatch pattern of ``allowlist`` matches ``classpath``."""
    if isinstance(allowlist, str):
        # A bare string is a sequence of one-character patterns, and "*" would allow everything.
        raise TypeError("allowlist must be a sequence of patterns, not a single string")
    return any(fnmatch.fnmatchcase(classpath, pattern) for pattern in allowlist)


def load_worker_role(name: str) -> Any:
    """The factory of a worker role (``worker``: connection tests, ``triggerer``: triggers)."""
    for ep in entry_points(group=WORKER_ROLES_GROUP, name=name):
        return ep.load()
    raise LookupError(f"no worker role {name!r} is installed (group {WORKER_ROLES_GROUP})")


def command_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}
