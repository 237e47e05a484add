"""Triggers end to end: durable timers, triggerers, events that resume task instances exactly once,
failures, timeouts, cancellation with cleanup, logs, and the allowlist."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.worker import Worker

from airlock.triggers import DATETIME_TRIGGER, TIMEDELTA_TRIGGER
from airlock.version import EXECUTION_API_VERSION_HEADER
from api.core.security import mint_trigger_token
from tests import secret_scan
from tests.stack import Stack, unique

FILE_TRIGGER = "airlock.triggers.FileTrigger"
TEST_ALLOWLIST = "activities.triggers.*,tests.trigger_classes.*"
TERMINAL = {"fired", "failed", "timed_out", "cancelled"}


async def wait_trigger(client: httpx.AsyncClient, trigger_id: str, timeout: float = 60) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        body: dict[str, Any] = (await client.get(f"/api/v2/triggers/{trigger_id}")).json()
        if body["state"] in TERMINAL:
            return body
        await asyncio.sleep(0.1)
    raise TimeoutError(f"trigger {trigger_id} did not end within {timeout} s")


async def defer(
    client: httpx.AsyncClient, classpath: str, kwargs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    body = {
        "dag_id": "dag",
        "run_id": unique("run"),
        "task_id": "wait",
        "defer": {"classpath": classpath, "kwargs": kwargs, "next_method": "resume", **extra},
    }
    response = await client.post("/api/v2/task-instances", json=body)
    assert response.status_code == 201, response.text
    ti: dict[str, Any] = response.json()
    assert ti["state"] == "deferred" and ti["trigger_id"]
    return ti


async def start_triggerer(stack: Stack, capacity: int = 1000) -> str:
    """A triggerer on a fresh queue, with the tests' trigger classes allowed; returns the queue."""
    queue = unique("trig")
    await stack.start_worker(
        queue,
        name="triggerer",
        AIRLOCK_TRIGGERER="true",
        AIRLOCK_CAPACITY=str(capacity),
        AIRLOCK_TRIGGER_ALLOWLIST=TEST_ALLOWLIST,
    )
    await stack.wait_worker(queue)
    return queue


async def test_time_delta_is_a_durable_timer_that_resumes_the_task(make_stack) -> None:
    stack = await make_stack()
    async with stack.client() as client:
        ti = await defer(client, TIMEDELTA_TRIGGER, {"delta": 1}, next_kwargs={"attempt": 2})
        trigger = await wait_trigger(client, ti["trigger_id"], timeout=30)
        assert trigger["state"] == "fired" and trigger["event_type"] == "event"
        assert trigger["triggerer"] is None  # no worker held it: a timer in the workflow
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert resumed["state"] == "scheduled" and resumed["next_method"] == "resume"
    next_kwargs = json.loads(resumed["next_kwargs"])
    assert next_kwargs["attempt"] == 2
    # The payload is the worker-side envelope, spliced in as stored.
    assert next_kwargs["event"]["__airlock_serde__"] == 1
    assert json.loads(trigger["event_payload"]) == next_kwargs["event"]


async def test_timer_fires_after_everything_was_stopped(make_stack) -> None:
    stack = await make_stack()
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/triggers", json={"classpath": TIMEDELTA_TRIGGER, "kwargs": {"delta": 2}}
        )
        trigger_id = response.json()["id"]
    await stack.api.stop()  # the only worker of the control queue, and the only DB writer
    await asyncio.sleep(4)
    await stack.api.start()
    async with stack.client() as client:
        assert (await wait_trigger(client, trigger_id, timeout=30))["state"] == "fired"


async def test_bad_time_trigger_kwargs_are_refused(make_stack) -> None:
    stack = await make_stack()
    async with stack.client() as client:
        bad = await client.post(
            "/api/v2/triggers", json={"classpath": DATETIME_TRIGGER, "kwargs": {"moment": "soon"}}
        )
        assert bad.status_code == 422
        assert (await client.get("/api/v2/triggers")).json()["total_entries"] == 0


async def test_file_trigger_on_a_triggerer_resumes_its_task(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack, capacity=7)
    target = tmp_path / "ready.flag"
    async with stack.client() as client:
        ti = await defer(client, FILE_TRIGGER, {"filepath": str(target), "poll_interval": 0.2}, queue=queue)
        for _ in range(100):
            jobs = (await client.get("/api/v2/jobs", params={"alive": True})).json()["jobs"]
            triggerer = next(j for j in jobs if queue in j["queues"])
            if triggerer["running_triggers"] == 1:
                break
            await asyncio.sleep(0.1)
        assert triggerer["kind"] == "triggerer" and triggerer["capacity"] == 7
        assert triggerer["running_triggers"] == 1
        target.write_text("go")
        trigger = await wait_trigger(client, ti["trigger_id"])
        assert trigger["state"] == "fired" and trigger["triggerer"] == triggerer["hostname"]
        resumed = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
        assert resumed["state"] == "scheduled"
        assert json.loads(resumed["next_kwargs"])["event"]["value"]["filepath"] == str(target)
        logs = (await client.get(f"/api/v2/triggers/{ti['trigger_id']}/logs")).json()["lines"]
        assert any("running airlock.triggers.FileTrigger" in line["message"] for line in logs)
        assert all(line["job_id"] == triggerer["id"] for line in logs)


async def test_terminal_event_ends_the_task_directly(make_stack) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        ti = await defer(client, "tests.trigger_classes.SucceedTaskTrigger", {}, queue=queue)
        trigger = await wait_trigger(client, ti["trigger_id"])
        assert trigger["event_type"] == "task_success"
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert final["state"] == "success" and final["next_method"] is None


async def test_raising_trigger_fails_the_task_with_its_traceback(make_stack) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        ti = await defer(client, "tests.trigger_classes.RaisingTrigger", {}, queue=queue)
        trigger = await wait_trigger(client, ti["trigger_id"])
        assert trigger["state"] == "failed"
        assert "ValueError: the sensor broke" in trigger["failure"] and "Traceback" in trigger["failure"]
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert final["state"] == "scheduled" and final["next_method"] == "__fail__"
    assert "the sensor broke" in json.loads(final["next_kwargs"])["error"]


async def test_trigger_timeout_resumes_with_fail(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        ti = await defer(
            client,
            FILE_TRIGGER,
            {"filepath": str(tmp_path / "never"), "poll_interval": 0.2},
            queue=queue,
            trigger_timeout=2,
        )
        trigger = await wait_trigger(client, ti["trigger_id"])
        assert trigger["state"] == "timed_out"
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert (
        final["next_method"] == "__fail__" and json.loads(final["next_kwargs"])["error"] == "Trigger timeout"
    )


@pytest.mark.parametrize("how", ["delete", "clear"])
async def test_cancel_runs_cleanup_on_the_triggerer(make_stack, tmp_path: Path, how: str) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    marker = tmp_path / "cleanup.marker"
    secret = secret_scan.trigger_secret("kwarg-")
    async with stack.client() as client:
        kwargs = {"marker": str(marker), "password": secret}
        ti = await defer(client, "tests.trigger_classes.WaitForeverTrigger", kwargs, queue=queue)
        for _ in range(100):
            logs = (await client.get(f"/api/v2/triggers/{ti['trigger_id']}/logs")).json()["lines"]
            if any("waiting for nothing" in line["message"] for line in logs):
                break  # its logs are readable while it runs
            await asyncio.sleep(0.1)
        assert any("waiting for nothing" in line["message"] for line in logs)
        if how == "delete":
            response = await client.delete(f"/api/v2/triggers/{ti['trigger_id']}")
        else:
            response = await client.post(f"/api/v2/task-instances/{ti['id']}/clear")
        assert response.status_code == 200
        trigger = await wait_trigger(client, ti["trigger_id"])
    assert trigger["state"] == "cancelled"
    # The triggerer learns it at its next held check (every job heartbeat interval), heartbeats the
    # run at once, and Temporal's answer carries the cancellation.
    for _ in range(300):
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    assert marker.read_text() == "cleaned up"
    # Kwargs travel through the API, never through Temporal: not even encrypted in the history.
    temporal = await Client.connect(stack.temporal_address)
    history = await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").fetch_history()
    assert secret not in history.to_json()
    query = (
        "AirlockKind = 'trigger' AND AirlockClasspath = 'tests.trigger_classes.WaitForeverTrigger' "
        f"AND AirlockQueue = '{queue}'"
    )
    for _ in range(50):
        found = [wf.id async for wf in temporal.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [f"trigger-{ti['trigger_id']}"]


async def test_class_outside_the_allowlist_fails_loudly(make_stack) -> None:
    stack = await make_stack()
    queue = unique("trig")
    await stack.start_worker(queue, name="strict", AIRLOCK_TRIGGERER="true")  # default allowlist only
    await stack.wait_worker(queue)
    async with stack.client() as client:
        response = await client.post(
            "/api/v2/triggers", json={"classpath": "tests.trigger_classes.RaisingTrigger", "queue": queue}
        )
        trigger = await wait_trigger(client, response.json()["id"])
    assert trigger["state"] == "failed" and "allowlist" in trigger["failure"]


async def test_killed_triggerer_hands_its_triggers_over_and_events_apply_once(
    make_stack, tmp_path: Path
) -> None:
    stack = await make_stack(trigger_heartbeat_timeout=4)
    queue = unique("trig")
    first = await stack.start_worker(queue, name="t1", AIRLOCK_TRIGGERER="true")
    await stack.wait_worker(queue)
    await stack.start_worker(queue, name="t2", AIRLOCK_TRIGGERER="true")
    paths = [tmp_path / f"flag-{n}" for n in range(12)]
    async with stack.client() as client:
        tis = [
            await defer(client, FILE_TRIGGER, {"filepath": str(p), "poll_interval": 0.2}, queue=queue)
            for p in paths
        ]
        for _ in range(200):
            states = [(await client.get(f"/api/v2/triggers/{ti['trigger_id']}")).json() for ti in tis]
            if all(t["state"] == "running" for t in states):
                break
            await asyncio.sleep(0.1)
        jobs = {
            j["hostname"]: j
            for j in (await client.get("/api/v2/jobs", params={"alive": True})).json()["jobs"]
        }
        victim = next(
            j for j in jobs.values() if queue in j["queues"] and j["hostname"].endswith(f":{first.pid}")
        )
        held = [t["id"] for t in states if t["job_id"] == victim["id"]]
        assert held, "the first triggerer should hold some triggers"
        os.killpg(first.pid, signal.SIGKILL)
        # Within the heartbeat timeout (plus retry backoff) the survivor runs them all.
        for _ in range(300):
            states = [(await client.get(f"/api/v2/triggers/{t}")).json() for t in held]
            if all(t["job_id"] != victim["id"] for t in states):
                break
            await asyncio.sleep(0.1)
        assert all(t["job_id"] != victim["id"] for t in states)
        for path in paths:
            path.write_text("go")
        for ti in tis:
            assert (await wait_trigger(client, ti["trigger_id"]))["state"] == "fired"
            final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
            assert final["state"] == "scheduled"
            assert final["next_kwargs"].count('"event"') == 1  # applied exactly once


async def test_event_due_while_api_down_lands_when_it_returns(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    flag = tmp_path / "flag"
    async with stack.client() as client:
        ti = await defer(client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=queue)
        for _ in range(100):
            if (await client.get(f"/api/v2/triggers/{ti['trigger_id']}")).json()["state"] == "running":
                break
            await asyncio.sleep(0.1)
    await stack.api.stop()
    flag.write_text("go")  # fires now, while nobody can record it
    await asyncio.sleep(5)
    await stack.api.start()
    async with stack.client() as client:
        assert (await wait_trigger(client, ti["trigger_id"]))["state"] == "fired"
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert final["state"] == "scheduled" and final["next_kwargs"].count('"event"') == 1


async def _run_attempts(temporal: Client, trigger_ids: list[str]) -> list[int]:
    """The attempt of each trigger's run, as Temporal counts it (a handover makes a new one)."""
    attempts = []
    for trigger_id in trigger_ids:
        description = await temporal.get_workflow_handle(f"trigger-{trigger_id}").describe()
        [run] = description.raw_description.pending_activities
        attempts.append(run.attempt)
    return attempts


async def test_triggers_stay_on_their_triggerer_after_the_api_was_away(make_stack, tmp_path: Path) -> None:
    """A triggerer's liveness is its job's heartbeat to the API: an API away for longer than the
    heartbeat timeout must not take its return for the triggerer's death and move every trigger."""
    stack = await make_stack(trigger_heartbeat_timeout=2)
    queue = await start_triggerer(stack)
    flags = [tmp_path / f"flag-{n}" for n in range(3)]
    async with stack.client() as client:
        tis = [
            await defer(client, FILE_TRIGGER, {"filepath": str(f), "poll_interval": 0.2}, queue=queue)
            for f in flags
        ]
        trigger_ids = [ti["trigger_id"] for ti in tis]
        for _ in range(100):
            rows = [(await client.get(f"/api/v2/triggers/{t}")).json() for t in trigger_ids]
            if all(row["state"] == "running" for row in rows):
                break
            await asyncio.sleep(0.1)
    temporal = await Client.connect(stack.temporal_address)
    assert await _run_attempts(temporal, trigger_ids) == [1, 1, 1]
    await stack.api.stop()
    await asyncio.sleep(5)
    await stack.api.start()
    # Past a heartbeat timeout after its return, and passes later: the triggerer beat again meanwhile.
    await asyncio.sleep(2 + 2)
    assert await _run_attempts(temporal, trigger_ids) == [1, 1, 1], "no trigger was handed over"
    for flag in flags:
        flag.write_text("go")
    async with stack.client() as client:
        for ti in tis:
            assert (await wait_trigger(client, ti["trigger_id"]))["state"] == "fired"


async def test_run_a_triggerer_took_but_never_claimed_goes_to_another(make_stack, tmp_path: Path) -> None:
    """A worker of the queue takes the trigger's run from Temporal and never claims it (as if the
    answer to its poll were lost): past the heartbeat timeout the API fails that attempt, and a real
    triggerer gets the retry, long before Temporal's own heartbeat timeout would."""
    stack = await make_stack(trigger_heartbeat_timeout=2)
    queue = await start_triggerer(stack, capacity=1)
    flag = tmp_path / "flag"
    temporal = await Client.connect(stack.temporal_address)
    taken = asyncio.Event()

    @activity.defn(dynamic=True)
    async def swallow(args: Sequence[RawValue]) -> None:
        taken.set()
        await asyncio.Event().wait()

    async with stack.client() as client:
        # The real triggerer is busy with another trigger, so the swallower takes the next run.
        busy = await defer(client, FILE_TRIGGER, {"filepath": str(tmp_path / "never")}, queue=queue)
        for _ in range(100):
            if (await client.get(f"/api/v2/triggers/{busy['trigger_id']}")).json()["state"] == "running":
                break
            await asyncio.sleep(0.1)
        async with Worker(temporal, task_queue=queue, activities=[swallow], max_concurrent_activities=1):
            ti = await defer(client, FILE_TRIGGER, {"filepath": str(flag), "poll_interval": 0.2}, queue=queue)
            await asyncio.wait_for(taken.wait(), 30)
            # The real triggerer frees its slot; the swallower keeps the run it took.
            assert (await client.delete(f"/api/v2/triggers/{busy['trigger_id']}")).status_code == 200
            flag.write_text("go")
            trigger = await wait_trigger(client, ti["trigger_id"], timeout=60)
    assert trigger["state"] == "fired" and trigger["triggerer"] != "swallower"
    history = await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").fetch_history()
    [started] = [e for e in history.events if e.HasField("activity_task_started_event_attributes")][-1:]
    assert started.activity_task_started_event_attributes.attempt == 2, "the swallowed attempt was failed"


async def test_sql_trigger_reads_its_connection_through_the_execution_api(make_stack) -> None:
    from sqlalchemy import create_engine, text

    from tests import services

    stack = await make_stack()
    queue = await start_triggerer(stack)
    table = unique("ready").replace("-", "_")
    engine = create_engine(services.postgres_url().replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text(f"create table {table} (done int)"))
    try:
        async with stack.client() as client:
            created = await client.post(
                "/api/v2/connections",
                json={
                    "connection_id": "warehouse",
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "postgres",
                    "schema": "test",
                },
            )
            assert created.status_code == 201, created.text
            ti = await defer(
                client,
                "activities.triggers.sql.SqlTrigger",
                {"conn_id": "warehouse", "sql": f"select count(*) from {table}", "poll_interval": 0.2},
                queue=queue,
            )
            await asyncio.sleep(1)
            assert (await client.get(f"/api/v2/triggers/{ti['trigger_id']}")).json()["state"] == "running"
            # The trigger's token reaches the connection its kwargs name, and no other.
            payroll = await client.post(
                "/api/v2/connections", json={"connection_id": "payroll", "conn_type": "postgres"}
            )
            assert payroll.status_code == 201, payroll.text
            # A token for this trigger, handed (as a claim does) to the triggerer that holds it.
            holder = await asyncio.to_thread(_trigger_holder, stack, ti["trigger_id"])
            assert holder, "the running trigger names no worker credential"
            token = mint_trigger_token(stack.settings, ti["trigger_id"], holder, 60)
            headers = {"Authorization": f"Bearer {token}", EXECUTION_API_VERSION_HEADER: "2026-12-01"}
            async with httpx.AsyncClient(
                base_url=stack.api.url + "/execution", headers=headers
            ) as trigger_api:
                base = f"/triggers/{ti['trigger_id']}/connections"
                assert (await trigger_api.get(f"{base}/warehouse")).status_code == 200
                assert (await trigger_api.get(f"{base}/payroll")).status_code == 403
            with engine.begin() as conn:
                conn.execute(text(f"insert into {table} values (1)"))
            trigger = await wait_trigger(client, ti["trigger_id"])
        assert trigger["state"] == "fired"
        assert json.loads(trigger["event_payload"])["value"] == {"value": 1}
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop table {table}"))
        engine.dispose()


async def test_running_task_defers_through_the_execution_api(make_stack) -> None:
    stack = await make_stack()
    async with stack.client() as client:
        # The deferral names no queue: the default trigger queue, which this task instance may use.
        created = await client.post(
            "/api/v2/task-instances",
            json={
                "dag_id": "d",
                "run_id": "r",
                "task_id": "t",
                "allowed_queues": [stack.settings.default_trigger_queue],
            },
        )
        ti = created.json()
        assert ti["state"] == "running"
    headers = {"Authorization": f"Bearer {ti['execution_token']}", EXECUTION_API_VERSION_HEADER: "2026-12-01"}
    async with httpx.AsyncClient(base_url=stack.api.url + "/execution", headers=headers) as runner:
        body = {
            "state": "deferred",
            "trigger": {"classpath": TIMEDELTA_TRIGGER, "kwargs": {"delta": 1}},
            "next_method": "execute_complete",
            "next_kwargs": {"x": 1},
        }
        elsewhere = {**body, "trigger": {**body["trigger"], "queue": unique("not-allowed")}}
        refused = await runner.patch(f"/task-instances/{ti['id']}/state", json=elsewhere)
        assert refused.status_code == 403, refused.text  # a queue it was not allowed
        response = await runner.patch(f"/task-instances/{ti['id']}/state", json=body)
        assert response.status_code == 200, response.text
        again = await runner.patch(f"/task-instances/{ti['id']}/state", json=body)
        assert again.status_code == 409  # only a running task defers
        old = await runner.patch(
            f"/task-instances/{ti['id']}/state",
            json=body,
            headers={EXECUTION_API_VERSION_HEADER: "2026-11-21"},
        )
        assert old.status_code == 404  # the route did not exist in the first version
    async with stack.client() as client:
        assert (await wait_trigger(client, response.json()["trigger_id"]))["state"] == "fired"
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert final["state"] == "scheduled" and final["next_method"] == "execute_complete"
    assert json.loads(final["next_kwargs"])["x"] == 1


def _trigger_holder(stack: Stack, trigger_id: str) -> str | None:
    """The worker credential holding a trigger (the row's ``credential``, which no API shows)."""
    from sqlalchemy import create_engine, text

    from api.db.session import sync_url

    engine = create_engine(sync_url(stack.settings.database_url))
    try:
        with engine.connect() as conn:
            quote = conn.dialect.identifier_preparer.quote
            query = text(f"select credential from {quote('trigger')} where id = :id")
            holder: str | None = conn.execute(query, {"id": trigger_id}).scalar_one()
            return holder
    finally:
        engine.dispose()


async def test_cli_lists_shows_and_reads_logs(make_stack, tmp_path: Path) -> None:
    stack = await make_stack()
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        ti = await defer(client, "tests.trigger_classes.RaisingTrigger", {}, queue=queue)
        await wait_trigger(client, ti["trigger_id"])

    async def cli(*args: str) -> tuple[int, str]:
        return await stack.cli("triggers", *args)

    code, out = await cli("list")
    assert code == 0 and ti["trigger_id"][:8] in out
    code, out = await cli("show", ti["trigger_id"], "--json")
    assert code == 0 and json.loads(out)["state"] == "failed"
    code, out = await cli("show", ti["trigger_id"])
    assert code == 0 and re.search(r"^state +failed$", out, re.MULTILINE), out
    code, out = await cli("logs", ti["trigger_id"], "--follow")  # it has ended: --follow ends too
    assert code == 0 and "about to fail" in out
    code, out = await cli("cancel", "no-such-trigger")
    assert code == 2 and "404" in out


async def test_rejected_api_call_fails_the_trigger_loudly(make_stack) -> None:
    """A 4xx (here: the trigger's connection does not exist) is final, not a silent retry loop."""
    stack = await make_stack()
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        ti = await defer(
            client,
            "activities.triggers.sql.SqlTrigger",
            {"conn_id": "no-such-connection", "sql": "select 1", "poll_interval": 0.2},
            queue=queue,
        )
        trigger = await wait_trigger(client, ti["trigger_id"])
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert trigger["state"] == "failed"
    assert "404" in trigger["failure"] and "no-such-connection" in trigger["failure"]
    assert final["next_method"] == "__fail__"
    temporal = await Client.connect(stack.temporal_address)
    description = await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").describe()
    assert description.status is not None and description.status.name == "FAILED"


async def test_trigger_whose_workflow_is_terminated_is_reaped(make_stack, tmp_path: Path) -> None:
    stack = await make_stack(trigger_reaper_interval=0.5)
    queue = await start_triggerer(stack)
    async with stack.client() as client:
        kwargs = {"marker": str(tmp_path / "marker")}
        ti = await defer(client, "tests.trigger_classes.WaitForeverTrigger", kwargs, queue=queue)
        temporal = await Client.connect(stack.temporal_address)
        await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").terminate(
            reason="operator pulled it"
        )
        trigger = await wait_trigger(client, ti["trigger_id"], timeout=30)
        final = (await client.get(f"/api/v2/task-instances/{ti['id']}")).json()
    assert trigger["state"] == "failed"
    assert "terminated in Temporal (operator pulled it)" in trigger["failure"]
    assert final["next_method"] == "__fail__"
