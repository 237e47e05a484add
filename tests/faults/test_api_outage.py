"""The API (sole DB writer, host of the control worker) is down for 30 s while results and events
come due: everything lands once it returns; nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.support import clock, events_applied_once, spread, start_in_flight, wait_finished
from tests.reliability import record
from tests.stack import Stack
from tests.targets import SlowTarget
from tests.test_triggers import start_triggerer

TRIALS = 2
OUTAGE = 30.0
TESTS, FILE_TRIGGERS, TIMERS = 6, 20, 10


@pytest.mark.slow
async def test_results_and_events_due_during_an_api_outage_land_once(
    make_stack, slow_http_server: SlowTarget, tmp_path: Path
) -> None:
    stack: Stack = await make_stack(max_connection_test_concurrency=TESTS)
    queue = await stack.serve_queue()
    trigger_queue = await start_triggerer(stack)
    catch_up: list[float] = []
    for trial in range(TRIALS):
        flags = [tmp_path / f"flag-{trial}-{n}" for n in range(FILE_TRIGGERS)]
        async with stack.client() as client:
            # The timers come due in the middle of the outage, with no control worker to record them.
            work = await start_in_flight(
                client,
                target=slow_http_server,
                queue=queue,
                tests=TESTS,
                trigger_queue=trigger_queue,
                flags=flags,
                timers=TIMERS,
                timer_delta=12,
            )
        await stack.api.stop()
        work.fire_files()  # the events fire now, while nobody can record them
        await asyncio.sleep(OUTAGE)  # the HTTP drivers answered at ~4 s, the timers fired at ~12 s
        await stack.api.start()
        back = clock()
        async with stack.client() as client:
            await wait_finished(client, work, timeout=120)
            catch_up.append(clock() - back)
            finals = await events_applied_once(client, work)
        assert all(f["state"] == "scheduled" for f in finals)
        assert all(w.poll() is None for w in stack.workers), "workers ride out the outage"
    record(
        f"API down {OUTAGE:g} s with results and events due",
        TRIALS,
        f"each trial: {TESTS} test results, {FILE_TRIGGERS} triggerer events and {TIMERS} timer events "
        "landed, each exactly once; workers stayed up",
        f"API back to everything recorded: {spread(catch_up)}",
    )
