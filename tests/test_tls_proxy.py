"""The real-TLS test infrastructure (tests/pki.py, tests/tlsproxy.py) against real peers: mutual TLS
terminated in front of the Temporal dev server, and an L4 round-robin in front of TLS backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RetryConfig, TLSConfig

from airlock.devstack import free_port
from tests.pki import ClientCert, TestPKI, client_context, server_context
from tests.tlsproxy import Proxy

DOMAIN = "temporal.test"
# A refused client must fail in seconds, not after the SDK's default retries.
FAST_FAIL = RetryConfig(
    initial_interval_millis=50, max_interval_millis=200, max_elapsed_time_millis=2000, max_retries=2
)


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
async def temporal_tls(pki: TestPKI, temporal_address: str) -> AsyncIterator[Proxy]:
    """mTLS in front of the dev server: a certificate for temporal.test, clients of ``pki`` only."""
    # The session's server answers "Frontend is not healthy yet" for a while after it listens; the
    # SDK's default retries wait that out, so a fast-failing client below fails only for TLS.
    await asyncio.wait_for(Client.connect(temporal_address), timeout=30)
    host, port = temporal_address.rsplit(":", 1)
    context = server_context(pki.server(DOMAIN), client_ca=pki.ca_file, alpn=["h2"])
    with Proxy([(host, int(port))], server_ssl=context) as proxy:
        yield proxy


def tls(ca_pem: bytes, client: ClientCert | None = None, domain: str = DOMAIN) -> TLSConfig:
    return TLSConfig(
        server_root_ca_cert=ca_pem,
        client_cert=client.cert_pem if client else None,
        client_private_key=client.key_pem if client else None,
        domain=domain,
    )


async def connect(proxy: Proxy, config: TLSConfig) -> Client:
    return await asyncio.wait_for(
        Client.connect(
            proxy.address, tls=config, retry_config=FAST_FAIL, connect_timeout=timedelta(seconds=5)
        ),
        timeout=15,
    )


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    # A refusal the client decides reaches the proxy a moment after the client has given up.
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def refused_with(alert: str) -> str:
    """What the client reports when the proxy refuses it with ``alert``.

    In TLS 1.3 the client's handshake is over before the server has checked its certificate, so the
    refusal lands on the first call. Which words the client uses is a race inside it (hyper): the
    alert when the call was already on the connection, "connection closed" when it was still queued
    (about one run in six). The proxy's handshake_errors say which check failed either way."""
    return rf"received fatal alert: {alert}|operation was canceled.*connection closed"


def untouched(proxy: Proxy) -> dict[str, int]:
    return {backend: 0 for backend in proxy.connections}


async def test_client_with_certificate_reaches_temporal(pki: TestPKI, temporal_tls: Proxy) -> None:
    client = await connect(temporal_tls, tls(pki.ca_pem, pki.client("worker-a")))

    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version
    assert (await client.count_workflows()).count >= 0
    assert sum(temporal_tls.connections.values()) >= 1
    assert temporal_tls.handshake_errors == []


async def test_client_without_certificate_is_refused(pki: TestPKI, temporal_tls: Proxy) -> None:
    with pytest.raises(RuntimeError, match=refused_with("CertificateRequired")):
        await connect(temporal_tls, tls(pki.ca_pem))

    # The SDK may try twice ("connection closed" is retryable): each try refused for the same reason.
    assert temporal_tls.handshake_errors
    assert all("PEER_DID_NOT_RETURN_A_CERTIFICATE" in error for error in temporal_tls.handshake_errors)
    assert temporal_tls.connections == untouched(temporal_tls)
    # The proxy keeps serving after a refusal.
    client = await connect(temporal_tls, tls(pki.ca_pem, pki.client("worker-a")))
    assert (await client.workflow_service.get_system_info(GetSystemInfoRequest())).server_version


async def test_client_of_another_ca_is_refused(pki: TestPKI, temporal_tls: Proxy, tmp_path: Path) -> None:
    stranger = TestPKI(tmp_path / "other").client("worker-a")

    with pytest.raises(RuntimeError, match=refused_with("UnknownCA")):
        await connect(temporal_tls, tls(pki.ca_pem, stranger))

    # The SDK may try twice ("connection closed" is retryable): each try refused for the same reason.
    assert temporal_tls.handshake_errors
    assert all("CERTIFICATE_VERIFY_FAILED" in error for error in temporal_tls.handshake_errors)
    assert temporal_tls.connections == untouched(temporal_tls)


async def test_client_expecting_another_name_is_refused(pki: TestPKI, temporal_tls: Proxy) -> None:
    with pytest.raises(RuntimeError, match=r"InvalidCertificate\(NotValidForName"):
        await connect(temporal_tls, tls(pki.ca_pem, pki.client("worker-a"), domain="wrong.test"))

    # The client refused the server: the proxy learns it from the client's alert.
    await eventually(lambda: bool(temporal_tls.handshake_errors))
    assert all("ALERT_BAD_CERTIFICATE" in error for error in temporal_tls.handshake_errors)
    assert temporal_tls.connections == untouched(temporal_tls)


@asynccontextmanager
async def replica(name: str, pki: TestPKI | None = None) -> AsyncIterator[tuple[str, int]]:
    """A backend answering "<name> <client CN>\\n" (CN "-" in the clear), then echoing until EOF."""
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            peer = writer.get_extra_info("peercert") or {}
            subject = dict(item[0] for item in peer.get("subject", ()))
            writer.write(f"{name} {subject.get('commonName', '-')}\n".encode())
            while data := await reader.read(1024):
                writer.write(data)
        except (OSError, asyncio.CancelledError):
            # Not re-raised: Python 3.11 logs a stream handler that ends so as an asyncio error.
            pass
        finally:
            writer.close()

    context = server_context(pki.server("api.test"), client_ca=pki.ca_file) if pki else None
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # The last client's close may still be on its way through the proxy: let it land, then end
        # whatever is left, so that no handler outlives its test.
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def exchange(proxy: Proxy, pki: TestPKI | None = None, client: ClientCert | None = None) -> str:
    """One connection through ``proxy``: the backend's greeting, after checking the echo."""
    if pki is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    else:
        context = client_context(pki.ca_file, client)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", proxy.port, ssl=context, server_hostname="api.test"
        )
    try:
        greeting = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        return greeting
    finally:
        writer.close()


async def test_round_robin_alternates_and_skips_a_down_backend() -> None:
    down = ("127.0.0.1", free_port())
    async with replica("a") as a, replica("b") as b:
        with Proxy([a, down, b]) as proxy:
            greetings = [await exchange(proxy) for _ in range(4)]
            assert greetings == ["a -", "b -", "a -", "b -"]
            assert proxy.connections == {proxy_key(a): 2, proxy_key(down): 0, proxy_key(b): 2}


async def test_round_robin_closes_when_every_backend_is_down() -> None:
    with Proxy([("127.0.0.1", free_port()), ("127.0.0.1", free_port())]) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()
        assert proxy.connections == untouched(proxy)


async def test_round_robin_passes_mutual_tls_through(pki: TestPKI) -> None:
    # Like two HTTPS API replicas behind an L4 balancer: each replica sees the client's own
    # certificate, since the proxy never touches the TLS.
    worker = pki.client("worker-a")
    async with replica("a", pki) as a, replica("b", pki) as b:
        with Proxy([a, b]) as proxy:
            greetings = [await exchange(proxy, pki, worker) for _ in range(4)]
    assert greetings == ["a worker-a", "b worker-a", "a worker-a", "b worker-a"]


def proxy_key(backend: tuple[str, int]) -> str:
    return f"{backend[0]}:{backend[1]}"
