"""The public API: connections CRUD, validation at the edge, one active test per connection on every
database, commit on success."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import create_engine, text
from starlette.routing import Mount

from api.console.web import ASSETS_PATH as CONSOLE_ASSETS
from api.core.security import mint_task_instance_token
from api.db.session import sync_url
from api.docs import ASSETS_PATH as DOCS_ASSETS
from tests import secret_scan
from tests.reliability import record
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


# Reachable without the admin token, and nothing else: liveness, readiness and the API's own documentation.
OPEN_ROUTES = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
}
# The Temporal UI cannot send a bearer token: this route's secret (the codec token) is in its path.
PATH_TOKEN_ROUTES = {("POST", "/codec/ui/{codec_token}/decode")}
# Mounted apps authenticate on their own (the Execution API: its matrix is in test_execution_api.py).
MOUNTS = {"/execution", DOCS_ASSETS, CONSOLE_ASSETS}
# Swagger UI's and ReDoc's files (api/docs.py), the console's stylesheet: open like the pages that load
# them, files only.
OPEN_MOUNTS = {
    DOCS_ASSETS: ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"),
    CONSOLE_ASSETS: ("console.css",),
}
# The console signs in with a form and keeps a session cookie: no bearer token opens one of its pages.
CONSOLE_SIGN_IN = {("GET", "/ui/login"), ("POST", "/ui/login")}
# Prometheus's: its own token (AIRLOCK_METRICS_TOKEN) opens it and nothing else; the admin token does not.
METRICS_ROUTE = ("GET", "/metrics")


async def test_no_public_route_is_reachable_without_the_token(make_stack) -> None:
    """Generated from the running app's route table, so a new route cannot be missed."""
    metrics_token = secret_scan.register(f"metrics_{secrets.token_urlsafe(24)}", secret_scan.TOKEN)
    stack = await make_stack(metrics_token=metrics_token)
    app = stack.api.server.config.app
    routes: set[tuple[str, str]] = set()
    mounts: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            mounts.add(str(route.path))
            continue
        routes.update((method, str(route.path)) for method in route.methods or () if method != "HEAD")
    assert mounts == MOUNTS, "a new mounted app: say how it authenticates"
    assert OPEN_ROUTES | PATH_TOKEN_ROUTES | {METRICS_ROUTE} <= routes, (
        "an exempt route no longer exists: update the lists"
    )
    console = {(method, path) for method, path in routes if path == "/" or path.startswith("/ui")}
    assert CONSOLE_SIGN_IN <= console
    guarded = sorted(routes - OPEN_ROUTES - PATH_TOKEN_ROUTES - console - {METRICS_ROUTE})
    assert {p for _, p in guarded if p.startswith("/api/v2")} and {"/codec/encode", "/codec/decode"} <= {
        p for _, p in guarded
    }
    worker = (await stack.provision("w", ["q"]))["AIRLOCK_WORKER_TOKEN"]
    execution_jwt = mint_task_instance_token(stack.settings, "x", 300)
    credentials = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer wrong"},
        "not bearer": {"Authorization": f"Basic {stack.secrets.admin_token}"},
        "an Execution API token": {"Authorization": f"Bearer {execution_jwt}"},
        "a worker's credential": {"Authorization": f"Bearer {worker}"},
        "the codec token": {"Authorization": f"Bearer {stack.secrets.codec_token}"},
        "the metrics token": {"Authorization": f"Bearer {metrics_token}"},
    }
    refused = 0
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=30) as client:
        for method, path in guarded:
            url = re.sub(r"{\w+}", "x", path)
            for name, headers in credentials.items():
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, name, response.status_code)
                assert response.headers.get("www-authenticate") == "Bearer", (method, path, name)
                refused += 1
        for token in ("wrong", stack.secrets.admin_token):
            response = await client.post(f"/codec/ui/{token}/decode", json={"payloads": []})
            assert response.status_code == 401, response.text
            refused += 1
        admin = {"Authorization": f"Bearer {stack.secrets.admin_token}"}
        method, path = METRICS_ROUTE
        for name, headers in {**credentials, "the admin token": admin}.items():
            response = await client.request(method, path, headers=headers)
            expected = 200 if name == "the metrics token" else 401
            assert response.status_code == expected, (path, name, response.status_code)
            if expected == 401:
                assert response.headers.get("www-authenticate") == "Bearer", (path, name)
                refused += 1
        for method, path in sorted(OPEN_ROUTES):
            assert (await client.request(method, path)).status_code == 200, path
        for method, path in sorted(console - CONSOLE_SIGN_IN):
            for name, headers in {**credentials, "the admin token": admin}.items():
                response = await client.request(method, path, headers=headers, follow_redirects=True)
                assert response.url.path == "/ui/login", (method, path, name, response.status_code)
                refused += 1
        for mount, files in OPEN_MOUNTS.items():
            for name in files:
                assert (await client.get(f"{mount}/{name}")).status_code == 200, (mount, name)
            for outside in ("/", "/..%2f..%2fpyproject.toml", "/../api/main.py", "/nope.js"):
                response = await client.get(f"{mount}{outside}")
                assert response.status_code in (404, 405), (mount, outside, response.status_code)
    record(
        "public API without a token",
        refused,
        "all refused with 401",
        f"{len(guarded)} guarded routes x {len(credentials)} credentials, codec UI path token, /metrics; "
        f"open: {', '.join(sorted(p for _, p in OPEN_ROUTES))}, static files under {', '.join(OPEN_MOUNTS)}; "
        f"{len(console - CONSOLE_SIGN_IN)} console routes lead to its sign-in",
    )


@ALL_DATABASES
async def test_one_active_test_per_connection(stack) -> None:
    queue = await stack.serve_queue()
    async with stack.client() as client:
        created = await client.post(
            "/api/v2/connections",
            json={"connection_id": "svc", "conn_type": "tcp", "host": "127.0.0.1", "port": stack.api.port},
        )
        # A 201 means stored: the next request, at once, finds the connection.
        assert created.status_code == 201, created.text
        first = await client.post("/api/v2/connections/test", json={"connection_id": "svc", "queue": queue})
        assert first.status_code == 202, first.text
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
