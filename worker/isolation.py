"""Run untrusted driver code in a child process that dies at its deadline (DESIGN.md invariant 5).

Each test gets a fresh process, forked from a warm fork server that has the drivers imported
already: a fork costs milliseconds where a new interpreter costs a few hundred. The child starts
its own session so that anything the driver spawns dies with it, and it inherits nothing of the
worker but the preloaded modules: the request (with the password) arrives over a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import math
import multiprocessing
import multiprocessing.forkserver
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
# Seconds past its deadline at which an orphaned child kills itself.
CHILD_ALARM_MARGIN = 5


@dataclass
class ChildResult:
    timed_out: bool
    exitcode: int | None
    output: dict[str, Any] | None


class ForkServer:
    def __init__(self, preload: Sequence[str]) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(preload))

    def start(self) -> None:
        """Start the fork server now (it imports the preloaded modules) rather than on the first test."""
        multiprocessing.forkserver.ensure_running()

    async def run(
        self,
        target: str,
        request: dict[str, Any],
        *,
        timeout: float,
        on_tick: Callable[[], None] | None = None,
        tick: float = 1.0,
    ) -> ChildResult:
        """Call ``target`` ("module:function") with ``request`` in a fresh child; kill it at ``timeout``."""
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child_main, args=(target, request, sender, timeout), daemon=True
        )
        process.start()
        sender.close()
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        for fd in (receiver.fileno(), process.sentinel):
            loop.add_reader(fd, ready.set)
        deadline = loop.time() + timeout
        try:
            while not ready.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _kill(process.pid)
                    return ChildResult(True, None, None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), min(tick, remaining))
                if on_tick is not None and not ready.is_set():
                    on_tick()
            output = _receive(receiver)
        except BaseException:
            # Cancelled (the activity was cancelled or the worker is stopping): never leave the driver behind.
            _kill(process.pid)
            raise
        finally:
            for fd in (receiver.fileno(), process.sentinel):
                loop.remove_reader(fd)
            receiver.close()
            await loop.run_in_executor(None, process.join, 5)
        return ChildResult(False, process.exitcode, output)


def _receive(receiver: Connection) -> dict[str, Any] | None:
    try:
        if receiver.poll():
            value = receiver.recv()
            return value if isinstance(value, dict) else None
    except (EOFError, OSError):
        pass
    return None


def prctl(option: int, value: int) -> bool:
    """Linux's prctl(2); False where it is not available."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value)) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() == 1:
        os._exit(1)  # the parent died before prctl took effect


def _kill(pid: int | None) -> None:
    if pid is None:
        return
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()


def _child_main(target: str, request: dict[str, Any], sender: Connection, timeout: float) -> None:
    os.setsid()
    # The worker kills the child at its deadline, but a worker that is itself SIGKILLed cannot: the
    # child then dies with the fork server (which dies with the worker), or at the latest by alarm.
    _die_with_parent()
    signal.alarm(math.ceil(timeout) + CHILD_ALARM_MARGIN)
    # Drivers that print must not write into the worker's output.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    module, _, function = target.partition(":")
    result = getattr(importlib.import_module(module), function)(request)
    sender.send(result)
    sender.close()
