"""The Execution API: authentication and scope on every route, versioning, the checked-in OpenAPI."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from airlock.version import EXECUTION_API_VERSION_HEADER, EXECUTION_API_VERSIONS
from api.core.security import (
    mint,
    mint_task_instance_token,
    mint_trigger_token,
    mint_worker_token,
    mint_workload_token,
)
from api.execution.app import OPENAPI_DIR, create_execution_app, openapi_document
from tests.stack import unique


def test_checked_in_openapi_matches_code() -> None:
    app = create_execution_app()
    for version in EXECUTION_API_VERSIONS:
        path = OPENAPI_DIR / f"v{version}.json"
        assert path.exists(), f"run `make openapi` to write {path.name}"
        assert json.loads(path.read_text()) == openapi_document(app, version), (
            f"{path.name} drifted from the code: run `make openapi` (and add a new version for a breaking change)"
        )


def _routes() -> list[tuple[str, str]]:
    document = json.loads((OPENAPI_DIR / f"v{EXECUTION_API_VERSIONS[-1]}.json").read_text())
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


IDS = {
    "test_id": "t-1",
    "job_id": "j-1",
    "trigger_id": "g-1",
    "task_instance_id": "i-1",
    "connection_id": "c-1",
}


def _concrete(path: str) -> str:
    return path.format(**IDS)


def _scoped_tokens(settings, path: str) -> dict[str, str]:
    """For a route: a valid token of the right kind for another resource, and one of a wrong kind."""
    workload = mint_workload_token(settings, IDS["test_id"], 60)
    if path.startswith("/connection-tests"):
        return {
            "other workload": mint_workload_token(settings, "another", 60),
            "wrong kind": mint_worker_token(settings, "w"),
        }
    if path.startswith("/triggers"):
        return {"other workload": mint_trigger_token(settings, "another", 60), "wrong kind": workload}
    if path.startswith("/task-instances"):
        return {"other workload": mint_task_instance_token(settings, "another"), "wrong kind": workload}
    return {"wrong kind": workload}


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


async def test_every_route_rejects_bad_credentials(stack) -> None:
    """Generated from the OpenAPI route table, so a new route cannot be missed."""
    settings = stack.settings
    test_id = IDS["test_id"]
    expired = mint(settings, subject=f"connection-test:{test_id}", scope="connection-test", ttl_seconds=-10)
    forged = jwt.encode(
        {
            "sub": f"connection-test:{test_id}",
            "scope": "connection-test",
            "aud": settings.jwt_audience,
            "iss": "airlock",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        "not-the-key-not-the-key-not-the-key!",
        algorithm="HS256",
    )
    routes = _routes()
    assert len(routes) >= 11
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution") as client:
        for method, path in routes:
            url = _concrete(path)
            cases = {
                "none": None,
                "malformed": "Bearer not.a.jwt",
                "forged": f"Bearer {forged}",
                "expired": f"Bearer {expired}",
                "admin-token": f"Bearer {stack.secrets.admin_token}",
            }
            for name, header in cases.items():
                headers = {EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
                if header:
                    headers["Authorization"] = header
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, name, response.status_code)
            scoped = _scoped_tokens(settings, path)
            for name, token in scoped.items():
                headers = {
                    EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1],
                    "Authorization": f"Bearer {token}",
                }
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code == 403, (method, path, name, response.status_code)


async def test_workload_token_reads_only_its_own_test(stack) -> None:
    async with stack.client() as admin:
        ids = []
        for _ in range(2):
            r = await admin.post(
                "/api/v2/connections/test",
                json={"uri": "postgres://alice:s3cret@127.0.0.1:1/db", "queue": unique("q")},
            )
            ids.append(r.json()["id"])
    token_a = mint_workload_token(stack.settings, ids[0], 60)
    headers = {"Authorization": f"Bearer {token_a}", EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution", headers=headers) as client:
        mine = await client.get(f"/connection-tests/{ids[0]}/connection")
        assert mine.status_code == 200
        assert mine.json()["password"] == "s3cret" and mine.json()["login"] == "alice"
        assert (await client.get(f"/connection-tests/{ids[1]}/connection")).status_code == 403


async def test_unknown_version_is_refused(stack) -> None:
    token = mint_worker_token(stack.settings, "w")
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution") as client:
        response = await client.post(
            "/jobs",
            headers={"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: "1999-01-01"},
            json={"hostname": "h", "queues": ["q"]},
        )
    assert response.status_code in (400, 404, 422)


async def test_jobs_belong_to_their_worker(stack) -> None:
    headers = {EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
    a = {"Authorization": f"Bearer {mint_worker_token(stack.settings, 'a')}", **headers}
    b = {"Authorization": f"Bearer {mint_worker_token(stack.settings, 'b')}", **headers}
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution") as client:
        job = (await client.post("/jobs", headers=a, json={"hostname": "h", "queues": ["q"]})).json()["id"]
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=a)).status_code == 204
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=b)).status_code == 404
        assert (await client.post(f"/jobs/{job}/complete", headers=a)).status_code == 204
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=a)).status_code == 409


def test_execution_routes_all_authenticate() -> None:
    """Every route of the app depends on the bearer check (belt and braces with the matrix above)."""
    app = create_execution_app()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and not route.path.startswith(
            ("/openapi", "/docs", "/redoc", "/changelog")
        ):
            calls = {d.call.__name__ for d in _walk(route.dependant)}
            assert "authenticate" in calls, route.path


def _walk(dependant):
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)
