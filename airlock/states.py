"""The states of tests, triggers and task instances, as stored and shown."""

from enum import StrEnum

from airlock.protocol import TASK_FAILED, TASK_SKIPPED, TASK_SUCCESS


class ConnectionTestState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TEST_STATES


ACTIVE_TEST_STATES = frozenset(
    {ConnectionTestState.PENDING, ConnectionTestState.QUEUED, ConnectionTestState.RUNNING}
)
TERMINAL_TEST_STATES = frozenset({ConnectionTestState.SUCCESS, ConnectionTestState.FAILED})


class TriggerState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FIRED = "fired"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (TriggerState.SCHEDULED, TriggerState.RUNNING)


class TaskInstanceState(StrEnum):
    RUNNING = "running"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


# The state a terminal event puts its task instance in, without resuming it.
TERMINAL_EVENT_STATES: dict[str, TaskInstanceState] = {
    TASK_SUCCESS: TaskInstanceState.SUCCESS,
    TASK_FAILED: TaskInstanceState.FAILED,
    TASK_SKIPPED: TaskInstanceState.SKIPPED,
}
