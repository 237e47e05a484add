"""Which egress policy applies here, and HTTP clients that obey it (the policy itself: airlock/egress.py).

The policy is the worker's configuration (``AIRLOCK_EGRESS_*``) for the queue the work came from. It is
read from this process's environment: the worker's own, inherited by its fork server and the isolated
children a test runs in, where no settings object is passed along. In a Temporal activity (a trigger on
a triggerer) the queue is the activity's task queue; the test child is told its queue in the request.
A block can also name its policy outright (:func:`applying`), as tests do.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import anyio
import httpcore
import httpx

from airlock.egress import EgressPolicy
from worker.config import WorkerSettings

ENV_PREFIX = "AIRLOCK_EGRESS_"

# Headers a user may not set on a test's or a trigger's request: Host would send the request for one
# site to another's address; hop-by-hop and framing headers belong to the connection, not the user.
FORBIDDEN_REQUEST_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

_applied: contextvars.ContextVar[EgressPolicy | None] = contextvars.ContextVar("egress_policy", default=None)


@contextlib.contextmanager
def applying(policy: EgressPolicy) -> Iterator[EgressPolicy]:
    """Run the block (and the tasks it starts) under ``policy``, whatever the configuration says."""
    token = _applied.set(policy)
    try:
        yield policy
    finally:
        _applied.reset(token)


def current_policy(queue: str | None = None) -> EgressPolicy:
    """The policy for work running here: one applied to this block, else the configured one of
    ``queue`` (default: the running activity's task queue)."""
    applied = _applied.get()
    if applied is not None:
        return applied
    return configured_policy(queue if queue is not None else _activity_queue())


def configured_policy(queue: str | None) -> EgressPolicy:
    """``queue``'s policy as this process's environment configures it (the worker-wide one for None)."""
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    settings = _egress_settings(variables)
    return settings.egress_policy(queue)


@functools.lru_cache(maxsize=8)
def _egress_settings(environment: tuple[tuple[str, str], ...]) -> WorkerSettings:
    # Keyed by the AIRLOCK_EGRESS_* variables, the only ones the policy depends on: read once per
    # process, and again if they change (tests do).
    del environment
    return WorkerSettings()


def _activity_queue() -> str | None:
    # Looked up rather than imported: a process that never loaded temporalio.activity (a test's child)
    # is not inside an activity, and need not load it to find that out.
    activity = sys.modules.get("temporalio.activity")
    if activity is None or not activity.in_activity():
        return None
    return str(activity.info().task_queue)


def request_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """The user's headers as strings; ``ValueError`` naming any header a user may not set."""
    refused = sorted(name for name in headers if str(name).strip().lower() in FORBIDDEN_REQUEST_HEADERS)
    if refused:
        names = ", ".join(map(repr, refused))
        raise ValueError(f"header {names} may not be set (it belongs to the connection)")
    return {str(k): str(v) for k, v in headers.items()}


# --- httpx --------------------------------------------------------------------------------------
# httpx resolves and connects inside httpcore's network backend. These backends resolve the name
# first, check every address, and connect to the checked ones; TLS still verifies the name. Passing
# our transport also keeps httpx from using a proxy from the environment, which would move the
# connection out of the policy's sight.


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in _addresses(self._policy, host, port):
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host!r} resolves to no address")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not a destination a test or trigger may reach")


class _AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # getaddrinfo blocks: in a thread, so that a slow DNS server stalls one trigger, not the triggerer.
        with anyio.fail_after(timeout):
            addresses = await anyio.to_thread.run_sync(_addresses, self._policy, host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host!r} resolves to no address")

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a destination a test or trigger may reach")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _addresses(policy: EgressPolicy, host: str, port: int) -> list[str]:
    try:
        infos = policy.resolve(host, port)
    except socket.gaierror as exc:
        # httpx reports a failed lookup as a ConnectError whose cause is the gaierror.
        raise httpcore.ConnectError(str(exc)) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Transport(httpx.HTTPTransport):
    # httpx takes no network backend, so the pool is built here; super().__init__ is skipped because it
    # would only build a pool (and load the CA bundle) to be thrown away. tests/test_egress.py holds it.
    def __init__(self, policy: EgressPolicy, verify: bool) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), network_backend=_GuardedBackend(policy)
        )


class _AsyncTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy, verify: bool) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), network_backend=_AsyncGuardedBackend(policy)
        )


def transport(policy: EgressPolicy, *, verify: bool = True) -> httpx.HTTPTransport:
    """An httpx transport that connects only where ``policy`` allows (and through no proxy)."""
    return _Transport(policy, verify)


def async_transport(policy: EgressPolicy, *, verify: bool = True) -> httpx.AsyncHTTPTransport:
    """The asynchronous :func:`transport`."""
    return _AsyncTransport(policy, verify)
