"""The worker process: one Temporal Worker per task queue, a liveness job, nothing else. What the
workers run (connection tests or triggers) comes from the role registered under that name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from datetime import timedelta
from pathlib import Path

import structlog
from temporalio.worker import Worker

from airlock.codec import make_data_converter
from airlock.execution import JobRegistration
from airlock.logging import configure_logging
from airlock.plugins import load_worker_role
from airlock.temporal_client import connect_temporal
from airlock.tls import probe_handshake
from airlock.tracing import configure_tracing, flush_traces
from worker import metrics
from worker.client import ExecutionAPIClient, ExecutionAPIError
from worker.config import WorkerSettings
from worker.isolation import PR_SET_DUMPABLE, prctl
from worker.liveness import LivenessJob
from worker.role import RoleFactory

log = structlog.get_logger(__name__)

# Its credentials: the API's and Temporal's (a client key given inline, an API key), its payload keys,
# and a trace collector's (OTLP headers carry its API key).
SECRET_VARIABLES = frozenset(
    {
        "AIRLOCK_WORKER_TOKEN",
        "AIRLOCK_PAYLOAD_KEYS",
        "AIRLOCK_API_CLIENT_KEY",
        "AIRLOCK_TEMPORAL_TLS_KEY",
        "AIRLOCK_TEMPORAL_API_KEY",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    }
)


async def run_worker(settings: WorkerSettings, stop: asyncio.Event | None = None) -> None:
    if not settings.worker_token:
        raise SystemExit("AIRLOCK_WORKER_TOKEN is not set: a worker needs its own credential")
    # Before the environment is forgotten: the exporter reads its OTEL_* settings (headers too) now.
    configure_tracing("airlock-triggerer" if settings.triggerer else "airlock-worker")
    forget_secrets_in_environment()
    configure_logging(settings.log_format, settings.log_level)
    stop = stop or _stop_on_signals()
    api_tls = settings.api_tls()
    # Before connecting: the client and its workers run on the runtime that serves the metrics.
    telemetry = metrics.serve(settings)
    client = await connect_temporal(settings, make_data_converter(settings.codec()), runtime=telemetry)
    identity = f"{settings.hostname}:{os.getpid()}"
    # Every line of this process names it; the activities bind the test or trigger they run.
    structlog.contextvars.bind_contextvars(worker=identity)
    role_factory: RoleFactory = load_worker_role("triggerer" if settings.triggerer else "worker")
    role = role_factory(settings, identity)
    workers = [
        Worker(
            client,
            task_queue=queue,
            activities=role.activities,
            max_concurrent_activities=role.capacity,
            identity=identity,
            graceful_shutdown_timeout=timedelta(seconds=5),
            # Cancellation reaches an activity with a heartbeat's answer: keep that answer prompt.
            max_heartbeat_throttle_interval=timedelta(seconds=settings.heartbeat_throttle_seconds()),
        )
        for queue in settings.queues
    ]
    async with ExecutionAPIClient(
        settings.api_url, settings.worker_token, api_version=settings.execution_api_version, verify=api_tls
    ) as api:
        job = LivenessJob(api, interval=settings.job_heartbeat_interval, on_refused=stop.set)
        registration = JobRegistration(
            kind=role.kind,
            hostname=identity,
            queues=settings.queues,
            conn_types=role.conn_types,
            capacity=role.capacity if role.announce_capacity else None,
        )
        try:
            job_id = await job.start(registration)
        except ExecutionAPIError as exc:
            reason = str(exc)
            if exc.retryable and exc.status_code is None and isinstance(api_tls, ssl.SSLContext):
                refused = await asyncio.to_thread(
                    probe_handshake,
                    settings.api_url,
                    api_tls,
                    presents_certificate=bool(settings.api_client_cert),
                )
                reason += f"; {refused}" if refused else ""
            log.error("the worker could not register with the API", error=reason)
            raise SystemExit(f"cannot register with the API: {reason}") from None
        role.on_registered(job_id)
        log.info(
            "worker started",
            kind=role.kind,
            job_id=job_id,
            queues=settings.queues,
            metrics=f"{settings.metrics_host}:{settings.metrics_port}" if telemetry else "off",
        )
        runs = [asyncio.create_task(w.run()) for w in workers]
        beside = asyncio.create_task(role.background()) if role.background is not None else None
        try:
            await stop.wait()
        finally:
            if beside is not None:
                beside.cancel()
            # Together: each may wait its graceful timeout for the work in flight.
            await asyncio.gather(*(w.shutdown() for w in workers))
            for run in runs:
                with contextlib.suppress(Exception):
                    await run
            await job.stop()
            flush_traces()


def forget_secrets_in_environment() -> None:
    """The settings hold them now; child processes (driver code) must not inherit them, nor read
    them back from ``/proc/<worker pid>/environ``, which shows the environment the worker started
    with whatever ``os.environ`` says later."""
    for name in SECRET_VARIABLES & set(os.environ):
        del os.environ[name]
    with contextlib.suppress(OSError, ValueError, IndexError):
        _scrub_initial_environment(SECRET_VARIABLES)
    # Non-dumpable: processes of the same uid (drivers) can neither ptrace the worker nor read its
    # /proc files; only a privileged process can.
    prctl(PR_SET_DUMPABLE, 0)


def _scrub_initial_environment(names: frozenset[str]) -> None:
    """Overwrite the values of ``names`` in the process's initial environment block with NULs."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    env_start = int(fields[47])  # field 50 of proc(5); the list starts at field 3
    block = Path("/proc/self/environ").read_bytes()
    with open("/proc/self/mem", "r+b", buffering=0) as memory:
        offset = 0
        for entry in block.split(b"\0"):
            name, sep, value = entry.partition(b"=")
            if sep and name.decode(errors="replace") in names:
                memory.seek(env_start + offset + len(name) + 1)
                memory.write(b"\0" * len(value))
            offset += len(entry) + 1


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
