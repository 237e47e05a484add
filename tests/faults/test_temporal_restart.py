"""The Temporal dev server restarts (same SQLite file) with tests and triggers in flight: all finish."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.devstack import free_port, temporal_command, wait_for_port
from tests.conftest import SEARCH_ATTRIBUTES
from tests.faults.support import InFlightRig, clock, events_applied_once, spread, wait_finished
from tests.reliability import record
from tests.targets import SlowTarget

TRIALS = 2
DOWN = 5.0
TESTS, FILE_TRIGGERS, TIMERS = 4, 10, 5


@dataclass
class TemporalServer:
    """A dev server on a SQLite file, so that a restart keeps its workflows."""

    command: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    folder = tmp_path_factory.mktemp("temporal-file")
    port = free_port()
    options = {
        "ip": "127.0.0.1",
        "port": port,
        "headless": True,
        "db_filename": folder / "temporal.db",
        "search_attributes": SEARCH_ATTRIBUTES,
    }
    server = TemporalServer(temporal_command(options), port, folder / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def temporal_address(temporal_server: TemporalServer) -> str:
    """Stacks in this module run on the restartable server instead of the session's in-memory one."""
    return temporal_server.address


@pytest.mark.slow
async def test_work_in_flight_survives_a_temporal_restart(
    make_stack, temporal_server: TemporalServer, slow_http_server: SlowTarget, tmp_path: Path
) -> None:
    rig = await InFlightRig.serve(
        make_stack, slow_http_server, tmp_path, tests=TESTS, file_triggers=FILE_TRIGGERS, timers=TIMERS
    )
    stack = rig.stack
    finish: list[float] = []
    for _ in range(TRIALS):
        async with stack.client() as client:
            work = await rig.start(client, timer_delta=3)
            temporal_server.stop()
            work.fire_files()
            await asyncio.sleep(DOWN)  # drivers answer and timers come due while Temporal is away
            temporal_server.start()
            back = clock()
            await wait_finished(client, work, timeout=180)
            finish.append(clock() - back)
            await events_applied_once(client, work)
        assert all(w.poll() is None for w in stack.workers), "workers ride out the restart"
    record(
        "Temporal dev server restarted (same SQLite file)",
        TRIALS,
        f"each trial: {TESTS} tests, {FILE_TRIGGERS} triggerer triggers and {TIMERS} timers in flight "
        "all finished, each event applied once",
        f"down {DOWN:g} s; server back to everything recorded: {spread(finish)}",
    )
