"""Metrics after real work: the API's /metrics (its own token) and a worker's --metrics-port, scraped
around one successful and one failed connection test on a real stack, move as the work did; a test
failed at once is counted too; /metrics is off without its token; a worker counts its Execution API
retries."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from airlock.devstack import free_port
from airlock.protocol import connection_test_workflow_id
from tests import secret_scan
from tests.stack import Stack, unique, wait_terminal
from worker import metrics as worker_metrics
from worker.client import ExecutionAPIClient, ExecutionAPIError
from worker.config import WorkerSettings

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(v for n, found, v in samples if n == name and labels.items() <= found.items())


def metrics_token() -> str:
    return secret_scan.register(f"metrics_{secrets.token_urlsafe(24)}", secret_scan.TOKEN)


async def scrape_api(stack: Stack, token: str) -> tuple[str, Samples]:
    async with stack.client(token) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


async def scrape_worker(port: int, until: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """The worker's exposition once ``until`` holds for it (the exporter is read as it is scraped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while True:
            try:
                samples = parse((await client.get("/metrics")).text)
                if until(samples) or loop.time() > deadline:
                    return samples
            except httpx.TransportError:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def test_api_and_worker_metrics_move_with_real_work(make_stack, silent_server: int) -> None:
    token = metrics_token()
    stack = await make_stack(metrics_token=token)
    queue, port = unique("metrics"), free_port()
    await stack.start_worker(queue, name="metrics", AIRLOCK_METRICS_PORT=str(port))
    await stack.wait_worker(queue)

    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as anonymous:
        for headers in ({}, {"Authorization": f"Bearer {stack.secrets.admin_token}"}):
            refused = await anonymous.get("/metrics", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
        # The metrics token opens /metrics and nothing else.
        elsewhere = await anonymous.get("/api/v2/connections", headers={"Authorization": f"Bearer {token}"})
        assert elsewhere.status_code == 401

    _, before = await scrape_api(stack, token)
    post = {"route": "/api/v2/connections/test", "method": "POST", "status": "202"}
    claim = {"route": "/execution/connection-tests/{test_id}/claim", "method": "POST", "status": "200"}
    async with stack.client() as client:
        ids = []
        # A listening port, then a closed one; the password must reach no label.
        for target in (f"probe:{secret_scan.password()}@127.0.0.1:{stack.api.port}", "127.0.0.1:1"):
            response = await client.post(
                "/api/v2/connections/test", json={"uri": f"tcp://{target}", "queue": queue}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        results = [await wait_terminal(client, test_id, timeout=30) for test_id in ids]
    assert [r["state"] for r in results] == ["success", "failed"], results

    text, after = await scrape_api(stack, token)
    for test_id in ids:
        assert test_id not in text  # route templates, never the paths requests took
    tcp = {"conn_type": "tcp", "queue": queue}

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("airlock_http_requests_total", **post) == 2
    assert moved("airlock_http_request_duration_seconds_count", route=post["route"], method="POST") == 2
    assert moved("airlock_http_requests_total", **claim) == 2
    assert value(after, "airlock_connection_tests_started_total", **tcp) == 2
    assert value(after, "airlock_connection_tests_finished_total", **tcp, outcome="success") == 1
    assert value(after, "airlock_connection_tests_finished_total", **tcp, outcome="failed") == 1
    for stage in ("slot", "worker", "driver"):
        assert value(after, "airlock_connection_test_stage_seconds_count", stage=stage, queue=queue) == 2, (
            stage
        )
    assert value(after, "airlock_live_workers", queue=queue, kind="worker") == 1
    assert value(after, "airlock_connection_tests_active", queue=queue) == 0
    assert value(after, "airlock_metrics_database_up") == 1
    assert value(after, "process_resident_memory_bytes") > 0

    def worker_done(samples: Samples) -> bool:
        return value(samples, "airlock_worker_connection_tests_total", **tcp) == 2

    worker = await scrape_worker(port, worker_done)
    assert value(worker, "airlock_worker_connection_tests_total", **tcp, outcome="success") == 1
    assert value(worker, "airlock_worker_connection_tests_total", **tcp, outcome="failed") == 1
    assert value(worker, "airlock_worker_driver_duration_seconds_count", **tcp) == 2
    assert 0 < value(worker, "airlock_worker_driver_duration_seconds_sum", **tcp) < 30
    # The SDK's own, from the same endpoint: the two activities it ran on the queue.
    sdk = {"task_queue": queue, "activity_type": "run_connection_test"}
    assert value(worker, "temporal_activity_execution_latency_count", **sdk) == 2, _names(worker)
    assert value(worker, "temporal_worker_task_slots_available", task_queue=queue) > 0

    # A running test whose workflow an operator terminates: the reaper ends it, and says so.
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 3},
        )
        hung = response.json()["id"]
        await wait_state(client, hung, "running")
        temporal = await Client.connect(stack.temporal_address)
        await temporal.get_workflow_handle(connection_test_workflow_id(hung)).terminate(reason="stop")
        assert await stack.reaper().reap_once(older_than=0) == 1
        assert (await wait_terminal(client, hung, timeout=5))["state"] == "failed"
    _, reaped = await scrape_api(stack, token)
    assert value(reaped, "airlock_reaper_actions_total", reaper="connection_tests", action="ended") == (
        value(after, "airlock_reaper_actions_total", reaper="connection_tests", action="ended") + 1
    )
    http = {"conn_type": "http", "queue": queue}
    assert value(reaped, "airlock_connection_tests_finished_total", **http, outcome="failed") == 1
    # It had got its slot and its worker: those stages, and its run until it was reaped.
    for stage in ("slot", "worker", "driver"):
        assert value(reaped, "airlock_connection_test_stage_seconds_count", stage=stage, queue=queue) == 3


async def wait_state(client: httpx.AsyncClient, test_id: str, state: str, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] != state:
        assert loop.time() < deadline, f"test {test_id} not {state} within {timeout} s"
        await asyncio.sleep(0.05)


async def test_metrics_are_off_without_their_token_and_count_tests_failed_at_once(make_stack) -> None:
    off = await make_stack()
    async with off.client() as client:
        assert (await client.get("/metrics")).status_code == 404
    token = metrics_token()
    stack = await make_stack(metrics_token=token)
    queue = unique("nobody")
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": queue}
        )
        assert response.json()["state"] == "failed"
    _, samples = await scrape_api(stack, token)
    tcp = {"conn_type": "tcp", "queue": queue}
    assert value(samples, "airlock_connection_tests_started_total", **tcp) == 1
    assert value(samples, "airlock_connection_tests_finished_total", **tcp, outcome="failed") == 1
    # It waited for nothing: no stage was measured.
    assert value(samples, "airlock_connection_test_stage_seconds_count", queue=queue) == 0


@contextlib.contextmanager
def flaky_api() -> Iterator[str]:
    """An Execution API stand-in that answers 503 to the first request and 204 to the others."""
    answers = iter([503])

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(next(answers, 204))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_worker_counts_execution_api_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retries counter, through the same runtime a worker serves: one 5xx, then no answer at all."""
    # This process is no worker: it records nothing again once the test is over.
    monkeypatch.setattr(worker_metrics, "_instruments", None)
    port = free_port()
    # Held by this frame: the exporter lives as long as its runtime (a worker's client holds its own).
    runtime = worker_metrics.serve(WorkerSettings(metrics_port=port))
    assert runtime is not None
    with flaky_api() as url:
        async with ExecutionAPIClient(url, "token", retry_for=5) as api:
            await api.jobs.heartbeat("job")  # 503, retried, then 204
    # A transport without httpx's own connect retries: each attempt is refused at once.
    closed = f"http://127.0.0.1:{free_port()}"
    async with ExecutionAPIClient(
        closed, "token", retry_for=0.5, transport=httpx.AsyncHTTPTransport()
    ) as api:
        with pytest.raises(ExecutionAPIError):
            await api.jobs.heartbeat("job")  # refused until retry_for runs out

    def counted(samples: Samples) -> bool:
        return value(samples, "airlock_worker_api_retries_total", reason="unreachable") >= 1

    samples = await scrape_worker(port, counted)
    assert value(samples, "airlock_worker_api_retries_total", reason="server_error") == 1
    assert value(samples, "airlock_worker_api_retries_total", reason="unreachable") >= 1


def _names(samples: Samples) -> list[str]:
    return sorted({name for name, _, _ in samples if name.startswith("temporal_")})
