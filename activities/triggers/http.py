"""HttpTrigger: poll a URL until it answers with an expected status, and optionally an expected text."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from typing import Any

import httpx

from airlock.egress import EgressDenied
from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent, positive_seconds
from airlock.secrets import scrub
from worker import egress

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The event is stored where an administrator reads it: by default it holds the status only, and at
# most this much of the body when the trigger asks for an excerpt.
MAX_RESPONSE_EXCERPT_BYTES = 10_000
# response_contains is searched in this much of the body; reading stops there, however big the body.
MAX_SCANNED_BODY_BYTES = 1_000_000


def expected_statuses(value: Any) -> frozenset[int]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in values
    ):
        raise ValueError(f"expected_status must be an HTTP status code or a list of them, not {value!r}")
    return frozenset(values)


class HttpTrigger(PollingTrigger):
    """Fires with ``{"status": <code>}``, plus ``"body"``: the first ``response_excerpt_bytes`` bytes
    of the body as text, when that is above 0 (at most 10 000).

    A status outside ``expected_status``, or a body without ``response_contains``, means "not yet".
    Network errors and timeouts are logged and the polling goes on: the server may be restarting.
    A destination the triggerer's egress policy refuses fails the trigger. Redirects are not followed,
    so a 3xx can itself be the expected status.
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
        response_excerpt_bytes: int = 0,
    ) -> None:
        super().__init__(
            url=url,
            method=method,
            headers=headers,
            expected_status=expected_status,
            response_contains=response_contains,
            poll_interval=poll_interval,
            request_timeout=request_timeout,
            response_excerpt_bytes=response_excerpt_bytes,
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
        self.headers = egress.request_headers(headers or {})
        self.expected = expected_statuses(expected_status)
        if response_contains is not None and not isinstance(response_contains, str):
            raise ValueError(f"response_contains must be a string, not {response_contains!r}")
        self.response_contains = response_contains or None
        self.request_timeout = positive_seconds("request_timeout", request_timeout)
        if not (
            isinstance(response_excerpt_bytes, int)
            and not isinstance(response_excerpt_bytes, bool)
            and 0 <= response_excerpt_bytes <= MAX_RESPONSE_EXCERPT_BYTES
        ):
            raise ValueError(
                f"response_excerpt_bytes must be an integer from 0 to {MAX_RESPONSE_EXCERPT_BYTES}, "
                f"not {response_excerpt_bytes!r}"
            )
        self.response_excerpt_bytes = response_excerpt_bytes
        # Credentials in the URL must never reach a log line.
        self.shown = f"{self.method} {self.url.copy_with(username=None, password=None)}"
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One client for the whole run, so polls reuse the connection instead of a new handshake each time.
        self._client = self._new_client()
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
        async with self._new_client() as client:
            return await self._poll(client)

    def _new_client(self) -> httpx.AsyncClient:
        # Every connection (a new one after a dropped keep-alive too) goes where the policy of the
        # triggerer's queue allows, checked after DNS resolution.
        transport = egress.async_transport(egress.current_policy())
        return httpx.AsyncClient(timeout=self.request_timeout, transport=transport)

    async def _poll(self, client: httpx.AsyncClient) -> TriggerEvent | None:
        # Read only what a decision or the excerpt needs.
        limit = MAX_SCANNED_BODY_BYTES if self.response_contains is not None else self.response_excerpt_bytes
        try:
            async with client.stream(self.method, self.url, headers=self.headers) as response:
                status = response.status_code
                if status not in self.expected:
                    self.log.debug(
                        "%s returned %s; waiting for %s", self.shown, status, sorted(self.expected)
                    )
                    return None
                body = await read_bytes(response, limit) if limit else b""
                encoding = response.encoding or "utf-8"
        except EgressDenied as exc:
            # Not a passing outage: the destination stays refused, so the trigger fails now.
            self.log.error("%s refused: %s", self.shown, exc)
            raise
        except httpx.HTTPError as exc:
            reason = scrub(str(exc), self.url.password)
            self.log.warning("%s failed, will retry: %s: %s", self.shown, type(exc).__name__, reason)
            return None
        if self.response_contains is not None and self.response_contains not in decode(body, encoding):
            self.log.debug("%s returned %s without %r yet", self.shown, status, self.response_contains)
            return None
        payload: dict[str, Any] = {"status": status}
        if self.response_excerpt_bytes:
            payload["body"] = decode(body[: self.response_excerpt_bytes], encoding)
        return TriggerEvent(payload)


async def read_bytes(response: httpx.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def decode(data: bytes, encoding: str) -> str:
    """``data`` as text; a character cut in half at the end of an excerpt is left out, not garbled."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return str(decoder.decode(data, final=False))
