"""Workflow and activity inputs and outputs: plain dataclasses that carry ids, never credentials.

A worker's activity gets the id of its workload and claims it from the Execution API with its own
credential. The control plane's inputs carry a *grant*: a MAC over the workflow id that only the API can
compute, so that a control activity acts only for the workflow the API started for that row.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field


@dataclass
class ConnectionTestInput:
    test_id: str
    grant: str
    record_timeout: float
    slots_workflow_id: str


@dataclass
class ControlCall:
    """A control activity's input: the row it acts on and the grant of the workflow calling it."""

    row_id: str
    grant: str


@dataclass
class DispatchPlan:
    """Where and how long a test runs: read from its row and the API's settings, never from input."""

    queue: str
    timeout: int
    dispatch_timeout: float
    heartbeat_timeout: float


@dataclass
class RunConnectionTestInput:
    test_id: str


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
    grant: str
    outcome: ConnectionTestOutcome


@dataclass
class SlotRequest:
    workflow_id: str
    # Ignored: the semaphore reads its capacity from the API's settings. Kept for the wire format.
    capacity: int
    lease_seconds: float


@dataclass
class SlotRelease:
    workflow_id: str
    # The lease the grant carried: a release that does not name it is ignored.
    lease: str


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
    # A holder's lease id is a MAC of its workflow id under this seed (random, sealed in the
    # semaphore's own history): nothing per holder to keep, and no one else can name a lease.
    lease_seed: str = ""


def slot_lease(seed: str, workflow_id: str) -> str:
    """The lease id the semaphore grants ``workflow_id`` under its ``seed``."""
    return hmac.new(seed.encode(), workflow_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class TriggerInput:
    trigger_id: str
    grant: str
    # Set for time triggers: the workflow sleeps on a durable timer until then (ISO 8601, UTC).
    fire_at: str | None
    timeout_at: str | None


@dataclass
class TriggerPlan:
    """Where a trigger runs: read from its row and the API's settings, never from input."""

    queue: str
    heartbeat_timeout: float


@dataclass
class RunTriggerInput:
    trigger_id: str


@dataclass
class TriggerEnd:
    """How a trigger ended when the worker could not say so itself: timed out, cancelled, failed."""

    trigger_id: str
    grant: str
    state: str
    reason: str
