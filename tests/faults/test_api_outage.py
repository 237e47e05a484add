"""The API (sole DB writer, host of the control worker) is down for 30 s while results and events
come due: everything lands once it returns; nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.support import InFlightRig, clock, events_applied_once, spread, wait_finished
from tests.reliability import record
from tests.targets import SlowTarget

TRIALS = 2
OUTAGE = 30.0
TESTS, FILE_TRIGGERS, TIMERS = 6, 20, 10


@pytest.mark.slow
async def test_results_and_events_due_during_an_api_outage_land_once(
    make_stack, slow_http_server: SlowTarget, tmp_path: Path
) -> None:
    rig = await InFlightRig.serve(
        make_stack, slow_http_server, tmp_path, tests=TESTS, file_triggers=FILE_TRIGGERS, timers=TIMERS
    )
    stack = rig.stack
    catch_up: list[float] = []
    for _ in range(TRIALS):
        async with stack.client() as client:
            # The timers come due in the middle of the outage, with no control worker to record them.
            work = await rig.start(client, timer_delta=12)
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
