"""The public API: connections CRUD, validation at the edge, one active test per connection on every
database, commit on success."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from api.db.session import sync_url
from tests.stack import wait_terminal

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


async def test_connection_crud_never_returns_password(stack, database_url: str) -> None:
    async with stack.client() as client:
        body = {
            "connection_id": "warehouse",
            "conn_type": "postgres",
            "host": "db.internal",
            "port": 5432,
            "login": "etl",
            "password": "hunter2-secret",
            "schema": "dw",
            "extra": {"sslmode": "require", "api_token": "tok-123"},
        }
        created = await client.post("/api/v2/connections", json=body)
        assert created.status_code == 201, created.text
        assert "hunter2-secret" not in created.text and "tok-123" not in created.text
        assert created.json()["has_password"] is True
        assert created.json()["extra"] == {"sslmode": "require", "api_token": "***"}
        assert (await client.post("/api/v2/connections", json=body)).status_code == 409
        engine = create_engine(sync_url(database_url))
        with engine.connect() as conn:
            stored = conn.execute(text("select password, extra from connection")).one()
        engine.dispose()
        assert stored[0] and "hunter2" not in stored[0] and "tok-123" not in stored[1]
        # Sending the masked value back keeps the stored secret.
        patched = await client.patch(
            "/api/v2/connections/warehouse",
            json={"host": "db2.internal", "extra": {"sslmode": "disable", "api_token": "***"}},
        )
        assert patched.status_code == 200 and patched.json()["host"] == "db2.internal"
        listed = await client.get("/api/v2/connections")
        assert listed.json()["total_entries"] == 1
        assert (await client.get("/api/v2/connections/nope")).status_code == 404
        assert (await client.delete("/api/v2/connections/warehouse")).status_code == 204
        assert (await client.get("/api/v2/connections/warehouse")).status_code == 404


@pytest.mark.parametrize(
    "body, status",
    [
        ({"uri": "not a uri"}, 422),
        ({"uri": "postgres://u:p@host:99999/db"}, 422),
        ({"uri": "postgres://h", "conn_type": "postgres"}, 422),
        ({}, 422),
        ({"conn_type": "postgres", "host": "h\x00x"}, 422),
        ({"conn_type": "postgres", "timeout": 100000}, 422),
        ({"conn_type": "postgres", "queue": "bad queue!"}, 422),
        (
            {
                "conn_type": "postgres",
                "extra": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
            },
            422,
        ),
        ({"conn_type": "postgres", "surprise": 1}, 422),
        ({"connection_id": "missing"}, 404),
        ({"uri": "tcp://h:1", "commit_on_success": True}, 422),
    ],
)
async def test_bad_test_requests_get_clear_errors_and_store_nothing(stack, body, status) -> None:
    async with stack.client() as client:
        response = await client.post("/api/v2/connections/test", json=body)
        assert response.status_code == status, response.text
        assert response.json()["detail"]
        assert (await client.get("/api/v2/connections/test")).json()["total_entries"] == 0


async def test_oversized_body_is_413(stack) -> None:
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/connections",
            json={"connection_id": "x", "conn_type": "http", "description": "x" * 2_000_000},
        )
        assert response.status_code == 413


async def test_public_api_needs_the_token(stack) -> None:
    async with stack.client(token="wrong") as client:
        for method, path in [
            ("GET", "/api/v2/connections"),
            ("POST", "/api/v2/connections/test"),
            ("GET", "/api/v2/jobs"),
        ]:
            assert (await client.request(method, path, json={})).status_code == 401
        assert (await client.get("/health")).status_code == 200


@ALL_DATABASES
async def test_one_active_test_per_connection(stack) -> None:
    queue = await stack.serve_queue()
    async with stack.client() as client:
        await client.post(
            "/api/v2/connections",
            json={"connection_id": "svc", "conn_type": "tcp", "host": "127.0.0.1", "port": stack.api.port},
        )
        first = await client.post("/api/v2/connections/test", json={"connection_id": "svc", "queue": queue})
        assert first.status_code == 202
        second = await client.post("/api/v2/connections/test", json={"connection_id": "svc", "queue": queue})
        assert second.status_code == 409
        assert first.json()["id"] in second.json()["detail"]
        assert (await wait_terminal(client, first.json()["id"]))["state"] == "success"
        # A finished test frees the connection.
        third = await client.post("/api/v2/connections/test", json={"connection_id": "svc", "queue": queue})
        assert third.status_code == 202
        assert (await wait_terminal(client, third.json()["id"]))["state"] == "success"


@ALL_DATABASES
async def test_commit_on_success_writes_only_successful_connections(stack) -> None:
    queue = await stack.serve_queue()
    async with stack.client() as client:
        good = await client.post(
            "/api/v2/connections/test",
            json={
                "uri": f"tcp://user:pw@127.0.0.1:{stack.api.port}",
                "connection_id": "new-svc",
                "commit_on_success": True,
                "queue": queue,
            },
        )
        assert (await wait_terminal(client, good.json()["id"]))["state"] == "success"
        saved = await client.get("/api/v2/connections/new-svc")
        assert (
            saved.status_code == 200
            and saved.json()["port"] == stack.api.port
            and saved.json()["has_password"]
        )

        bad = await client.post(
            "/api/v2/connections/test",
            json={
                "uri": "tcp://127.0.0.1:1",
                "connection_id": "broken-svc",
                "commit_on_success": True,
                "queue": queue,
            },
        )
        assert (await wait_terminal(client, bad.json()["id"]))["state"] == "failed"
        assert (await client.get("/api/v2/connections/broken-svc")).status_code == 404
