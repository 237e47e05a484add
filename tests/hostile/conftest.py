"""Shared by the hostile-input tests: a stack seeded with one real row of every kind (so bodies reach
the code behind the id lookups, not only 404s), Execution API credentials for any path (a provisioned
worker and triggerer, and workload tokens handed to them), and a snapshot of every table to prove
that a refused request stored nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import create_engine, text

from airlock.version import EXECUTION_API_VERSION_HEADER
from api.core.security import mint_task_instance_token, mint_trigger_token, mint_workload_token
from api.db.session import sync_url
from api.services.workers import split_credential
from tests.stack import Stack, unique

TABLES = ("connection", "connection_test", "job", "task_instance", "trigger", "trigger_log")
# A built-in, non-timer trigger on a queue no triggerer serves: its row stays `scheduled`.
WAITING_TRIGGER = "activities.triggers.file.FileTrigger"
# The queue the hostile bodies name (jobs, deferrals): the seeded worker serves it, the seeded task
# instance may defer onto it.
BODY_QUEUE = "q"


@dataclass
class Seeded:
    stack: Stack
    connection_id: str
    test_id: str
    trigger_id: str
    task_instance_id: str
    job_id: str
    # A provisioned connection-test worker (seeded queues, the test's queue and BODY_QUEUE) and a
    # provisioned triggerer of the seeded trigger's queue: their credentials and names. The seeded test
    # and trigger are held by them, so workload tokens handed to them pass authentication.
    worker_token: str
    worker_name: str
    triggerer_token: str
    triggerer_name: str
    # A provisioned worker nothing else uses: the {name} of the public API's worker routes.
    spare_worker_name: str

    @property
    def path_ids(self) -> dict[str, str]:
        """Real ids for every path parameter name of both APIs."""
        return {
            "connection_id": self.connection_id,
            "test_id": self.test_id,
            "trigger_id": self.trigger_id,
            "task_instance_id": self.task_instance_id,
            "job_id": self.job_id,
            "name": self.spare_worker_name,
        }

    def execution_token(self, path: str, params: dict[str, Any]) -> str:
        """The credential of the right kind for an Execution API route: a worker's for claims and jobs,
        else a workload token minted for the ids in ``params`` (whatever they are) and handed to the
        seeded worker or triggerer: authentication passes, so the body and the lookup are what get
        tested."""
        settings = self.stack.settings
        # Path parameters as schemathesis holds them are already percent-encoded for the URL.
        ids = {name: unquote(str(value)) for name, value in params.items()}
        if path.startswith("/connection-tests/") and path.endswith("/claim"):
            return self.worker_token
        if path.startswith("/connection-tests/"):
            return mint_workload_token(settings, ids.get("test_id", ""), self.worker_name, 300)
        if path.startswith("/triggers/") and path.endswith(("/workload", "/held")):
            return self.triggerer_token
        if path.startswith("/triggers/"):
            return mint_trigger_token(settings, ids.get("trigger_id", ""), self.triggerer_name, 300)
        if path.startswith("/task-instances/"):
            return mint_task_instance_token(settings, ids.get("task_instance_id", ""), 300)
        return self.worker_token

    def execution_headers(self, version: str, path: str, params: dict[str, Any]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.execution_token(path, params)}",
            EXECUTION_API_VERSION_HEADER: version,
        }

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in primary-key order."""
        engine = create_engine(sync_url(self.stack.settings.database_url))
        try:
            with engine.connect() as conn:
                quote = conn.dialect.identifier_preparer.quote
                return {
                    table: [
                        tuple(row) for row in conn.execute(text(f"select * from {quote(table)} order by id"))
                    ]
                    for table in TABLES
                }
        finally:
            engine.dispose()

    async def snapshot_async(self) -> dict[str, list[tuple[Any, ...]]]:
        # The API serves from this event loop: a blocking read must leave it free.
        return await asyncio.to_thread(self.snapshot)


async def seed(stack: Stack) -> Seeded:
    """One saved connection, one connection test, one waiting trigger (naming the connection), one
    running task instance (allowed to defer onto BODY_QUEUE and the default trigger queue, so that a
    deferral's body is what gets judged) and one registered job; the test is
    held by a provisioned worker, the trigger by a provisioned triggerer."""
    connection_id = unique("conn")
    job_queue, trigger_queue = unique("nobody"), unique("nobody")
    worker_token = (await stack.provision("hostile", [job_queue, BODY_QUEUE, stack.settings.default_queue]))[
        "AIRLOCK_WORKER_TOKEN"
    ]
    triggerer_token = (await stack.provision("hostile-trig", [trigger_queue], triggerer=True))[
        "AIRLOCK_WORKER_TOKEN"
    ]
    spare_token = (await stack.provision("hostile-spare", [unique("nobody")]))["AIRLOCK_WORKER_TOKEN"]
    async with stack.client() as client:
        created = await client.post(
            "/api/v2/connections",
            json={
                "connection_id": connection_id,
                "conn_type": "tcp",
                "host": "127.0.0.1",
                "port": 1,
                "login": "user",
                "password": "pw-seeded",
            },
        )
        assert created.status_code == 201, created.text
        test = await client.post("/api/v2/connections/test", json={"connection_id": connection_id})
        assert test.status_code == 202, test.text
        trigger = await client.post(
            "/api/v2/triggers",
            json={
                "classpath": WAITING_TRIGGER,
                "kwargs": {"filepath": "/nonexistent/airlock-hostile", "conn_id": connection_id},
                "queue": trigger_queue,
            },
        )
        assert trigger.status_code == 201, trigger.text
        trigger_id = trigger.json()["id"]
        ti = await client.post(
            "/api/v2/task-instances",
            json={
                "dag_id": "dag",
                "run_id": unique("run"),
                "task_id": "t",
                "allowed_queues": [BODY_QUEUE, stack.settings.default_trigger_queue],
            },
        )
        assert ti.status_code == 201, ti.text
        job = await client.post(
            "/execution/jobs",
            headers={
                "Authorization": f"Bearer {worker_token}",
                EXECUTION_API_VERSION_HEADER: "2026-11-21",
            },
            json={"hostname": "hostile", "queues": [job_queue]},
        )
        assert job.status_code == 201, job.text
    worker_name, triggerer_name = _name(worker_token), _name(triggerer_token)
    test_id = test.json()["id"]
    await asyncio.to_thread(_hold, stack, test_id, worker_name, trigger_id, triggerer_name)
    return Seeded(
        stack=stack,
        connection_id=connection_id,
        test_id=test_id,
        trigger_id=trigger_id,
        task_instance_id=ti.json()["id"],
        job_id=job.json()["id"],
        worker_token=worker_token,
        worker_name=worker_name,
        triggerer_token=triggerer_token,
        triggerer_name=triggerer_name,
        spare_worker_name=_name(spare_token),
    )


def _name(credential: str) -> str:
    parts = split_credential(credential)
    assert parts is not None, "not a provisioned worker's credential"
    return parts[0]


def _hold(stack: Stack, test_id: str, worker: str, trigger_id: str, triggerer: str) -> None:
    """Record the seeded test and trigger as claimed by the seeded worker and triggerer (what a claim
    records), without a claim's state change: the trigger stays `scheduled`, no test is run."""
    engine = create_engine(sync_url(stack.settings.database_url))
    try:
        with engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            for table, holder, row_id in (
                ("connection_test", worker, test_id),
                ("trigger", triggerer, trigger_id),
            ):
                conn.execute(
                    text(f"update {quote(table)} set credential = :holder where id = :id"),
                    {"holder": holder, "id": row_id},
                )
    finally:
        engine.dispose()


@pytest.fixture
def seeded_stack(make_stack: Callable[..., Awaitable[Stack]]) -> Callable[..., Awaitable[Seeded]]:
    async def factory(**overrides: Any) -> Seeded:
        return await seed(await make_stack(**overrides))

    return factory
