"""Temporal calls the API makes after it has answered: workflow starts and slot nudges."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

# Calls in flight, referenced until they end (the event loop keeps tasks only weakly).
_calls: set[asyncio.Task[None]] = set()


def spawn(call: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(call)
    _calls.add(task)
    task.add_done_callback(_calls.discard)


async def drain(timeout: float) -> None:
    """Let the calls in flight finish (on shutdown), for at most ``timeout`` seconds."""
    if _calls:
        await asyncio.wait(set(_calls), timeout=timeout)
