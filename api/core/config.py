"""API settings (``AIRLOCK_*``). Only the API knows the database URL and the signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from airlock.codec import EncryptionCodec, MasterKeyring, decode_key, master_codec, queue_purpose
from airlock.settings import TemporalSettings, split_list

# The largest values the caps on connection tests take.
MAX_PENDING_TESTS_LIMIT = 5_000
MAX_CONCURRENCY_LIMIT = 1_000


class Settings(TemporalSettings):
    model_config = SettingsConfigDict(env_prefix="AIRLOCK_", extra="ignore")

    database_url: str = "sqlite:///.airlock/airlock.db"
    # The master payload key: every segment's key is derived from it (airlock/codec.py).
    payload_key: str = Field(default="", repr=False)
    payload_key_id: str = "k1"
    # Other master keys, as {"key id": "base64 key"}: they still open payloads, and provisioned workers
    # get their queues' keys under them too, so that a key can be handed out before it becomes current.
    payload_old_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    fernet_key: str = Field(default="", repr=False)
    jwt_secret: str = Field(default="", repr=False)
    admin_token: str = Field(default="", repr=False)
    # Decode-only secret for the Temporal UI's codec endpoint (it cannot send a bearer token).
    codec_token: str = Field(default="", repr=False)
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )
    jwt_audience: str = "airlock-execution"
    # Bearer token of GET /metrics, and of nothing else (Prometheus never holds the admin token);
    # unset, /metrics answers 404.
    metrics_token: str = Field(default="", repr=False)

    # HTTPS: the API's certificate chain and key (PEM files). With a client CA, every connection must
    # present a certificate that CA signed (mutual TLS), workers' and the CLI's alike.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = Field(default=None, repr=False)
    tls_client_ca_file: Path | None = None

    # What a provisioned worker's env points at: the API and Temporal as its host reaches them.
    worker_api_url: str = "http://127.0.0.1:8080"
    worker_temporal_address: str | None = None
    # The CA bundle a worker verifies the API with, handed out inline (AIRLOCK_API_CA); unset: the
    # worker host's system roots.
    worker_api_ca_file: Path | None = None
    # A CA (certificate and key) that signs each provisioned worker a client certificate, valid as
    # long as its credential: for the API's mutual TLS, and for Temporal's when worker_temporal_tls.
    worker_client_ca_cert_file: Path | None = None
    worker_client_ca_key_file: Path | None = Field(default=None, repr=False)
    # Whether workers reach Temporal over TLS (unset: as the API does), the CA they verify it with and
    # the name they expect on its certificate.
    worker_temporal_tls: bool | None = None
    worker_temporal_tls_ca_file: Path | None = None
    worker_temporal_tls_server_name: str | None = None

    # The Temporal UI as operators reach it: the console links each test to its workflow there.
    temporal_ui_url: str | None = Field(default=None, pattern=r"^https?://")

    control_queue: str = "airlock-control"
    default_queue: str = "default"
    run_control_worker: bool = True
    # Run the control worker's workflows in temporalio's sandbox, which re-imports their modules for
    # every workflow and checks them for non-determinism. The tests run with it; production without it,
    # a fifth more tests a second on two cores (bench/connection_tests.py): workflows/ imports no I/O
    # (import-linter) and every workflow path runs sandboxed in the tests.
    workflow_sandbox: bool = False

    connection_test_timeout: int = Field(default=60, ge=1)
    max_connection_test_timeout: int = Field(default=600, ge=1)
    max_connection_test_concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY_LIMIT)
    # Tests waiting to run (pending or queued), in one queue and in all: past either, a 429.
    max_pending_tests_per_queue: int = Field(default=500, ge=1, le=MAX_PENDING_TESTS_LIMIT)
    max_pending_tests: int = Field(default=2_000, ge=1, le=MAX_PENDING_TESTS_LIMIT)
    connection_test_reaper_interval: float = Field(default=30, gt=0)
    # No worker picked the test up within this many seconds: fail it.
    connection_test_dispatch_timeout: float = Field(default=30, gt=0)
    connection_test_heartbeat_timeout: float = Field(default=10, gt=0)
    # A job whose last heartbeat is older than this is not counted as a live worker.
    job_liveness_timeout: float = Field(default=30, gt=0)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)

    default_trigger_queue: str = "triggers"
    # A triggerer whose job is silent this long is presumed dead: its triggers move to another one.
    trigger_heartbeat_timeout: float = Field(default=15, gt=0)
    # Temporal's own heartbeat timeout on a trigger's run, which its triggerer heartbeats every third
    # of it: the handover when the API cannot make it (down, say). Each heartbeat costs Temporal a
    # write: a thousand triggers heartbeating every few seconds keep a core busy.
    trigger_run_heartbeat_timeout: float = Field(default=600, gt=0)
    # Reaper period: a trigger whose workflow closed without ending it is failed within this.
    trigger_reaper_interval: float = Field(default=30, gt=0)
    # Triggers not yet ended (scheduled or running) in one queue: past it, a 429.
    max_active_triggers_per_queue: int = Field(default=10_000, ge=1)
    # Log lines kept per trigger: past it, the oldest are deleted as new ones arrive.
    max_log_lines_per_trigger: int = Field(default=10_000, ge=1)

    # Finished tests, ended triggers (with their log lines), ended task instances and workers' jobs
    # gone silent are deleted this many days after they ended; 0 keeps them forever.
    retention_days: float = Field(default=30, ge=0)
    # Log lines of ended triggers go after this many days (the trigger itself stays until
    # retention_days); unset: with their trigger.
    trigger_log_retention_days: float | None = Field(default=None, ge=0)
    retention_interval: float = Field(default=3600, gt=0)
    retention_batch_size: int = Field(default=1000, ge=1, le=10_000)

    _split_origins = field_validator("codec_cors_origins", mode="before")(split_list)

    @model_validator(mode="after")
    def _timeouts(self) -> Settings:
        if self.connection_test_timeout > self.max_connection_test_timeout:
            raise ValueError("connection_test_timeout exceeds max_connection_test_timeout")
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        if (self.worker_client_ca_cert_file is None) != (self.worker_client_ca_key_file is None):
            raise ValueError("worker_client_ca_cert_file and worker_client_ca_key_file go together")
        return self

    @property
    def reaper_grace(self) -> float:
        # The reference's grace: at least 30 s, or half the timeout for long ones.
        return max(30.0, self.connection_test_timeout / 2)

    def codec(self) -> EncryptionCodec:
        if not self.payload_key:
            raise ValueError("AIRLOCK_PAYLOAD_KEY is not set: payloads must be encrypted")
        return master_codec(
            self.payload_key_id,
            self.payload_key,
            self.payload_old_keys.items(),
            control_queue=self.control_queue,
        )

    def queue_keys(self, queues: list[str]) -> dict[str, str]:
        """The payload keys a worker of ``queues`` is given: those queues' keys, nothing else."""
        masters = {kid: decode_key(value) for kid, value in self.payload_old_keys.items()}
        masters[self.payload_key_id] = decode_key(self.payload_key)
        return MasterKeyring(self.payload_key_id, masters).derived(queue_purpose(q) for q in queues)

    def require_secrets(self, *names: str) -> None:
        """Refuse to start without the secrets ``names`` (all by default), or with weak ones."""
        # The optional ones are checked when they are set.
        optional = [name for name in OPTIONAL_SECRET_MINIMUMS if getattr(self, name)]
        weak = {
            name: problem
            for name in names or [*SECRET_MINIMUMS, *optional]
            if (problem := _weakness(name, getattr(self, name)))
        }
        if weak:
            problems = "; ".join(f"AIRLOCK_{name.upper()} {problem}" for name, problem in weak.items())
            generated = (
                " (`airlock dev` generates them for a local stack)" if weak.keys() & SECRET_MINIMUMS else ""
            )
            raise SystemExit(f"refusing to start: {problems}{generated}")


# The shortest each secret may be. HS256 wants a key of at least 256 bits (RFC 7518, 3.2); a bearer
# token shorter than 24 characters is guessable. The Fernet and payload keys have fixed lengths.
SECRET_MINIMUMS = {
    "fernet_key": 44,
    "payload_key": 43,
    "jwt_secret": 32,
    "admin_token": 24,
    "codec_token": 24,
}
# Secrets a feature needs only when it is on, held to the same rule when set.
OPTIONAL_SECRET_MINIMUMS = {"metrics_token": 24}


def _weakness(name: str, value: str) -> str | None:
    minimum = SECRET_MINIMUMS.get(name) or OPTIONAL_SECRET_MINIMUMS[name]
    if not value:
        return "is not set"
    if len(value.encode()) < minimum:
        return f"is too short ({len(value.encode())} bytes; at least {minimum})"
    return None
