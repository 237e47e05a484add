"""Workflow and activity inputs and outputs: plain dataclasses that carry ids, never credentials.

The one exception is the workload token handed to a worker's activity: it is short-lived, scoped to a
single test, and every payload is encrypted by the payload codec before it reaches Temporal.
"""

from __future__ import annotations

from dataclasses import dataclass

CONNECTION_TEST_ACTIVITY = "run_connection_test"
MARK_QUEUED_ACTIVITY = "mark_connection_test_queued"
RECORD_RESULT_ACTIVITY = "record_connection_test_result"


def slots_workflow_id(control_queue: str) -> str:
    """One semaphore per deployment, named after its control queue."""
    return f"{control_queue}-connection-test-slots"


def connection_test_workflow_id(test_id: str) -> str:
    return f"connection-test-{test_id}"


@dataclass
class ConnectionTestInput:
    test_id: str
    queue: str
    timeout: int
    dispatch_timeout: float
    heartbeat_timeout: float
    record_timeout: float
    slots_workflow_id: str


@dataclass
class DispatchTicket:
    token: str


@dataclass
class RunConnectionTestInput:
    test_id: str
    token: str
    timeout: int


@dataclass
class ConnectionTestOutcome:
    ok: bool
    message: str
    worker: str | None = None


@dataclass
class ConnectionTestResult:
    test_id: str
    ok: bool
    message: str
    worker: str | None = None


@dataclass
class SlotRequest:
    workflow_id: str
    capacity: int
    lease_seconds: float


@dataclass
class SlotHolder:
    workflow_id: str
    expires_at: float


@dataclass
class SlotsState:
    capacity: int
    holders: list[SlotHolder]
    waiters: list[SlotRequest]


RUN_TRIGGER_ACTIVITY = "run_trigger"
DISPATCH_TRIGGER_ACTIVITY = "dispatch_trigger"
RECORD_TIMER_FIRED_ACTIVITY = "record_timer_fired"
END_TRIGGER_ACTIVITY = "end_trigger"
TRIGGER_FAILED_ERROR = "TriggerFailed"


def trigger_workflow_id(trigger_id: str) -> str:
    return f"trigger-{trigger_id}"


@dataclass
class TriggerInput:
    trigger_id: str
    queue: str
    # Set for time triggers: the workflow sleeps on a durable timer until then (ISO 8601, UTC).
    fire_at: str | None
    timeout_at: str | None
    heartbeat_timeout: float


@dataclass
class RunTriggerInput:
    trigger_id: str
    token: str


@dataclass
class TriggerEnd:
    """How a trigger ended when the worker could not say so itself: timed out, cancelled, failed."""

    trigger_id: str
    state: str
    reason: str
