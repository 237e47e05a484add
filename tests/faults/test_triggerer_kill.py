"""SIGKILL one of two triggerers holding 200 triggers: every trigger fires, every event applies once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.support import clock, poll, states
from tests.reliability import record
from tests.stack import Stack, unique
from tests.test_triggers import FILE_TRIGGER, defer

TRIGGERS = 200


async def _triggers(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    body = (await client.get("/api/v2/triggers", params={"limit": 1000})).json()
    return {t["id"]: t for t in body["triggers"]}


async def _victim_job(client: httpx.AsyncClient, queue: str, pid: int) -> str:
    jobs = (await client.get("/api/v2/jobs", params={"alive": True})).json()["jobs"]
    return str(next(j["id"] for j in jobs if queue in j["queues"] and j["hostname"].endswith(f":{pid}")))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["while waiting", "during event delivery"])
async def test_killed_triggerer_loses_no_trigger_and_duplicates_no_event(
    make_stack, tmp_path: Path, moment: str
) -> None:
    stack: Stack = await make_stack()
    queue = unique("trig")
    victim = await stack.start_worker(queue, name="t1", AIRLOCK_TRIGGERER="true")
    await stack.wait_worker(queue)
    await stack.start_worker(queue, name="t2", AIRLOCK_TRIGGERER="true")
    paths = [tmp_path / f"flag-{n}" for n in range(TRIGGERS)]
    async with stack.client() as client:
        gate = asyncio.Semaphore(16)

        async def one(path: Path) -> dict[str, Any]:
            async with gate:
                return await defer(
                    client, FILE_TRIGGER, {"filepath": str(path), "poll_interval": 0.5}, queue=queue
                )

        tis = await asyncio.gather(*(one(p) for p in paths))

        async def all_running() -> bool:
            rows = await _triggers(client)
            return sum(t["state"] == "running" for t in rows.values()) == TRIGGERS

        await poll(all_running, 120, "all triggers running", interval=0.5)
        victim_job = await _victim_job(client, queue, victim.pid)
        held = [t for t, row in (await _triggers(client)).items() if row["job_id"] == victim_job]
        assert held, "the first triggerer holds some of the triggers"
        if moment == "during event delivery":
            for path in paths:
                path.write_text("go")
            # The file triggers poll every 0.5 s: the kill lands while their events are on the wire.
            await asyncio.sleep(0.6)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = clock()
        fired_before_kill = sum(r["state"] == "fired" for r in (await _triggers(client)).values())

        async def handed_over() -> bool:
            rows = await _triggers(client)
            return all(rows[t]["state"] == "fired" or rows[t]["job_id"] != victim_job for t in held)

        handover = await poll(handed_over, 120, "the survivor holds the victim's triggers", interval=0.5)
        if moment == "while waiting":
            for path in paths:
                path.write_text("go")

        async def all_fired() -> bool:
            rows = await _triggers(client)
            return all(row["state"] == "fired" for row in rows.values())

        await poll(all_fired, 180, "all triggers fired", interval=0.5)
        all_fired_after = clock() - killed_at
        finals = await states(client, "/api/v2/task-instances", [ti["id"] for ti in tis])
    assert all(f["state"] == "scheduled" for f in finals)
    events = [f["next_kwargs"].count('"event"') for f in finals]
    assert events == [1] * TRIGGERS, "every task instance got its event exactly once"
    record(
        f"triggerer SIGKILLed {moment}",
        TRIGGERS,
        f"{TRIGGERS}/{TRIGGERS} fired, each event applied once ({len(held)} were on the killed triggerer; "
        f"{fired_before_kill} had fired before the kill)",
        f"kill to handover {handover:.1f} s, kill to all fired {all_fired_after:.1f} s "
        f"(heartbeat timeout {stack.settings.trigger_heartbeat_timeout:g} s)",
    )
