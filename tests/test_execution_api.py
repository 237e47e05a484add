"""The Execution API: authentication and scope on every route, versioning, the checked-in OpenAPI."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from airlock.version import EXECUTION_API_VERSION_HEADER, EXECUTION_API_VERSIONS
from api.core.config import Settings
from api.core.security import (
    WORKER_CLAIM,
    WORKLOAD_SCOPE,
    mint_task_instance_token,
    mint_trigger_token,
    mint_workload_token,
)
from api.execution.app import OPENAPI_DIR, create_execution_app, openapi_document
from api.services.workers import split_credential
from tests import secret_scan
from tests.hostile.conftest import seed
from tests.reliability import record
from tests.stack import Stack, unique


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
# whoever adds one says here which credential it takes. Claims take the worker's own credential.
ROUTES = {
    "/connection-tests/{test_id}/claim": "worker",
    "/triggers/{trigger_id}/workload": "triggerer",
    "/triggers/held": "triggerer",
    "/triggers/events": "triggerer",
}
FAMILIES = {
    "/connection-tests/": "connection-test",
    "/triggers/": "trigger",
    "/task-instances/": "task-instance",
    "/jobs": "worker",
}
KINDS = ("connection-test", "trigger", "task-instance", "worker", "triggerer")

# Valid bodies, so that a route that forgot its check would answer 2xx (and fail the test), not 422.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/connection-tests/{test_id}/state"): {"state": "running", "worker": "w"},
    ("POST", "/connection-tests/{test_id}/claim"): {"worker": "w", "job_id": None},
    ("POST", "/jobs"): {"hostname": "h", "queues": ["q"]},
    ("POST", "/triggers/{trigger_id}/workload"): {"triggerer": "t"},
    # Ids in braces are the seeded rows' (filled in at run time).
    ("POST", "/triggers/held"): {"job_id": "{job_id}", "trigger_ids": ["{trigger_id}"]},
    ("POST", "/triggers/events"): {"events": [{"trigger_id": "{trigger_id}", "payload": "{}"}]},
    ("POST", "/triggers/{trigger_id}/event"): {"payload": "{}"},
    ("POST", "/triggers/{trigger_id}/failure"): {"error": "boom"},
    ("POST", "/triggers/{trigger_id}/logs"): {
        "lines": [{"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": "m"}]
    },
    ("PATCH", "/task-instances/{task_instance_id}/state"): {
        "state": "deferred",
        "trigger": {
            "classpath": "activities.triggers.time.TimeDeltaTrigger",
            "kwargs": {"delta": 60},
            "queue": "q",
        },
        "next_method": "resume",
    },
}


def _with_ids(body: dict[str, Any], ids: dict[str, str]) -> Any:
    text = json.dumps(body)
    for name, value in ids.items():
        text = text.replace("{" + name + "}", value)
    return json.loads(text)


def _refused(response: httpx.Response, expected: int) -> bool:
    """Refused with ``expected``; a batch of events answers each event, and every one is refused so."""
    if response.status_code == 200 and "outcomes" in (body := response.json()):
        return all(outcome["status_code"] == expected for outcome in body["outcomes"])
    return response.status_code == expected


def _family(path: str) -> str:
    if path in ROUTES:
        return ROUTES[path]
    for prefix, kind in FAMILIES.items():
        if path.startswith(prefix):
            return kind
    raise AssertionError(f"route {path} is in no credential family: add it to FAMILIES")


@dataclass
class Credentials:
    """The seeded worker and triggerer (they hold the seeded test and trigger; the worker registered
    the seeded job), and provisioned credentials that must not pass: another worker and another
    triggerer (of other queues), a revoked worker and an expired one."""

    settings: Settings
    admin_token: str
    worker: str
    worker_name: str
    triggerer: str
    triggerer_name: str
    other_worker: str
    other_worker_name: str
    other_triggerer: str
    revoked: str
    revoked_name: str
    expired: str

    def token(self, kind: str, resource_id: str, ttl: float = 300, holder: str | None = None) -> str:
        """The right credential of ``kind`` for ``resource_id``: a workload token handed to the worker
        holding it (or to ``holder``), or the seeded worker's or triggerer's own credential."""
        if kind == "connection-test":
            return mint_workload_token(self.settings, resource_id, holder or self.worker_name, ttl)
        if kind == "trigger":
            return mint_trigger_token(self.settings, resource_id, holder or self.triggerer_name, ttl)
        if kind == "task-instance":
            return mint_task_instance_token(self.settings, resource_id, ttl)
        return self.triggerer if kind == "triggerer" else self.worker


async def _credentials(stack: Stack, seeded: Any) -> Credentials:
    other_worker = (await stack.provision("other", [unique("elsewhere")]))["AIRLOCK_WORKER_TOKEN"]
    other_triggerer = (await stack.provision("other-trig", [unique("elsewhere")], triggerer=True))[
        "AIRLOCK_WORKER_TOKEN"
    ]
    # Provisioned for the seeded queues, then revoked; and one that expired (7 ms of validity).
    revoked = (await stack.provision("revoked", ["q", stack.settings.default_queue]))["AIRLOCK_WORKER_TOKEN"]
    async with stack.client() as admin:
        response = await admin.post(
            "/api/v2/workers",
            json={"name": unique("expired"), "queues": ["q"], "expires_in_days": 1e-7},
        )
        assert response.status_code == 201, response.text
        expired = response.json()["env"]["AIRLOCK_WORKER_TOKEN"]
        secret_scan.register(expired, secret_scan.TOKEN)
        assert (await admin.delete(f"/api/v2/workers/{_name(revoked)}")).status_code == 204
    await asyncio.sleep(0.05)
    return Credentials(
        settings=stack.settings,
        admin_token=stack.secrets.admin_token,
        worker=seeded.worker_token,
        worker_name=seeded.worker_name,
        triggerer=seeded.triggerer_token,
        triggerer_name=seeded.triggerer_name,
        other_worker=other_worker,
        other_worker_name=_name(other_worker),
        other_triggerer=other_triggerer,
        revoked=revoked,
        revoked_name=_name(revoked),
        expired=expired,
    )


def _name(credential: str) -> str:
    parts = split_credential(credential)
    assert parts is not None
    return parts[0]


def _forged(claims: dict[str, Any], key: str | None = "not-the-key-not-the-key-not-the-key!") -> str:
    now = int(time.time())
    body = {"iss": "airlock", "iat": now, "exp": now + 300, **claims}
    if key is None:
        return jwt.encode(body, "", algorithm="none")
    return jwt.encode(body, key, algorithm="HS256")


def _matrix(creds: Credentials, kind: str, resource_id: str) -> dict[str, tuple[str | None, int]]:
    """Every credential a route must refuse, with the status it must refuse it with."""
    settings = creds.settings
    worker_kind = kind in ("worker", "triggerer")
    if worker_kind:
        # A worker JWT as releases before provisioned workers minted them.
        right = {"sub": f"worker:{creds.worker_name}", "scope": "worker", "aud": settings.jwt_audience}
    else:
        scope = {"connection-test": WORKLOAD_SCOPE}.get(kind, kind)
        right = {"sub": f"{kind}:{resource_id}", "scope": scope, "aud": settings.jwt_audience}
        if kind in ("connection-test", "trigger"):
            right[WORKER_CLAIM] = creds.worker_name if kind == "connection-test" else creds.triggerer_name
    cases: dict[str, tuple[str | None, int]] = {
        "no token": (None, 401),
        "malformed": ("Bearer not.a.jwt", 401),
        "not bearer": (f"Basic {creds.token(kind, resource_id)}", 401),
        "bad signature": (f"Bearer {_forged(right)}", 401),
        "unsigned (alg none)": (f"Bearer {_forged(right, key=None)}", 401),
        "wrong audience": (f"Bearer {_forged({**right, 'aud': 'elsewhere'}, settings.jwt_secret)}", 401),
        "public API token": (f"Bearer {creds.admin_token}", 401),
    }
    if worker_kind:
        name, _, _ = creds.token(kind, resource_id).removeprefix("aw1.").partition(".")
        cases["expired"] = (f"Bearer {creds.expired}", 401)
        cases["revoked"] = (f"Bearer {creds.revoked}", 401)
        cases["forged secret"] = (f"Bearer aw1.{name}.{'A' * 43}", 401)
        cases["worker JWT of an earlier release"] = (f"Bearer {_forged(right, settings.jwt_secret)}", 401)
        # Another worker's credential (of other queues, in the same role): not its job, test, trigger
        # or queue.
        other = creds.other_triggerer if kind == "triggerer" else creds.other_worker
        cases["another worker"] = (f"Bearer {other}", 403)
    else:
        cases["expired"] = (f"Bearer {creds.token(kind, resource_id, ttl=-10)}", 401)
    if resource_id and not worker_kind:
        # Same kind, another workload.
        cases["other workload"] = (f"Bearer {creds.token(kind, f'another-{resource_id}')}", 403)
    if resource_id and kind in ("connection-test", "trigger"):
        # This workload's token, handed to a worker that does not hold it, or to a revoked one.
        other_holder = creds.token(kind, resource_id, holder=creds.other_worker_name)
        cases["handed to another worker"] = (f"Bearer {other_holder}", 403)
        revoked_holder = creds.token(kind, resource_id, holder=creds.revoked_name)
        cases["handed to a revoked worker"] = (f"Bearer {revoked_holder}", 401)
    for other_kind in KINDS:
        if other_kind != kind:
            cases[f"{other_kind} credential"] = (f"Bearer {creds.token(other_kind, resource_id)}", 403)
    return cases


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


async def test_every_route_rejects_bad_credentials(make_stack) -> None:
    """Generated from the checked-in OpenAPI route table of every version (the drift test keeps it equal
    to the code), so a new route cannot be missed: every route x every bad credential -> 401 or 403."""
    seeded = await seed(await make_stack())
    creds = await _credentials(seeded.stack, seeded)
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
                cases = _matrix(creds, kind, primary)
                for name, (authorization, expected) in cases.items():
                    headers = {EXECUTION_API_VERSION_HEADER: version}
                    if authorization:
                        headers["Authorization"] = authorization
                    body = _with_ids(BODIES.get((method, path), {}), ids)
                    response = await client.request(method, url, headers=headers, json=body)
                    tried[(version, method, path)] += 1
                    if not _refused(response, expected):
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
    assert trigger["triggerer"] is None
    assert ti["state"] == "running" and ti["trigger_id"] is None
    assert test["worker"] is None


async def test_workload_token_reads_only_its_own_test(stack) -> None:
    queues = [unique("q"), unique("q")]
    worker = (await stack.provision("reader", queues))["AIRLOCK_WORKER_TOKEN"]
    headers = {EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
    async with (
        stack.client() as admin,
        httpx.AsyncClient(base_url=stack.api.url + "/execution", headers=headers) as client,
    ):
        # A live job on both queues (nothing polls them): the tests wait, dispatched, to be claimed.
        job = await client.post(
            "/jobs",
            headers={"Authorization": f"Bearer {worker}"},
            json={"hostname": "h", "queues": queues, "conn_types": ["postgres"]},
        )
        assert job.status_code == 201, job.text
        ids = []
        for queue in queues:
            r = await admin.post(
                "/api/v2/connections/test",
                json={"uri": "postgres://alice:s3cret@127.0.0.1:1/db", "queue": queue},
            )
            ids.append(r.json()["id"])
        for _ in range(300):
            if (await admin.get(f"/api/v2/connections/test/{ids[0]}")).json()["state"] != "pending":
                break
            await asyncio.sleep(0.1)
        claimed = await client.post(
            f"/connection-tests/{ids[0]}/claim",
            headers={"Authorization": f"Bearer {worker}"},
            json={"worker": "h:1", "job_id": job.json()["id"]},
        )
        assert claimed.status_code == 200, claimed.text
        token_a = {"Authorization": f"Bearer {claimed.json()['token']}"}
        mine = await client.get(f"/connection-tests/{ids[0]}/connection", headers=token_a)
        assert mine.status_code == 200
        assert mine.json()["password"] == "s3cret" and mine.json()["login"] == "alice"
        assert (
            await client.get(f"/connection-tests/{ids[1]}/connection", headers=token_a)
        ).status_code == 403


async def test_unknown_version_is_refused(stack) -> None:
    token = (await stack.provision("w", ["q"]))["AIRLOCK_WORKER_TOKEN"]
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution") as client:
        response = await client.post(
            "/jobs",
            headers={"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: "1999-01-01"},
            json={"hostname": "h", "queues": ["q"]},
        )
    assert response.status_code in (400, 404, 422)


async def test_jobs_belong_to_their_worker(stack) -> None:
    headers = {EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
    a = {"Authorization": f"Bearer {(await stack.provision('a', ['q']))['AIRLOCK_WORKER_TOKEN']}", **headers}
    b = {"Authorization": f"Bearer {(await stack.provision('b', ['q']))['AIRLOCK_WORKER_TOKEN']}", **headers}
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution") as client:
        job = (await client.post("/jobs", headers=a, json={"hostname": "h", "queues": ["q"]})).json()["id"]
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=a)).status_code == 204
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=b)).status_code == 403
        assert (await client.post(f"/jobs/{job}/complete", headers=a)).status_code == 204
        assert (await client.post(f"/jobs/{job}/heartbeat", headers=a)).status_code == 409


@dataclass
class Holders:
    """Two triggerers of one queue, each with a job, and triggers claimed by hand (nothing polls the
    queue): ``mine`` holds ``held[:-1]``, ``other`` holds ``held[-1]``."""

    queue: str
    auth: dict[str, dict[str, str]]
    jobs: dict[str, str]
    held: list[str]
    task_instances: dict[str, str]  # trigger id -> the task instance deferring on it


async def _holders(stack: Stack, client: httpx.AsyncClient, admin: httpx.AsyncClient, n: int) -> Holders:
    queue = unique("held")
    auth, jobs = {}, {}
    for name in ("mine", "other"):
        token = (await stack.provision(name, [queue], triggerer=True))["AIRLOCK_WORKER_TOKEN"]
        auth[name] = {"Authorization": f"Bearer {token}"}
        job = await client.post(
            "/jobs", headers=auth[name], json={"kind": "triggerer", "hostname": name, "queues": [queue]}
        )
        assert job.status_code == 201, job.text
        jobs[name] = job.json()["id"]
    held, task_instances = [], {}
    for i in range(n):
        created = await admin.post(
            "/api/v2/task-instances",
            json={
                "dag_id": "d",
                "run_id": unique("run"),
                "task_id": "t",
                "defer": {
                    "classpath": "activities.triggers.file.FileTrigger",
                    "kwargs": {"filepath": "/nonexistent"},
                    "queue": queue,
                    "next_method": "resume",
                },
            },
        )
        assert created.status_code == 201, created.text
        trigger_id = created.json()["trigger_id"]
        name = "other" if i == n - 1 else "mine"
        claim = await client.post(
            f"/triggers/{trigger_id}/workload",
            headers=auth[name],
            json={"job_id": jobs[name], "triggerer": name},
        )
        assert claim.status_code == 200, claim.text
        held.append(trigger_id)
        task_instances[trigger_id] = created.json()["id"]
    return Holders(queue, auth, jobs, held, task_instances)


def _execution_client(stack: Stack) -> httpx.AsyncClient:
    headers = {EXECUTION_API_VERSION_HEADER: EXECUTION_API_VERSIONS[-1]}
    return httpx.AsyncClient(base_url=stack.api.url + "/execution", headers=headers)


async def test_triggerer_is_told_which_of_its_triggers_to_stop(stack) -> None:
    """``POST /triggers/held``: of what a triggerer's job runs, those cancelled, claimed since by another
    job or gone are to stop; its own running ones are not; another worker's job is refused."""
    async with stack.client() as admin, _execution_client(stack) as client:
        h = await _holders(stack, client, admin, 3)
        kept, cancelled, moved = h.held
        assert (await admin.delete(f"/api/v2/triggers/{cancelled}")).status_code == 200
        held = {"job_id": h.jobs["mine"], "trigger_ids": [kept, cancelled, moved, "no-such-trigger"]}
        answer = await client.post("/triggers/held", headers=h.auth["mine"], json=held)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"trigger_ids": [cancelled, moved, "no-such-trigger"]}
        # A job is its worker's own: another triggerer cannot ask for it, nor a missing job be asked for.
        assert (await client.post("/triggers/held", headers=h.auth["other"], json=held)).status_code == 403
        missing = {**held, "job_id": "no-such-job"}
        assert (await client.post("/triggers/held", headers=h.auth["mine"], json=missing)).status_code == 404


async def test_batched_events_each_get_their_own_answer(stack) -> None:
    """``POST /triggers/events``: each event is answered as its own request would be, with its log
    lines stored before it; a refused one writes nothing, a repeat changes nothing."""
    async with stack.client() as admin, _execution_client(stack) as client:
        h = await _holders(stack, client, admin, 4)
        fires, repeats, ended, elsewhere = h.held
        assert (await admin.delete(f"/api/v2/triggers/{ended}")).status_code == 200

        def event(trigger_id: str, message: str) -> dict[str, Any]:
            line = {"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": message}
            return {"trigger_id": trigger_id, "payload": json.dumps({"by": message}), "lines": [line]}

        batch = {
            "job_id": h.jobs["mine"],
            "triggerer": "mine",
            "events": [
                event(fires, "first"),
                event(repeats, "first"),
                event(repeats, "second"),
                event(ended, "late"),
                event(elsewhere, "not mine"),
                event("no-such-trigger", "unknown"),
            ],
        }
        answer = await client.post("/triggers/events", headers=h.auth["mine"], json=batch)
        assert answer.status_code == 200, answer.text
        statuses = [(o["trigger_id"], o["status_code"]) for o in answer.json()["outcomes"]]
        assert statuses == [
            (fires, 204),
            (repeats, 204),
            (repeats, 204),
            (ended, 409),
            (elsewhere, 403),
            ("no-such-trigger", 404),
        ]
        rows = {t: (await admin.get(f"/api/v2/triggers/{t}")).json() for t in h.held}
        logs = {
            t: [line["message"] for line in (await admin.get(f"/api/v2/triggers/{t}/logs")).json()["lines"]]
            for t in h.held
        }
        resumed = (await admin.get(f"/api/v2/task-instances/{h.task_instances[fires]}")).json()
    assert rows[fires]["state"] == rows[repeats]["state"] == "fired"
    assert json.loads(rows[repeats]["event_payload"]) == {"by": "first"}, "the first event wins"
    assert logs[fires] == logs[repeats] == ["first"]
    assert rows[ended]["state"] == "cancelled" and logs[ended] == []
    assert rows[elsewhere]["state"] == "running" and logs[elsewhere] == []
    assert resumed["state"] == "scheduled" and json.loads(resumed["next_kwargs"])["event"] == {"by": "first"}


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
