from enum import StrEnum


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


# Event types on the wire: a plain event resumes the task; the others end it directly.
EVENT = "event"
TERMINAL_EVENT_STATES = {
    "task_success": TaskInstanceState.SUCCESS,
    "task_failed": TaskInstanceState.FAILED,
    "task_skipped": TaskInstanceState.SKIPPED,
}
