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
