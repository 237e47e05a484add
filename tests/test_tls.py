"""Real TLS on every link: the API on HTTPS with client certificates required, workers provisioned
with a CA bundle and a client certificate the API signed for them, and Temporal behind a
TLS-terminating proxy that asks for a client certificate too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.converter import DataConverter

from airlock.settings import TemporalSettings
from airlock.temporal_client import connect_temporal
from airlock.triggers import TIMEDELTA_TRIGGER
from tests.pki import TestPKI, server_context
from tests.stack import Stack, StackTLS, unique, wait_terminal
from tests.test_triggers import FILE_TRIGGER, defer, start_triggerer, wait_trigger
from tests.tlsproxy import Proxy


async def _refused(stack: Stack, **env: str) -> str:
    """Start a worker with ``env`` over its provisioned one; it must exit, registering nothing. Its log."""
    proc = await stack.start_worker(unique("refused"), name="refused", **env)
    code = await asyncio.to_thread(proc.wait, 60)
    log = stack.worker_logs[proc.pid].read_text(errors="replace")
    assert code == 2, log
    async with stack.client() as client:
        jobs = (await client.get("/api/v2/jobs")).json()["jobs"]
    assert not [job for job in jobs if str(proc.pid) in job["hostname"]], jobs
    return log


async def test_workers_without_the_right_certificates_are_refused_at_the_handshake(
    make_stack, tmp_path: Path
) -> None:
    stack = await make_stack(tls=True)
    stranger = TestPKI(tmp_path / "stranger")
    other = stranger.client("edge")
    without, foreign, unverified = await asyncio.gather(
        # No client certificate: the API's handshake asks for one and ends the connection.
        _refused(stack, AIRLOCK_API_CLIENT_CERT="", AIRLOCK_API_CLIENT_KEY=""),
        # One signed by another CA.
        _refused(
            stack, AIRLOCK_API_CLIENT_CERT=str(other.cert_file), AIRLOCK_API_CLIENT_KEY=str(other.key_file)
        ),
        # A worker that cannot verify the API never sends its credential: the handshake fails first.
        _refused(stack, AIRLOCK_API_CA=str(stranger.ca_file)),
    )
    assert "did not accept this client's certificate (this client presents none)" in without, without
    assert "did not accept this client's certificate" in foreign, foreign
    assert "the server's certificate was not accepted" in unverified, unverified


async def test_api_and_workers_run_over_mutual_tls_to_the_api_and_to_temporal(
    make_stack, temporal_address: str, tmp_path: Path
) -> None:
    stack_tls = StackTLS.create(tmp_path / "pki")
    pki = stack_tls.pki
    server = pki.server("temporal.test")
    proxy = Proxy(
        [(temporal_address.split(":")[0], int(temporal_address.split(":")[1]))],
        server_ssl=server_context(server, client_ca=pki.ca_file, alpn=["h2"]),
    ).start()
    api_cert = pki.client("airlock-api")
    temporal_tls = {
        "temporal_tls_ca": str(pki.ca_file),
        "temporal_tls_server_name": "temporal.test",
    }
    stack: Stack | None = None
    try:
        stack = await make_stack(
            tls=stack_tls,
            temporal_address=proxy.address,
            temporal_tls_cert=str(api_cert.cert_file),
            temporal_tls_key=str(api_cert.key_file),
            worker_temporal_tls_ca_file=pki.ca_file,
            worker_temporal_tls_server_name="temporal.test",
            **temporal_tls,
        )
        assert stack.api.url.startswith("https://")
        env = await stack.provision("edge", ["x"])
        # The provisioned env carries, inline, the CA that verifies the API and a client certificate
        # signed for the worker, for the API and for Temporal: one file to move to the worker's host.
        assert env["AIRLOCK_API_CA"].startswith("-----BEGIN CERTIFICATE-----")
        assert "PRIVATE KEY" in env["AIRLOCK_API_CLIENT_KEY"]
        assert env["AIRLOCK_TEMPORAL_ADDRESS"] == proxy.address and env["AIRLOCK_TEMPORAL_TLS"] == "true"
        assert env["AIRLOCK_TEMPORAL_TLS_CERT"] == env["AIRLOCK_API_CLIENT_CERT"]
        queue = await stack.serve_queue("tls")
        trigger_queue = await start_triggerer(stack)
        target = tmp_path / "ready"
        target.write_text("ready")
        async with stack.client() as client:
            response = await client.post(
                "/api/v2/connections/test", json={"uri": f"tcp://127.0.0.1:{stack.api.port}", "queue": queue}
            )
            assert response.status_code == 202, response.text
            assert (await wait_terminal(client, response.json()["id"], timeout=60))["state"] == "success"
            waiting = await defer(
                client, FILE_TRIGGER, {"filepath": str(target), "poll_interval": 0.2}, queue=trigger_queue
            )
            # A durable timer lives in the API's control workflows: they too run through the proxy.
            timer = await defer(client, TIMEDELTA_TRIGGER, {"delta": 1})
            for ti in (waiting, timer):
                assert (await wait_trigger(client, ti["trigger_id"], timeout=60))["state"] == "fired"
        assert sum(proxy.connections.values()) >= 3  # the API, the worker, the triggerer
        # The CLI, with the harness's certificate, works over HTTPS too.
        code, output = await stack.cli("workers", "list")
        assert code == 0 and "tls-0" in output, output

        # Without a client certificate, or expecting another server name, nothing connects.
        without = TemporalSettings(temporal_address=proxy.address, **temporal_tls)
        with pytest.raises(SystemExit, match=r"cannot connect to Temporal .* over TLS") as refused:
            await connect_temporal(without, DataConverter.default)
        # The client's words vary (the alert, or the connection closed under it); the proxy's do not.
        assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in e for e in proxy.handshake_errors), (
            refused.value,
            proxy.handshake_errors,
        )
        wrong_name = TemporalSettings(
            temporal_address=proxy.address,
            temporal_tls_ca=str(pki.ca_file),
            temporal_tls_cert=str(api_cert.cert_file),
            temporal_tls_key=str(api_cert.key_file),
            temporal_tls_server_name="elsewhere.test",
        )
        with pytest.raises(SystemExit, match=r"cannot connect to Temporal .* over TLS") as refused:
            await connect_temporal(wrong_name, DataConverter.default)
        assert "NotValidForName" in str(refused.value), refused.value
    finally:
        # The stack first: its clients would otherwise retry against a proxy that is gone.
        if stack is not None:
            stack.stop_workers()
            await stack.api.stop()
        proxy.stop()
