"""The child-process runner: fresh process per call, killed with everything it spawned at the deadline,
and no worker secret in its environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from worker.isolation import ForkServer
from worker.main import forget_secrets_in_environment


@pytest.fixture(scope="module")
def forks() -> ForkServer:
    os.environ["AIRLOCK_WORKER_TOKEN"] = "worker-secret-token"
    os.environ["AIRLOCK_PAYLOAD_KEY"] = "payload-secret-key"
    forget_secrets_in_environment()
    server = ForkServer(preload=["tests.isolation_targets"])
    server.start()
    return server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


async def test_each_call_is_a_fresh_session_without_worker_secrets(forks: ForkServer) -> None:
    first = await forks.run("tests.isolation_targets:environment", {}, timeout=10)
    second = await forks.run("tests.isolation_targets:environment", {}, timeout=10)
    assert first.output and second.output
    assert first.output["pid"] != second.output["pid"] != os.getpid()
    assert first.output["sid"] == first.output["pid"]  # its own session: killable as a group
    assert not {"AIRLOCK_WORKER_TOKEN", "AIRLOCK_PAYLOAD_KEY"} & set(first.output["names"])


async def test_deadline_kills_the_child_and_what_it_spawned(forks: ForkServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    result = await forks.run(
        "tests.isolation_targets:hang_with_grandchild",
        {"pid_file": str(pid_file)},
        timeout=2,
        on_tick=tick,
        tick=0.2,
    )
    assert result.timed_out and result.output is None
    assert ticks >= 5  # the activity kept heartbeating while it waited
    child, grandchild = map(int, pid_file.read_text().split())
    for _ in range(50):
        if not _alive(child) and not _alive(grandchild):
            break
        await asyncio.sleep(0.1)
    assert not _alive(child) and not _alive(grandchild)


async def test_a_crashing_child_gives_no_output(forks: ForkServer) -> None:
    result = await forks.run("tests.isolation_targets:crash", {}, timeout=10)
    assert not result.timed_out and result.output is None and result.exitcode == 3


async def test_a_running_worker_shows_no_secret_in_its_proc_environ(make_stack) -> None:
    """Driver code runs as the worker's uid and could read /proc/<worker pid>/environ: the block the
    worker started with still names its secrets, but their values are gone."""
    stack = await make_stack()
    await stack.serve_queue()
    worker = stack.workers[0]
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
    assert b"AIRLOCK_PAYLOAD_KEY=" in environ and b"AIRLOCK_WORKER_TOKEN=" in environ
    assert stack.secrets.payload_key.encode() not in environ
    assert b"AIRLOCK_WORKER_TOKEN=eyJ" not in environ
