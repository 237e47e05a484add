"""Workflow and activity inputs and outputs: plain dataclasses that carry ids, never credentials.

The one exception is the workload token handed to a worker's activity: it is short-lived, scoped to a
single test or trigger, and every payload is encrypted by the payload codec before it reaches Temporal.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """How a test ended: the worker's answer, or the workflow's reason when no answer came."""

    ok: bool
    message: str
    worker: str | None = None


@dataclass
class ConnectionTestRecord:
    """What the control queue writes: a test's outcome."""

    test_id: str
    outcome: ConnectionTestOutcome


@dataclass
class SlotRequest:
    workflow_id: str
    capacity: int
    lease_seconds: float


@dataclass
class SlotHolder:
    workflow_id: str
    expires_at: float


# The most workflows the semaphore keeps, holding a slot or waiting for one; it refuses the next ones.
# Its state then stays under 512 KiB, a quarter of what Temporal accepts as one payload (2 MiB), which
# tests/test_slots_workflow.py measures. The API's caps keep it well under this bound.
MAX_SLOT_ENTRIES = 7_000


@dataclass
class SlotsState:
    """The semaphore's state, carried across continue-as-new.

    ``held`` maps a holder's workflow id to the moment its lease expires (whole epoch seconds),
    ``waiting`` a waiter's workflow id to its lease (whole seconds), in arrival order; ``refused`` lists
    those still to be told that no slot will come. ``holders`` and ``waiters`` are the earlier, larger
    form of the first two: still read, no longer written.
    """

    capacity: int
    holders: list[SlotHolder] = field(default_factory=list)
    waiters: list[SlotRequest] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


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
