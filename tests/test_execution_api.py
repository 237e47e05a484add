"""The Execution API: authentication and scope on every route, versioning, the checked-in OpenAPI."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from airlock.version import EXECUTION_API_VERSION_HEADER, EXECUTION_API_VERSIONS
from api.core.config import Settings
from api.core.security import (
    WORKLOAD_SCOPE,
    mint_task_instance_token,
    mint_trigger_token,
    mint_worker_token,
    mint_workload_token,
)
from api.execution.app import OPENAPI_DIR, create_execution_app, openapi_document
from tests.hostile.conftest import seed
from tests.reliability import record
from tests.stack import unique


def test_checked_in_openapi_matches_code() -> None:
    app = create_execution_app()
    for version in EXECUTION_API_VERSIONS:
        path = OPENAPI_DIR / f"v{version}.json"
        assert path.exists(), f"run `make openapi` to write {path.name}"
        assert json.loads(path.read_text()) == openapi_document(app, version), (
            f"{path.name} drifted from the code: run `make openapi` (and add a new version for a breaking change)"
        )


def _routes(version: str) -> list[tuple[str, str]]:
    document = json.loads((OPENAPI_DIR / f"v{version}.json").read_text())
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


# The credential each route family takes. A route outside these families fails the matrix loudly:
# whoever adds one says here which token it takes.
FAMILIES = {
    "/connection-tests/": "connection-test",
    "/triggers/": "trigger",
    "/task-instances/": "task-instance",
    "/jobs": "worker",
}

# Valid bodies, so that a route that forgot its check would answer 2xx (and fail the test), not 422.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/connection-tests/{test_id}/state"): {"state": "running", "worker": "w"},
    ("POST", "/jobs"): {"hostname": "h", "queues": ["q"]},
    ("POST", "/triggers/{trigger_id}/workload"): {"triggerer": "t"},
    ("POST", "/triggers/{trigger_id}/event"): {"payload": "{}"},
    ("POST", "/triggers/{trigger_id}/failure"): {"error": "boom"},
    ("POST", "/triggers/{trigger_id}/logs"): {
        "lines": [{"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": "m"}]
    },
    ("PATCH", "/task-instances/{task_instance_id}/state"): {
        "state": "deferred",
        "trigger": {"classpath": "activities.triggers.time.TimeDeltaTrigger", "kwargs": {"delta": 60}},
        "next_method": "resume",
    },
}


def _family(path: str) -> str:
    for prefix, kind in FAMILIES.items():
        if path.startswith(prefix):
            return kind
    raise AssertionError(f"route {path} is in no credential family: add it to FAMILIES")


def _token(settings: Settings, kind: str, resource_id: str, ttl: float = 300) -> str:
    if kind == "connection-test":
        return mint_workload_token(settings, resource_id, ttl)
    if kind == "trigger":
        return mint_trigger_token(settings, resource_id, ttl)
    if kind == "task-instance":
        return mint_task_instance_token(settings, resource_id, ttl)
    return mint_worker_token(settings, resource_id, ttl)


def _forged(claims: dict[str, Any], key: str | None = "not-the-key-not-the-key-not-the-key!") -> str:
    now = int(time.time())
    body = {"iss": "airlock", "iat": now, "exp": now + 300, **claims}
    if key is None:
        return jwt.encode(body, "", algorithm="none")
    return jwt.encode(body, key, algorithm="HS256")


def _matrix(
    settings: Settings, admin_token: str, kind: str, resource_id: str, owner: str
) -> dict[str, tuple[str | None, int]]:
    """Every credential a route must refuse, with the status it must refuse it with."""
    subject = f"{kind}:{resource_id}"
    scope = {"connection-test": WORKLOAD_SCOPE}.get(kind, kind)
    right = {"sub": subject, "scope": scope, "aud": settings.jwt_audience}
    cases: dict[str, tuple[str | None, int]] = {
        "no token": (None, 401),
        "malformed": ("Bearer not.a.jwt", 401),
        "not bearer": (f"Basic {_token(settings, kind, resource_id)}", 401),
        "bad signature": (f"Bearer {_forged(right)}", 401),
        "unsigned (alg none)": (f"Bearer {_forged(right, key=None)}", 401),
        "wrong audience": (f"Bearer {_forged({**right, 'aud': 'elsewhere'}, settings.jwt_secret)}", 401),
        "expired": (f"Bearer {_token(settings, kind, resource_id, ttl=-10)}", 401),
        "public API token": (f"Bearer {admin_token}", 401),
    }
    if resource_id:
        # Same kind, another workload (for a job: another worker's credential).
        other = f"another-{owner}" if kind == "worker" else f"another-{resource_id}"
        cases["other workload"] = (f"Bearer {_token(settings, kind, other)}", 403)
    for other_kind in ("connection-test", "trigger", "task-instance", "worker"):
        if other_kind != kind:
            token = _token(settings, other_kind, owner if other_kind == "worker" else resource_id)
            cases[f"{other_kind} token"] = (f"Bearer {token}", 403)
    return cases


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


async def test_every_route_rejects_bad_credentials(make_stack) -> None:
    """Generated from the checked-in OpenAPI route table of every version (the drift test keeps it equal
    to the code), so a new route cannot be missed: every route x every bad credential -> 401 or 403."""
    seeded = await seed(await make_stack())
    settings = seeded.stack.settings
    ids = seeded.path_ids
    unexpected: list[str] = []
    tried: Counter[tuple[str, str, str]] = Counter()
    async with httpx.AsyncClient(base_url=seeded.stack.api.url + "/execution", timeout=30) as client:
        for version in EXECUTION_API_VERSIONS:
            for method, path in _routes(version):
                kind = _family(path)
                names = re.findall(r"{(\w+)}", path)
                assert all(n in ids for n in names), f"{path}: no real id for {names}"
                url = path.format(**ids)
                primary = next((ids[n] for n in names if n != "connection_id"), "")
                owner = "hostile"  # the worker that registered the seeded job
                cases = _matrix(settings, seeded.stack.secrets.admin_token, kind, primary, owner)
                for name, (authorization, expected) in cases.items():
                    headers = {EXECUTION_API_VERSION_HEADER: version}
                    if authorization:
                        headers["Authorization"] = authorization
                    response = await client.request(
                        method, url, headers=headers, json=BODIES.get((method, path), {})
                    )
                    tried[(version, method, path)] += 1
                    if response.status_code != expected:
                        unexpected.append(f"{version} {method} {path} [{name}]: {response.status_code}")
    routes = {(v, m, p) for v in EXECUTION_API_VERSIONS for m, p in _routes(v)}
    assert set(tried) == routes, "a route of the table was not tried"
    assert min(tried.values()) >= 10, "a route got fewer than the ten bad credentials"
    record(
        "auth matrix (Execution API)",
        sum(tried.values()),
        f"{len(unexpected)} unexpected answers",
        f"{len(routes)} routes over {len(EXECUTION_API_VERSIONS)} versions, "
        f"{min(tried.values())}-{max(tried.values())} bad credentials each",
    )
    assert not unexpected, "\n".join(unexpected)
    # Nothing a refused call could have changed did change: the seeded rows are as they were.
    async with seeded.stack.client() as admin:
        trigger = (await admin.get(f"/api/v2/triggers/{seeded.trigger_id}")).json()
        ti = (await admin.get(f"/api/v2/task-instances/{seeded.task_instance_id}")).json()
        test = (await admin.get(f"/api/v2/connections/test/{seeded.test_id}")).json()
    assert trigger["state"] == "scheduled" and trigger["event_payload"] is None and trigger["failure"] is None
    assert ti["state"] == "running" and ti["trigger_id"] is None
    assert test["worker"] is None


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
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=b)).status_code == 403
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
