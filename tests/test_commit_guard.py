"""commit_on_success never writes over a change made while the test ran: a password rotated by a PATCH,
a connection deleted, or one created under the same id. The test keeps its own result and says why
nothing was saved. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from api.core.crypto import SecretBox
from api.db.session import sync_url
from tests.reliability import record
from tests.stack import Stack, unique, wait_terminal
from tests.targets import SlowTarget

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)


def _stored(stack: Stack, connection_id: str) -> dict[str, Any] | None:
    engine = create_engine(sync_url(stack.settings.database_url))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("select host, password from connection where connection_id = :id"), {"id": connection_id}
            ).one_or_none()
    finally:
        engine.dispose()
    if row is None:
        return None
    return {"host": row[0], "password": SecretBox(stack.settings.fernet_key).decrypt(row[1])}


@ALL_DATABASES
async def test_commit_on_success_refuses_to_overwrite_a_change_made_during_the_test(
    make_stack, slow_http_server: SlowTarget
) -> None:
    stack = await make_stack(max_connection_test_concurrency=8)
    queue = await stack.serve_queue()
    port = int(slow_http_server.url.rsplit(":", 1)[1].strip("/"))
    ids = {case: unique(case) for case in ("patched", "deleted", "created", "unchanged", "new")}
    async with stack.client() as client:
        for case in ("patched", "deleted", "unchanged"):
            created = await client.post(
                "/api/v2/connections",
                json={
                    "connection_id": ids[case],
                    "conn_type": "http",
                    "host": "old.example",
                    "password": "pw-old",
                },
            )
            assert created.status_code == 201, created.text
        tests = {}
        for case, connection_id in ids.items():
            response = await client.post(
                "/api/v2/connections/test",
                json={
                    "uri": f"http://user:pw-tested@127.0.0.1:{port}/",
                    "connection_id": connection_id,
                    "commit_on_success": True,
                    "queue": queue,
                },
            )
            assert response.status_code == 202, response.text
            tests[case] = response.json()["id"]
        # Every driver is waiting on the slow target: each test is in flight.
        await slow_http_server.wait_arrivals(len(ids))
        patched = await client.patch(f"/api/v2/connections/{ids['patched']}", json={"password": "pw-rotated"})
        assert patched.status_code == 200, patched.text
        assert (await client.delete(f"/api/v2/connections/{ids['deleted']}")).status_code == 204
        made = await client.post(
            "/api/v2/connections",
            json={"connection_id": ids["created"], "conn_type": "http", "host": "made.example"},
        )
        assert made.status_code == 201, made.text
        results = {case: await wait_terminal(client, test_id) for case, test_id in tests.items()}

    assert all(r["state"] == "success" for r in results.values()), results
    refusals = {
        "patched": f"not saved: connection '{ids['patched']}' changed since the test started",
        "deleted": f"not saved: connection '{ids['deleted']}' was deleted since the test started",
        "created": f"not saved: connection '{ids['created']}' was created since the test started",
    }
    for case, note in refusals.items():
        assert results[case]["result_message"].endswith("; " + note), results[case]
    for case in ("unchanged", "new"):
        assert "not saved" not in results[case]["result_message"], results[case]

    stored = {
        case: await asyncio.to_thread(_stored, stack, connection_id) for case, connection_id in ids.items()
    }
    assert stored["patched"] == {"host": "old.example", "password": "pw-rotated"}
    assert stored["deleted"] is None
    assert stored["created"] == {"host": "made.example", "password": None}
    assert stored["unchanged"] == {"host": "127.0.0.1", "password": "pw-tested"}
    assert stored["new"] == {"host": "127.0.0.1", "password": "pw-tested"}
    kind = stack.settings.database_url.split(":", 1)[0]
    record(
        f"commit_on_success against a change during the test ({kind})",
        len(ids),
        "3 write-backs refused with the reason, 2 saved",
        "PATCH, DELETE and a create during the test; the test's own result kept",
    )
