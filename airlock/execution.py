"""Wire models of the Execution API, one definition each: the API validates requests with them (the
head version; Cadwyn derives the older ones) and the worker's client builds its requests from them."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from airlock.connection import ConnectionFields, check_extra
from airlock.protocol import EVENT, EventType
from airlock.validation import Moment, Text, TimeoutSeconds, check_next_kwargs

# Limits a client truncates to before sending (the server refuses anything longer).
MAX_RESULT_MESSAGE_CHARS = 10_000
MAX_ERROR_CHARS = 10_000
MAX_TRACEBACK_CHARS = 100_000
MAX_LOG_MESSAGE_CHARS = 10_000
MAX_LOG_LINES = 1000
MAX_PAYLOAD_CHARS = 256 * 1024
# A trigger's kwargs: stored encrypted, sent to its triggerer; as small and shallow as an extra.
TriggerKwargs = Annotated[dict[str, Any], AfterValidator(lambda v: check_extra(v, "kwargs"))]
CLASSPATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
METHOD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A provisioned worker's credential is "aw1.<worker name>.<secret>"; every other bearer token is a JWT.
WORKER_CREDENTIAL_PREFIX = "aw1."


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionTestConnection(ConnectionFields):
    """The decrypted fields of the connection under test: only its own workload token may read them."""


class ConnectionTestClaim(StrictModel):
    """A worker takes a workload with its own credential: who it is (host:pid) and its liveness job."""

    worker: Text = Field(max_length=500)
    job_id: Text | None = Field(None, max_length=36)


class ConnectionTestClaimed(BaseModel):
    """A claimed test: its connection, its driver timeout, and a token for this test and this worker
    that dies when the test ends."""

    token: str
    timeout: int
    connection: ConnectionTestConnection


class ConnectionTestStatePatch(StrictModel):
    state: Literal["running", "success", "failed"]
    result_message: Text | None = Field(None, max_length=MAX_RESULT_MESSAGE_CHARS)
    worker: Text | None = Field(None, max_length=500)


JobKind = Literal["worker", "triggerer"]


class JobRegistration(StrictModel):
    kind: JobKind = "worker"
    hostname: Text = Field(max_length=500)
    queues: list[Text] = Field(min_length=1, max_length=100)
    conn_types: list[Text] = Field(default_factory=list, max_length=200)
    capacity: int | None = Field(None, ge=1, le=100_000, description="triggers a triggerer runs at once")


class JobRegistered(BaseModel):
    id: str


class TriggerClaim(StrictModel):
    job_id: Text | None = Field(None, max_length=36)
    triggerer: Text | None = Field(None, max_length=500)


# Trigger ids one "held" check carries; a triggerer running more sends several.
MAX_HELD_TRIGGERS = 10_000


class HeldTriggers(StrictModel):
    """The triggers a triggerer's job runs now, sent every job heartbeat interval."""

    job_id: Text = Field(max_length=36)
    trigger_ids: list[Annotated[Text, Field(max_length=36)]] = Field(max_length=MAX_HELD_TRIGGERS)


class TriggersToStop(BaseModel):
    """Those of the held triggers the triggerer must stop: ended (cancelled, say), claimed since by
    another job, or gone. It asks Temporal about each at once, whose answer cancels the run."""

    trigger_ids: list[str]


class TriggerWorkload(BaseModel):
    """What a triggerer needs to run a trigger: its class, its decrypted kwargs, its deadline, and a
    token for this trigger and this triggerer (events, failures, logs, named connections) that dies
    when the trigger ends."""

    token: str
    trigger_id: str
    classpath: str
    kwargs: dict[str, Any]
    timeout_at: datetime | None


class _NotJSON(ValueError):
    pass


def _refuse_constant(name: str) -> None:
    raise _NotJSON(f"payload holds {name}, which JSON does not allow")


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        # 1e400 is valid JSON syntax, but every parser reads it as infinity.
        raise _NotJSON(f"payload holds {number[:50]}, a number too large to be finite")
    return value


def _json_text(value: str) -> str:
    # Checked for strict JSON syntax only (no NaN or Infinity, which would break next_kwargs): the payload
    # is stored as text and never turned back into objects here.
    try:
        json.loads(value, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("payload is nested too deeply to be parsed") from None
    except _NotJSON:
        raise
    except ValueError:
        raise ValueError("payload must be JSON text (the serialized event envelope)") from None
    return value


class TriggerEventBody(StrictModel):
    event_type: EventType = EVENT
    payload: Text = Field(
        max_length=MAX_PAYLOAD_CHARS, description="the worker's serialized envelope (JSON text)"
    )

    _payload = field_validator("payload")(_json_text)


class TriggerFailureBody(StrictModel):
    error: Text = Field(max_length=MAX_ERROR_CHARS)
    traceback: Text | None = Field(None, max_length=MAX_TRACEBACK_CHARS)


class LogLine(StrictModel):
    timestamp: Moment
    level: Text = Field(max_length=10)
    message: Text = Field(max_length=MAX_LOG_MESSAGE_CHARS)


class TriggerLogBatch(StrictModel):
    job_id: Text | None = Field(None, max_length=36)
    triggerer: Text | None = Field(None, max_length=500)
    lines: list[LogLine] = Field(max_length=MAX_LOG_LINES)


# Events one batch carries; a triggerer whose triggers fire together sends several batches.
MAX_BATCH_EVENTS = 500


class TriggerEventItem(TriggerEventBody):
    """One trigger's event, with the log lines it wrote since its last shipment (a fired trigger's log
    is complete when its event lands)."""

    trigger_id: Text = Field(max_length=36)
    lines: list[LogLine] = Field(default_factory=list, max_length=MAX_LOG_LINES)


class TriggerEventBatch(StrictModel):
    """Events of triggers one triggerer holds, posted with its own credential in one request."""

    job_id: Text | None = Field(None, max_length=36)
    triggerer: Text | None = Field(None, max_length=500)
    events: list[TriggerEventItem] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class TriggerEventOutcome(BaseModel):
    """What became of one event: the status its own ``POST /triggers/{id}/event`` would have answered
    (204 applied or a repeat, 403 held by another, 404 unknown, 409 the trigger ended otherwise)."""

    trigger_id: str
    status_code: int
    detail: str | None = None


class TriggerEventOutcomes(BaseModel):
    outcomes: list[TriggerEventOutcome]


class TriggerSpec(StrictModel):
    classpath: str = Field(pattern=CLASSPATH_PATTERN, max_length=1000)
    kwargs: TriggerKwargs = Field(default_factory=dict)
    # Checked against QUEUE_PATTERN by the API (422), in every version.
    queue: Text | None = Field(None, max_length=200)


class TaskInstanceDefer(StrictModel):
    state: Literal["deferred"]
    trigger: TriggerSpec
    next_method: str = Field(pattern=METHOD_NAME_PATTERN, max_length=200)
    next_kwargs: dict[str, Any] | None = None
    trigger_timeout: TimeoutSeconds | None = Field(None, description="seconds")

    _next_kwargs = field_validator("next_kwargs")(check_next_kwargs)


class Deferred(BaseModel):
    trigger_id: str
