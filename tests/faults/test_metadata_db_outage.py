"""The metadata database goes away for ~10 s while tests run and a timer is due: the API answers 503
(never 500, never a hang), recovers by itself when the database returns, the results and the event
that came due meanwhile land afterwards, exactly once, and a request that got 503 left no row.

The database is a private throwaway cluster (``tests/pgcluster.py``): the shared service on
127.0.0.1:5432 is never stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from airlock.devstack import free_port
from airlock.protocol import (
    RECORD_RESULT_ACTIVITY,
    RECORD_TIMER_FIRED_ACTIVITY,
    connection_test_workflow_id,
    trigger_workflow_id,
)
from airlock.version import EXECUTION_API_VERSION_HEADER, LATEST_EXECUTION_API_VERSION
from api.core.security import mint_workload_token
from api.services.workers import split_credential
from tests.pgcluster import PgCluster, private_cluster
from tests.reliability import record
from tests.stack import Stack, unique, wait_terminal
from tests.targets import SlowTarget, silent_listener

TRIALS = 3
TESTS_PER_TRIAL = 3
OUTAGE_SECONDS = 10.0
# A request must answer within this even while the database is away: longer counts as a hang.
PROBE_TIMEOUT = 10.0
TIMEDELTA_TRIGGER = "activities.triggers.time.TimeDeltaTrigger"


@pytest.fixture
def private_pg() -> Iterator[PgCluster]:
    with private_cluster(free_port(), databases=["airlock"]) as cluster:
        yield cluster


@pytest.fixture
def database_url(private_pg: PgCluster) -> str:
    """make_stack's metadata DB, overridden for this module: the private cluster. make_stack depends
    on it, so the cluster is torn down only after the API that uses it."""
    return private_pg.url(database="airlock")


@dataclass
class Refused:
    """What the requests answered with 503 tried to write: none of it may be in the database."""

    connection_ids: list[str] = field(default_factory=list)
    test_descriptions: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    job_hostnames: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class Trial:
    test_ids: list[str]
    trigger_id: str
    task_instance_id: str
    written_after: str = ""
    health_back: float = 0.0
    write_back: float = 0.0
    landed: float = 0.0


async def _poll(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.slow
async def test_an_api_stops_while_its_database_is_away_with_results_due(
    private_pg: PgCluster, make_stack, silent_server: int
) -> None:
    """Its control worker records results retried until the database returns: stopping must not wait
    for that (it once waited for the whole outage)."""
    stack = await make_stack()
    queue = await stack.serve_queue("dbstop")
    async with stack.client() as client:
        ids = []
        for _ in range(2):
            # A server that never answers: each driver runs until its 2 s timeout.
            body = {"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 2}
            response = await client.post("/api/v2/connections/test", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        for test_id in ids:
            await _poll(lambda t=test_id: _is_running(client, t), 10, f"test {test_id} running")
    private_pg.stop("fast")
    try:
        # The drivers time out now: their results come due while the database is away.
        await asyncio.sleep(3)
        stack.stop_workers()
        started = time.monotonic()
        await asyncio.wait_for(stack.api.stop(), 60)
        stopped_in = time.monotonic() - started
    finally:
        private_pg.start()
    # The drain (5 s) and the control worker's bounded shutdown (10 s), not the outage.
    assert stopped_in < 30, stopped_in


async def _is_running(client: httpx.AsyncClient, test_id: str) -> bool:
    return (await client.get(f"/api/v2/connections/test/{test_id}")).json()["state"] == "running"


@pytest.mark.slow
async def test_api_answers_503_while_the_metadata_db_is_down_and_recovers_by_itself(
    private_pg: PgCluster, make_stack, slow_http_server: SlowTarget
) -> None:
    stack = await make_stack()
    queue = await stack.serve_queue("dbout")
    # A provisioned worker credential for the Execution API probes (provisioned while the database is up).
    prober = (await stack.provision("prober", [queue]))["AIRLOCK_WORKER_TOKEN"]
    refused = Refused()
    trials: list[Trial] = []
    async with stack.client() as client:
        client.timeout = httpx.Timeout(PROBE_TIMEOUT)
        for _ in range(TRIALS):
            trials.append(
                await _outage_trial(stack, client, private_pg, queue, prober, slow_http_server, refused)
            )
        rows = [await wait_terminal(client, test_id, timeout=5) for t in trials for test_id in t.test_ids]
        # The results that came due during the outage are real results, not outage failures.
        assert all(row["state"] == "success" and row["worker"] for row in rows), [
            (row["state"], row["worker"], row["result_message"]) for row in rows
        ]
        for t in trials:
            ti = (await client.get(f"/api/v2/task-instances/{t.task_instance_id}")).json()
            assert ti["state"] == "scheduled" and ti["next_method"] == "resume", ti

    temporal = _temporal(stack)
    attempts = []
    for t in trials:
        for test_id in t.test_ids:
            attempts.append(
                await _recorded_locally_once(
                    temporal, connection_test_workflow_id(test_id), RECORD_RESULT_ACTIVITY
                )
            )
        attempts.append(
            await _recorded_once(temporal, trigger_workflow_id(t.trigger_id), RECORD_TIMER_FIRED_ACTIVITY)
        )
    # At least one recording met the database down and was retried: the outage was real.
    assert max(attempts) > 1, attempts

    _assert_no_half_written_rows(private_pg, trials, refused)

    assert set(refused.statuses) == {503}, refused.statuses
    worst = max
    record(
        "metadata DB down ~10 s (private PostgreSQL stopped/started)",
        TRIALS,
        f"{sum(refused.statuses.values())} requests during the outages all 503 (worst: port closed "
        f"{worst(refused.latencies['refused']):.2f} s, port silent {worst(refused.latencies['silent']):.2f} s; "
        f"never 500, never a hang); {len(rows)} in-flight tests and "
        f"{TRIALS} due timers landed exactly once; 0 rows from refused requests",
        f"DB back to /ready 200: worst {worst(t.health_back for t in trials):.2f} s; to first write: worst "
        f"{worst(t.write_back for t in trials):.2f} s; to every due result recorded: median "
        f"{statistics.median(t.landed for t in trials):.1f} s, worst {worst(t.landed for t in trials):.1f} s "
        f"(recording attempts: up to {max(attempts)})",
    )


async def _outage_trial(
    stack: Stack,
    client: httpx.AsyncClient,
    pg: PgCluster,
    queue: str,
    prober: str,
    target: SlowTarget,
    refused: Refused,
) -> Trial:
    # The worker's liveness lapsed during the previous outage; its next heartbeat revives it.
    await stack.wait_worker(queue)
    test_ids = []
    arrived = target.arrivals
    for _ in range(TESTS_PER_TRIAL):
        response = await client.post(
            "/api/v2/connections/test", json={"uri": target.url, "queue": queue, "timeout": 30}
        )
        assert response.status_code == 202, response.text
        test_ids.append(response.json()["id"])
    # Every driver is at the target: what is left to record is its result, due during the outage.
    await target.wait_arrivals(arrived + TESTS_PER_TRIAL)
    # A timer that fires while the database is away: its event must land afterwards.
    deferred = await client.post(
        "/api/v2/task-instances",
        json={
            "dag_id": "dag",
            "run_id": unique("run"),
            "task_id": "wait",
            "defer": {"classpath": TIMEDELTA_TRIGGER, "kwargs": {"delta": 2}, "next_method": "resume"},
        },
    )
    assert deferred.status_code == 201, deferred.text
    trial = Trial(test_ids, deferred.json()["trigger_id"], deferred.json()["id"])

    pg.stop("fast")
    try:
        # First the port is closed (connections refused at once), then something holds it that accepts
        # and never answers (a hung server, a stuck proxy): that half is where a request could hang.
        for phase, seconds in (("refused", OUTAGE_SECONDS / 2), ("silent", OUTAGE_SECONDS / 2)):
            with silent_listener(pg.port) if phase == "silent" else contextlib.nullcontext():
                started = time.monotonic()
                while time.monotonic() - started < seconds:
                    await _probe_everything(stack, client, test_ids[0], queue, prober, refused, phase)
                    await asyncio.sleep(0.3)
        # Nothing could be recorded while the database was away.
        assert pg.running() is False
    finally:
        # Back whatever happened: a trial that failed midway must not leave the API without its database.
        pg.start()
    back_at = time.monotonic()

    async def healthy() -> bool:
        response = await client.get("/ready")
        assert response.status_code in (200, 503), response.text
        return response.status_code == 200

    await _poll(healthy, 30, "/ready back to 200")
    trial.health_back = time.monotonic() - back_at
    # The same process takes writes again: no restart.
    trial.written_after = unique("after")

    async def written() -> bool:
        body = {"connection_id": trial.written_after, "conn_type": "tcp"}
        response = await client.post("/api/v2/connections", json=body)
        assert response.status_code in (201, 503), response.text
        return response.status_code == 201

    await _poll(written, 30, "a write accepted again")
    trial.write_back = time.monotonic() - back_at

    async def landed() -> bool:
        rows = [(await client.get(f"/api/v2/connections/test/{i}")).json() for i in test_ids]
        trigger = (await client.get(f"/api/v2/triggers/{trial.trigger_id}")).json()
        return all(row["state"] in ("success", "failed") for row in rows) and trigger["state"] == "fired"

    await _poll(landed, 90, "results due during the outage landed")
    trial.landed = time.monotonic() - back_at
    return trial


async def _probe_everything(
    stack: Stack,
    client: httpx.AsyncClient,
    test_id: str,
    queue: str,
    prober: str,
    refused: Refused,
    phase: str,
) -> None:
    """One request of each kind, reads and writes, public and Execution API: each must be a prompt 503
    (a worker's credential and a workload token are checked against the database too)."""
    execution = {EXECUTION_API_VERSION_HEADER: LATEST_EXECUTION_API_VERSION}
    parts = split_credential(prober)
    assert parts is not None
    token = mint_workload_token(stack.settings, test_id, parts[0], 60)
    workload = {"Authorization": f"Bearer {token}", **execution}
    worker = {"Authorization": f"Bearer {prober}", **execution}
    connection_id, description = unique("refused"), unique("refused-test")
    run_id, hostname = unique("refused-run"), unique("refused-host")
    refused.connection_ids.append(connection_id)
    refused.test_descriptions.append(description)
    refused.run_ids.append(run_id)
    refused.job_hostnames.append(hostname)
    probes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/ready", {}),
        ("GET", "/api/v2/connections", {}),
        ("GET", f"/api/v2/connections/test/{test_id}", {}),
        ("GET", "/api/v2/connections/test", {}),
        ("GET", "/api/v2/jobs", {}),
        ("GET", "/api/v2/triggers", {}),
        ("POST", "/api/v2/connections", {"json": {"connection_id": connection_id, "conn_type": "tcp"}}),
        (
            "POST",
            "/api/v2/connections/test",
            {
                "json": {
                    "conn_type": "tcp",
                    "host": "127.0.0.1",
                    "port": 1,
                    "queue": queue,
                    "description": description,
                }
            },
        ),
        (
            "POST",
            "/api/v2/task-instances",
            {
                "json": {
                    "dag_id": "dag",
                    "run_id": run_id,
                    "task_id": "t",
                    "defer": {"classpath": TIMEDELTA_TRIGGER, "kwargs": {"delta": 1}, "next_method": "go"},
                }
            },
        ),
        ("GET", f"/execution/connection-tests/{test_id}/connection", {"headers": workload}),
        (
            "POST",
            "/execution/jobs",
            {"headers": worker, "json": {"hostname": hostname, "queues": [queue], "conn_types": ["tcp"]}},
        ),
    ]

    async def probe(method: str, path: str, kwargs: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            pytest.fail(f"{method} {path} hung for {PROBE_TIMEOUT} s while the database was {phase}")
        except httpx.TransportError as exc:
            pytest.fail(f"{method} {path}: no answer ({exc!r}) while the database was {phase}")
        refused.latencies.setdefault(phase, []).append(time.monotonic() - started)
        refused.statuses[response.status_code] = refused.statuses.get(response.status_code, 0) + 1
        assert response.status_code == 503, (
            f"{phase}: {method} {path}: {response.status_code} {response.text}"
        )
        if path == "/ready":  # readiness names what failed, and does not ask to be retried
            assert response.json()["checks"]["database"] != "ok", response.text
            return
        assert "database is unavailable" in response.json()["detail"], response.text
        assert response.headers.get("retry-after"), f"{method} {path}: 503 without Retry-After"

    # All at once, as clients would: a connect that hangs must not hold the others up.
    await asyncio.gather(*(probe(method, path, kwargs) for method, path, kwargs in probes))


def _temporal(stack: Stack) -> Client:
    assert stack.api.server is not None
    app: Any = stack.api.server.config.app
    client: Client | None = app.state.runtime.temporal
    assert client is not None
    return client


async def _recorded_locally_once(client: Client, workflow_id: str, activity: str) -> int:
    """The same for a local activity: one marker, carrying True. Returns the attempts it took."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    markers = []
    for e in history.events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        marker = e.marker_recorded_event_attributes
        data = json.loads(marker.details["data"].payloads[0].data)
        if data["activity_type"] == activity:
            markers.append((data, marker))
    assert len(markers) == 1, f"{workflow_id}: {activity} recorded {len(markers)} times"
    [(data, marker)] = markers
    assert not marker.HasField("failure"), f"{workflow_id}: {activity} failed: {marker.failure.message}"
    [changed] = await client.data_converter.decode(marker.details["result"].payloads, [bool])
    assert changed is True, f"{workflow_id}: {activity} found the row already terminal"
    attempt: int = data["attempt"]
    return attempt


async def _recorded_once(client: Client, workflow_id: str, activity: str) -> int:
    """The workflow scheduled its recording activity once, it completed once and changed the row
    (returned True): the state was applied exactly once. Returns the attempts it took."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    assert len(scheduled) == 1, f"{workflow_id}: {activity} scheduled {len(scheduled)} times"
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    completed = [
        e.activity_task_completed_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]
    assert len(completed) == 1, f"{workflow_id}: {activity} completed {len(completed)} times"
    [changed] = await client.data_converter.decode(completed[0].result.payloads, [bool])
    assert changed is True, f"{workflow_id}: {activity} found the row already terminal"
    return max(s.attempt for s in started)


def _assert_no_half_written_rows(pg: PgCluster, trials: list[Trial], refused: Refused) -> None:
    """Straight from the tables: nothing of a refused request, everything of an accepted one."""
    test_ids = [i for t in trials for i in t.test_ids]
    created_connections = [t.written_after for t in trials]
    with psycopg.connect(pg.url(database="airlock")) as conn:

        def count(sql: str, *params: Any) -> int:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return int(row[0])

        assert (
            count("select count(*) from connection where connection_id = any(%s)", refused.connection_ids)
            == 0
        )
        assert (
            count(
                "select count(*) from connection_test where description = any(%s)", refused.test_descriptions
            )
            == 0
        )
        assert count("select count(*) from task_instance where run_id = any(%s)", refused.run_ids) == 0
        assert count("select count(*) from job where hostname = any(%s)", refused.job_hostnames) == 0
        # Accepted requests are whole: every test row ended once, with its timestamps and no active claim.
        assert count("select count(*) from connection_test") == len(test_ids)
        assert count(
            "select count(*) from connection_test where id = any(%s) and state = 'success' and "
            "finished_at is not null and started_at is not null and active_connection_id is null",
            test_ids,
        ) == len(test_ids)
        assert count("select count(*) from task_instance") == len(trials)
        assert count("select count(*) from trigger") == len(trials)
        assert count("select count(*) from trigger where state = 'fired'") == len(trials)
        assert count("select count(*) from connection") == len(created_connections)
        assert count(
            "select count(*) from connection where connection_id = any(%s)", created_connections
        ) == len(created_connections)
