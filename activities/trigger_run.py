"""The trigger activity: runs on a triggerer, heartbeats while the trigger waits, posts the first event.

If this triggerer dies, the heartbeat timeout hands the trigger to another triggerer of the queue,
which claims it again; the API applies the first event only (the event endpoint is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import ssl
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.api_errors import reported_to_temporal
from activities.trigger_events import EventPoster
from activities.triggers import TriggerNotAllowed, load_trigger_class
from airlock.connection import ConnectionFields
from airlock.execution import (
    MAX_ERROR_CHARS,
    MAX_LOG_LINES,
    MAX_LOG_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    LogLine,
    TriggerClaim,
    TriggerEventItem,
    TriggerFailureBody,
    TriggerLogBatch,
)
from airlock.logging import bind_work, hidden_in_logs, hide_in_logs, install_secret_scrubbing
from airlock.plugins import trigger_entry_points
from airlock.protocol import RUN_TRIGGER_ACTIVITY, TRIGGER_FAILED_ERROR, TRIGGER_NOT_ALLOWED_ERROR
from airlock.sdk.triggers import BaseTrigger
from airlock.secrets import connection_secrets, scrub, sensitive_values
from airlock.serde import serialize
from airlock.states import TriggerState
from airlock.summaries import shorten
from airlock.triggers import builtin_classpaths
from airlock.workloads import RunTriggerInput
from worker.client import ExecutionAPIClient, ExecutionAPIError
from worker.config import WorkerSettings
from worker.role import Role

log = structlog.get_logger(__name__)

# How long a triggerer keeps retrying the API (down for a deploy, say) before Temporal retries the run.
API_OUTAGE_TOLERANCE = 120.0
LOG_FLUSH_SECONDS = 2.0
# Log lines an event carries; a trigger that wrote more since its last shipment ships them first.
EVENT_LOG_LINES = 50
STOPPING_BEAT_SECONDS = 2.0
CONTROL_CALLS = 64
LOG_CALLS = 8
MAX_LOG_BUFFER = 5000

_current_buffer: contextvars.ContextVar[list[LogLine] | None] = contextvars.ContextVar(
    "trigger_log_buffer", default=None
)

# The runner's own machinery (shipping these very logs included) is not the trigger's log.
_RUNNER_LOGGERS = ("httpx", "httpcore", "temporalio", "asyncio", "worker.", "activities.trigger_run")


class _TriggerLogHandler(logging.Handler):
    """Routes a log record to the buffer of the trigger whose task emitted it."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _current_buffer.get()
        if buffer is None or len(buffer) >= MAX_LOG_BUFFER or record.name.startswith(_RUNNER_LOGGERS):
            return
        # The API stores text: no NUL bytes, no lone surrogates.
        message = self.format(record)[:MAX_LOG_MESSAGE_CHARS].replace("\x00", "\\x00")
        buffer.append(
            LogLine(
                timestamp=datetime.fromtimestamp(record.created, UTC),
                level=record.levelname[:10],
                message=message.encode("utf-8", "backslashreplace").decode("utf-8"),
            )
        )


class _Context:
    def __init__(self, api: ExecutionAPIClient, trigger_id: str, log: logging.Logger) -> None:
        self._api = api
        self._trigger_id = trigger_id
        self.log = log

    async def get_connection(self, conn_id: str) -> ConnectionFields:
        conn = await self._api.triggers.get_connection(self._trigger_id, conn_id)
        # What the trigger now holds is scrubbed from its logs and errors, as its kwargs' secrets are.
        hide_in_logs(*connection_secrets(conn))
        return conn


class TriggerActivities:
    def __init__(
        self,
        *,
        api_url: str,
        api_tls: ssl.SSLContext | bool,
        credential: str,
        identity: str,
        allowlist: Sequence[str],
    ) -> None:
        self._api_url = api_url
        self._credential = credential
        self._identity = identity
        # Installed plugins' registered trigger classes are allowed along with the configured patterns.
        self._allowlist = (*allowlist, *trigger_entry_points().values(), *builtin_classpaths())
        # What the triggerer does beside each running trigger: ship its logs, tell it to stop.
        self._running: dict[str, _Running] = {}
        self._shipments: set[asyncio.Task[None]] = set()
        # Claims, events and failures never queue behind log shipping: two pools, each with a limiter
        # no larger than its connection count.
        self._transport = httpx.AsyncHTTPTransport(
            retries=2, verify=api_tls, limits=httpx.Limits(max_connections=CONTROL_CALLS)
        )
        self._limiter = asyncio.Semaphore(CONTROL_CALLS)
        self._log_transport = httpx.AsyncHTTPTransport(
            retries=2, verify=api_tls, limits=httpx.Limits(max_connections=LOG_CALLS)
        )
        self._log_limiter = asyncio.Semaphore(LOG_CALLS)
        self.job_id: str | None = None
        self._events = EventPoster(
            self._worker_api(retry_for=API_OUTAGE_TOLERANCE), identity, job_id=lambda: self.job_id
        )
        handler = _TriggerLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        # A running trigger's secrets (hide_in_logs) are scrubbed from every record as it is made,
        # whichever handler formats it: this one, the worker's own, any added later.
        install_secret_scrubbing()

    @activity.defn(name=RUN_TRIGGER_ACTIVITY)
    async def run_trigger(self, workload: RunTriggerInput) -> str:
        worker_api = self._worker_api(retry_for=API_OUTAGE_TOLERANCE, on_retry=activity.heartbeat)
        bind_work(trigger_id=workload.trigger_id, queue=activity.info().task_queue, worker=self._identity)
        buffer: list[LogLine] = []
        _current_buffer.set(buffer)
        stop = asyncio.Event()
        beating: asyncio.Task[None] | None = None
        logs: _LogShipper | None = None
        trigger: BaseTrigger | None = None
        try:
            with reported_to_temporal():
                # The claim, with this triggerer's own credential, hands out the trigger's token.
                claim = TriggerClaim(job_id=self.job_id, triggerer=self._identity)
                claimed = await worker_api.triggers.claim(workload.trigger_id, claim)
                beating = asyncio.create_task(_beat(stop, claimed.timeout_at))
                api = worker_api.with_token(claimed.token)
                logs_api = ExecutionAPIClient(
                    self._api_url, claimed.token, transport=self._log_transport, limiter=self._log_limiter
                )
                logs = _LogShipper(logs_api, workload.trigger_id, buffer, self._log_batch)
                self._running[workload.trigger_id] = _Running(stop, logs)
                hide_in_logs(*sensitive_values(claimed.kwargs))
                structlog.contextvars.bind_contextvars(classpath=claimed.classpath)
                log.info("trigger claimed", attempt=activity.info().attempt, job_id=self.job_id)
                trigger = self._build(claimed.classpath, claimed.kwargs)
                trigger.context = _Context(api, workload.trigger_id, trigger.log)
                trigger.log.info("running %s on %s", claimed.classpath, self._identity)
                return await self._first_event(api, workload.trigger_id, trigger, logs)
        except asyncio.CancelledError:
            log.info("trigger cancelled: running its cleanup")
            raise
        finally:
            self._running.pop(workload.trigger_id, None)
            if trigger is not None:
                with contextlib.suppress(Exception):
                    await trigger.cleanup()
            if beating is not None:
                beating.cancel()
            if logs is not None:
                with contextlib.suppress(Exception):
                    await logs.flush()

    async def run_beside(self, held_interval: float) -> None:
        """What the triggerer does for all its triggers at once, rather than a task per trigger waking
        up on its own: ship their logs, and ask which of them to stop."""
        await asyncio.gather(self._ship_logs(), self._watch_held(held_interval))

    async def _ship_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            for run in list(self._running.values()):
                if run.logs.due():
                    shipment = asyncio.create_task(_quietly(run.logs.flush))
                    self._shipments.add(shipment)
                    shipment.add_done_callback(self._shipments.discard)

    async def _watch_held(self, interval: float) -> None:
        """Every ``interval``, ask the API which running triggers to stop (cancelled, say): those ask
        Temporal at once, whose answer cancels them. Their own heartbeats are minutes apart."""
        api = self._worker_api()
        while True:
            await asyncio.sleep(interval)
            if self.job_id is None or not self._running:
                continue
            try:
                to_stop = await api.triggers.to_stop(self.job_id, list(self._running))
            except ExecutionAPIError as exc:
                log.warning("could not ask the API which triggers to stop", error=str(exc))
                continue
            for trigger_id in to_stop:
                if (run := self._running.get(trigger_id)) is not None:
                    run.stop.set()

    def _worker_api(self, **retries: Any) -> ExecutionAPIClient:
        """A client acting with this triggerer's own credential."""
        return ExecutionAPIClient(
            self._api_url, self._credential, transport=self._transport, limiter=self._limiter, **retries
        )

    def _build(self, classpath: str, kwargs: dict[str, object]) -> BaseTrigger:
        try:
            return load_trigger_class(classpath, self._allowlist)(**kwargs)
        except TriggerNotAllowed as exc:
            raise ApplicationError(str(exc), type=TRIGGER_NOT_ALLOWED_ERROR, non_retryable=True) from None
        except (ImportError, TypeError, ValueError) as exc:
            # A validation message may quote the value it rejects: a URL with its password, say.
            message = f"cannot build trigger {classpath}: {type(exc).__name__}: {exc}"
            raise ApplicationError(
                scrub(message, *hidden_in_logs()),
                type=TRIGGER_FAILED_ERROR,
                non_retryable=True,
            ) from None

    async def _first_event(
        self, api: ExecutionAPIClient, trigger_id: str, trigger: BaseTrigger, logs: _LogShipper
    ) -> str:
        try:
            async for event in trigger.run():
                trigger.log.info("fired: %s", event.event_type)
                # Its last log lines travel with the event: a fired trigger's log is complete.
                item = TriggerEventItem.model_validate(
                    {
                        "trigger_id": trigger_id,
                        "event_type": event.event_type,
                        "payload": serialize(event.payload),
                        "lines": await logs.take(EVENT_LOG_LINES),
                    }
                )
                await self._events.post(item)
                log.info("trigger fired", event_type=event.event_type)
                return TriggerState.FIRED
            raise RuntimeError("the trigger's run() ended without an event")
        # The API's answers (a refusal, an outage) are not the trigger's own failure.
        except (asyncio.CancelledError, ApplicationError, ExecutionAPIError):
            raise
        except Exception as exc:
            # The trigger itself raised: report it with the traceback, and do not retry it elsewhere.
            trigger.log.error("failed: %s", exc)
            # Its message and traceback may quote its own kwargs: they leave this process scrubbed.
            secrets = hidden_in_logs()
            error = scrub(f"{type(exc).__name__}: {exc}", *secrets)
            stack = scrub(traceback.format_exc(), *secrets)
            await _quietly(logs.flush)
            failure = TriggerFailureBody(
                error=error[:MAX_ERROR_CHARS], traceback=stack[-MAX_TRACEBACK_CHARS:]
            )
            await api.triggers.post_failure(trigger_id, failure)
            log.warning("trigger failed", error=shorten(error))
            raise ApplicationError(error, type=TRIGGER_FAILED_ERROR, non_retryable=True) from None

    def _log_batch(self, lines: list[LogLine]) -> TriggerLogBatch:
        return TriggerLogBatch(job_id=self.job_id, triggerer=self._identity, lines=lines)


@dataclass
class _Running:
    stop: asyncio.Event  # set when the API says the trigger must stop
    logs: _LogShipper


class _LogShipper:
    """A running trigger's log lines: shipped every LOG_FLUSH_SECONDS, before a failure is reported and
    with the event; one shipment at a time, so that no line goes twice."""

    def __init__(
        self,
        api: ExecutionAPIClient,
        trigger_id: str,
        buffer: list[LogLine],
        batch: Callable[[list[LogLine]], TriggerLogBatch],
    ) -> None:
        self._api = api
        self._trigger_id = trigger_id
        self._buffer = buffer
        self._batch = batch
        self._shipping = asyncio.Lock()

    def due(self) -> bool:
        """Lines wait, and no shipment is on the way."""
        return bool(self._buffer) and not self._shipping.locked()

    async def flush(self) -> None:
        async with self._shipping:
            await self._ship()

    async def take(self, limit: int) -> list[LogLine]:
        """The lines not shipped yet, for an event to carry: past ``limit``, the older ones are shipped
        first (logs are best effort: if that fails, only the latest ``limit`` go)."""
        async with self._shipping:
            if len(self._buffer) > limit:
                await _quietly(self._ship)
            lines = self._buffer[-limit:]
            self._buffer.clear()
            return lines

    async def _ship(self) -> None:
        # Ship what is there now; lines logged meanwhile wait for the next flush.
        for _ in range(-(-len(self._buffer) // MAX_LOG_LINES)):
            lines = self._buffer[:MAX_LOG_LINES]
            await self._api.triggers.post_logs(self._trigger_id, self._batch(lines))
            del self._buffer[: len(lines)]


def triggerer_role(settings: WorkerSettings, identity: str) -> Role:
    """The ``triggerer`` role: up to ``capacity`` triggers at once, each a long, heartbeating activity."""
    triggers = TriggerActivities(
        api_url=settings.api_url,
        api_tls=settings.api_tls(),
        credential=settings.worker_token,
        identity=identity,
        allowlist=settings.trigger_allowlist,
    )

    def note_job(job_id: str) -> None:
        triggers.job_id = job_id

    return Role(
        "triggerer",
        [triggers.run_trigger],
        settings.capacity,
        on_registered=note_job,
        announce_capacity=True,
        background=functools.partial(triggers.run_beside, settings.job_heartbeat_interval),
    )


async def _beat(stop: asyncio.Event, deadline: datetime | None) -> None:
    """Heartbeat the run: a third of Temporal's heartbeat timeout apart while the trigger waits (the API
    hands a dead triggerer's triggers over sooner), then every few seconds once the API said stop or
    the deadline passed, so that the cancellation Temporal holds for the run arrives promptly."""
    timeout = activity.info().heartbeat_timeout
    waiting = timeout.total_seconds() / 3 if timeout else STOPPING_BEAT_SECONDS
    while True:
        left = (deadline - datetime.now(UTC)).total_seconds() if deadline is not None else waiting
        if stop.is_set() or left <= 0:
            await asyncio.sleep(STOPPING_BEAT_SECONDS)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(waiting, left))
        activity.heartbeat()


async def _quietly(ship: Callable[[], Awaitable[None]]) -> None:
    # Logs are best effort: an API that refuses them must not stop the event.
    with contextlib.suppress(ExecutionAPIError):
        await ship()
