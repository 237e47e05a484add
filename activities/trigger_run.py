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
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.testers import MIN_SECRET_CHARS, connection_secrets, kwargs_secrets, scrub
from activities.triggers import BaseTrigger, TriggerNotAllowed, load_trigger_class, trigger_entry_points
from airlock.connection import ConnectionFields
from airlock.serde import serialize
from airlock.states import TriggerState
from airlock.workloads import RUN_TRIGGER_ACTIVITY, TRIGGER_FAILED_ERROR, RunTriggerInput
from worker.client import ExecutionAPIClient

# How long a triggerer keeps retrying the API (down for a deploy, say) before Temporal retries the run.
API_OUTAGE_TOLERANCE = 120.0
LOG_FLUSH_SECONDS = 2.0
CONTROL_CALLS = 64
LOG_CALLS = 8
MAX_LOG_BUFFER = 5000

_current_buffer: contextvars.ContextVar[list[dict[str, str]] | None] = contextvars.ContextVar(
    "trigger_log_buffer", default=None
)
# The running trigger's secrets: no log line, error or traceback of its task may show them.
_current_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "trigger_secrets", default=()
)


class _ScrubTriggerSecrets(logging.Filter):
    """Rewrites a record logged while a trigger runs so that none of its secrets is in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _current_secrets.get()
        if secrets:
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = scrub(record.getMessage(), *secrets), ()
            if record.exc_text:
                record.exc_text = scrub(record.exc_text, *secrets)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info, *secrets)
        return True


# The runner's own machinery (shipping these very logs included) is not the trigger's log.
_RUNNER_LOGGERS = ("httpx", "httpcore", "temporalio", "asyncio", "worker.", "activities.trigger_run")


class _TriggerLogHandler(logging.Handler):
    """Routes a log record to the buffer of the trigger whose task emitted it."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _current_buffer.get()
        if buffer is None or len(buffer) >= MAX_LOG_BUFFER or record.name.startswith(_RUNNER_LOGGERS):
            return
        buffer.append(
            {
                "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname,
                "message": self.format(record)[:10_000],
            }
        )


class _Context:
    def __init__(self, api: ExecutionAPIClient, trigger_id: str, log: logging.Logger) -> None:
        self._api = api
        self._trigger_id = trigger_id
        self.log = log

    async def get_connection(self, conn_id: str) -> ConnectionFields:
        conn = await self._api.get_trigger_connection(self._trigger_id, conn_id)
        # What the trigger now holds is scrubbed from its logs and errors, as its kwargs' secrets are.
        _add_secrets(connection_secrets(conn))
        return conn


def _add_secrets(secrets: Sequence[str]) -> None:
    known = {*_current_secrets.get(), *(s for s in secrets if len(s) >= MIN_SECRET_CHARS)}
    _current_secrets.set(tuple(sorted(known, key=len, reverse=True)))


class TriggerActivities:
    def __init__(
        self, *, api_url: str, identity: str, allowlist: Sequence[str], heartbeat_interval: float = 2.0
    ) -> None:
        self._api_url = api_url
        self._identity = identity
        # Installed plugins' registered trigger classes are allowed along with the configured patterns.
        self._allowlist = (*allowlist, *trigger_entry_points().values())
        self._heartbeat_interval = heartbeat_interval
        # Claims, events and failures never queue behind log shipping: two pools, each with a limiter
        # no larger than its connection count.
        self._transport = httpx.AsyncHTTPTransport(
            retries=2, limits=httpx.Limits(max_connections=CONTROL_CALLS)
        )
        self._limiter = asyncio.Semaphore(CONTROL_CALLS)
        self._log_transport = httpx.AsyncHTTPTransport(
            retries=2, limits=httpx.Limits(max_connections=LOG_CALLS)
        )
        self._log_limiter = asyncio.Semaphore(LOG_CALLS)
        self.job_id: str | None = None
        handler = _TriggerLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        # On every handler (the worker's own log included), so that the first one to see a record
        # scrubs it for all.
        scrubber = _ScrubTriggerSecrets()
        for each in root.handlers:
            each.addFilter(scrubber)

    @activity.defn(name=RUN_TRIGGER_ACTIVITY)
    async def run_trigger(self, workload: RunTriggerInput) -> str:
        api = ExecutionAPIClient(
            self._api_url,
            workload.token,
            transport=self._transport,
            limiter=self._limiter,
            retry_for=API_OUTAGE_TOLERANCE,
            on_retry=activity.heartbeat,
        )
        logs_api = ExecutionAPIClient(
            self._api_url, workload.token, transport=self._log_transport, limiter=self._log_limiter
        )
        buffer: list[dict[str, str]] = []
        _current_buffer.set(buffer)
        beating = asyncio.create_task(self._beat())
        shipping = asyncio.create_task(self._ship_logs(logs_api, workload.trigger_id, buffer))
        trigger: BaseTrigger | None = None
        try:
            claimed = await api.claim_trigger(
                workload.trigger_id, job_id=self.job_id, triggerer=self._identity
            )
            _current_secrets.set(kwargs_secrets(claimed["kwargs"]))
            trigger = self._build(claimed["classpath"], claimed["kwargs"])
            trigger.context = _Context(api, workload.trigger_id, trigger.log)
            trigger.log.info("running %s on %s", claimed["classpath"], self._identity)
            # Its logs are shipped before its end is reported: a finished trigger's log is complete.
            flush = functools.partial(self._flush, logs_api, workload.trigger_id, buffer)
            return await self._first_event(api, workload.trigger_id, trigger, flush)
        finally:
            if trigger is not None:
                with contextlib.suppress(Exception):
                    await trigger.cleanup()
            beating.cancel()
            shipping.cancel()
            with contextlib.suppress(Exception):
                await self._flush(logs_api, workload.trigger_id, buffer)

    def _build(self, classpath: str, kwargs: dict[str, object]) -> BaseTrigger:
        try:
            return load_trigger_class(classpath, self._allowlist)(**kwargs)
        except TriggerNotAllowed as exc:
            raise ApplicationError(str(exc), type="TriggerNotAllowed", non_retryable=True) from None
        except (ImportError, TypeError, ValueError) as exc:
            # A validation message may quote the value it rejects: a URL with its password, say.
            message = f"cannot build trigger {classpath}: {type(exc).__name__}: {exc}"
            raise ApplicationError(
                scrub(message, *_current_secrets.get()),
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
                payload = serialize(event.payload)
                await _quietly(flush_logs)
                await api.post_trigger_event(trigger_id, event_type=event.event_type, payload=payload)
                return TriggerState.FIRED
            raise RuntimeError("the trigger's run() ended without an event")
        except (asyncio.CancelledError, ApplicationError):
            raise
        except Exception as exc:
            # The trigger itself raised: report it with the traceback, and do not retry it elsewhere.
            trigger.log.error("failed: %s", exc)
            # Its message and traceback may quote its own kwargs: they leave this process scrubbed.
            secrets = _current_secrets.get()
            error = scrub(f"{type(exc).__name__}: {exc}", *secrets)
            stack = scrub(traceback.format_exc(), *secrets)
            await _quietly(flush_logs)
            await api.post_trigger_failure(trigger_id, error=error, traceback=stack)
            raise ApplicationError(error, type=TRIGGER_FAILED_ERROR, non_retryable=True) from None

    async def _beat(self) -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(self._heartbeat_interval)

    async def _ship_logs(
        self, api: ExecutionAPIClient, trigger_id: str, buffer: list[dict[str, str]]
    ) -> None:
        # Jittered, so that a thousand triggers started together do not ship together.
        await asyncio.sleep(random.uniform(0, LOG_FLUSH_SECONDS))
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            with contextlib.suppress(ApplicationError):
                await self._flush(api, trigger_id, buffer)

    async def _flush(self, api: ExecutionAPIClient, trigger_id: str, buffer: list[dict[str, str]]) -> None:
        # Ship what is there now; lines logged meanwhile wait for the next flush.
        for _ in range(-(-len(buffer) // 1000)):
            batch = buffer[:1000]
            await api.post_trigger_logs(trigger_id, job_id=self.job_id, triggerer=self._identity, lines=batch)
            del buffer[: len(batch)]


async def _quietly(ship: Callable[[], Awaitable[None]]) -> None:
    # Logs are best effort: an API that refuses them must not stop the event.
    with contextlib.suppress(ApplicationError):
        await ship()
