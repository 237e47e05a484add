"""Wire models of the Execution API (the head version; older versions are derived by Cadwyn)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airlock.connection import ConnectionFields, check_extra
from airlock.validation import Moment, Text, TimeoutSeconds, check_next_kwargs


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionTestConnection(ConnectionFields):
    """The decrypted fields of the connection under test: only its own workload token may read them."""


class ConnectionTestStatePatch(StrictModel):
    state: Literal["running", "success", "failed"]
    result_message: Text | None = Field(None, max_length=10_000)
    worker: Text | None = Field(None, max_length=500)


class JobRegistration(StrictModel):
    kind: Literal["worker", "triggerer"] = "worker"
    hostname: Text = Field(max_length=500)
    queues: list[Text] = Field(min_length=1, max_length=100)
    conn_types: list[Text] = Field(default_factory=list, max_length=200)
    capacity: int | None = Field(None, ge=1, le=100_000, description="triggers a triggerer runs at once")


class JobRegistered(BaseModel):
    id: str


MAX_PAYLOAD_CHARS = 256 * 1024


class TriggerClaim(StrictModel):
    job_id: Text | None = Field(None, max_length=36)
    triggerer: Text | None = Field(None, max_length=500)


class TriggerWorkload(BaseModel):
    """What a triggerer needs to run a trigger: its class, its decrypted kwargs, its deadline."""

    trigger_id: str
    classpath: str
    kwargs: dict[str, Any]
    timeout_at: datetime | None


def _json_text(value: str) -> str:
    # Checked for JSON syntax only: the payload is stored as text and never turned back into objects here.
    try:
        json.loads(value)
    except RecursionError:
        raise ValueError("payload is nested too deeply to be parsed") from None
    except ValueError:
        raise ValueError("payload must be JSON text (the serialized event envelope)") from None
    return value


class TriggerEventBody(StrictModel):
    event_type: Literal["event", "task_success", "task_failed", "task_skipped"] = "event"
    payload: Text = Field(
        max_length=MAX_PAYLOAD_CHARS, description="the worker's serialized envelope (JSON text)"
    )

    _payload = field_validator("payload")(_json_text)


class TriggerFailureBody(StrictModel):
    error: Text = Field(max_length=10_000)
    traceback: Text | None = Field(None, max_length=100_000)


class LogLine(StrictModel):
    timestamp: Moment
    level: Text = Field(max_length=10)
    message: Text = Field(max_length=10_000)


class TriggerLogBatch(StrictModel):
    job_id: Text | None = Field(None, max_length=36)
    triggerer: Text | None = Field(None, max_length=500)
    lines: list[LogLine] = Field(max_length=1000)


class TriggerSpec(StrictModel):
    classpath: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$", max_length=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: Text | None = Field(None, max_length=200)

    _kwargs = field_validator("kwargs")(lambda v: check_extra(v, "kwargs"))


class TaskInstanceDefer(StrictModel):
    state: Literal["deferred"]
    trigger: TriggerSpec
    next_method: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)
    next_kwargs: dict[str, Any] | None = None
    trigger_timeout: TimeoutSeconds | None = Field(None, description="seconds")

    _next_kwargs = field_validator("next_kwargs")(check_next_kwargs)


class Deferred(BaseModel):
    trigger_id: str
