"""Run untrusted driver code in child processes that all die when the test ends (DESIGN.md invariant 5).

Each test gets fresh processes, forked from a warm fork server that has the drivers imported
already: a fork costs milliseconds where a new interpreter costs a few hundred. They inherit nothing
of the worker but the preloaded modules: the request (with the password) arrives over a pipe.

Two processes per test. The *keeper* is ours: it starts a session, becomes a child subreaper and
forks the *driver*, which runs the target under resource limits and leaves its result, as JSON, in
a memory file. When the driver ends, fails or runs out of time, the keeper SIGKILLs every process
below it and only then writes the one message the worker reads.

Why a subreaper: a descendant that calls setsid() or double-forks leaves any process group or
session, but an orphan always goes to its nearest subreaper ancestor, so everything the driver
starts stays below the keeper, where the keeper finds it. It needs no privilege, where a cgroup
needs a delegated cgroup v2 tree that workers do not have everywhere; and it sits in a process the
driver does not control (a driver could undo its own). What it does not survive: a driver that
SIGKILLs its keeper (same uid) dies with it (parent-death signal), but its descendants go to init.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
# Seconds past its deadline at which a keeper the worker did not stop ends the test by itself.
CHILD_ALARM_MARGIN = 5
# How often the keeper counts the driver's processes (and checks its own deadline).
KEEPER_TICK = 0.1
# How long the worker waits for a stopped keeper to clean up before it SIGKILLs it.
KEEPER_GRACE = 5.0
# A driver's result larger than this is refused: it only carries a status and a message.
MAX_RESULT_BYTES = 1 << 20


@dataclass(frozen=True)
class DriverLimits:
    """Per test. Memory, open files and CPU time are rlimits of each of the driver's processes.
    Processes counts the driver and all it started: RLIMIT_NPROC would count every process of the
    uid (the worker's too), and does not bind root at all."""

    memory_mb: int
    open_files: int
    cpu_seconds: int
    max_processes: int

    @classmethod
    def configured(cls) -> DriverLimits:
        """The worker's settings: they come from ``AIRLOCK_*`` alone, so reading them again here
        sees what the worker read."""
        from worker.config import WorkerSettings

        settings = WorkerSettings()
        return cls(
            memory_mb=settings.driver_memory_mb,
            open_files=settings.driver_max_open_files,
            cpu_seconds=settings.driver_cpu_seconds,
            max_processes=settings.driver_max_processes,
        )

    def apply(self) -> None:
        # CPU: SIGXCPU at the soft limit names the cause; the hard limit a second later is SIGKILL.
        # No core files: a driver's memory holds the password.
        for kind, soft, hard in (
            (resource.RLIMIT_AS, self.memory_mb << 20, self.memory_mb << 20),
            (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
            (resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            _, ceiling = resource.getrlimit(kind)
            if ceiling != resource.RLIM_INFINITY:
                soft, hard = min(soft, ceiling), min(hard, ceiling)
            resource.setrlimit(kind, (soft, hard))


@dataclass
class ChildResult:
    timed_out: bool
    exitcode: int | None
    output: dict[str, Any] | None
    # Why there is no output: the driver ran out of memory, raised, died, started too many processes.
    error: str | None = None


class ForkServer:
    def __init__(self, preload: Sequence[str], limits: DriverLimits | None = None) -> None:
        self._context = multiprocessing.get_context("forkserver")
        # This module too: every child unpickles its target, the keeper, from here.
        self._context.set_forkserver_preload([__name__, *preload])
        self._limits = limits or DriverLimits.configured()

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
        """Call ``target`` ("module:function") with ``request`` in a fresh driver; stop it at ``timeout``.

        When this returns, every process the test started is gone (or, if its keeper hung, SIGKILLed)."""
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_keeper_main, args=(target, request, sender, timeout, self._limits), daemon=True
        )
        with _main_module_hidden():
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
                    _signal(process.pid, signal.SIGTERM)
                    return ChildResult(True, None, None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), min(tick, remaining))
                if on_tick is not None and not ready.is_set():
                    on_tick()
            output, error = _receive(receiver)
        except BaseException:
            # Cancelled (the activity was cancelled or the worker is stopping): never leave the driver behind.
            _signal(process.pid, signal.SIGTERM)
            raise
        finally:
            for fd in (receiver.fileno(), process.sentinel):
                loop.remove_reader(fd)
            receiver.close()
            await loop.run_in_executor(None, process.join, KEEPER_GRACE)
            if process.exitcode is None:
                _kill_group(process.pid)  # a keeper that hangs: its own group at least
        return ChildResult(False, process.exitcode, output, error)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a child without multiprocessing running the worker's main module in it again, which it
    does for every child it starts (to find what a target pickled from ``__main__`` needs). Our
    targets live in preloaded modules; under the ``airlock`` console script that main module is the
    whole CLI, Temporal's SDK included: it would double what each test's processes cost."""
    main = sys.modules["__main__"]
    spec, path = main.__spec__, main.__dict__.pop("__file__", None)
    main.__spec__ = None  # as in an interactive session: no module name and no file to run again
    try:
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def _receive(receiver: Connection) -> tuple[dict[str, Any] | None, str | None]:
    """The keeper's message: ``{"output": {...}}`` or ``{"error": "..."}``. JSON, because the
    output is what driver code wrote: unpickling it would run code in the worker."""
    try:
        if not receiver.poll():
            return None, None
        message = json.loads(receiver.recv_bytes(MAX_RESULT_BYTES + 1024))
    except EOFError:
        return None, "the test's processes were killed before they reported"
    except (OSError, ValueError):
        return None, "the driver's result is unreadable"
    if isinstance(message, dict) and isinstance(message.get("output"), dict):
        return message["output"], None
    if isinstance(message, dict) and isinstance(message.get("error"), str):
        return None, message["error"]
    return None, "the driver's result is not an object"


def prctl(option: int, value: int) -> bool:
    """Linux's prctl(2); False where it is not available."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value)) == 0
    except (OSError, AttributeError):
        return False


def _signal(pid: int | None, sig: int) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _kill_group(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)


class _Stop(Exception):
    """Raised in the keeper, by its signal handlers, to end the driver now; the message says why."""


def _keeper_main(
    target: str, request: dict[str, Any], sender: Connection, timeout: float, limits: DriverLimits
) -> NoReturn:
    os.setsid()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    # The driver (same uid) must not ptrace its keeper; the keeper holds the password too.
    prctl(PR_SET_DUMPABLE, 0)
    # Drivers that print must not write into the worker's output.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    me = os.getpid()
    backstop = time.monotonic() + timeout + CHILD_ALARM_MARGIN
    stopping = False

    def stop(reason: str) -> None:
        # Once: a second signal must not break off the cleanup that the first one started.
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Stop(reason)

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop("stopped by the worker")

    def on_tick(signum: int, frame: FrameType | None) -> None:
        if time.monotonic() > backstop:
            stop(f"timed out after {timeout} s")
        elif len(_descendants(me)) > limits.max_processes:
            stop(f"the driver ran more than {limits.max_processes} processes (killed)")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_tick)
    # A worker that is SIGKILLed cannot stop its keepers: they stop (and clean up) when the fork
    # server, which dies with the worker, does; at the latest at the backstop.
    if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) and os.getppid() == 1:
        os._exit(1)  # the fork server died before prctl took effect
    signal.setitimer(signal.ITIMER_REAL, KEEPER_TICK, KEEPER_TICK)
    result = os.memfd_create("driver-result")
    status: int | None = None
    reason: str | None = None
    try:
        driver = os.fork()
        if driver == 0:
            _driver_main(target, request, sender, result, limits, keeper=me)
        status = os.waitpid(driver, 0)[1]
        stopping = True
    except _Stop as exc:
        reason = str(exc)
    except OSError as exc:
        stopping = True
        reason = f"cannot start the driver: {exc}"
    signal.setitimer(signal.ITIMER_REAL, 0)
    _end_tree(me)
    with contextlib.suppress(OSError):  # the worker has gone (or stopped listening at the deadline)
        sender.send_bytes(_message(reason, status, os.pread(result, MAX_RESULT_BYTES + 1, 0), limits))
    code = 1 if status is None else os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _message(reason: str | None, status: int | None, written: bytes, limits: DriverLimits) -> bytes:
    if reason is None and written:
        # The driver's own JSON; the worker checks its shape.
        if len(written) <= MAX_RESULT_BYTES:
            return written
        reason = f"the driver's result is larger than {MAX_RESULT_BYTES} bytes"
    if reason is None and status is not None:
        code = os.waitstatus_to_exitcode(status)
        if code == -signal.SIGXCPU:
            reason = f"the driver used up its CPU time ({limits.cpu_seconds} s)"
        elif code < 0:
            reason = f"the driver was killed by {signal.Signals(-code).name}"
        else:
            reason = f"the driver exited with status {code} without a result"
    return json.dumps({"error": reason or "the driver left no result"}).encode()


def _driver_main(
    target: str, request: dict[str, Any], sender: Connection, result: int, limits: DriverLimits, keeper: int
) -> NoReturn:
    """Run in the forked driver; never returns into the keeper's code."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        sender.close()  # only the keeper talks to the worker
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) and os.getppid() != keeper:
            os._exit(1)  # the keeper died before prctl took effect
        limits.apply()
        module, _, function = target.partition(":")
        answer: dict[str, Any] | None = None
        try:
            answer = {"output": getattr(importlib.import_module(module), function)(request)}
        except MemoryError:
            pass  # the message is built below, once the exception has let go of the memory
        except BaseException as exc:  # whatever driver code raises (SystemExit too) ends the test
            # The type only: an exception's text may quote the password.
            answer = {"error": f"the driver raised {type(exc).__name__}"}
        if answer is None:
            answer = {"error": f"the driver ran out of memory (limit {limits.memory_mb} MB)"}
        try:
            data = json.dumps(answer).encode()
        except (TypeError, ValueError):
            data = json.dumps({"error": "the driver's result is not JSON"}).encode()
        with open(result, "wb", closefd=False) as handle:
            handle.write(data)
        code = 0
    finally:
        os._exit(code)


def _end_tree(me: int) -> None:
    """SIGKILL every descendant and reap it, until none is left. One that forks meanwhile is found
    next round: when its parent dies it comes to us, the subreaper. The common case, a driver that
    left nothing behind, costs one system call rather than a walk over every process."""
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # no child left, so no descendant: every orphan below us is re-parented to us
        for pid in _descendants(me):
            _signal(pid, signal.SIGKILL)
        time.sleep(0.01)


def _descendants(root: int) -> list[int]:
    # Without CONFIG_PROC_CHILDREN the kernel lists no children: read every process's parent instead.
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        parents = _parents()
        return [pid for pid in parents if _below(pid, root, parents)]
    found: list[int] = []
    queue = [root]
    while queue:
        children = _children(queue.pop())
        found += children
        queue += children
    return found


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):  # gone meanwhile
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                children += map(int, Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    return children


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _below(pid: int, root: int, parents: dict[int, int]) -> bool:
    seen = set()
    while pid in parents and pid not in seen:
        seen.add(pid)
        pid = parents[pid]
        if pid == root:
            return True
    return False
