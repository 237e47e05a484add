"""SIGKILL a worker while its driver runs: the test succeeds on another worker of its queue, or ends
failed with the stage in the reason. Never stuck, and no driver outlives its worker."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from tests.faults.support import alive, clock, descendants, poll, spread
from tests.reliability import record
from tests.stack import Stack, unique, wait_terminal
from tests.targets import SlowTarget, slow_http

TESTS_PER_ROUND = 5
VICTIMS = 2
# Rounds with a standby worker on the queue (the test moves to it) and rounds without one.
ROUNDS = (True, False, True, False)
DRIVER_SECONDS = 8.0  # long enough to kill the worker mid-driver, short enough to succeed on a retry


@pytest.mark.slow
async def test_worker_killed_mid_test_never_leaves_a_test_stuck(make_stack) -> None:
    stack = await make_stack(
        max_connection_test_concurrency=TESTS_PER_ROUND, connection_test_dispatch_timeout=10
    )
    settings = stack.settings
    timeout = 60
    bound = timeout + settings.reaper_grace
    seconds: dict[bool, list[float]] = {True: [], False: []}
    with slow_http(DRIVER_SECONDS) as target:
        async with stack.client() as client:
            for standby in ROUNDS:
                seconds[standby] += await _kill_round(stack, client, target, standby, timeout, bound)
    trials = len(ROUNDS) * TESTS_PER_ROUND
    worst = max(seconds[True] + seconds[False])
    assert worst <= bound
    record(
        "worker SIGKILLed mid-test",
        trials,
        f"{len(seconds[True])} succeeded on the queue's standby worker, {len(seconds[False])} failed "
        "with the heartbeat and dispatch reasons (no standby); 0 stuck; no driver outlived its worker",
        f"kill to terminal with a standby: {spread(seconds[True])}; without: {spread(seconds[False])} "
        f"(heartbeat {settings.connection_test_heartbeat_timeout:g} s, dispatch "
        f"{settings.connection_test_dispatch_timeout:g} s; bound timeout {timeout} s + grace "
        f"{settings.reaper_grace:g} s)",
    )


async def _kill_round(
    stack: Stack, client: httpx.AsyncClient, target: SlowTarget, standby: bool, timeout: int, bound: float
) -> list[float]:
    queue = unique("kill")
    victims = [await stack.start_worker(queue, name=f"victim-{n}") for n in range(VICTIMS)]
    await _registered(client, queue, VICTIMS)
    ids = []
    arrived = target.arrivals
    for _ in range(TESTS_PER_ROUND):
        r = await client.post(
            "/api/v2/connections/test", json={"uri": target.url, "queue": queue, "timeout": timeout}
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    # Killed while the drivers run: every one has reached the target.
    await target.wait_arrivals(arrived + TESTS_PER_ROUND)
    if standby:
        await stack.start_worker(queue, name="standby")
        await _registered(client, queue, VICTIMS + 1)
    orphans = set().union(*(descendants(v.pid) for v in victims))
    assert orphans, "each worker has a fork server and driver children"
    for victim in victims:
        os.killpg(victim.pid, signal.SIGKILL)
    killed_at = clock()

    async def ended(test_id: str) -> float:
        end = await wait_terminal(client, test_id, timeout=bound + 30)
        if standby:
            assert end["state"] == "success", end
            assert end["worker"].endswith(f":{stack.workers[-1].pid}"), "it ran again on the standby"
        else:
            assert end["state"] == "failed", end
            assert "stopped responding" in end["result_message"], end["result_message"]
            assert "on a second attempt, no worker picked the test up" in end["result_message"]
        return clock() - killed_at

    seconds = await asyncio.gather(*(ended(i) for i in ids))

    async def no_orphans() -> bool:
        return not any(alive(pid) for pid in orphans)

    # The drivers run in sessions of their own, outside the worker's process group: they die with
    # the fork server instead.
    await poll(no_orphans, 10, "driver children of the killed workers exit")
    for victim in victims:
        victim.wait()
    return list(seconds)


async def _registered(client: httpx.AsyncClient, queue: str, count: int) -> None:
    async def enough() -> bool:
        jobs = (await client.get("/api/v2/jobs", params={"alive": True})).json()["jobs"]
        return sum(queue in job["queues"] for job in jobs) >= count

    await poll(enough, 60, f"{count} workers on {queue}")
