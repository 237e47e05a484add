"""Every accepted value fits its column, on every database: each field at its limit, written in 4-byte
UTF-8 characters where it is text, is stored and read back byte for byte on SQLite, PostgreSQL and
MariaDB (whose TEXT holds only 64 KiB); one byte or character more is refused (422, or 413 past the body
limit) and stores nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from airlock.connection import MAX_EXTRA_BYTES
from airlock.execution import (
    MAX_ERROR_CHARS,
    MAX_LOG_MESSAGE_CHARS,
    MAX_PAYLOAD_CHARS,
    MAX_RESULT_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
)
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from api.core.crypto import SecretBox
from api.db.models import Connection, ConnectionTest, TaskInstance, Trigger, TriggerLog
from api.db.session import sync_url
from tests.hostile.conftest import WAITING_TRIGGER
from tests.reliability import record
from tests.stack import Stack, unique

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)
# Raised from the default 1 MiB so that a payload at its character limit, in 4-byte characters, fits.
BODY_LIMIT = 2 * 1024 * 1024
WIDE = "\U0001f600"  # four bytes in UTF-8, twelve as a JSON escape


def sized_object(base: dict[str, Any], size: int) -> dict[str, Any]:
    """``base`` plus a "pad" string, mostly 4-byte characters, so that ``json.dumps`` (what the limit
    measures) is exactly ``size`` long."""
    room = size - len(json.dumps({**base, "pad": ""}))
    wide = room // 2 // len(json.dumps(WIDE)[1:-1])
    value = {**base, "pad": WIDE * wide + "x" * (room - wide * len(json.dumps(WIDE)[1:-1]))}
    assert len(json.dumps(value)) == size
    return value


def raw(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _execution(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION,
        "Content-Type": "application/json",
    }


async def claim_test(
    client: httpx.AsyncClient, admin: dict[str, str], test_id: str, worker_token: str
) -> dict[str, Any]:
    """Claim a test with a provisioned worker's credential once it is dispatched (queued), as a worker
    does: the claim's answer (its token, timeout and connection fields)."""
    for _ in range(300):
        state = (await client.get(f"/api/v2/connections/test/{test_id}", headers=admin)).json()["state"]
        if state != "pending":
            break
        await asyncio.sleep(0.1)
    claimed = await client.post(
        f"/execution/connection-tests/{test_id}/claim",
        headers=_execution(worker_token),
        content=raw({"worker": "storage-limits:1", "job_id": None}),
    )
    assert claimed.status_code == 200, claimed.text[:300]
    body: dict[str, Any] = claimed.json()
    return body


def _scalar(stack: Stack, query: Any) -> Any:
    engine = create_engine(sync_url(stack.settings.database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


async def scalar(stack: Stack, query: Any) -> Any:
    return await asyncio.to_thread(_scalar, stack, query)


async def rows(stack: Stack) -> dict[str, int]:
    models = (Connection, ConnectionTest, Trigger, TaskInstance, TriggerLog)
    return {m.__tablename__: await scalar(stack, select(func.count()).select_from(m)) for m in models}


@ALL_DATABASES
async def test_every_field_at_its_limit_is_stored_whole(make_stack) -> None:
    stack: Stack = await make_stack(max_request_bytes=BODY_LIMIT)
    box = SecretBox(stack.settings.fernet_key)
    admin = {"Authorization": f"Bearer {stack.secrets.admin_token}", "Content-Type": "application/json"}
    checked: list[str] = []
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=120) as client:
        # A connection with every field at its limit.
        extra = sized_object({"sslmode": "require"}, MAX_EXTRA_BYTES)
        fields = {
            "conn_type": "tcp",
            "host": WIDE * 500,
            "port": 65535,
            "login": WIDE * 500,
            "password": WIDE * 5000,
            "schema": WIDE * 500,
            "extra": extra,
            "description": WIDE * 5000,
        }
        connection_id = "c" * 250
        created = await client.post(
            "/api/v2/connections", headers=admin, content=raw({"connection_id": connection_id, **fields})
        )
        assert created.status_code == 201, created.text
        read = (await client.get(f"/api/v2/connections/{connection_id}", headers=admin)).json()
        assert {k: read[k] for k in fields if k != "password"} == {
            k: v for k, v in fields.items() if k != "password"
        }
        where = Connection.connection_id == connection_id
        stored_extra = await scalar(stack, select(Connection.extra).where(where))
        assert len(stored_extra) > 65535, (
            "the encrypted extra no longer exceeds a MySQL TEXT: the test lost its point"
        )
        assert box.decrypt(stored_extra) == json.dumps(extra)
        stored_password = await scalar(stack, select(Connection.password).where(where))
        assert box.decrypt(stored_password) == fields["password"]
        checked += ["connection: host, login, schema, password, description, extra"]

        # The same fields as an unsaved test: stored on the test's row, read back by its worker (in its
        # claim, and with the claim's token).
        fields_queue, queue = unique("q"), unique("q")
        worker_token = (await stack.provision("silent", [fields_queue, queue]))["AIRLOCK_WORKER_TOKEN"]
        # A live job on the queue (a silent worker: nothing polls it), so the test waits to be claimed.
        serving = await client.post(
            "/execution/jobs",
            headers=_execution(worker_token),
            content=raw({"hostname": "silent", "queues": [fields_queue], "conn_types": ["tcp"]}),
        )
        assert serving.status_code == 201, serving.text
        test = await client.post(
            "/api/v2/connections/test", headers=admin, content=raw({**fields, "queue": fields_queue})
        )
        assert test.status_code == 202, test.text
        test_id = test.json()["id"]
        claim = await claim_test(client, admin, test_id, worker_token)
        seen = await client.get(
            f"/execution/connection-tests/{test_id}/connection", headers=_execution(claim["token"])
        )
        assert seen.status_code == 200, seen.text
        for read_back in (claim["connection"], seen.json()):
            assert {k: read_back[k] for k in fields if k != "description"} == {
                k: v for k, v in fields.items() if k != "description"
            }
        checked += ["unsaved test's fields"]

        # A test's result message at its limit.
        job = await client.post(
            "/execution/jobs",
            headers=_execution(worker_token),
            content=raw({"hostname": WIDE * 500, "queues": [queue], "conn_types": ["tcp"]}),
        )
        assert job.status_code == 201, job.text
        pending = await client.post(
            "/api/v2/connections/test",
            headers=admin,
            content=raw({"conn_type": "tcp", "host": "h", "queue": queue}),
        )
        assert pending.status_code == 202 and pending.json()["state"] == "pending", pending.text
        pending_id = pending.json()["id"]
        message = WIDE * MAX_RESULT_MESSAGE_CHARS
        worker_headers = _execution((await claim_test(client, admin, pending_id, worker_token))["token"])
        over = await client.patch(
            f"/execution/connection-tests/{pending_id}/state",
            headers=worker_headers,
            content=raw({"state": "success", "result_message": message + "x", "worker": WIDE * 500}),
        )
        assert over.status_code == 422 and "result_message" in over.text, over.text
        reported = await client.patch(
            f"/execution/connection-tests/{pending_id}/state",
            headers=worker_headers,
            content=raw({"state": "success", "result_message": message, "worker": WIDE * 500}),
        )
        assert reported.status_code == 204, reported.text
        result = (await client.get(f"/api/v2/connections/test/{pending_id}", headers=admin)).json()
        assert result["result_message"] == message and result["worker"] == WIDE * 500
        checked += ["result message, worker"]

        # Trigger kwargs at their limit, read back by the triggerer's claim.
        kwargs = sized_object({"filepath": "/nonexistent/airlock"}, MAX_EXTRA_BYTES)
        trigger_queue = unique("nobody")
        triggerer = (await stack.provision("silent-trig", [trigger_queue], triggerer=True))[
            "AIRLOCK_WORKER_TOKEN"
        ]
        trigger = await client.post(
            "/api/v2/triggers",
            headers=admin,
            content=raw({"classpath": WAITING_TRIGGER, "kwargs": kwargs, "queue": trigger_queue}),
        )
        assert trigger.status_code == 201, trigger.text
        trigger_id = trigger.json()["id"]

        async def claim_trigger(trigger_id: str) -> dict[str, str]:
            """The triggerer claims the trigger with its credential: headers with the claim's token."""
            claimed = await client.post(
                f"/execution/triggers/{trigger_id}/workload",
                headers=_execution(triggerer),
                content=raw({"job_id": "j" * 36, "triggerer": WIDE * 500}),
            )
            assert claimed.status_code == 200, claimed.text[:300]
            return _execution(claimed.json()["token"])

        claimed = await client.post(
            f"/execution/triggers/{trigger_id}/workload",
            headers=_execution(triggerer),
            content=raw({"job_id": "j" * 36, "triggerer": WIDE * 500}),
        )
        assert claimed.status_code == 200 and claimed.json()["kwargs"] == kwargs, claimed.text[:300]
        stored_kwargs = await scalar(stack, select(Trigger.kwargs).where(Trigger.id == trigger_id))
        assert len(stored_kwargs) > 65535 and box.decrypt(stored_kwargs) == json.dumps(kwargs)
        checked += ["trigger kwargs"]

        # A log line at its limit.
        line = {
            "timestamp": "2026-01-01T00:00:00Z",
            "level": WIDE * 10,
            "message": WIDE * MAX_LOG_MESSAGE_CHARS,
        }
        logged = await client.post(
            f"/execution/triggers/{trigger_id}/logs",
            headers=_execution(claimed.json()["token"]),
            content=raw({"job_id": "j" * 36, "triggerer": WIDE * 500, "lines": [line]}),
        )
        assert logged.status_code == 204, logged.text
        lines = (await client.get(f"/api/v2/triggers/{trigger_id}/logs", headers=admin)).json()["lines"]
        assert [(got["level"], got["message"], got["triggerer"]) for got in lines] == [
            (line["level"], line["message"], WIDE * 500)
        ]
        checked += ["log line"]

        # A deferral whose next_kwargs fill the whole body, then the largest event payload spliced in.
        def deferral(next_kwargs: dict[str, Any]) -> dict[str, Any]:
            return {
                "dag_id": WIDE * 250,
                "run_id": unique("run"),
                "task_id": WIDE * 250,
                "defer": {
                    "classpath": WAITING_TRIGGER,
                    "kwargs": {"filepath": "/nonexistent/airlock"},
                    "queue": trigger_queue,
                    "next_method": "resume",
                    "next_kwargs": next_kwargs,
                },
            }

        probe = deferral({"pad": ""})
        room = BODY_LIMIT - len(raw(probe))
        next_kwargs = {"pad": WIDE * (room // 4) + "x" * (room % 4)}
        body = {**probe, "defer": {**probe["defer"], "next_kwargs": next_kwargs}}
        assert len(raw(body)) == BODY_LIMIT
        too_big = {**body, "defer": {**body["defer"], "next_kwargs": {"pad": next_kwargs["pad"] + "x"}}}
        before = await rows(stack)
        refused = await client.post("/api/v2/task-instances", headers=admin, content=raw(too_big))
        assert refused.status_code == 413, refused.text
        assert await rows(stack) == before
        deferred = await client.post("/api/v2/task-instances", headers=admin, content=raw(body))
        assert deferred.status_code == 201, deferred.text
        ti = deferred.json()
        assert ti["next_kwargs"] == json.dumps(next_kwargs, ensure_ascii=False)
        checked += ["next_kwargs (a whole body)", "dag_id, task_id"]

        payload = json.dumps(WIDE * (MAX_PAYLOAD_CHARS - 2), ensure_ascii=False)
        assert len(payload) == MAX_PAYLOAD_CHARS
        event_headers = await claim_trigger(ti["trigger_id"])
        over = await client.post(
            f"/execution/triggers/{ti['trigger_id']}/event",
            headers=event_headers,
            content=raw({"payload": json.dumps(WIDE * (MAX_PAYLOAD_CHARS - 1), ensure_ascii=False)}),
        )
        assert over.status_code == 422 and "payload" in over.text, over.text
        fired = await client.post(
            f"/execution/triggers/{ti['trigger_id']}/event",
            headers=event_headers,
            content=raw({"payload": payload}),
        )
        assert fired.status_code == 204, fired.text
        stored = (await client.get(f"/api/v2/triggers/{ti['trigger_id']}", headers=admin)).json()
        assert stored["event_payload"] == payload
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}", headers=admin)).json()
        expected = '{"event": ' + payload + ", " + json.dumps(next_kwargs, ensure_ascii=False)[1:-1] + "}"
        assert resumed["state"] == "scheduled" and resumed["next_kwargs"] == expected
        assert json.loads(resumed["next_kwargs"]) == {"event": WIDE * (MAX_PAYLOAD_CHARS - 2), **next_kwargs}
        checked += ["event payload", "next_kwargs with the payload spliced in"]

        # A failure with the longest error and traceback: on the trigger, and in next_kwargs.
        failing = await client.post(
            "/api/v2/task-instances", headers=admin, content=raw(deferral({"k": "v"}))
        )
        assert failing.status_code == 201, failing.text
        failing_ti = failing.json()
        failure_headers = await claim_trigger(failing_ti["trigger_id"])
        error, traceback = WIDE * MAX_ERROR_CHARS, WIDE * MAX_TRACEBACK_CHARS
        for name, body in (
            ("error", {"error": error + "x", "traceback": traceback}),
            ("traceback", {"error": error, "traceback": traceback + "x"}),
        ):
            over = await client.post(
                f"/execution/triggers/{failing_ti['trigger_id']}/failure",
                headers=failure_headers,
                content=raw(body),
            )
            assert over.status_code == 422 and name in over.text, over.text
        failed = await client.post(
            f"/execution/triggers/{failing_ti['trigger_id']}/failure",
            headers=failure_headers,
            content=raw({"error": error, "traceback": traceback}),
        )
        assert failed.status_code == 204, failed.text
        stored = (await client.get(f"/api/v2/triggers/{failing_ti['trigger_id']}", headers=admin)).json()
        assert stored["state"] == "failed" and stored["failure"] == error + "\n" + traceback
        final = (await client.get(f"/api/v2/task-instances/{failing_ti['id']}", headers=admin)).json()
        assert final["next_method"] == "__fail__"
        assert json.loads(final["next_kwargs"]) == {"error": error, "traceback": traceback}
        checked += ["trigger failure (error and traceback)", "__fail__ next_kwargs"]

        # One byte past each JSON limit: refused, nothing stored.
        before = await rows(stack)
        over_extra = await client.post(
            "/api/v2/connections",
            headers=admin,
            content=raw(
                {
                    "connection_id": unique("c"),
                    "conn_type": "tcp",
                    "extra": sized_object({}, MAX_EXTRA_BYTES + 1),
                }
            ),
        )
        assert over_extra.status_code == 422 and f"larger than {MAX_EXTRA_BYTES} bytes" in over_extra.text
        over_kwargs = await client.post(
            "/api/v2/triggers",
            headers=admin,
            content=raw(
                {
                    "classpath": WAITING_TRIGGER,
                    "kwargs": sized_object({"filepath": "/x"}, MAX_EXTRA_BYTES + 1),
                }
            ),
        )
        assert over_kwargs.status_code == 422 and f"larger than {MAX_EXTRA_BYTES} bytes" in over_kwargs.text
        assert await rows(stack) == before
    kind = stack.settings.database_url.split(":", 1)[0]
    record(
        f"fields at their limits ({kind})",
        len(checked),
        "each stored and read back byte for byte; one more refused",
        f"4-byte characters; {', '.join(checked)}",
    )
