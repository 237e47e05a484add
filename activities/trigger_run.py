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
import random
import ssl
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.api_errors import reported_to_temporal
from activities.triggers import TriggerNotAllowed, load_trigger_class
from airlock.connection import ConnectionFields
from airlock.execution import (
    MAX_ERROR_CHARS,
    MAX_LOG_LINES,
    MAX_LOG_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    LogLine,
    TriggerClaim,
    TriggerEventBody,
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
        heartbeat_interval: float = 2.0,
    ) -> None:
        self._api_url = api_url
        self._credential = credential
        self._identity = identity
        # Installed plugins' registered trigger classes are allowed along with the configured patterns.
        self._allowlist = (*allowlist, *trigger_entry_points().values(), *builtin_classpaths())
        self._heartbeat_interval = heartbeat_interval
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
        handler = _TriggerLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        # A running trigger's secrets (hide_in_logs) are scrubbed from every record as it is made,
        # whichever handler formats it: this one, the worker's own, any added later.
        install_secret_scrubbing()

    @activity.defn(name=RUN_TRIGGER_ACTIVITY)
    async def run_trigger(self, workload: RunTriggerInput) -> str:
        worker_api = ExecutionAPIClient(
            self._api_url,
            self._credential,
            transport=self._transport,
            limiter=self._limiter,
            retry_for=API_OUTAGE_TOLERANCE,
            on_retry=activity.heartbeat,
        )
        bind_work(trigger_id=workload.trigger_id, queue=activity.info().task_queue, worker=self._identity)
        buffer: list[LogLine] = []
        _current_buffer.set(buffer)
        beating = asyncio.create_task(self._beat())
        shipping: asyncio.Task[None] | None = None
        logs_api: ExecutionAPIClient | None = None
        trigger: BaseTrigger | None = None
        try:
            with reported_to_temporal():
                # The claim, with this triggerer's own credential, hands out the trigger's token.
                claim = TriggerClaim(job_id=self.job_id, triggerer=self._identity)
                claimed = await worker_api.triggers.claim(workload.trigger_id, claim)
                api = worker_api.with_token(claimed.token)
                logs_api = ExecutionAPIClient(
                    self._api_url, claimed.token, transport=self._log_transport, limiter=self._log_limiter
                )
                shipping = asyncio.create_task(self._ship_logs(logs_api, workload.trigger_id, buffer))
                hide_in_logs(*sensitive_values(claimed.kwargs))
                structlog.contextvars.bind_contextvars(classpath=claimed.classpath)
                log.info("trigger claimed", attempt=activity.info().attempt, job_id=self.job_id)
                trigger = self._build(claimed.classpath, claimed.kwargs)
                trigger.context = _Context(api, workload.trigger_id, trigger.log)
                trigger.log.info("running %s on %s", claimed.classpath, self._identity)
                # Its logs are shipped before its end is reported: a finished trigger's log is complete.
                flush = functools.partial(self._flush, logs_api, workload.trigger_id, buffer)
                return await self._first_event(api, workload.trigger_id, trigger, flush)
        except asyncio.CancelledError:
            log.info("trigger cancelled: running its cleanup")
            raise
        finally:
            if trigger is not None:
                with contextlib.suppress(Exception):
                    await trigger.cleanup()
            beating.cancel()
            if shipping is not None:
                shipping.cancel()
            if logs_api is not None:
                with contextlib.suppress(Exception):
                    await self._flush(logs_api, workload.trigger_id, buffer)

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
        self,
        api: ExecutionAPIClient,
        trigger_id: str,
        trigger: BaseTrigger,
        flush_logs: Callable[[], Awaitable[None]],
    ) -> str:
        try:
            async for event in trigger.run():
                trigger.log.info("fired: %s", event.event_type)
                body = TriggerEventBody.model_validate(
                    {"event_type": event.event_type, "payload": serialize(event.payload)}
                )
                await _quietly(flush_logs)
                await api.triggers.post_event(trigger_id, body)
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
            await _quietly(flush_logs)
            failure = TriggerFailureBody(
                error=error[:MAX_ERROR_CHARS], traceback=stack[-MAX_TRACEBACK_CHARS:]
            )
            await api.triggers.post_failure(trigger_id, failure)
            log.warning("trigger failed", error=shorten(error))
            raise ApplicationError(error, type=TRIGGER_FAILED_ERROR, non_retryable=True) from None

    async def _beat(self) -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(self._heartbeat_interval)

    async def _ship_logs(self, api: ExecutionAPIClient, trigger_id: str, buffer: list[LogLine]) -> None:
        # Jittered, so that a thousand triggers started together do not ship together.
        await asyncio.sleep(random.uniform(0, LOG_FLUSH_SECONDS))
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            await _quietly(functools.partial(self._flush, api, trigger_id, buffer))

    async def _flush(self, api: ExecutionAPIClient, trigger_id: str, buffer: list[LogLine]) -> None:
        # Ship what is there now; lines logged meanwhile wait for the next flush.
        for _ in range(-(-len(buffer) // MAX_LOG_LINES)):
            batch = buffer[:MAX_LOG_LINES]
            lines = TriggerLogBatch(job_id=self.job_id, triggerer=self._identity, lines=batch)
            await api.triggers.post_logs(trigger_id, lines)
            del buffer[: len(batch)]


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
    )


async def _quietly(ship: Callable[[], Awaitable[None]]) -> None:
    # Logs are best effort: an API that refuses them must not stop the event.
    with contextlib.suppress(ExecutionAPIError):
        await ship()
