"""End to end: API -> Temporal -> a worker process on the named queue -> result through the API."""

from __future__ import annotations

import asyncio
import os
import signal

from temporalio.client import Client

from airlock.version import EXECUTION_API_VERSIONS
from tests import secret_scan
from tests.stack import unique, wait_terminal


async def test_test_runs_on_named_queue_and_reports_worker(make_stack) -> None:
    stack = await make_stack()
    net_a, net_b = unique("net-a"), unique("net-b")
    await stack.start_worker(net_a, name="edge-a")
    await stack.start_worker(net_b, name="edge-b")
    job_a = await stack.wait_worker(net_a)
    job_b = await stack.wait_worker(net_b)
    async with stack.client() as client:
        for queue, job in ((net_a, job_a), (net_b, job_b)):
            ids = []
            for _ in range(3):
                # A password the tcp tester ignores: it still travels the whole way, and must not leak.
                uri = f"tcp://probe:{secret_scan.password()}@127.0.0.1:{stack.api.port}"
                response = await client.post("/api/v2/connections/test", json={"uri": uri, "queue": queue})
                assert response.status_code == 202, response.text
                assert response.json()["state"] == "pending"
                ids.append(response.json()["id"])
            for test_id in ids:
                result = await wait_terminal(client, test_id)
                assert result["state"] == "success", result
                assert result["queue"] == queue
                # Only the worker serving the queue ran it.
                assert result["worker"] == job["hostname"]
                assert result["started_at"] and result["finished_at"]


async def test_queue_without_worker_fails_fast(make_stack) -> None:
    stack = await make_stack()
    async with stack.client() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post(
            "/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": "nobody-home"}
        )
        assert response.status_code == 202
        result = await wait_terminal(client, response.json()["id"], timeout=5)
        assert loop.time() - started < 2
    assert result["state"] == "failed"
    assert "no worker is serving queue 'nobody-home'" in result["result_message"]


async def test_hung_driver_is_killed_at_timeout_and_worker_carries_on(make_stack, silent_server: int) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue()
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 2},
        )
        result = await wait_terminal(client, response.json()["id"], timeout=30)
        assert result["state"] == "failed"
        assert "timed out after 2 s" in result["result_message"]
        # The worker is healthy and runs the next test.
        response = await client.post(
            "/api/v2/connections/test", json={"uri": f"tcp://127.0.0.1:{stack.api.port}", "queue": queue}
        )
        assert (await wait_terminal(client, response.json()["id"]))["state"] == "success"


async def test_cli_shows_states_and_exits_by_result(make_stack) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue()

    async def cli(*args: str) -> tuple[int, str]:
        return await stack.cli("connections", "test", *args)

    code, out = await cli("--uri", f"tcp://127.0.0.1:{stack.api.port}", "--queue", queue)
    assert code == 0, out
    assert "pending" in out and "success" in out and "TCP connection" in out
    password = secret_scan.password()
    code, out = await cli("--uri", f"tcp://probe:{password}@127.0.0.1:1", "--queue", queue)
    assert code == 1, out
    assert "connection refused" in out and password not in out
    code, out = await cli("--conn-id", "does-not-exist")
    assert code == 2 and "404" in out
    code, out = await cli()
    assert code == 2


async def test_operators_find_tests_by_search_attributes(make_stack) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue()
    async with stack.client() as client:
        created = await client.post(
            "/api/v2/connections", json={"connection_id": unique("svc"), "conn_type": "tcp"}
        )
        assert created.status_code == 201, created.text
        r = await client.post("/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": queue})
        test_id = r.json()["id"]
        await wait_terminal(client, test_id)
    temporal = await Client.connect(stack.temporal_address)
    query = f"AirlockKind = 'connection-test' AND AirlockQueue = '{queue}' AND AirlockState = 'failed'"
    for _ in range(50):  # visibility is eventually consistent
        found = [wf.id async for wf in temporal.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [f"connection-test-{test_id}"]


async def test_worker_completes_its_job_on_shutdown(make_stack) -> None:
    stack = await make_stack()
    queue = unique("net")
    proc = await stack.start_worker(queue)
    job = await stack.wait_worker(queue)
    assert set(job["conn_types"]) >= {"postgres", "mysql", "redis", "http", "tcp", "sqlite"}
    os.killpg(proc.pid, signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 20)
    async with stack.client() as client:
        jobs = (await client.get("/api/v2/jobs")).json()["jobs"]
    mine = next(j for j in jobs if j["id"] == job["id"])
    assert mine["state"] == "completed" and mine["alive"] is False and mine["ended_at"]


async def test_a_worker_pinned_to_a_version_before_claims_is_told_why_its_tests_fail(make_stack) -> None:
    """The one break of DESIGN.md invariant 6, made for invariant 7: versions before 2026-12-15 took a
    workload token from the activity input, which carries none now. Such a worker still registers
    (its routes are served), and each test it picks up ends failed, saying what it lacks."""
    stack = await make_stack()
    queue = unique("old")
    await stack.start_worker(queue, AIRLOCK_EXECUTION_API_VERSION=EXECUTION_API_VERSIONS[0])
    job = await stack.wait_worker(queue)
    assert job["kind"] == "worker" and job["capacity"] is None
    async with stack.client() as client:
        test = await client.post(
            "/api/v2/connections/test", json={"uri": f"tcp://127.0.0.1:{stack.api.port}", "queue": queue}
        )
        result = await wait_terminal(client, test.json()["id"])
    assert result["state"] == "failed", result
    assert "/claim: 404" in result["result_message"], result["result_message"]
    assert EXECUTION_API_VERSIONS[0] != EXECUTION_API_VERSIONS[-1]
