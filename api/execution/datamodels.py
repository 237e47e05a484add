"""Wire models of the Execution API (the head version; older versions are derived by Cadwyn)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from airlock.connection import ConnectionFields
from airlock.validation import Text


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionTestConnection(ConnectionFields):
    """The decrypted fields of the connection under test: only its own workload token may read them."""


class ConnectionTestStatePatch(StrictModel):
    state: Literal["running", "success", "failed"]
    result_message: Text | None = Field(None, max_length=10_000)
    worker: Text | None = Field(None, max_length=500)


class JobRegistration(StrictModel):
    kind: Literal["worker"] = "worker"
    hostname: Text = Field(max_length=500)
    queues: list[Text] = Field(min_length=1, max_length=100)
    conn_types: list[Text] = Field(default_factory=list, max_length=200)


class JobRegistered(BaseModel):
    id: str
