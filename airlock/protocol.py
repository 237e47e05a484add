"""The names both sides of Temporal agree on: workflow ids, activity and signal names, error types,
event types, the kinds shown in the Temporal UI. Changing one is a protocol change: old workers and
running workflows still use the old name."""

from __future__ import annotations

from typing import Literal, get_args

# Activities. The first and RUN_TRIGGER run on workers of the user's queue; the others on the API's
# control queue, where the database is (the connection-test ones as local activities).
CONNECTION_TEST_ACTIVITY = "run_connection_test"
TAKE_SLOT_ACTIVITY = "take_connection_test_slot"
RECORD_RESULT_ACTIVITY = "record_connection_test_result"
RUN_TRIGGER_ACTIVITY = "run_trigger"
DISPATCH_TRIGGER_ACTIVITY = "dispatch_trigger"
RECORD_TIMER_FIRED_ACTIVITY = "record_timer_fired"
END_TRIGGER_ACTIVITY = "end_trigger"
# The API's nudge to a test waiting for a slot under the global cap: one may be yours, ask again. It
# carries nothing and grants nothing (the database does), so whoever sends it changes no decision.
SLOT_GRANTED_SIGNAL = "slot_granted"

# ApplicationError types that cross from workers to workflows.
API_REJECTED_ERROR = "ExecutionAPIRejected"  # a 4xx: retrying will not help
API_UNAVAILABLE_ERROR = "ExecutionAPIUnavailable"  # a 5xx or no answer: Temporal retries
TRIGGER_FAILED_ERROR = "TriggerFailed"  # the trigger itself raised
TRIGGER_NOT_ALLOWED_ERROR = "TriggerNotAllowed"  # outside the triggerer's allowlist
# How the API fails the run of a triggerer whose job went silent, so Temporal retries it on another.
TRIGGERER_LOST_ERROR = "TriggererLost"
CONTROL_REFUSED_ERROR = "ControlCallRefused"  # a control activity called by a workflow not owning the row
# How a connection-test workflow fails when its test failed (the UI's Failed filter finds it): the
# outcome rides in the error's details, encrypted like every payload.
CONNECTION_TEST_FAILED_ERROR = "ConnectionTestFailed"

# A trigger's event type: EVENT resumes the task instance, the terminal ones end it directly.
EventType = Literal["event", "task_success", "task_failed", "task_skipped"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
EVENT, TASK_SUCCESS, TASK_FAILED, TASK_SKIPPED = EVENT_TYPES
TERMINAL_EVENT_TYPES = frozenset({TASK_SUCCESS, TASK_FAILED, TASK_SKIPPED})
# The method a task instance resumes in when its trigger failed or timed out.
FAIL_METHOD = "__fail__"
# Where the API splices the event's payload into a resumed task instance's next_kwargs.
EVENT_KWARG = "event"

# Values of the AirlockKind search attribute.
KIND_CONNECTION_TEST = "connection-test"
KIND_TRIGGER = "trigger"


def connection_test_workflow_id(test_id: str) -> str:
    return f"connection-test-{test_id}"


def trigger_workflow_id(trigger_id: str) -> str:
    return f"trigger-{trigger_id}"


def trigger_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix("trigger-")
