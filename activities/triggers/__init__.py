"""Airlock's own triggers (public names: :mod:`airlock.triggers`) and the triggerer's class loader.

Importing this package stays light: trigger modules with drivers (HTTP, SQL) are imported only when a
trigger of theirs is loaded. The base classes re-exported here moved to :mod:`airlock.sdk`; plugins
written against ``activities.triggers.BaseTrigger`` keep working.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import re
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from airlock.plugins import is_allowed
from airlock.sdk import triggers as sdk
from airlock.sdk.triggers import *  # noqa: F403
from airlock.sdk.triggers import BaseTrigger

__all__ = [*sdk.__all__, "TriggerNotAllowed", "load_trigger_class", "run_blocking"]

_CLASSPATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

# Threads per kind of blocking poll. Each kind has its own pool, apart from the loop's default one:
# queries stuck on a slow database, or globs on a hung mount, then delay only polls of their kind,
# never another kind's nor anything else on the triggerer that uses asyncio.to_thread.
POOL_SIZES = {"file": 4, "sql": 8}
# Calls of one kind made in the same turn of the event loop go to a thread together, this many at a
# time: a hand-off to a thread costs far more than a glob, so a thousand file triggers polling on the
# same tick cost twenty hand-offs, not a thousand. Queries are slow: each takes a thread of its own.
CALLS_PER_HANDOFF = {"file": 50, "sql": 1}

P = ParamSpec("P")
R = TypeVar("R")


class TriggerNotAllowed(PermissionError):
    """The classpath does not match this triggerer's allowlist; nothing was imported."""


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


@functools.cache
def _pool(kind: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_SIZES[kind], thread_name_prefix=f"airlock-{kind}-trigger")


_Call = tuple[Callable[[], Any], "asyncio.Future[Any]"]
# Per event loop (a test suite runs many), the calls of each kind waiting for the next hand-off.
_waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list[_Call]]] = (
    weakref.WeakKeyDictionary()
)


async def run_blocking(kind: str, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking call in the bounded pool of one kind of trigger (a key of :data:`POOL_SIZES`)."""
    loop = asyncio.get_running_loop()
    # As asyncio.to_thread does: the call sees the trigger's context (its log scrubbing, say).
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    done: asyncio.Future[R] = loop.create_future()
    waiting = _waiting.setdefault(loop, {})
    if kind not in waiting:
        waiting[kind] = []
        loop.call_soon(_hand_off, loop, kind)
    waiting[kind].append((call, done))
    return await done


def _hand_off(loop: asyncio.AbstractEventLoop, kind: str) -> None:
    calls = _waiting[loop].pop(kind)
    step = CALLS_PER_HANDOFF[kind]
    for start in range(0, len(calls), step):
        _pool(kind).submit(_run_calls, loop, calls[start : start + step])


def _run_calls(loop: asyncio.AbstractEventLoop, calls: list[_Call]) -> None:
    outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
    for call, done in calls:
        try:
            outcomes.append((done, call(), None))
        except BaseException as exc:  # handed back to the caller, as run_in_executor does
            outcomes.append((done, None, exc))
    loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for done, result, error in outcomes:
        settle(done, result, error)


def settle(done: asyncio.Future[R], result: R, error: BaseException | None) -> None:
    """Hand a result or an error to whoever awaits ``done``: nobody, if they were cancelled meanwhile."""
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
