"""The production topology: two ``airlock api`` processes on one PostgreSQL database, behind a
round-robin TCP proxy, with workers reaching them only through it over mutual TLS. Work started through
one replica finishes through the other, and stopping a replica loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from airlock.devstack import api_env, free_port
from airlock.triggers import TIMEDELTA_TRIGGER
from tests.stack import ApiProcess, Stack, StackTLS, stack_settings, wait_terminal
from tests.targets import SlowTarget
from tests.test_triggers import FILE_TRIGGER, defer, start_triggerer, wait_trigger
from tests.tlsproxy import Proxy


def _migrate(env: dict[str, str]) -> None:
    """``airlock db upgrade``: the one migration step before a rollout, so no replica migrates."""
    done = subprocess.run(
        [sys.executable, "-m", "airlock.cli", "db", "upgrade"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def _submit_test(client: httpx.AsyncClient, uri: str, queue: str) -> str:
    response = await client.post("/api/v2/connections/test", json={"uri": uri, "queue": queue})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _wait_running(client: httpx.AsyncClient, trigger_id: str) -> None:
    for _ in range(100):
        if (await client.get(f"/api/v2/triggers/{trigger_id}")).json()["state"] == "running":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"trigger {trigger_id} is not running on the triggerer")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_work_started_on_one_replica_finishes_on_the_other(
    dev_secrets: Any,
    temporal_address: str,
    database_url: str,
    tmp_path: Path,
    slow_http_server: SlowTarget,
) -> None:
    tls = StackTLS.create(tmp_path / "pki")
    tls_settings = tls.api_settings()  # one server certificate for 127.0.0.1, presented by both
    ports = [free_port(), free_port()]
    backends = [f"127.0.0.1:{port}" for port in ports]
    proxy = Proxy([("127.0.0.1", port) for port in ports]).start()  # TLS passes through to the replicas
    proxy_url = f"https://127.0.0.1:{proxy.port}"
    # One configuration for both: the same database, secrets and control queue (each replica runs a
    # control worker on it), and provisioning that sends workers to the proxy, never to a replica.
    settings = stack_settings(
        dev_secrets,
        temporal_address,
        database_url,
        job_liveness_timeout=5,
        worker_api_url=proxy_url,
        **tls_settings,
    )
    env = {f"AIRLOCK_{k.upper()}": str(v) for k, v in {**tls_settings, "worker_api_url": proxy_url}.items()}
    _migrate(api_env(dev_secrets, temporal_address=temporal_address, database_url=database_url))
    replicas = [
        ApiProcess(
            settings, dev_secrets, port, tmp_path / f"api-{n}.log", env, tls.client_context(), migrate=False
        )
        for n, port in enumerate(ports)
    ]
    one, two = (Stack(dev_secrets, temporal_address, api, tmp_path, tls) for api in replicas)
    try:
        await asyncio.gather(*(api.start() for api in replicas))
        queue = await one.serve_queue("replica")
        trigger_queue = await start_triggerer(one)
        # The worker and the triggerer registered through the proxy, which spread them over both.
        assert all(proxy.connections[b] > 0 for b in backends), proxy.connections

        flag = tmp_path / "appears-after-the-stop"
        async with one.client() as client:
            tests = [await _submit_test(client, slow_http_server.url, queue) for _ in range(2)]
            waiting = await defer(
                client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=trigger_queue
            )
            timer = await defer(client, TIMEDELTA_TRIGGER, {"delta": 3})
            # In flight when replica 1 stops: both drivers at the target (claimed, result not yet
            # reported), the file trigger running on the triggerer, the timer not yet due.
            await slow_http_server.wait_arrivals(len(tests))
            await _wait_running(client, waiting["trigger_id"])
        stopped = replicas[0].proc
        assert stopped is not None
        at_stop = dict(proxy.connections)
        await replicas[0].stop()  # SIGTERM; SIGKILL if it still runs 20 s later
        flag.write_text("go")

        async with two.client() as client:
            for test_id in tests:
                result = await wait_terminal(client, test_id, timeout=60)
                assert result["state"] == "success", result
                assert "returned status 200" in result["result_message"], result
            for ti in (waiting, timer):
                trigger = await wait_trigger(client, ti["trigger_id"], timeout=60)
                assert trigger["state"] == "fired" and trigger["event_type"] == "event", trigger
                resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
                assert resumed["state"] == "scheduled" and resumed["next_method"] == "resume", resumed
                assert json.loads(resumed["next_kwargs"])["event"] == json.loads(trigger["event_payload"])
            # Nothing lost, nothing doubled: exactly the rows made through replica 1, all terminal.
            assert (await client.get("/api/v2/connections/test")).json()["total_entries"] == len(tests)
            assert (await client.get("/api/v2/triggers")).json()["total_entries"] == 2
        # The workers reached replica 2 through the proxy once replica 1 stopped (new connections: the
        # ones to replica 1 died with it); the reports above could only land there.
        assert proxy.connections[backends[1]] > at_stop[backends[1]], (at_stop, proxy.connections)
        # Last, so that the checks above report on their own: a replica told to stop (a rollout's
        # SIGTERM) exits by itself, its control worker shut down, instead of being killed.
        assert stopped.returncode == -signal.SIGTERM, f"replica 1 was killed; see {replicas[0].log_path}"
    finally:
        one.stop_workers()
        await asyncio.gather(*(api.stop() for api in replicas))
        proxy.stop()
