"""Segments enforced (DESIGN.md invariants 7 and 8): what a worker provisioned for one network can and
cannot do, tried with only what its provisioning gave it, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.worker import Worker

from activities.connection_test import ConnectionTestActivities
from activities.testers import available_conn_types
from airlock.codec import DerivedKeyring, EncryptionCodec, make_data_converter, queue_purpose
from airlock.protocol import connection_test_workflow_id
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from airlock.workloads import ConnectionTestInput
from api.temporal.client import connect
from tests import secret_scan
from tests.reliability import record
from tests.stack import Stack, unique, wait_terminal

HEADERS = {EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION}


def _as(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}", **HEADERS}


def _worker_codec(env: dict[str, str]) -> EncryptionCodec:
    """Exactly what a provisioned worker holds: its queues' keys."""
    return EncryptionCodec(
        DerivedKeyring(env["AIRLOCK_PAYLOAD_KEY_ID"], json.loads(env["AIRLOCK_PAYLOAD_KEYS"]))
    )


class SealAs(PayloadCodec):
    """A rogue's codec: seals everything with its own queue's key, whatever the context asks for."""

    def __init__(self, codec: EncryptionCodec, queue: str) -> None:
        self._codec = EncryptionCodec(codec._keyring, default_purpose=queue_purpose(queue))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._codec.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._codec.decode(payloads)


async def _submit(
    client: httpx.AsyncClient, queue: str, password: str, timeout: int = 5, database: Path | None = None
) -> str:
    """A test with a password; on a SQLite file when ``database`` is given (no network: the worker's
    egress policy does not come into it), else on the local PostgreSQL."""
    if database is not None:
        sqlite3.connect(database).close()
        fields: dict[str, Any] = {"conn_type": "sqlite", "host": str(database), "password": password}
    else:
        fields = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres"}
        fields |= {"password": password, "schema": "test"}
    response = await client.post(
        "/api/v2/connections/test", json={**fields, "queue": queue, "timeout": timeout}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_a_worker_of_one_segment_gets_nothing_of_another(make_stack: Any, tmp_path: Path) -> None:
    """The rogue worker: provisioned for net-a, it polls net-b too, with only its credential and keys.
    It cannot open a net-b payload, gets no net-b token or secret through any route, cannot register
    for net-b; the net-b tests it snatched end failed with a reason; its net-a tests succeed."""
    # The jobs below are registered by hand and never heartbeat: they must stay live for the whole test,
    # or a net-a test that waits its turn behind the net-b ones finds "no worker" (seen 1 run in 6).
    stack: Stack = await make_stack(connection_test_heartbeat_timeout=3, job_liveness_timeout=300)
    net_a, net_b = unique("net-a"), unique("net-b")
    rogue = await stack.provision("rogue", [net_a])
    honest_b = await stack.provision("honest-b", [net_b])
    async with httpx.AsyncClient(base_url=f"{stack.api.url}/execution", timeout=30) as execution:
        # net-b is served (a live job), but only the rogue polls it.
        registered = await execution.post(
            "/jobs",
            json={"hostname": "b:1", "queues": [net_b], "conn_types": ["postgres", "sqlite"]},
            headers=_as(honest_b["AIRLOCK_WORKER_TOKEN"]),
        )
        assert registered.status_code == 201, registered.text
        refused = await execution.post(
            "/jobs",
            json={"hostname": "rogue:1", "queues": [net_a, net_b]},
            headers=_as(rogue["AIRLOCK_WORKER_TOKEN"]),
        )
        assert refused.status_code == 403 and net_b in refused.text, refused.text
        own = await execution.post(
            "/jobs",
            json={"hostname": "rogue:1", "queues": [net_a], "conn_types": ["postgres", "sqlite"]},
            headers=_as(rogue["AIRLOCK_WORKER_TOKEN"]),
        )
        assert own.status_code == 201, own.text

        tests = ConnectionTestActivities(
            api_url=stack.api.url,
            api_tls=True,
            credential=rogue["AIRLOCK_WORKER_TOKEN"],
            identity="rogue:1",
            conn_types=available_conn_types(),
        )
        tests.start()
        client = await Client.connect(
            stack.temporal_address, data_converter=make_data_converter(_worker_codec(rogue))
        )
        workers = [
            Worker(client, task_queue=queue, activities=[tests.run_connection_test])
            for queue in (net_a, net_b)
        ]
        async with stack.client() as api, contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            b_passwords = [secret_scan.password() for _ in range(4)]
            b_ids = [await _submit(api, net_b, p) for p in b_passwords]
            a_ids = [
                await _submit(api, net_a, secret_scan.password(), database=tmp_path / f"a{n}.db")
                for n in range(2)
            ]

            # While they wait or run: no route gives the rogue anything of net-b.
            for test_id in b_ids:
                claim = await execution.post(
                    f"/connection-tests/{test_id}/claim",
                    json={"worker": "rogue:1"},
                    headers=_as(rogue["AIRLOCK_WORKER_TOKEN"]),
                )
                assert claim.status_code == 403, claim.text
                read = await execution.get(
                    f"/connection-tests/{test_id}/connection", headers=_as(rogue["AIRLOCK_WORKER_TOKEN"])
                )
                assert read.status_code == 403, read.text

            a_results = [await wait_terminal(api, test_id, timeout=90) for test_id in a_ids]
            b_results = [await wait_terminal(api, test_id, timeout=120) for test_id in b_ids]

    # The positive control: the probe works, the rogue runs its own segment's tests.
    assert [r["state"] for r in a_results] == ["success", "success"], a_results
    assert all(r["worker"] == "rogue:1" for r in a_results), a_results
    for result in b_results:
        # Snatched and never opened: no claim was made, so no worker is recorded.
        assert result["state"] == "failed", result
        assert result["worker"] is None, result
        assert result["result_message"], result
    for password in b_passwords:
        assert password not in json.dumps(b_results)
    reasons = sorted({r["result_message"] for r in b_results})
    record(
        "segments: a rogue worker of net-a polling net-b",
        len(b_results),
        f"{len(b_results)} snatched net-b tests failed unopened, 0 claims, 0 secrets; "
        f"{len(a_results)} net-a tests succeeded on it",
        f"reasons: {' | '.join(reasons)}",
    )


async def test_forged_control_workflows_and_signals_change_nothing(make_stack: Any) -> None:
    """A worker's Temporal client can start workflows on the control queue: one sealed with its own key,
    one not sealed at all, naming a real test. Neither runs a control activity; the row is unchanged.
    Even a workflow sealed with the control key (which no worker holds) but without the API's grant is
    refused by the control activities."""
    stack: Stack = await make_stack()
    queue = await stack.serve_queue("forge")
    env = await stack.provision("forger", [queue])
    async with stack.client() as api:
        done = await _submit(api, queue, secret_scan.password())
        ended = await wait_terminal(api, done)
    assert ended["state"] == "success", ended
    control = stack.settings.control_queue
    api_client = await connect(stack.settings)
    # Its workflow has closed: its id may be started again, by anyone with a Temporal client.
    await api_client.get_workflow_handle(connection_test_workflow_id(done)).result()

    forgers = {
        "own queue key": DataConverter(payload_codec=SealAs(_worker_codec(env), queue)),
        "unencrypted": DataConverter(),
    }
    forged: list[tuple[Client, str]] = []
    for label, converter in forgers.items():
        client = await Client.connect(stack.temporal_address, data_converter=converter)
        workflow_id = f"{connection_test_workflow_id(done)}" if label == "own queue key" else unique("forged")
        inp = ConnectionTestInput(done, "forged", 5)
        await client.start_workflow("ConnectionTestWorkflow", inp, id=workflow_id, task_queue=control)
        forged.append((client, workflow_id))

    # The API's own client, with the control key: only the grant is wrong.
    grantless = unique("grantless")
    handle = await api_client.start_workflow(
        "ConnectionTestWorkflow",
        ConnectionTestInput(done, "forged", 5),
        id=grantless,
        task_queue=control,
    )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(handle.result(), 30)
    history = await handle.fetch_history()
    # The control calls are local activities: each call's result, or its failure, is a marker.
    calls = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    refusals = [call.failure for call in calls if call.HasField("failure")]
    assert len(refusals) == len(calls), "a control call succeeded without the grant"
    assert refusals, "the control activities were not called at all"
    assert all(f.application_failure_info.type == "ControlCallRefused" for f in refusals), refusals

    await asyncio.sleep(3)
    for client, workflow_id in forged:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        kinds = {e.event_type for e in history.events}
        assert EventType.EVENT_TYPE_MARKER_RECORDED not in kinds, workflow_id
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds, workflow_id
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds, workflow_id
        await client.get_workflow_handle(workflow_id).terminate("forged by a test")
    async with stack.client() as api:
        after = (await api.get(f"/api/v2/connections/test/{done}")).json()
    assert after == ended


async def test_task_code_defers_only_within_what_it_was_allowed(make_stack: Any) -> None:
    stack: Stack = await make_stack()
    allowed, other = unique("allowed"), unique("other")
    async with stack.client() as api:
        for connection_id in ("allowed-db", "other-db"):
            created = await api.post(
                "/api/v2/connections",
                json={
                    "connection_id": f"{connection_id}-{allowed}",
                    "conn_type": "sqlite",
                    "host": "/tmp/x.db",
                },
            )
            assert created.status_code == 201, created.text
        ti = await api.post(
            "/api/v2/task-instances",
            json={
                "dag_id": "d",
                "run_id": unique("r"),
                "task_id": "t",
                "allowed_queues": [allowed],
                "allowed_connections": [f"allowed-db-{allowed}"],
            },
        )
        assert ti.status_code == 201, ti.text
        body = ti.json()
        assert body["allowed_queues"] == [allowed]
        token, ti_id = body["execution_token"], body["id"]

    def deferral(queue: str | None, **kwargs: Any) -> dict[str, Any]:
        trigger = {
            "classpath": "airlock.triggers.FileTrigger",
            "kwargs": {"filepath": "/nonexistent", **kwargs},
        }
        if queue is not None:
            trigger["queue"] = queue
        return {"state": "deferred", "trigger": trigger, "next_method": "resume"}

    refusals = [
        (deferral(stack.settings.control_queue), 422),
        (deferral(other), 403),
        (deferral(None), 403),  # the default trigger queue was not allowed either
        (deferral(allowed, conn_id=f"other-db-{allowed}"), 403),
        (deferral(allowed, sql_conn_id=f"other-db-{allowed}"), 403),
        (deferral("bad queue!"), 422),
    ]
    async with httpx.AsyncClient(base_url=f"{stack.api.url}/execution", timeout=30) as execution:
        for body, status in refusals:
            response = await execution.patch(f"/task-instances/{ti_id}/state", json=body, headers=_as(token))
            assert response.status_code == status, (body, response.text)
        async with stack.client() as api:
            unchanged = (await api.get(f"/api/v2/task-instances/{ti_id}")).json()
            assert unchanged["state"] == "running" and unchanged["trigger_id"] is None, unchanged
            stored = (await api.get("/api/v2/triggers")).json()["triggers"]
            assert not [t for t in stored if t["queue"] in (other, stack.settings.control_queue)]
        ok = await execution.patch(
            f"/task-instances/{ti_id}/state",
            json=deferral(allowed, conn_id=f"allowed-db-{allowed}"),
            headers=_as(token),
        )
        assert ok.status_code == 200, ok.text


async def test_provisioning_revocation_and_tokens_that_die_with_their_work(
    make_stack: Any, tmp_path: Path
) -> None:
    """``airlock workers add`` gives a worker its env once (file 0600); the worker runs from it; the list
    shows no secret; a claim's token stops working when its test ends; revoking refuses the worker at
    once (401), ends its jobs and stops it."""
    stack: Stack = await make_stack()
    queue = unique("prov")
    env_file = tmp_path / "edge.env"
    code, output = await stack.cli("workers", "add", "edge-1", "--queue", queue, "--env-file", str(env_file))
    assert code == 0, output
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    env = {key: value.strip("'") for key, value in lines.items()}
    assert set(env) == {
        "AIRLOCK_API_URL",
        "AIRLOCK_TEMPORAL_ADDRESS",
        "AIRLOCK_TEMPORAL_NAMESPACE",
        "AIRLOCK_WORKER_TOKEN",
        "AIRLOCK_QUEUES",
        "AIRLOCK_TRIGGERER",
        "AIRLOCK_PAYLOAD_KEY_ID",
        "AIRLOCK_PAYLOAD_KEYS",
    }
    assert list(json.loads(env["AIRLOCK_PAYLOAD_KEYS"])) == [f"k1/queue:{queue}"]
    credential = secret_scan.register(env["AIRLOCK_WORKER_TOKEN"], secret_scan.TOKEN)
    for key in json.loads(env["AIRLOCK_PAYLOAD_KEYS"]).values():
        secret_scan.register(key, secret_scan.KEY)
    code, output = await stack.cli("workers", "add", "edge-1", "--queue", queue)
    assert code == 2 and "409" in output, output

    # The worker runs from the file alone (its API URL is the stack's: the API is on a free port).
    env_file.write_text(env_file.read_text().replace(env["AIRLOCK_API_URL"], stack.api.url))
    worker = await _start_from_env_file(stack, env_file)
    job = await stack.wait_worker(queue)
    async with stack.client() as api:
        listed = await api.get("/api/v2/workers")
        assert credential not in listed.text and "secret_hash" not in listed.text
        mine = next(w for w in listed.json()["workers"] if w["name"] == "edge-1")
        assert mine["queues"] == [queue] and mine["revoked_at"] is None
        test_id = await _submit(api, queue, secret_scan.password(), timeout=10)
        assert (await wait_terminal(api, test_id))["state"] == "success"

    async with httpx.AsyncClient(base_url=f"{stack.api.url}/execution", timeout=30) as execution:
        # A claim of an ended test is refused; so is a token for it (minted as the claim would).
        late = await execution.post(
            f"/connection-tests/{test_id}/claim", json={"worker": "edge:1"}, headers=_as(credential)
        )
        assert late.status_code == 409, late.text
        from api.core.security import mint_workload_token

        token = mint_workload_token(stack.settings, test_id, "edge-1", 600)
        dead = await execution.get(f"/connection-tests/{test_id}/connection", headers=_as(token))
        assert dead.status_code == 409, dead.text
        stolen = mint_workload_token(stack.settings, test_id, "someone-else", 600)
        assert (
            await execution.get(f"/connection-tests/{test_id}/connection", headers=_as(stolen))
        ).status_code in (
            401,
            403,
        )

        code, output = await stack.cli("workers", "revoke", "edge-1")
        assert code == 0, output
        refused = await execution.post(f"/jobs/{job['id']}/heartbeat", headers=_as(credential))
        assert refused.status_code == 401, refused.text
        assert (
            await execution.get(f"/connection-tests/{test_id}/connection", headers=_as(token))
        ).status_code == 401
    async with stack.client() as api:
        jobs = (await api.get("/api/v2/jobs")).json()["jobs"]
        assert next(j for j in jobs if j["id"] == job["id"])["state"] == "completed"
        revoked = next(
            w for w in (await api.get("/api/v2/workers")).json()["workers"] if w["name"] == "edge-1"
        )
        assert revoked["revoked_at"] is not None
    # The worker hears it on its next heartbeat and stops.
    await asyncio.wait_for(asyncio.to_thread(worker.wait), 30)


async def _start_from_env_file(stack: Stack, env_file: Path) -> Any:
    import subprocess
    import sys

    from airlock.devstack import worker_env

    log = open(stack.log_dir / f"worker-envfile-{uuid.uuid4().hex[:6]}.log", "wb")
    # Only what the file gives it, and the suite's own choices: fast heartbeats, loopback targets.
    env = worker_env({}, AIRLOCK_JOB_HEARTBEAT_INTERVAL="1", AIRLOCK_EGRESS_ALLOW_LOOPBACK="true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airlock.cli", "worker", "--env-file", str(env_file)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.workers.append(proc)
    return proc
