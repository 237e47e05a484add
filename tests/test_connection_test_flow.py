"""End to end: API -> Temporal -> a worker process on the named queue -> result through the API."""

from __future__ import annotations

import asyncio

from tests.stack import unique, wait_terminal


async def test_test_runs_on_named_queue_and_reports_worker(make_stack) -> None:
    stack = await make_stack()
    net_a, net_b = unique("net-a"), unique("net-b")
    stack.start_worker(net_a, name="edge-a")
    stack.start_worker(net_b, name="edge-b")
    job_a = await stack.wait_worker(net_a)
    job_b = await stack.wait_worker(net_b)
    async with stack.client() as client:
        for queue, job in ((net_a, job_a), (net_b, job_b)):
            ids = []
            for _ in range(3):
                response = await client.post(
                    "/api/v2/connections/test",
                    json={"uri": f"tcp://127.0.0.1:{stack.api.port}", "queue": queue},
                )
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
    queue = unique("net")
    stack.start_worker(queue)
    await stack.wait_worker(queue)
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
