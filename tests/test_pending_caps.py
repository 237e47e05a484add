"""Caps on what waits: connection tests waiting to run (per queue and in all), triggers not yet ended
(per queue), log lines kept per trigger. Past a cap: a 429 with Retry-After that names the queue and the
cap, and nothing stored. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from api.core.security import mint_task_instance_token
from tests.hostile.conftest import WAITING_TRIGGER, Seeded, seed
from tests.reliability import record
from tests.stack import Stack, unique

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)


@pytest.fixture
def seeded_stack(make_stack):
    async def factory(**overrides: Any) -> Seeded:
        return await seed(await make_stack(**overrides))

    return factory


def _execution(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION}


async def _announce_worker(stack: Stack, client: httpx.AsyncClient, *queues: str) -> str:
    """A worker that announces itself and never polls: the tests it is sent stay waiting. Its
    credential."""
    token = (await stack.provision("silent", list(queues)))["AIRLOCK_WORKER_TOKEN"]
    job = await client.post(
        "/execution/jobs",
        headers=_execution(token),
        json={"hostname": "silent", "queues": list(queues), "conn_types": ["tcp"]},
    )
    assert job.status_code == 201, job.text
    return token


async def _claim(client: httpx.AsyncClient, worker: str, test_id: str) -> str:
    """The worker claims the test once it is dispatched: the claim's token."""
    for _ in range(300):
        if (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] != "pending":
            break
        await asyncio.sleep(0.1)
    claimed = await client.post(
        f"/execution/connection-tests/{test_id}/claim",
        headers=_execution(worker),
        json={"worker": "silent:1", "job_id": None},
    )
    assert claimed.status_code == 200, claimed.text
    return str(claimed.json()["token"])


async def _snapshot(seeded: Seeded) -> dict[str, list[Any]]:
    """The ids in every table: waiting tests move on (pending, queued) while the test runs."""
    tables = await asyncio.to_thread(seeded.snapshot)
    return {table: [row[0] for row in rows] for table, rows in tables.items()}


def _refused(response: httpx.Response, *words: str) -> bool:
    detail = response.json().get("detail", "")
    return (
        response.status_code == 429
        and response.headers.get("retry-after", "").isdigit()
        and all(word in detail for word in words)
    )


@ALL_DATABASES
async def test_waiting_connection_tests_are_capped_per_queue_and_in_all(seeded_stack) -> None:
    seeded: Seeded = await seeded_stack(max_pending_tests_per_queue=3, max_pending_tests=5)
    stack = seeded.stack
    qa, qb = unique("qa"), unique("qb")
    async with stack.client() as client:
        worker = await _announce_worker(stack, client, qa, qb)

        async def submit(queue: str) -> httpx.Response:
            return await client.post(
                "/api/v2/connections/test", json={"conn_type": "tcp", "host": "h", "port": 1, "queue": queue}
            )

        accepted = [await submit(qa) for _ in range(3)]
        assert [r.status_code for r in accepted] == [202] * 3, [r.text for r in accepted]
        before = await _snapshot(seeded)
        over_queue = await submit(qa)
        assert _refused(
            over_queue, repr(qa), "AIRLOCK_MAX_PENDING_TESTS_PER_QUEUE=3", "3 connection tests"
        ), (
            over_queue.status_code,
            over_queue.text,
        )
        assert await _snapshot(seeded) == before, "a refused test was stored"

        accepted += [await submit(qb) for _ in range(2)]
        assert [r.status_code for r in accepted] == [202] * 5, [r.text for r in accepted]
        before = await _snapshot(seeded)
        over_all = await submit(qb)
        assert _refused(over_all, "5 connection tests", "across all queues", "AIRLOCK_MAX_PENDING_TESTS=5"), (
            over_all.status_code,
            over_all.text,
        )
        assert await _snapshot(seeded) == before, "a refused test was stored"

        # A test that ends makes room again.
        first = accepted[0].json()["id"]
        ended = await client.patch(
            f"/execution/connection-tests/{first}/state",
            headers=_execution(await _claim(client, worker, first)),
            json={"state": "failed", "result_message": "ended by the test"},
        )
        assert ended.status_code == 204, ended.text
        assert (await submit(qa)).status_code == 202
    record(
        f"waiting-test caps ({stack.settings.database_url.split(':', 1)[0]})",
        2,
        "both refused with 429 and Retry-After, nothing stored",
        "per queue (3) and in all (5); an ended test frees room",
    )


@ALL_DATABASES
async def test_active_triggers_are_capped_per_queue(seeded_stack) -> None:
    seeded: Seeded = await seeded_stack(max_active_triggers_per_queue=2)
    stack = seeded.stack
    queue = unique("tq")
    standalone = {"classpath": WAITING_TRIGGER, "kwargs": {"filepath": "/nonexistent/x"}, "queue": queue}
    async with stack.client() as client:
        created = [await client.post("/api/v2/triggers", json=standalone) for _ in range(2)]
        assert [r.status_code for r in created] == [201, 201], [r.text for r in created]
        running = await client.post(
            "/api/v2/task-instances",
            # Allowed onto the queue: the cap, not the allowance, is what refuses its deferral.
            json={"dag_id": "d", "run_id": unique("run"), "task_id": "t", "allowed_queues": [queue]},
        )
        assert running.status_code == 201, running.text
        before = await _snapshot(seeded)
        words = (repr(queue), "2 triggers", "AIRLOCK_MAX_ACTIVE_TRIGGERS_PER_QUEUE=2")
        refusals = {
            "standalone": await client.post("/api/v2/triggers", json=standalone),
            "deferral at creation": await client.post(
                "/api/v2/task-instances",
                json={
                    "dag_id": "d",
                    "run_id": unique("run"),
                    "task_id": "t",
                    "defer": {**standalone, "next_method": "resume"},
                },
            ),
            "deferral of a running task": await client.patch(
                f"/execution/task-instances/{running.json()['id']}/state",
                headers=_execution(mint_task_instance_token(stack.settings, running.json()["id"])),
                json={"state": "deferred", "trigger": standalone, "next_method": "resume"},
            ),
        }
        wrong = {name: r.text for name, r in refusals.items() if not _refused(r, *words)}
        assert not wrong, wrong
        assert await _snapshot(seeded) == before, "a refused trigger (or its task instance) was stored"
        # Another queue is not affected, and a cancelled trigger makes room.
        other = await client.post("/api/v2/triggers", json={**standalone, "queue": unique("tq")})
        assert other.status_code == 201, other.text
        assert (await client.delete(f"/api/v2/triggers/{created[0].json()['id']}")).status_code == 200
        assert (await client.post("/api/v2/triggers", json=standalone)).status_code == 201
    record(
        f"active-trigger cap ({stack.settings.database_url.split(':', 1)[0]})",
        len(refusals),
        "each refused with 429 and Retry-After, nothing stored",
        "standalone, deferral at creation, deferral through the Execution API",
    )


@ALL_DATABASES
async def test_a_chatty_trigger_keeps_its_newest_lines(seeded_stack) -> None:
    seeded: Seeded = await seeded_stack(max_log_lines_per_trigger=5)
    stack = seeded.stack
    sent = 0
    async with stack.client() as client:
        claimed = await client.post(
            f"/execution/triggers/{seeded.trigger_id}/workload",
            headers=_execution(seeded.triggerer_token),
            json={"job_id": None, "triggerer": "chatty"},
        )
        assert claimed.status_code == 200, claimed.text
        headers = _execution(claimed.json()["token"])
        for _ in range(4):
            lines = [
                {"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": f"line {sent + n}"}
                for n in range(3)
            ]
            sent += len(lines)
            response = await client.post(
                f"/execution/triggers/{seeded.trigger_id}/logs", headers=headers, json={"lines": lines}
            )
            assert response.status_code == 204, response.text
        logs = (await client.get(f"/api/v2/triggers/{seeded.trigger_id}/logs")).json()
    assert [line["message"] for line in logs["lines"]] == [f"line {n}" for n in range(7, 12)]
    assert logs["dropped_lines"] == 7
    record(
        f"log lines per trigger ({stack.settings.database_url.split(':', 1)[0]})",
        sent,
        "the newest 5 kept, 7 dropped and counted",
        "cap 5, four batches of 3",
    )
