"""The floor for the trigger benchmark: a bare Temporal timer workflow, standing in for a time trigger.

``TimerFloorWorkflow`` sleeps on a durable timer until a given moment, then runs one no-op activity in
place of the API's "record the event" write, and returns the wall-clock time that activity ran at. No
API, no database, no payload codec, no search attributes.

Kept in its own module so that the workflow sandbox can re-import it (a class defined in ``__main__``
cannot be).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity, workflow

RECORD_ACTIVITY = "timer_floor_record"


@workflow.defn
class TimerFloorWorkflow:
    @workflow.run
    async def run(self, fire_at: str) -> str:
        """Sleep until ``fire_at`` (ISO-8601 with an offset); return when the record activity ran."""
        await workflow.sleep(max(timedelta(0), datetime.fromisoformat(fire_at) - workflow.now()))
        recorded: str = await workflow.execute_activity(
            RECORD_ACTIVITY, fire_at, result_type=str, start_to_close_timeout=timedelta(seconds=30)
        )
        return recorded


@activity.defn(name=RECORD_ACTIVITY)
async def timer_floor_record(fire_at: str) -> str:
    """A no-op in place of the API's "trigger fired" write: only notes when it ran."""
    return datetime.now(UTC).isoformat()
