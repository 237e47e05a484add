"""DESIGN.md invariant 9: a success answer means stored. The commit itself is made to fail, with a
PostgreSQL constraint trigger deferred to commit time, so a route that answered before committing
would hand out a 2xx for a write that never landed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from temporalio.client import Client

from airlock.devstack import free_port
from airlock.execution import TriggerEventBody
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from api.db.session import sync_url
from tests.stack import Stack, unique, wait_terminal
from tests.test_triggers import FILE_TRIGGER, wait_trigger
from worker.client import ExecutionAPIClient, ExecutionAPIError

POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class CommitFailures:
    """Constraint triggers checked at COMMIT: each one fails the first ``times`` commits that write a
    matching row, then lets them through. The counter is a sequence, which a rollback does not undo."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(sync_url(database_url), isolation_level="AUTOCOMMIT")

    async def arm(self, name: str, table: str, event: str, when: str, times: int = 1_000_000) -> None:
        # In a thread: the DDL waits for the table's lock, which a transaction of the API (served from
        # this event loop) may hold; a blocked loop would never let it go.
        await asyncio.to_thread(self._arm, name, table, event, when, times)

    def _arm(self, name: str, table: str, event: str, when: str, times: int) -> None:
        with self._engine.connect() as db:
            db.execute(text(f"CREATE SEQUENCE {name}_seq"))
            db.execute(
                text(
                    f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                      IF nextval('{name}_seq') <= {times} THEN
                        RAISE EXCEPTION 'injected failure at commit ({name})';
                      END IF;
                      RETURN NULL;
                    END $$"""
                )
            )
            db.execute(
                text(
                    f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} "
                    f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()"
                )
            )

    async def failures(self, name: str) -> int:
        return await asyncio.to_thread(self._failures, name)

    def _failures(self, name: str) -> int:
        with self._engine.connect() as db:
            return int(db.execute(text(f"SELECT last_value FROM {name}_seq")).scalar_one())

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture
def commit_failures(database_url: str) -> Iterator[CommitFailures]:
    failures = CommitFailures(database_url)
    yield failures
    failures.close()


def _execution(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION}


async def _waiting_task_instance(client: httpx.AsyncClient, queue: str, **defer: Any) -> dict[str, Any]:
    """A task instance deferred to a trigger on a queue nobody serves: it waits, for this test to fire it."""
    deferred = await client.post(
        "/api/v2/task-instances",
        json={
            "dag_id": "dag",
            "run_id": unique("run"),
            "task_id": "wait",
            "defer": {
                "classpath": "airlock.triggers.FileTrigger",
                "kwargs": {"filepath": "/nonexistent/commit-test"},
                "queue": queue,
                "next_method": "resume",
                **defer,
            },
        },
    )
    assert deferred.status_code == 201, deferred.text
    ti: dict[str, Any] = deferred.json()
    return ti


async def _claimed_trigger(
    stack: Stack, client: httpx.AsyncClient, **defer: Any
) -> tuple[dict[str, Any], str]:
    """A waiting task instance whose trigger this test claimed, as a provisioned triggerer of its queue:
    the task instance and the claim's trigger token."""
    queue = unique("nobody")
    triggerer = (await stack.provision("commit-trig", [queue], triggerer=True))["AIRLOCK_WORKER_TOKEN"]
    ti = await _waiting_task_instance(client, queue, **defer)
    claimed = await client.post(
        f"/execution/triggers/{ti['trigger_id']}/workload",
        headers=_execution(triggerer),
        json={"job_id": None, "triggerer": "commit-test"},
    )
    assert claimed.status_code == 200, claimed.text
    return ti, str(claimed.json()["token"])


@POSTGRES
async def test_public_create_whose_commit_fails_is_not_a_2xx(make_stack, commit_failures) -> None:
    stack: Stack = await make_stack()
    await commit_failures.arm(
        "fail_connection", "connection", "INSERT", "NEW.connection_id = 'fails-at-commit'"
    )
    async with stack.client() as client:
        refused = await client.post(
            "/api/v2/connections", json={"connection_id": "fails-at-commit", "conn_type": "tcp"}
        )
        assert refused.status_code == 503, refused.text
        assert "injected" not in refused.text  # the database's own words stay in the server's log
        assert (await client.get("/api/v2/connections/fails-at-commit")).status_code == 404
        # Every other write answers once stored: read back at once, on the same connection.
        created = await client.post(
            "/api/v2/connections", json={"connection_id": "lands", "conn_type": "tcp"}
        )
        assert created.status_code == 201, created.text
        assert (await client.get("/api/v2/connections/lands")).status_code == 200
        assert (await client.delete("/api/v2/connections/lands")).status_code == 204
        assert (await client.get("/api/v2/connections/lands")).status_code == 404
    assert await commit_failures.failures("fail_connection") == 1


@POSTGRES
async def test_test_state_patch_whose_commit_fails_is_retried_and_lands_once(
    make_stack, commit_failures
) -> None:
    stack: Stack = await make_stack(connection_test_dispatch_timeout=120)
    queue = unique("nobody-polls")
    async with stack.client() as client:
        # A live job on the queue lets the test be queued; no Temporal worker polls it, so the test
        # waits for a worker that never comes while this test plays the worker's part.
        worker = _execution((await stack.provision("commit-test", [queue]))["AIRLOCK_WORKER_TOKEN"])
        job = await client.post(
            "/execution/jobs",
            headers=worker,
            json={"hostname": "h", "queues": [queue], "conn_types": ["tcp"]},
        )
        assert job.status_code == 201, job.text
        submitted = await client.post(
            "/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": queue}
        )
        assert submitted.status_code == 202, submitted.text
        test_id = submitted.json()["id"]
        for _ in range(300):  # dispatched: a worker may claim it
            if (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] == "queued":
                break
            await asyncio.sleep(0.1)
        await commit_failures.arm(
            "fail_running", "connection_test", "UPDATE", "NEW.state = 'running'", times=1
        )
        await commit_failures.arm(
            "fail_result", "connection_test", "UPDATE", "NEW.state = 'success'", times=1
        )
        # The claim (the test runs on this worker; its token is handed out) answers only once stored.
        claim_path = f"/execution/connection-tests/{test_id}/claim"
        claim = {"worker": "w1", "job_id": job.json()["id"]}
        refused = await client.post(claim_path, headers=worker, json=claim)
        assert refused.status_code == 503 and "token" not in refused.json(), refused.text
        unclaimed = (await client.get(f"/api/v2/connections/test/{test_id}")).json()
        assert (unclaimed["state"], unclaimed["worker"]) == ("queued", None)
        claimed = await client.post(claim_path, headers=worker, json=claim)
        assert claimed.status_code == 200, claimed.text
        stored = (await client.get(f"/api/v2/connections/test/{test_id}")).json()
        assert (stored["state"], stored["worker"]) == ("running", "w1")
        token = _execution(claimed.json()["token"])
        path = f"/execution/connection-tests/{test_id}/state"
        running = {"state": "running", "worker": "w1"}
        assert (await client.patch(path, headers=token, json=running)).status_code == 204
        assert (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] == "running"

        result = {"state": "success", "result_message": "ok", "worker": "w1"}
        assert (await client.patch(path, headers=token, json=result)).status_code == 503
        assert (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] == "running"
        assert (await client.patch(path, headers=token, json=result)).status_code == 204
        stored = (await client.get(f"/api/v2/connections/test/{test_id}")).json()
        assert (stored["state"], stored["result_message"]) == ("success", "ok")
        # Terminal is final: the same report again is refused, not applied twice.
        assert (await client.patch(path, headers=token, json=result)).status_code == 409
    assert await commit_failures.failures("fail_result") == 2
    assert await commit_failures.failures("fail_running") >= 2


@POSTGRES
async def test_trigger_event_whose_commit_fails_is_retried_and_applied_once(
    make_stack, commit_failures
) -> None:
    stack: Stack = await make_stack()
    async with stack.client() as client:
        ti, trigger_token = await _claimed_trigger(stack, client, next_kwargs={"kept": 1})
        await commit_failures.arm("fail_event", "trigger", "UPDATE", "NEW.state = 'fired'", times=1)
        token = _execution(trigger_token)
        event: dict[str, Any] = {"event_type": "event", "payload": '{"__airlock_serde__": 1, "value": 7}'}
        path = f"/execution/triggers/{ti['trigger_id']}/event"
        assert (await client.post(path, headers=token, json=event)).status_code == 503
        waiting = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
        assert waiting["state"] == "deferred" and waiting["next_kwargs"] == json.dumps({"kept": 1})
        # The worker retries a 5xx: the event lands, once, however often it is repeated.
        for _ in range(3):
            assert (await client.post(path, headers=token, json=event)).status_code == 204
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
        trigger = (await client.get(f"/api/v2/triggers/{ti['trigger_id']}")).json()
    assert resumed["state"] == "scheduled"
    assert json.loads(resumed["next_kwargs"]) == {"event": {"__airlock_serde__": 1, "value": 7}, "kept": 1}
    assert trigger["state"] == "fired"
    assert await commit_failures.failures("fail_event") == 2


@POSTGRES
async def test_the_worker_client_retries_a_failed_commit_until_it_lands(make_stack, commit_failures) -> None:
    """The typed Execution API client rides out 5xx answers (here: commits that fail) and lands the
    event once; a refusal (4xx) is raised at once, marked as not worth retrying."""
    stack: Stack = await make_stack()
    async with stack.client() as client:
        ti, token = await _claimed_trigger(stack, client)
    await commit_failures.arm("fail_client_event", "trigger", "UPDATE", "NEW.state = 'fired'", times=2)
    retries: list[int] = []
    event = TriggerEventBody(payload='{"__airlock_serde__": 1, "value": "x"}')
    async with ExecutionAPIClient(
        stack.api.url, token, retry_for=30, on_retry=lambda: retries.append(1)
    ) as api:
        await api.triggers.post_event(ti["trigger_id"], event)
        with pytest.raises(ExecutionAPIError) as refused:
            await api.triggers.post_event(str(uuid.uuid4()), event)
    assert len(retries) == 2 and await commit_failures.failures("fail_client_event") == 3
    assert refused.value.status_code == 403 and not refused.value.retryable
    async with stack.client() as client:
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert resumed["state"] == "scheduled"
    assert json.loads(resumed["next_kwargs"]) == {"event": {"__airlock_serde__": 1, "value": "x"}}


async def test_a_create_whose_workflow_cannot_start_is_answered_then_ends_failed(make_stack) -> None:
    """The answer to a create waits for the commit, not for Temporal: with Temporal unreachable the
    test and the trigger are still accepted (stored, pending), then end ``failed`` saying why."""
    stack: Stack = await make_stack()
    queue = await stack.serve_queue("nostart")
    assert stack.api.server is not None
    runtime = stack.api.server.config.app.state.runtime
    reachable = runtime.temporal
    # A real client of a port nothing listens on: every start fails once the SDK's retries give up.
    runtime.temporal = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    try:
        async with stack.client() as client:
            test = await client.post(
                "/api/v2/connections/test", json={"conn_type": "tcp", "host": "h", "port": 1, "queue": queue}
            )
            trigger = await client.post(
                "/api/v2/triggers", json={"classpath": FILE_TRIGGER, "kwargs": {"filepath": "/nonexistent"}}
            )
            assert test.status_code == 202 and test.json()["state"] == "pending", test.text
            assert trigger.status_code == 201 and trigger.json()["state"] == "scheduled", trigger.text
            ended_test = await wait_terminal(client, test.json()["id"], timeout=60)
            ended_trigger = await wait_trigger(client, trigger.json()["id"], timeout=60)
    finally:
        runtime.temporal = reachable
    assert ended_test["state"] == "failed", ended_test
    assert ended_test["result_message"].startswith("could not start its workflow: "), ended_test
    assert ended_trigger["state"] == "failed", ended_trigger
    assert "could not start its workflow" in ended_trigger["failure"], ended_trigger
