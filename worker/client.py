"""The Execution API client: the only way worker-side code reaches Airlock's state.

Operations are grouped by resource (``client.connection_tests``, ``client.triggers``, ``client.jobs``,
``client.task_instances``), and every body, sent or received, is one of the wire models in
:mod:`airlock.execution`: the same definitions the API validates with. Failures raise
:class:`ExecutionAPIError`, which says whether trying again can help; transient ones are retried here
for up to ``retry_for`` seconds first.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_before_delay, wait_exponential

from airlock.connection import ConnectionFields
from airlock.errors import error_detail
from airlock.execution import (
    MAX_HELD_TRIGGERS,
    ConnectionTestClaim,
    ConnectionTestClaimed,
    ConnectionTestConnection,
    ConnectionTestStatePatch,
    Deferred,
    HeldTriggers,
    JobRegistered,
    JobRegistration,
    TaskInstanceDefer,
    TriggerClaim,
    TriggerEventBatch,
    TriggerEventBody,
    TriggerEventOutcomes,
    TriggerFailureBody,
    TriggerLogBatch,
    TriggersToStop,
    TriggerWorkload,
)
from airlock.tls import describe_tls_error
from airlock.tracing import instrument_httpx_client
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from worker import metrics

M = TypeVar("M", bound=BaseModel)


class ExecutionAPIError(Exception):
    """A call that did not succeed. ``retryable``: the API was away or failed (5xx, no answer), so the
    same call may succeed later; otherwise the API refused it (4xx) and it never will."""

    def __init__(self, message: str, *, status_code: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ExecutionAPIError) and exc.retryable


class ExecutionAPIClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api_version: str = LATEST_EXECUTION_API_VERSION,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_for: float = 0.0,
        on_retry: Callable[[], None] | None = None,
        limiter: asyncio.Semaphore | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        # Callers sharing a transport share a limiter too: requests wait here, not inside the pool,
        # whose bookkeeping grows with its queue (thousands of triggers would stall it).
        self._limiter = limiter
        # Ride out a short API outage (a restart, a deploy) instead of failing the workload.
        self._retry_for = retry_for
        self._on_retry = on_retry
        self._owns_transport = transport is None
        self._transport = transport or httpx.AsyncHTTPTransport(retries=2, verify=verify)
        self._options = (base_url, api_version, timeout)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/execution",
            headers={"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: api_version},
            timeout=timeout,
            transport=self._transport,
        )
        instrument_httpx_client(self._http)
        self.connection_tests = ConnectionTests(self)
        self.jobs = Jobs(self)
        self.triggers = Triggers(self)
        self.task_instances = TaskInstances(self)

    def with_token(self, token: str) -> ExecutionAPIClient:
        """The same client acting with a claimed workload's token (same pool, limiter and retries)."""
        base_url, api_version, timeout = self._options
        return ExecutionAPIClient(
            base_url,
            token,
            api_version=api_version,
            timeout=timeout,
            transport=self._transport,
            retry_for=self._retry_for,
            on_retry=self._on_retry,
            limiter=self._limiter,
        )

    async def __aenter__(self) -> ExecutionAPIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # A shared transport (a pool used by many workloads) outlives this client.
        if self._owns_transport:
            await self._http.aclose()

    async def request(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        on_retry = self._on_retry

        def before_retry(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            answered = isinstance(failure, ExecutionAPIError) and failure.status_code is not None
            metrics.api_retry("server_error" if answered else "unreachable")
            if on_retry is not None:
                on_retry()

        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_before_delay(self._retry_for),
            wait=wait_exponential(multiplier=0.25, max=4),
            before_sleep=before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(method, path, body)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _request_once(self, method: str, path: str, body: BaseModel | None) -> httpx.Response:
        json = None if body is None else body.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            if self._limiter is None:
                response = await self._http.request(method, path, json=json)
            else:
                async with self._limiter:
                    response = await self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            refused = describe_tls_error(exc)
            if refused is not None:
                # A handshake that failed fails the same way next time: nothing was sent, and nothing
                # will be until the certificates change.
                raise ExecutionAPIError(
                    f"Execution API at {self._options[0]}: {refused}", status_code=None, retryable=False
                ) from None
            raise ExecutionAPIError(
                f"Execution API unreachable ({type(exc).__name__})", status_code=None, retryable=True
            ) from None
        if response.status_code >= 500:
            raise ExecutionAPIError(
                f"Execution API answered {response.status_code} on {method} {path}",
                status_code=response.status_code,
                retryable=True,
            )
        if response.status_code >= 400:
            raise ExecutionAPIError(
                f"Execution API rejected {method} {path}: {response.status_code} {_detail(response)}",
                status_code=response.status_code,
                retryable=False,
            )
        return response

    async def fetch(self, model: type[M], method: str, path: str, body: BaseModel | None = None) -> M:
        response = await self.request(method, path, body)
        return model.model_validate(response.json())


class _Resource:
    def __init__(self, client: ExecutionAPIClient) -> None:
        self._client = client


class ConnectionTests(_Resource):
    async def claim(self, test_id: str, claim: ConnectionTestClaim) -> ConnectionTestClaimed:
        return await self._client.fetch(
            ConnectionTestClaimed, "POST", f"/connection-tests/{test_id}/claim", claim
        )

    async def get_connection(self, test_id: str) -> ConnectionTestConnection:
        return await self._client.fetch(
            ConnectionTestConnection, "GET", f"/connection-tests/{test_id}/connection"
        )

    async def set_state(self, test_id: str, patch: ConnectionTestStatePatch) -> None:
        await self._client.request("PATCH", f"/connection-tests/{test_id}/state", patch)


class Jobs(_Resource):
    async def register(self, registration: JobRegistration) -> JobRegistered:
        return await self._client.fetch(JobRegistered, "POST", "/jobs", registration)

    async def heartbeat(self, job_id: str) -> None:
        await self._client.request("POST", f"/jobs/{job_id}/heartbeat")

    async def complete(self, job_id: str) -> None:
        await self._client.request("POST", f"/jobs/{job_id}/complete")


class Triggers(_Resource):
    async def claim(self, trigger_id: str, claim: TriggerClaim) -> TriggerWorkload:
        return await self._client.fetch(TriggerWorkload, "POST", f"/triggers/{trigger_id}/workload", claim)

    async def to_stop(self, job_id: str, trigger_ids: Sequence[str]) -> list[str]:
        """Of the triggers this job runs, those it must stop."""
        stop: list[str] = []
        for start in range(0, len(trigger_ids), MAX_HELD_TRIGGERS):
            chunk = list(trigger_ids[start : start + MAX_HELD_TRIGGERS])
            held = HeldTriggers(job_id=job_id, trigger_ids=chunk)
            stop += (await self._client.fetch(TriggersToStop, "POST", "/triggers/held", held)).trigger_ids
        return stop

    async def post_events(self, batch: TriggerEventBatch) -> TriggerEventOutcomes:
        """Several held triggers' events at once, each answered with its own status."""
        return await self._client.fetch(TriggerEventOutcomes, "POST", "/triggers/events", batch)

    async def post_event(self, trigger_id: str, event: TriggerEventBody) -> None:
        await self._client.request("POST", f"/triggers/{trigger_id}/event", event)

    async def post_failure(self, trigger_id: str, failure: TriggerFailureBody) -> None:
        await self._client.request("POST", f"/triggers/{trigger_id}/failure", failure)

    async def post_logs(self, trigger_id: str, batch: TriggerLogBatch) -> None:
        await self._client.request("POST", f"/triggers/{trigger_id}/logs", batch)

    async def get_connection(self, trigger_id: str, connection_id: str) -> ConnectionFields:
        return await self._client.fetch(
            ConnectionFields, "GET", f"/triggers/{trigger_id}/connections/{quote(connection_id, safe='')}"
        )


class TaskInstances(_Resource):
    async def defer(self, task_instance_id: str, deferral: TaskInstanceDefer) -> Deferred:
        return await self._client.fetch(
            Deferred, "PATCH", f"/task-instances/{task_instance_id}/state", deferral
        )


def _detail(response: httpx.Response) -> str:
    try:
        return error_detail(response.json())[:500]
    except ValueError:
        return response.text[:200]
