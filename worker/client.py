"""The Execution API client: the only way worker-side code reaches Airlock's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from airlock.connection import ConnectionFields
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION

# Error types the workflow and the tests recognise.
API_REJECTED = "ExecutionAPIRejected"
API_UNAVAILABLE = "ExecutionAPIUnavailable"


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
    ) -> None:
        # Callers sharing a transport share a limiter too: requests wait here, not inside the pool,
        # whose bookkeeping grows with its queue (thousands of triggers would stall it).
        self._limiter = limiter
        # Ride out a short API outage (a restart, a deploy) instead of failing the workload.
        self._retry_for = retry_for
        self._on_retry = on_retry
        self._owns_transport = transport is None
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/execution",
            headers={"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: api_version},
            timeout=timeout,
            transport=transport or httpx.AsyncHTTPTransport(retries=2),
        )

    async def __aenter__(self) -> ExecutionAPIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # A shared transport (a pool used by many workloads) outlives this client.
        if self._owns_transport:
            await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        delay = 0.25
        while True:
            try:
                return await self._request_once(method, path, **kwargs)
            except ApplicationError as exc:
                if exc.type != API_UNAVAILABLE or loop.time() + delay > deadline:
                    raise
            if self._on_retry is not None:
                self._on_retry()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async def _request_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._limiter is None:
                response = await self._http.request(method, path, **kwargs)
            else:
                async with self._limiter:
                    response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # Transient: Temporal's retry policy decides whether to try again.
            raise ApplicationError(
                f"Execution API unreachable ({type(exc).__name__})", type=API_UNAVAILABLE
            ) from None
        if response.status_code >= 500:
            raise ApplicationError(
                f"Execution API answered {response.status_code} on {method} {path}", type=API_UNAVAILABLE
            )
        if response.status_code >= 400:
            # A 4xx will not get better by retrying: fail loudly and for good.
            raise ApplicationError(
                f"Execution API rejected {method} {path}: {response.status_code} {_detail(response)}",
                type=API_REJECTED,
                non_retryable=True,
            )
        return response

    async def get_test_connection(self, test_id: str) -> ConnectionFields:
        response = await self._request("GET", f"/connection-tests/{test_id}/connection")
        return ConnectionFields.model_validate(response.json())

    async def set_test_state(
        self, test_id: str, state: str, *, result_message: str | None = None, worker: str | None = None
    ) -> None:
        body = {"state": state, "result_message": result_message, "worker": worker}
        await self._request("PATCH", f"/connection-tests/{test_id}/state", json=body)

    async def register_job(
        self,
        *,
        kind: str,
        hostname: str,
        queues: list[str],
        conn_types: list[str],
        capacity: int | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "kind": kind,
            "hostname": hostname,
            "queues": queues,
            "conn_types": conn_types,
        }
        if capacity is not None:
            body["capacity"] = capacity
        response = await self._request("POST", "/jobs", json=body)
        return str(response.json()["id"])

    async def heartbeat_job(self, job_id: str) -> None:
        await self._request("POST", f"/jobs/{job_id}/heartbeat")

    async def complete_job(self, job_id: str) -> None:
        await self._request("POST", f"/jobs/{job_id}/complete")

    async def claim_trigger(self, trigger_id: str, *, job_id: str | None, triggerer: str) -> dict[str, Any]:
        body = {"job_id": job_id, "triggerer": triggerer}
        response = await self._request("POST", f"/triggers/{trigger_id}/workload", json=body)
        workload: dict[str, Any] = response.json()
        return workload

    async def post_trigger_event(self, trigger_id: str, *, event_type: str, payload: str) -> None:
        body = {"event_type": event_type, "payload": payload}
        await self._request("POST", f"/triggers/{trigger_id}/event", json=body)

    async def post_trigger_failure(self, trigger_id: str, *, error: str, traceback: str) -> None:
        body = {"error": error[:10_000], "traceback": traceback[-100_000:]}
        await self._request("POST", f"/triggers/{trigger_id}/failure", json=body)

    async def post_trigger_logs(
        self, trigger_id: str, *, job_id: str | None, triggerer: str, lines: list[dict[str, str]]
    ) -> None:
        body = {"job_id": job_id, "triggerer": triggerer, "lines": lines}
        await self._request("POST", f"/triggers/{trigger_id}/logs", json=body)

    async def get_trigger_connection(self, trigger_id: str, connection_id: str) -> ConnectionFields:
        response = await self._request("GET", f"/triggers/{trigger_id}/connections/{connection_id}")
        return ConnectionFields.model_validate(response.json())


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:500]
    except ValueError:
        return response.text[:200]
