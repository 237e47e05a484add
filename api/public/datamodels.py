"""Wire models of the public API (``/api/v2``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airlock.connection import (
    CONNECTION_ID_PATTERN,
    ConnectionFields,
    ConnectionLocation,
    ConnectionParts,
    ConnType,
    Description,
    Extra,
    InvalidURI,
    check_connection_id,
    parse_uri,
)
from airlock.execution import CLASSPATH_PATTERN, METHOD_NAME_PATTERN, TriggerKwargs
from airlock.states import ConnectionTestState, TriggerState
from airlock.validation import QUEUE_PATTERN, WORKER_NAME_PATTERN, Text, TimeoutSeconds, check_next_kwargs

STRICT = ConfigDict(extra="forbid")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class ConnectionCreate(ConnectionFields):
    model_config = STRICT

    connection_id: str = Field(pattern=CONNECTION_ID_PATTERN)
    description: Description | None = None

    _connection_id = field_validator("connection_id")(check_connection_id)


class ConnectionUpdate(ConnectionParts):
    """Fields left out keep their value; ``password: null`` clears the password."""

    model_config = STRICT

    conn_type: ConnType | None = None
    description: Description | None = None
    extra: Extra | None = None


class ConnectionResponse(ConnectionLocation):
    connection_id: str
    conn_type: str
    description: str | None
    extra: dict[str, Any]
    has_password: bool
    created_at: datetime
    updated_at: datetime


class ConnectionList(BaseModel):
    connections: list[ConnectionResponse]
    total_entries: int


class ConnectionTestRequest(ConnectionParts):
    """Either a saved ``connection_id`` alone, or unsaved fields (or ``uri``).

    With unsaved fields, ``connection_id`` names the connection that ``commit_on_success`` writes.
    """

    model_config = STRICT

    connection_id: str | None = Field(None, pattern=CONNECTION_ID_PATTERN)
    uri: Text | None = Field(None, max_length=10_000)
    conn_type: ConnType | None = None
    description: Description | None = None
    extra: Extra | None = None
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    timeout: int | None = Field(None, ge=1, description="seconds; at most the server's maximum")
    commit_on_success: bool = False

    _connection_id = field_validator("connection_id")(check_connection_id)

    @model_validator(mode="after")
    def _shape(self) -> ConnectionTestRequest:
        field_names = ("conn_type", *ConnectionParts.model_fields, "extra", "description")
        has_fields = any(getattr(self, f) is not None for f in field_names)
        if self.uri is not None and has_fields:
            raise ValueError("give either uri or connection fields, not both")
        if self.uri is None and not has_fields and self.connection_id is None:
            raise ValueError("give a saved connection_id, or unsaved connection fields, or a uri")
        if self.uri is None and has_fields and self.conn_type is None:
            raise ValueError("unsaved connection fields need a conn_type")
        if self.commit_on_success and (self.connection_id is None or not (has_fields or self.uri)):
            raise ValueError("commit_on_success needs unsaved fields (or uri) and the connection_id to save")
        try:
            self.unsaved_fields()
        except InvalidURI as exc:
            raise ValueError(f"invalid uri: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid connection: {problems}") from None
        return self

    def unsaved_fields(self) -> ConnectionFields | None:
        if self.uri is not None:
            return ConnectionFields.model_validate(parse_uri(self.uri))
        if self.conn_type is None:
            return None
        parts = self.model_dump(include=set(ConnectionParts.model_fields), by_alias=False)
        return ConnectionFields(conn_type=self.conn_type, extra=self.extra or {}, **parts)


class ConnectionTestResponse(BaseModel):
    id: str
    state: ConnectionTestState
    result_message: str | None
    connection_id: str | None
    conn_type: str
    queue: str
    timeout: int
    commit_on_success: bool
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ConnectionTestList(BaseModel):
    tests: list[ConnectionTestResponse]
    total_entries: int


class JobResponse(BaseModel):
    id: str
    kind: str
    hostname: str
    queues: list[str]
    conn_types: list[str]
    capacity: int | None
    running_triggers: int
    state: str
    alive: bool
    started_at: datetime
    latest_heartbeat: datetime
    ended_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobResponse]


# The largest value an INTEGER column holds on every database (ids, offsets, map indexes).
MAX_DB_INT = 2**31 - 1


class TriggerCreate(StrictModel):
    classpath: str = Field(pattern=CLASSPATH_PATTERN, max_length=1000)
    kwargs: TriggerKwargs = Field(default_factory=dict)
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    timeout: TimeoutSeconds | None = Field(None, description="seconds")


class TriggerResponse(BaseModel):
    """A trigger as stored. ``event_payload`` is the worker's serialized envelope, returned as is."""

    id: str
    classpath: str
    queue: str
    state: TriggerState
    task_instance_id: str | None
    event_type: str | None
    event_payload: str | None
    failure: str | None
    triggerer: str | None
    job_id: str | None
    timeout_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TriggerList(BaseModel):
    triggers: list[TriggerResponse]
    total_entries: int


class TriggerLogLine(BaseModel):
    id: int
    logged_at: datetime
    level: str
    message: str
    job_id: str | None
    triggerer: str | None


class TriggerLogs(BaseModel):
    lines: list[TriggerLogLine]
    dropped_lines: int = Field(
        0,
        description="lines the trigger logged that are no longer kept: the oldest past the per-trigger "
        "cap, or all of them once the log retention has passed",
    )


class TaskInstanceDeferral(StrictModel):
    classpath: str = Field(pattern=CLASSPATH_PATTERN, max_length=1000)
    kwargs: TriggerKwargs = Field(default_factory=dict)
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    next_method: str = Field(pattern=METHOD_NAME_PATTERN, max_length=200)
    next_kwargs: dict[str, Any] | None = None
    trigger_timeout: TimeoutSeconds | None = Field(None, description="seconds")

    _next_kwargs = field_validator("next_kwargs")(check_next_kwargs)


class TaskInstanceCreate(StrictModel):
    """Register a task instance; with ``defer`` it defers at once (no task runner needed)."""

    dag_id: Text = Field(min_length=1, max_length=250)
    run_id: Text = Field(min_length=1, max_length=250)
    task_id: Text = Field(min_length=1, max_length=250)
    map_index: int = Field(-1, ge=-1, le=MAX_DB_INT)
    defer: TaskInstanceDeferral | None = None
    # What the task's code may defer onto through the Execution API (an administrator's defer is not
    # bound by them): trigger queues, and saved connections its trigger's kwargs may name.
    allowed_queues: list[Annotated[str, Field(pattern=QUEUE_PATTERN)]] = Field(
        default_factory=list, max_length=100
    )
    allowed_connections: list[Annotated[str, Field(pattern=CONNECTION_ID_PATTERN)]] = Field(
        default_factory=list, max_length=100
    )


class TaskInstanceResponse(BaseModel):
    id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str
    next_method: str | None
    next_kwargs: str | None = Field(description="JSON text; the event payload sits in it undecoded")
    trigger_id: str | None
    trigger_timeout: datetime | None
    allowed_queues: list[str]
    allowed_connections: list[str]


class TaskInstanceCreated(TaskInstanceResponse):
    execution_token: str = Field(
        description="for a task runner: the Execution API token of this task instance"
    )


class WorkerCreate(StrictModel):
    """Provision a worker for some queues: it gets its own credential and those queues' payload keys."""

    name: str = Field(pattern=WORKER_NAME_PATTERN, description="lowercase letters, digits and '-'")
    queues: list[Annotated[str, Field(pattern=QUEUE_PATTERN)]] = Field(min_length=1, max_length=100)
    triggerer: bool = Field(False, description="runs triggers instead of connection tests")
    expires_in_days: float = Field(365, gt=0, le=3650)


class WorkerResponse(BaseModel):
    name: str
    queues: list[str]
    triggerer: bool
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class WorkerCreated(BaseModel):
    name: str
    queues: list[str]
    triggerer: bool
    expires_at: datetime
    env: dict[str, str] = Field(
        description="everything the worker's host needs (AIRLOCK_* variables), its credential included; "
        "shown this once"
    )


class WorkerList(BaseModel):
    workers: list[WorkerResponse]
