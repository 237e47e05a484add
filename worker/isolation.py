"""Run untrusted driver code in a child process that dies at its deadline (DESIGN.md invariant 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ChildResult:
    timed_out: bool
    returncode: int | None
    output: dict[str, Any] | None
    stderr: str


async def run_child(
    module: str,
    request: dict[str, Any],
    *,
    timeout: float,
    on_tick: Callable[[], None] | None = None,
    tick: float = 1.0,
) -> ChildResult:
    """Run ``python -m module`` with ``request`` as JSON on stdin; read one JSON object from stdout.

    Secrets travel on the pipe, never in argv or the environment. The child gets its own process
    group so a driver's own helpers die with it.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    communicate = asyncio.ensure_future(proc.communicate(json.dumps(request).encode()))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not communicate.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                _kill_group(proc.pid)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(communicate, 5)
                return ChildResult(True, proc.returncode, None, "")
            await asyncio.wait({communicate}, timeout=min(tick, remaining))
            if on_tick is not None and not communicate.done():
                on_tick()
        stdout, stderr = communicate.result()
    except BaseException:
        # Cancelled (the activity was cancelled or the worker is stopping): never leave the driver behind.
        _kill_group(proc.pid)
        communicate.cancel()
        raise
    return ChildResult(
        False, proc.returncode, _last_json_line(stdout), stderr.decode(errors="replace")[-2000:]
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_json_line(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None
