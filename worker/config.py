"""Worker settings. A worker knows Temporal, the API and its own credential: never a database URL."""

from __future__ import annotations

import socket
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from airlock.version import LATEST_EXECUTION_API_VERSION
from worker.codec import EncryptionCodec, make_codec


class TemporalSettings(BaseSettings):
    """What every Temporal client of Airlock shares: the API uses it too."""

    model_config = SettingsConfigDict(env_prefix="AIRLOCK_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    payload_key: str = Field(default="", repr=False)
    payload_key_id: str = "k1"
    # Keys that still decrypt old payloads after a rotation, as {"key id": "base64 key"}.
    payload_old_keys: dict[str, str] = Field(default_factory=dict, repr=False)

    def __repr_args__(self) -> Any:
        # repr() and str() of settings (a log line, a traceback) show URLs without their password:
        # a database URL, an API URL with userinfo.
        for name, value in super().__repr_args__():
            yield name, hide_url_password(value) if isinstance(value, str) else value

    def codec(self) -> EncryptionCodec:
        if not self.payload_key:
            raise ValueError("AIRLOCK_PAYLOAD_KEY is not set: payloads must be encrypted")
        return make_codec(self.payload_key_id, self.payload_key, self.payload_old_keys.items())


class WorkerSettings(TemporalSettings):
    api_url: str = "http://127.0.0.1:8080"
    # Pin the Execution API version this worker speaks (the newest this build knows by default).
    execution_api_version: str = LATEST_EXECUTION_API_VERSION
    worker_token: str = Field(default="", repr=False)
    # Comma-separated in the environment: AIRLOCK_QUEUES=net-a,net-b
    queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    hostname: str = Field(default_factory=socket.gethostname)
    max_concurrent_tests: int = Field(default=8, ge=1)
    job_heartbeat_interval: float = Field(default=5.0, gt=0)
    # How often a running test tells Temporal it is alive; the workflow's heartbeat timeout is larger.
    activity_heartbeat_interval: float = Field(default=1.0, gt=0)
    # At most this long between heartbeats reaching Temporal, so a cancellation arrives this fast.
    # Default: 3 s for connection tests; 10 s for a triggerer, whose thousand triggers all heartbeat.
    heartbeat_throttle: float | None = Field(default=None, gt=0)

    def heartbeat_throttle_seconds(self) -> float:
        if self.heartbeat_throttle is not None:
            return self.heartbeat_throttle
        return 10.0 if self.triggerer else 3.0

    # A triggerer runs triggers (long, heartbeating activities) instead of connection tests.
    triggerer: bool = False
    capacity: int = Field(default=1000, ge=1, description="triggers one triggerer runs at once")
    # Trigger classes this triggerer agrees to import and run (fnmatch patterns over classpaths).
    trigger_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["activities.triggers.*"]
    )

    @field_validator("queues", "trigger_allowlist", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)


def split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def hide_url_password(value: str) -> str:
    """``scheme://user:***@host/...`` for a URL with a password; anything else unchanged."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
