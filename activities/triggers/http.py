"""HttpTrigger: poll a URL until it answers with an expected status, and optionally an expected text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent, positive_seconds
from airlock.secrets import scrub

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_PAYLOAD_BODY_CHARS = 10_000
# response_contains is searched in this much of the body; reading stops there, however big the body.
MAX_SCANNED_BODY_CHARS = 1_000_000


def expected_statuses(value: Any) -> frozenset[int]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in values
    ):
        raise ValueError(f"expected_status must be an HTTP status code or a list of them, not {value!r}")
    return frozenset(values)


class HttpTrigger(PollingTrigger):
    """Fires with ``{"status": <code>, "body": <first 10000 characters>}``.

    A status outside ``expected_status``, or a body without ``response_contains``, means "not yet".
    Network errors and timeouts are logged and the polling goes on: the server may be restarting.
    Redirects are not followed, so a 3xx can itself be the expected status.
    """

    def __init__(
        self,
        *,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        expected_status: int | list[int] = 200,
        response_contains: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        request_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            url=url,
            method=method,
            headers=headers,
            expected_status=expected_status,
            response_contains=response_contains,
            poll_interval=poll_interval,
            request_timeout=request_timeout,
        )
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL, not {url!r}")
        try:
            self.url = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid url: {exc}") from None
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ValueError(f"unsupported HTTP method {method!r} (use one of {', '.join(sorted(METHODS))})")
        self.method = method.upper()
        if headers is not None and not (
            isinstance(headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ValueError("headers must be an object of header names to string values")
        self.headers = dict(headers or {})
        self.expected = expected_statuses(expected_status)
        if response_contains is not None and not isinstance(response_contains, str):
            raise ValueError(f"response_contains must be a string, not {response_contains!r}")
        self.response_contains = response_contains or None
        self.request_timeout = positive_seconds("request_timeout", request_timeout)
        # Credentials in the URL must never reach a log line.
        self.shown = f"{self.method} {self.url.copy_with(username=None, password=None)}"
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One client for the whole run, so polls reuse the connection instead of a new handshake each time.
        self._client = httpx.AsyncClient(timeout=self.request_timeout)
        try:
            async for event in super().run():
                yield event
        finally:
            await self.cleanup()

    async def cleanup(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def poll(self) -> TriggerEvent | None:
        if self._client is not None:
            return await self._poll(self._client)
        async with httpx.AsyncClient(timeout=self.request_timeout) as client:
            return await self._poll(client)

    async def _poll(self, client: httpx.AsyncClient) -> TriggerEvent | None:
        try:
            async with client.stream(self.method, self.url, headers=self.headers) as response:
                status = response.status_code
                if status not in self.expected:
                    self.log.debug(
                        "%s returned %s; waiting for %s", self.shown, status, sorted(self.expected)
                    )
                    return None
                body = await read_text(response, MAX_SCANNED_BODY_CHARS)
        except httpx.HTTPError as exc:
            reason = scrub(str(exc), self.url.password)
            self.log.warning("%s failed, will retry: %s: %s", self.shown, type(exc).__name__, reason)
            return None
        if self.response_contains is not None and self.response_contains not in body:
            self.log.debug("%s returned %s without %r yet", self.shown, status, self.response_contains)
            return None
        return TriggerEvent({"status": status, "body": body[:MAX_PAYLOAD_BODY_CHARS]})


async def read_text(response: httpx.Response, limit: int) -> str:
    parts: list[str] = []
    size = 0
    async for chunk in response.aiter_text():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return "".join(parts)[:limit]
