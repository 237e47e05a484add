"""Worker settings. A worker knows Temporal, the API and its own credential: never a database URL."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from airlock.egress import DEFAULT_ALLOW, EgressPolicy, EgressRule, Rule
from airlock.plugins import DEFAULT_TRIGGER_ALLOWLIST
from airlock.settings import ApiLinkSettings, TemporalSettings, split_list
from airlock.version import LATEST_EXECUTION_API_VERSION

if TYPE_CHECKING:
    from airlock.codec import EncryptionCodec


class EgressOverride(BaseModel):
    """One queue's egress policy in ``AIRLOCK_EGRESS_POLICIES``; what it leaves out is the worker's."""

    model_config = ConfigDict(extra="forbid")

    allow: tuple[Rule, ...] | None = None
    allow_loopback: bool | None = None
    allow_link_local: bool | None = None


class WorkerSettings(TemporalSettings, ApiLinkSettings):
    # Pin the Execution API version this worker speaks (the newest this build knows by default).
    execution_api_version: str = LATEST_EXECUTION_API_VERSION
    worker_token: str = Field(default="", repr=False)
    # The payload keys of this worker's queues, as provisioned: {"k1/queue:net-a": "base64 key"}.
    payload_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    # The master key id this worker seals with (the API's current one when it was provisioned).
    payload_key_id: str = "k1"
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

    # Serve Prometheus metrics (the Temporal SDK's and this worker's own, worker/metrics.py) on this
    # port; off by default. Loopback unless metrics_host says otherwise: the endpoint has no token.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    # A triggerer runs triggers (long, heartbeating activities) instead of connection tests.
    triggerer: bool = False
    capacity: int = Field(default=1000, ge=1, description="triggers one triggerer runs at once")
    # Trigger classes this triggerer agrees to import and run (fnmatch patterns over classpaths).
    trigger_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TRIGGER_ALLOWLIST)
    )

    def codec(self) -> EncryptionCodec:
        # Imported here: the fork server loads this module, and its drivers need no Temporal.
        from airlock.codec import DerivedKeyring, EncryptionCodec

        if not self.payload_keys:
            raise ValueError("AIRLOCK_PAYLOAD_KEYS is not set: provision this worker (airlock workers add)")
        return EncryptionCodec(DerivedKeyring(self.payload_key_id, self.payload_keys))

    @field_validator("queues", "trigger_allowlist", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    # Limits on each connection test's driver (worker/isolation.py): address space, open files and
    # CPU time hold for each of its processes; the process count is of the driver and all it started.
    driver_memory_mb: int = Field(default=1024, ge=64)
    driver_max_open_files: int = Field(default=256, ge=16)
    driver_cpu_seconds: int = Field(default=60, ge=1)
    driver_max_processes: int = Field(default=32, ge=1)

    # Where this worker's testers and triggers may connect (airlock/egress.py), checked after DNS
    # resolution. Comma-separated CIDRs, each with an optional :port or :low-high.
    egress_allow: Annotated[tuple[Rule, ...], NoDecode] = Field(
        default_factory=lambda: tuple(EgressRule.parse(rule) for rule in DEFAULT_ALLOW)
    )
    # Loopback and link-local (the cloud metadata service) are refused unless opted in.
    egress_allow_loopback: bool = False
    egress_allow_link_local: bool = False
    # Per-queue policies, JSON: {"net-a": {"allow": ["10.1.0.0/16:5432"], "allow_loopback": true}}.
    egress_policies: dict[str, EgressOverride] = Field(default_factory=dict)

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_egress(cls, value: object) -> object:
        return split_list(value)

    def egress_policy(self, queue: str | None) -> EgressPolicy:
        """The policy of ``queue``: its entry in ``egress_policies`` over the worker-wide settings."""
        policy = EgressPolicy(
            allow=self.egress_allow,
            allow_loopback=self.egress_allow_loopback,
            allow_link_local=self.egress_allow_link_local,
        )
        override = self.egress_policies.get(queue) if queue is not None else None
        if override is None:
            return policy
        return EgressPolicy.model_validate(policy.model_dump() | override.model_dump(exclude_none=True))
