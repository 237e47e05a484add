"""Every test ends, the global cap holds, and secrets stay out of Temporal's history."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from airlock.protocol import connection_test_workflow_id
from tests import secret_scan
from tests.stack import unique, wait_terminal
from tests.targets import SlowTarget


async def test_global_cap_holds_across_workers(make_stack, silent_server: int) -> None:
    """20 tests, cap 4, two workers: never more than 4 running as seen through the API; FIFO order."""
    stack = await make_stack(max_connection_test_concurrency=4)
    queue = await stack.serve_queue(workers=2)
    async with stack.client() as client:
        ids = []
        for _ in range(20):
            # Each test holds its slot for ~1 s: the hung server makes the driver wait until killed.
            r = await client.post(
                "/api/v2/connections/test",
                json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 1},
            )
            assert r.status_code == 202
            ids.append(r.json()["id"])
        peak = 0
        started_order: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            tests = (await client.get("/api/v2/connections/test", params={"limit": 100})).json()["tests"]
            active = [t for t in tests if t["state"] in ("queued", "running")]
            peak = max(peak, len(active))
            assert len(active) <= 4, [t["state"] for t in tests]
            for t in tests:
                if t["state"] != "pending":
                    started_order.setdefault(t["id"], loop.time())
            if all(t["state"] in ("success", "failed") for t in tests):
                break
            await asyncio.sleep(0.05)
    assert peak == 4
    # Tests left pending in the order they were submitted (allowing for one poll's jitter).
    order = sorted(ids, key=lambda i: started_order[i])
    assert ids.index(order[-1]) >= 15


async def test_worker_killed_mid_test_fails_with_reason(make_stack, silent_server: int) -> None:
    stack = await make_stack(connection_test_heartbeat_timeout=3, connection_test_dispatch_timeout=3)
    queue = unique("net")
    proc = await stack.start_worker(queue)
    await stack.wait_worker(queue)
    async with stack.client() as client:
        r = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 60},
        )
        test_id = r.json()["id"]
        for _ in range(100):
            if (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] == "running":
                break
            await asyncio.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        result = await wait_terminal(client, test_id, timeout=30)
    assert result["state"] == "failed"
    # No other worker serves the queue: the second attempt finds nobody either.
    assert "stopped responding" in result["result_message"]
    assert "on a second attempt, no worker picked the test up" in result["result_message"]


async def test_queue_abandoned_by_killed_worker_fails_on_dispatch_timeout(make_stack) -> None:
    stack = await make_stack(connection_test_dispatch_timeout=2)
    queue = unique("net")
    proc = await stack.start_worker(queue)
    await stack.wait_worker(queue)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    async with stack.client() as client:
        # The job still looks alive for a moment: the test is accepted, and nobody picks it up.
        r = await client.post("/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": queue})
        result = await wait_terminal(client, r.json()["id"], timeout=30)
    assert result["state"] == "failed"
    assert "no worker picked the test up" in result["result_message"] and queue in result["result_message"]


async def test_workflow_terminated_in_temporal_is_reaped(make_stack, silent_server: int) -> None:
    stack = await make_stack(connection_test_reaper_interval=0.5)
    queue = await stack.serve_queue()
    async with stack.client() as client:
        r = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 60},
        )
        test_id = r.json()["id"]
        temporal = await Client.connect(stack.temporal_address)
        await asyncio.sleep(1)
        await temporal.get_workflow_handle(connection_test_workflow_id(test_id)).terminate(
            reason="operator says stop"
        )
        # The API's own reaper loop notices within its interval plus the minimum age of a row.
        result = await wait_terminal(client, test_id, timeout=30)
    assert result["state"] == "failed"
    assert (
        "terminated in Temporal" in result["result_message"]
        and "operator says stop" in result["result_message"]
    )


async def test_result_due_while_api_down_lands_when_it_returns(
    make_stack, slow_http_server: SlowTarget
) -> None:
    """The API (the only DB writer, and the host of the workflows) is down when the worker finishes."""
    stack = await make_stack()
    queue = await stack.serve_queue()
    async with stack.client() as client:
        r = await client.post("/api/v2/connections/test", json={"uri": slow_http_server.url, "queue": queue})
        test_id = r.json()["id"]
    await slow_http_server.wait_arrivals(1)
    await stack.api.stop()
    await asyncio.sleep(8)  # the driver finishes at ~4 s, while nobody can write the database
    await stack.api.start()
    async with stack.client() as client:
        result = await wait_terminal(client, test_id, timeout=60)
    assert result["state"] == "success", result
    assert "returned status 200" in result["result_message"]


async def test_no_secret_in_workflow_history(make_stack) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue()
    password = secret_scan.password("Pw-")
    async with stack.client() as client:
        r = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"postgres://alice:{password}@127.0.0.1:1/db", "queue": queue},
        )
        test_id = r.json()["id"]
        result = await wait_terminal(client, test_id)
        assert password not in str(result)
    temporal = await Client.connect(stack.temporal_address)
    handle = temporal.get_workflow_handle(connection_test_workflow_id(test_id))
    history = await handle.fetch_history()
    raw = history.to_json()
    assert password not in raw
    # No JWT in plaintext (a bare "eyJ", base64 of '{"', is also the start of a local activity's marker
    # data, and turns up in ciphertext by chance).
    assert secret_scan.JWT.search(raw.encode()) is None
    # Payloads are encrypted and name their key; the codec endpoint decodes them for operators.
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    dispatch = next(a for a in scheduled if a.activity_type.name == "run_connection_test")
    payload = dispatch.input.payloads[0]
    assert payload.metadata["encoding"] == b"binary/encrypted"
    body = json_format.MessageToDict(Payloads(payloads=[payload]))
    async with stack.client() as client:
        decoded = await client.post("/codec/decode", json=body)
        assert decoded.status_code == 200
        # Decoded, the activity's input is the test's id and nothing else: no token rides in it any more.
        plain = base64.b64decode(decoded.json()["payloads"][0]["data"])
        assert json.loads(plain) == {"test_id": test_id}, plain
        assert secret_scan.JWT.search(plain) is None
    async with httpx.AsyncClient(base_url=stack.api.url) as anonymous:
        assert (await anonymous.post("/codec/decode", json=body)).status_code == 401
        ui = await anonymous.post(f"/codec/ui/{stack.secrets.codec_token}/decode", json=body)
        assert ui.status_code == 200


async def test_two_api_replicas_share_the_work_and_reap_once(make_stack, silent_server: int) -> None:
    """Two API replicas on one database and one control queue: tests submitted to either complete,
    and a test whose workflow was terminated is reaped exactly once although both reapers run."""
    first = await make_stack()
    second = await make_stack(control_queue=first.settings.control_queue)
    queue = await first.serve_queue()
    ids = []
    for replica in (first, second, first, second):
        async with replica.client() as client:
            r = await client.post(
                "/api/v2/connections/test", json={"uri": f"tcp://127.0.0.1:{first.api.port}", "queue": queue}
            )
            ids.append(r.json()["id"])
    async with second.client() as client:
        for test_id in ids:
            assert (await wait_terminal(client, test_id))["state"] == "success"
        r = await client.post(
            "/api/v2/connections/test",
            json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 60},
        )
        hung = r.json()["id"]
    temporal = await Client.connect(first.temporal_address)
    await asyncio.sleep(1)
    await temporal.get_workflow_handle(connection_test_workflow_id(hung)).terminate(reason="stuck")
    reapers = [first.reaper(), second.reaper()]
    counts = await asyncio.gather(*(reaper.reap_once(older_than=0) for reaper in reapers))
    assert sorted(counts) == [0, 1]
    async with first.client() as client:
        result = await wait_terminal(client, hung, timeout=5)
    assert result["state"] == "failed" and "stuck" in result["result_message"]
