"""Hostile input at the edges of both APIs: oversized bodies, event payloads and log batches, JSON nested
ten thousand levels deep, invalid URIs, unknown conn types and trigger classes, NUL bytes and invalid
UTF-8 in every kind of string field (on SQLite and PostgreSQL), and invalid JSON. Each gets a clear 4xx
that says what is wrong and echoes no secret, and nothing is stored: every table is compared, row for
row, before and after."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from airlock.execution import MAX_PAYLOAD_CHARS
from airlock.version import EXECUTION_API_VERSION_HEADER, EXECUTION_API_VERSIONS, LATEST_EXECUTION_API_VERSION
from api.execution.app import OPENAPI_DIR
from tests.hostile.conftest import WAITING_TRIGGER, Seeded
from tests.reliability import record
from tests.stack import unique

SECRET = "pw-limit-s3cret"
TIMEDELTA = "activities.triggers.time.TimeDeltaTrigger"
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
FREE_FORM = {"extra", "kwargs", "next_kwargs"}  # JSON objects of the client's own shape
# Past every limit (extra and kwargs: 8 levels, next_kwargs: 32), up to where a parser recurses out.
DEPTHS = (40, 900, 10_000)


@dataclass
class Endpoint:
    """One route with a valid body: what the hostile variants are made from."""

    api: str  # "public" or "execution"
    method: str
    path: str  # a template: {test_id}, {trigger_id}, ... are filled with the seeded rows' ids
    body: Any
    refused: frozenset[int] = frozenset({422})

    def url(self, seeded: Seeded) -> str:
        return self.path.format(**seeded.path_ids)

    def headers(self, seeded: Seeded) -> dict[str, str]:
        if self.api == "public":
            return {"Authorization": f"Bearer {seeded.stack.secrets.admin_token}"}
        return seeded.execution_headers(LATEST_EXECUTION_API_VERSION, self.path, seeded.path_ids)

    async def send(
        self, seeded: Seeded, client: httpx.AsyncClient, content: bytes | None = None
    ) -> httpx.Response:
        base = "" if self.api == "public" else "/execution"
        payload = content if content is not None else json.dumps(self.body).encode()
        headers = {**self.headers(seeded), "Content-Type": "application/json"}
        return await client.request(self.method, base + self.url(seeded), headers=headers, content=payload)


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "public",
            "POST",
            "/api/v2/connections",
            {
                "connection_id": "probe",
                "conn_type": "postgres",
                "description": "d",
                "host": "h",
                "login": "l",
                "password": SECRET,
                "schema": "s",
                "extra": {"k": "v", "nested": {"k2": ["v2"]}},
            },
        ),
        Endpoint(
            "public",
            "PATCH",
            "/api/v2/connections/{connection_id}",
            {
                "description": "d",
                "host": "h",
                "login": "l",
                "password": SECRET,
                "schema": "s",
                "extra": {"k": "v"},
            },
        ),
        Endpoint(
            "public",
            "POST",
            "/api/v2/connections/test",
            {
                "conn_type": "tcp",
                "host": "h",
                "login": "l",
                "password": SECRET,
                "schema": "s",
                "extra": {"k": "v"},
                "queue": "q",
                "description": "d",
            },
        ),
        Endpoint("public", "POST", "/api/v2/connections/test", {"uri": f"tcp://u:{SECRET}@h:1/s"}),
        Endpoint(
            "public",
            "POST",
            "/api/v2/triggers",
            {"classpath": WAITING_TRIGGER, "kwargs": {"filepath": "/x", "k": ["v"]}, "queue": "q"},
        ),
        Endpoint(
            "public",
            "POST",
            "/api/v2/task-instances",
            {
                "dag_id": "d",
                "run_id": "r",
                "task_id": "t",
                "defer": {
                    "classpath": TIMEDELTA,
                    "kwargs": {"delta": 3600},
                    "queue": "q",
                    "next_method": "resume",
                    "next_kwargs": {"k": "v"},
                },
            },
        ),
        Endpoint(
            "execution",
            "PATCH",
            "/connection-tests/{test_id}/state",
            {"state": "failed", "result_message": "m", "worker": "w"},
        ),
        Endpoint(
            "execution",
            "POST",
            "/jobs",
            {"kind": "worker", "hostname": "h", "queues": ["q"], "conn_types": ["tcp"]},
        ),
        Endpoint(
            "execution",
            "POST",
            "/triggers/{trigger_id}/logs",
            {
                "job_id": "j",
                "triggerer": "t",
                "lines": [{"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": "m"}],
            },
        ),
        Endpoint("execution", "POST", "/triggers/{trigger_id}/workload", {"job_id": "j", "triggerer": "t"}),
        Endpoint(
            "execution",
            "POST",
            "/triggers/{trigger_id}/event",
            {"event_type": "event", "payload": '{"k": "v"}'},
        ),
        Endpoint("execution", "POST", "/triggers/{trigger_id}/failure", {"error": "e", "traceback": "tb"}),
        Endpoint(
            "execution",
            "PATCH",
            "/task-instances/{task_instance_id}/state",
            {
                "state": "deferred",
                "trigger": {"classpath": TIMEDELTA, "kwargs": {"delta": 3600}, "queue": "q"},
                "next_method": "resume",
                "next_kwargs": {"k": "v"},
            },
        ),
    ]


@dataclass
class Leaf:
    """A string in a body: a value, or a key of a free-form object."""

    path: tuple[str | int, ...]
    is_key: bool

    @property
    def field(self) -> str:
        """The model field a refusal must name: the free-form object a leaf sits in, or the leaf itself."""
        names = [p for p in self.path if isinstance(p, str)]
        for name in names:
            if name in FREE_FORM:
                return name
        return names[-1]


def leaves(value: Any, path: tuple[str | int, ...] = (), free: bool = False) -> Iterator[Leaf]:
    if isinstance(value, dict):
        for key, item in value.items():
            if free:
                yield Leaf((*path, key), is_key=True)
            yield from leaves(item, (*path, key), free or key in FREE_FORM)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index), free)
    elif isinstance(value, str):
        yield Leaf(path, is_key=False)


def poisoned(body: Any, leaf: Leaf, poison: str) -> Any:
    """A copy of ``body`` with ``poison`` inside the string at ``leaf``."""
    copy = json.loads(json.dumps(body))
    parent = copy
    for part in leaf.path[:-1]:
        parent = parent[part]
    last = leaf.path[-1]
    if leaf.is_key:
        assert isinstance(last, str)
        parent[last[:1] + poison + last[1:]] = parent.pop(last)
    else:
        value = parent[last]
        parent[last] = value[:1] + poison + value[1:]
    return copy


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def deep_json_text(depth: int) -> str:
    # Built as text: json.dumps itself would hit the recursion limit at this depth.
    return "[" * depth + "]" * depth


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    detail = response.json()["detail"]
    assert detail, response.text
    if isinstance(detail, str):
        return [{"loc": [], "msg": detail}]
    assert isinstance(detail, list)
    return list(detail)


def says(response: httpx.Response, *words: str) -> bool:
    text = " ".join(f"{' '.join(map(str, p.get('loc', [])))} {p['msg']}" for p in problems(response)).lower()
    return all(word.lower() in text for word in words)


def names_field(response: httpx.Response, name: str) -> bool:
    return any(name in map(str, p.get("loc", [])) or name in p["msg"] for p in problems(response))


@dataclass
class Findings:
    cases: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, response: httpx.Response) -> None:
        self.cases += 1
        if SECRET in response.text:
            self.wrong.append(f"{what}: the response echoes the password: {response.text[:300]}")
        elif not ok:
            self.wrong.append(f"{what}: {response.status_code} {response.text[:300]}")


@pytest.fixture
async def seeded(seeded_stack) -> Seeded:
    seeded: Seeded = await seeded_stack()
    return seeded


@pytest.fixture
async def client(seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=seeded.stack.api.url, timeout=60) as client:
        yield client


async def test_oversized_bodies_are_413(seeded: Seeded, client: httpx.AsyncClient) -> None:
    limit = seeded.stack.settings.max_request_bytes
    before = await seeded.snapshot_async()
    findings = Findings()
    for endpoint in endpoints():
        big = json.dumps({"padding": "x" * (limit + 1)}).encode()
        declared = await endpoint.send(seeded, client, big)
        findings.check(
            declared.status_code == 413 and says(declared, str(limit)), f"{endpoint.path} declared", declared
        )

        async def chunks(size: int = len(big)) -> AsyncIterator[bytes]:
            # No Content-Length: the limit must hold while the body streams in.
            for _ in range(size // 65536 + 1):
                yield b"x" * 65536

        streamed = await client.request(
            endpoint.method,
            ("" if endpoint.api == "public" else "/execution") + endpoint.url(seeded),
            headers={**endpoint.headers(seeded), "Content-Type": "application/json"},
            content=chunks(),
        )
        findings.check(
            streamed.status_code == 413 and says(streamed, str(limit)), f"{endpoint.path} chunked", streamed
        )
    assert await seeded.snapshot_async() == before, "a refused request stored something"
    record("oversized bodies (413)", findings.cases, f"{len(findings.wrong)} wrong", f"limit {limit} bytes")
    assert not findings.wrong, "\n".join(findings.wrong)


async def test_oversized_event_payload_and_log_batch(seeded: Seeded, client: httpx.AsyncClient) -> None:
    event = Endpoint("execution", "POST", "/triggers/{trigger_id}/event", {})
    logs = Endpoint("execution", "POST", "/triggers/{trigger_id}/logs", {})
    line = {"timestamp": "2026-01-01T00:00:00Z", "level": "INFO", "message": "m"}
    cases: list[tuple[str, Endpoint, Any, int, tuple[str, ...]]] = [
        (
            "payload one char too long",
            event,
            {"payload": json.dumps("p" * (MAX_PAYLOAD_CHARS - 1))},
            422,
            ("payload", str(MAX_PAYLOAD_CHARS)),
        ),
        ("payload not JSON", event, {"payload": "{not json"}, 422, ("payload", "JSON")),
        ("1001 log lines", logs, {"lines": [line] * 1001}, 422, ("lines", "1000")),
        (
            "a log line of 10 001 chars",
            logs,
            {"lines": [{**line, "message": "m" * 10_001}]},
            422,
            ("message", "10000"),
        ),
        ("a log level of 11 chars", logs, {"lines": [{**line, "level": "L" * 11}]}, 422, ("level", "10")),
        (
            "a log batch over the body limit",
            logs,
            {"lines": [{**line, "message": "m" * 9_000}] * 200},
            413,
            ("bytes",),
        ),
        (
            "a log line from year 1",
            logs,
            {"lines": [{**line, "timestamp": "0001-01-01T00:00:00+14:00"}]},
            422,
            ("timestamp",),
        ),
    ]
    before = await seeded.snapshot_async()
    findings = Findings()
    for name, endpoint, body, status, words in cases:
        response = await endpoint.send(seeded, client, json.dumps(body).encode())
        findings.check(response.status_code == status and says(response, *words), name, response)
    assert await seeded.snapshot_async() == before, "a refused event or log batch stored something"
    # The limits are where they are documented: exactly at them, both are taken.
    at_limit = await logs.send(seeded, client, json.dumps({"lines": [line] * 1000}).encode())
    assert at_limit.status_code == 204, at_limit.text
    largest = json.dumps("p" * (MAX_PAYLOAD_CHARS - 2))
    assert len(largest) == MAX_PAYLOAD_CHARS
    fired = await event.send(seeded, client, json.dumps({"payload": largest}).encode())
    assert fired.status_code == 204, fired.text
    async with seeded.stack.client() as admin:
        trigger = (await admin.get(f"/api/v2/triggers/{seeded.trigger_id}")).json()
        stored = (await admin.get(f"/api/v2/triggers/{seeded.trigger_id}/logs")).json()["lines"]
    assert trigger["state"] == "fired" and trigger["event_payload"] == largest and len(stored) == 1000
    record(
        "oversized event payloads and log batches",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        f"payload limit {MAX_PAYLOAD_CHARS} chars, 1000 lines, 10000 chars a line; at the limits: accepted",
    )
    assert not findings.wrong, "\n".join(findings.wrong)


async def test_deeply_nested_json_is_refused(seeded: Seeded, client: httpx.AsyncClient) -> None:
    """JSON nested up to ten thousand levels, in every free-form field and as a whole body: a 422
    naming the nesting, never a RecursionError turned 500."""
    targets: list[tuple[Endpoint, tuple[str, ...]]] = []
    for endpoint in endpoints():
        for leaf in leaves(endpoint.body):
            free = [p for p in leaf.path if isinstance(p, str) and p in FREE_FORM]
            if free:
                where = leaf.path[: leaf.path.index(free[0]) + 1]
                if (endpoint, where) not in [(e, w) for e, w in targets]:
                    targets.append((endpoint, tuple(map(str, where))))
    assert len(targets) >= 8, targets
    before = await seeded.snapshot_async()
    findings = Findings()
    for endpoint, where in targets:
        for depth in DEPTHS:
            body = json.loads(json.dumps(endpoint.body))
            parent = body
            for part in where[:-1]:
                parent = parent[part]
            marker = "@@DEEP@@"
            parent[where[-1]] = {"deep": marker}
            text = json.dumps(body).replace(
                json.dumps(marker), deep_json_text(depth) if depth > 500 else json.dumps(nested(depth))
            )
            response = await endpoint.send(seeded, client, text.encode())
            findings.check(
                response.status_code == 422 and (says(response, "nested") or says(response, "deep")),
                f"{endpoint.method} {endpoint.path} {'.'.join(where)} at depth {depth}",
                response,
            )
    uri = Endpoint("public", "POST", "/api/v2/connections/test", {})
    for depth in (50, 4_000):
        extra = (
            json.dumps({"k": json.loads(json.dumps(nested(depth)))})
            if depth < 500
            else '{"k":' + deep_json_text(depth) + "}"
        )
        response = await uri.send(
            seeded, client, json.dumps({"uri": f"postgres://h/db?__extra__={extra}"}).encode()
        )
        findings.check(
            response.status_code == 422 and (says(response, "nested") or says(response, "deep")),
            f"uri __extra__ at depth {depth}",
            response,
        )
    event = Endpoint("execution", "POST", "/triggers/{trigger_id}/event", {})
    response = await event.send(seeded, client, json.dumps({"payload": deep_json_text(10_000)}).encode())
    findings.check(
        response.status_code == 422 and says(response, "payload", "nested"),
        "event payload 10000 deep",
        response,
    )
    for endpoint in endpoints()[:1] + endpoints()[-1:]:
        response = await endpoint.send(seeded, client, deep_json_text(10_000).encode())
        findings.check(
            response.status_code == 422 and says(response, "nested"), f"{endpoint.path} whole body", response
        )
    assert await seeded.snapshot_async() == before, "a refused request stored something"
    record(
        "deeply nested JSON",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        f"{len(targets)} free-form fields x depths {', '.join(map(str, DEPTHS))}, URI __extra__, event payload, whole bodies",
    )
    assert not findings.wrong, "\n".join(findings.wrong)


INVALID_URIS = [
    ("not a uri", ("must look like",)),
    (f"postgres://u:{SECRET}@host:99999/db", ("invalid port",)),
    (f"postgres://u:{SECRET}/db", ("invalid port",)),  # no @: the password reads as a port
    (f"postgres://u:{SECRET}@host:port/db", ("invalid port",)),
    ("://host/db", ("no scheme",)),
    (f"postgres://u:{SECRET}@[::1/db", ("cannot be parsed",)),
    (f"postgres://u:{SECRET}@h/db?__extra__=notjson", ("__extra__", "not valid json")),
    (f"postgres://u:{SECRET}@h/db?__extra__=[1]", ("__extra__", "json object")),
    (f"postgres://u:{SECRET}@h/db?__extra__=" + '{"a": NaN}', ("not finite",)),
    (f"postgres://u:{SECRET}@h\x00/db", ("nul",)),
    (f"postgres://u:{SECRET}@h/db?sslmode=\udcff", ("surrogate",)),
    ("postgres://h/" + "d" * 10_001, ("uri", "10000")),
    ("1pg://h/db", ("scheme",)),  # a scheme cannot start with a digit
    ("pg-sql+x://h/db", ("unknown conn_type", "pg_sql+x")),
    (f"nosuchdb://u:{SECRET}@h/db", ("unknown conn_type", "nosuchdb")),
]


async def test_invalid_uris_are_refused_without_echoing_the_password(
    seeded: Seeded, client: httpx.AsyncClient
) -> None:
    endpoint = Endpoint("public", "POST", "/api/v2/connections/test", {})
    before = await seeded.snapshot_async()
    findings = Findings()
    for uri, words in INVALID_URIS:
        response = await endpoint.send(seeded, client, json.dumps({"uri": uri}).encode())
        findings.check(response.status_code == 422 and says(response, *words), repr(uri[:60]), response)
    assert await seeded.snapshot_async() == before, "a refused test was stored"
    record(
        "invalid URIs",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        "each a 422 naming the problem, no password echoed",
    )
    assert not findings.wrong, "\n".join(findings.wrong)


async def test_unknown_conn_types_and_trigger_classes_are_refused(
    seeded: Seeded, client: httpx.AsyncClient
) -> None:
    stack = seeded.stack
    plugin_queue = unique("plugin")
    async with stack.client() as admin:
        # Saving a connection of a type Airlock cannot test is allowed (Airflow stores any conn_type);
        # testing it is not.
        saved = await admin.post(
            "/api/v2/connections", json={"connection_id": "aws-conn", "conn_type": "aws"}
        )
        assert saved.status_code == 201, saved.text
    cases: list[tuple[str, Endpoint, Any, tuple[str, ...]]] = [
        (
            "unsaved test",
            Endpoint("public", "POST", "/api/v2/connections/test", {}),
            {"conn_type": "nosuchdb", "host": "h"},
            ("unknown conn_type", "nosuchdb", "postgres"),
        ),
        (
            "saved connection",
            Endpoint("public", "POST", "/api/v2/connections/test", {}),
            {"connection_id": "aws-conn"},
            ("unknown conn_type", "aws"),
        ),
        (
            "trigger typo",
            Endpoint("public", "POST", "/api/v2/triggers", {}),
            {"classpath": "activities.triggers.time.DateTimeTriger"},
            ("unknown trigger class", "DateTimeTrigger"),
        ),
        (
            "abstract trigger",
            Endpoint("public", "POST", "/api/v2/triggers", {}),
            {"classpath": "activities.triggers.base.PollingTrigger"},
            ("unknown trigger class",),
        ),
        (
            "deferral at creation",
            Endpoint("public", "POST", "/api/v2/task-instances", {}),
            {
                "dag_id": "d",
                "run_id": "r",
                "task_id": "t",
                "defer": {"classpath": "activities.triggers.nowhere.Trigger", "next_method": "resume"},
            },
            ("unknown trigger class",),
        ),
        (
            "deferral of a running task",
            Endpoint("execution", "PATCH", "/task-instances/{task_instance_id}/state", {}),
            {
                "state": "deferred",
                "trigger": {"classpath": "activities.triggers.file.Nope"},
                "next_method": "resume",
            },
            ("unknown trigger class",),
        ),
    ]
    before = await seeded.snapshot_async()
    findings = Findings()
    for name, endpoint, body, words in cases:
        response = await endpoint.send(seeded, client, json.dumps(body).encode())
        findings.check(response.status_code == 422 and says(response, *words), name, response)
    assert await seeded.snapshot_async() == before, "a refused test or trigger was stored"
    # What a live worker announces is known: a plugin type on a worker (provisioned for its queue), not
    # installed on the API.
    plugin_worker = (await stack.provision("plugin", [plugin_queue]))["AIRLOCK_WORKER_TOKEN"]
    registered = await client.post(
        "/execution/jobs",
        headers={
            "Authorization": f"Bearer {plugin_worker}",
            EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION,
        },
        json={"hostname": "h", "queues": [plugin_queue], "conn_types": ["plugindb"]},
    )
    assert registered.status_code == 201, registered.text
    plugin = await Endpoint("public", "POST", "/api/v2/connections/test", {}).send(
        seeded, client, json.dumps({"conn_type": "plugindb", "host": "h", "queue": plugin_queue}).encode()
    )
    assert plugin.status_code == 202, plugin.text
    # A class outside Airlock's own package is the triggerers' to allow or refuse: the API stores it.
    third_party = await Endpoint("public", "POST", "/api/v2/triggers", {}).send(
        seeded, client, json.dumps({"classpath": "myco.triggers.Custom", "queue": unique("nobody")}).encode()
    )
    assert third_party.status_code == 201, third_party.text
    record(
        "unknown conn types and trigger classes",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        "422 listing the known ones; a worker-announced plugin type and a third-party classpath accepted",
    )
    assert not findings.wrong, "\n".join(findings.wrong)


def _route_table(seeded: Seeded) -> list[tuple[str, str, str]]:
    """(api, method, path) of every route with a path or a query, public (from the running app) and
    Execution API (every version's checked-in document)."""
    assert seeded.stack.api.server is not None
    app = seeded.stack.api.server.config.app
    assert isinstance(app, FastAPI)
    routes: set[tuple[str, str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            continue
        routes.update(("public", m, str(route.path)) for m in route.methods or () if m != "HEAD")
    for version in EXECUTION_API_VERSIONS:
        document = json.loads((OPENAPI_DIR / f"v{version}.json").read_text())
        routes.update(("execution", m.upper(), p) for p, item in document["paths"].items() for m in item)
    return sorted(routes)


@BOTH_DATABASES
async def test_nul_and_invalid_utf8_in_every_string_field(seeded: Seeded, client: httpx.AsyncClient) -> None:
    """Every string of every body (values, and keys of free-form objects) with a NUL or a lone surrogate,
    every body with raw non-UTF-8 bytes, every path parameter and every query with %00 and %FF."""
    before = await seeded.snapshot_async()
    findings = Findings()
    fields = 0
    for endpoint in endpoints():
        for leaf in leaves(endpoint.body):
            fields += 1
            for name, poison in (("NUL", "\x00"), ("lone surrogate", "\udcff")):
                body = json.dumps(poisoned(endpoint.body, leaf, poison)).encode()
                response = await endpoint.send(seeded, client, body)
                ok = response.status_code in endpoint.refused
                if ok and response.status_code == 422:
                    ok = names_field(response, leaf.field)
                findings.check(ok, f"{endpoint.method} {endpoint.path} {name} in {leaf.path}", response)
        raw = json.dumps(endpoint.body).encode().replace(b'"', b'"\xff\xfe', 1)
        response = await endpoint.send(seeded, client, raw)
        findings.check(
            response.status_code == 422 and says(response, "utf-8"),
            f"{endpoint.method} {endpoint.path} raw bytes",
            response,
        )
    table = _route_table(seeded)
    for api, method, path in table:
        base = "" if api == "public" else "/execution"
        names = re.findall(r"{(\w+)}", path)
        ids = {**seeded.path_ids, "codec_token": seeded.stack.secrets.codec_token}
        endpoint = Endpoint(api, method, path, {})
        headers = endpoint.headers(seeded)
        for bad in ("%00", "%FF"):
            for name in names:
                url = base + path.format(**{**ids, name: ids[name] + bad})
                response = await client.request(method, url, headers=headers, json={})
                findings.check(
                    response.status_code == 422 and says(response, "path"),
                    f"{method} {path} {name}+{bad}",
                    response,
                )
            url = base + path.format(**ids) + f"?probe=a{bad}"
            response = await client.request(method, url, headers=headers, json={})
            findings.check(
                response.status_code == 422 and says(response, "query"), f"{method} {path} ?{bad}", response
            )
    assert await seeded.snapshot_async() == before, "a refused request stored something"
    # Control: the same bodies without the poison are taken (or refused for another, stated reason).
    for endpoint in endpoints():
        response = await endpoint.send(seeded, client)
        assert response.status_code in (200, 201, 202, 204, 409), (
            endpoint.path,
            response.status_code,
            response.text,
        )
    kind = seeded.stack.settings.database_url.split(":", 1)[0]
    record(
        f"NUL and invalid UTF-8 ({kind})",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        f"{fields} body strings x 2 poisons, raw bytes in {len(endpoints())} bodies, {len(table)} routes' paths and queries",
    )
    assert not findings.wrong, "\n".join(findings.wrong[:20])


INVALID_JSON: list[tuple[str, bytes, str, tuple[str, ...]]] = [
    ("truncated", b'{"connection_id": "x", ', "application/json", ("json",)),
    ("not JSON at all", b"connection_id=x", "application/json", ("json",)),
    ("an array, not an object", b'[{"connection_id": "x"}]', "application/json", ("dictionary",)),
    ("empty", b"", "application/json", ("required",)),
    ("text/plain", b'{"connection_id": "x", "conn_type": "tcp"}', "text/plain", ("dictionary",)),
    (
        "a 5000-digit number",
        b'{"connection_id": "x", "conn_type": "tcp", "port": ' + b"9" * 5000 + b"}",
        "application/json",
        ("number",),
    ),
    (
        "NaN in extra",
        b'{"connection_id": "x", "conn_type": "tcp", "extra": {"a": NaN}}',
        "application/json",
        ("extra", "finite"),
    ),
    ("Infinity timeout", b'{"classpath": "a.B", "timeout": Infinity}', "application/json", ("timeout",)),
]


async def test_invalid_json_is_a_clear_422(seeded: Seeded, client: httpx.AsyncClient) -> None:
    before = await seeded.snapshot_async()
    findings = Findings()
    headers = {"Authorization": f"Bearer {seeded.stack.secrets.admin_token}"}
    for name, content, content_type, words in INVALID_JSON:
        path = "/api/v2/triggers" if b"classpath" in content else "/api/v2/connections"
        response = await client.post(path, content=content, headers={**headers, "Content-Type": content_type})
        findings.check(response.status_code == 422 and says(response, *words), name, response)
    assert await seeded.snapshot_async() == before, "a refused request stored something"
    record("invalid JSON", findings.cases, f"{len(findings.wrong)} wrong", "each a 422 saying what is wrong")
    assert not findings.wrong, "\n".join(findings.wrong)


# JSON that Python parses but that is not JSON a consumer can read back: NaN and infinities, spelled out
# or reached by a number too large for a float. next_kwargs and every stored JSON column must stay JSON.
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e999")


def _endpoint(method: str, path: str) -> Endpoint:
    return next(e for e in endpoints() if (e.method, e.path) == (method, path))


def non_finite_cases() -> list[tuple[str, Endpoint, bytes, tuple[str, ...]]]:
    """(name, endpoint, raw body, words the refusal says) for every way a number reaches a stored column."""
    marker = 12345.5
    cases: list[tuple[str, Endpoint, bytes, tuple[str, ...]]] = []
    event = _endpoint("POST", "/triggers/{trigger_id}/event")
    for number in NON_FINITE:
        payload = json.dumps({"__classname__": "x", "value": marker}).replace(str(marker), number)
        body = json.dumps({"event_type": "event", "payload": payload}).encode()
        cases.append((f"event payload with {number}", event, body, ("payload",)))
    placed = {
        "extra": _endpoint("POST", "/api/v2/connections"),
        "kwargs": _endpoint("POST", "/api/v2/triggers"),
    }
    deferrals = (
        _endpoint("POST", "/api/v2/task-instances"),
        _endpoint("PATCH", "/task-instances/{task_instance_id}/state"),
    )
    for number in NON_FINITE:
        for where, endpoint in placed.items():
            body = json.loads(json.dumps(endpoint.body))
            body[where] = {**body[where], "n": marker}
            raw = json.dumps(body).replace(str(marker), number).encode()
            cases.append((f"{where} with {number}", endpoint, raw, (where, "finite")))
        for endpoint in deferrals:
            body = json.loads(json.dumps(endpoint.body))
            holder = body.get("defer", body)
            holder["next_kwargs"] = {"deep": [{"n": marker}]}
            raw = json.dumps(body).replace(str(marker), number).encode()
            cases.append(
                (f"{endpoint.api} next_kwargs with {number}", endpoint, raw, ("next_kwargs", "finite"))
            )
        logs = _endpoint("POST", "/triggers/{trigger_id}/logs")
        raw = json.dumps({"lines": [{"timestamp": marker, "level": "INFO", "message": "m"}]})
        cases.append(
            (f"log timestamp {number}", logs, raw.replace(str(marker), number).encode(), ("timestamp",))
        )
        test = next(e for e in endpoints() if e.path == "/api/v2/connections/test" and "conn_type" in e.body)
        raw = json.dumps({**test.body, "timeout": marker}).replace(str(marker), number)
        cases.append((f"test timeout {number}", test, raw.encode(), ("timeout",)))
    return cases


async def test_non_finite_numbers_are_refused_everywhere(seeded: Seeded, client: httpx.AsyncClient) -> None:
    """NaN, Infinity and numbers too large for a float: a 422 naming the field, nothing stored."""
    cases = non_finite_cases()
    before = await seeded.snapshot_async()
    findings = Findings()
    for name, endpoint, body, words in cases:
        response = await endpoint.send(seeded, client, body)
        findings.check(response.status_code == 422 and says(response, *words), name, response)
    assert await seeded.snapshot_async() == before, "a refused request stored something"
    # The same event with a finite number is taken, and lands in the trigger as sent.
    event = Endpoint("execution", "POST", "/triggers/{trigger_id}/event", {})
    payload = '{"__classname__":"x","value":1.5e300}'
    fired = await event.send(seeded, client, json.dumps({"payload": payload}).encode())
    assert fired.status_code == 204, fired.text
    async with seeded.stack.client() as admin:
        trigger = (await admin.get(f"/api/v2/triggers/{seeded.trigger_id}")).json()
    assert trigger["event_payload"] == payload
    record(
        "non-finite numbers",
        findings.cases,
        f"{len(findings.wrong)} wrong",
        "NaN, ±Infinity, 1e400 in event payloads, extras, kwargs, next_kwargs (both APIs), timestamps, timeouts",
    )
    assert not findings.wrong, "\n".join(findings.wrong)
