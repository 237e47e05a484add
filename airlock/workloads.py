"""Workflow and activity inputs and outputs: plain dataclasses that carry ids, never credentials.

A worker's activity gets the id of its workload and claims it from the Execution API with its own
credential. The control plane's inputs carry a *grant*: a MAC over the workflow id that only the API can
compute, so that a control activity acts only for the workflow the API started for that row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ConnectionTestInput:
    test_id: str
    grant: str
    record_timeout: float


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
class SlotDecision:
    """The answer to a test asking for its slot: where to run it once it has one, why not when it
    ended meanwhile; neither while it still waits."""

    plan: DispatchPlan | None = None
    ended: str | None = None


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
