"""The floor for the connection-test benchmark: a bare Temporal workflow of the same shape as
``ConnectionTestWorkflow`` (control activity, test activity on another task queue, control activity),
with no API, no database, no child process, no payload codec and no global cap.

Kept in its own module so that the workflow sandbox can re-import it (a class defined in ``__main__``
cannot be).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

MARK_ACTIVITY = "floor_mark"
TEST_ACTIVITY = "floor_test"
RECORD_ACTIVITY = "floor_record"


@dataclass
class FloorInput:
    host: str
    port: int
    test_queue: str


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, inp: FloorInput) -> bool:
        timeout = timedelta(seconds=30)
        await workflow.execute_activity(MARK_ACTIVITY, inp.host, start_to_close_timeout=timeout)
        ok: bool = await workflow.execute_activity(
            TEST_ACTIVITY, inp, result_type=bool, task_queue=inp.test_queue, start_to_close_timeout=timeout
        )
        await workflow.execute_activity(RECORD_ACTIVITY, ok, start_to_close_timeout=timeout)
        return ok


@workflow.defn
class OneActivityWorkflow:
    """The smallest unit of dispatch: one workflow task, one no-op activity, one more workflow task
    (``bench/dispatch.py``)."""

    @workflow.run
    async def run(self, host: str) -> None:
        await workflow.execute_activity(MARK_ACTIVITY, host, start_to_close_timeout=timedelta(seconds=30))


@activity.defn(name=MARK_ACTIVITY)
async def floor_mark(host: str) -> None:
    """A no-op in place of the API's "queued" write."""


@activity.defn(name=RECORD_ACTIVITY)
async def floor_record(ok: bool) -> None:
    """A no-op in place of the API's result write."""


@activity.defn(name=TEST_ACTIVITY)
async def floor_test(inp: FloorInput) -> bool:
    """Open a TCP connection to the target and close it, like the ``tcp`` tester (in-process)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(inp.host, inp.port), timeout=5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True
