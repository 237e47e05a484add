"""Helpers shared by the fault trials: processes, states, and timing."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.stack import Stack, unique, wait_terminal
from tests.targets import SlowTarget
from tests.test_triggers import FILE_TRIGGER, TIMEDELTA_TRIGGER, defer, start_triggerer, wait_trigger


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children of children included), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Wait until ``check()`` holds; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        if loop.time() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)
    return loop.time() - start


async def states(client: httpx.AsyncClient, path: str, ids: list[str]) -> list[dict[str, Any]]:
    """The current rows behind ``path/{id}`` for every id, fetched concurrently."""
    responses = await asyncio.gather(*(client.get(f"{path}/{i}") for i in ids))
    for response in responses:
        response.raise_for_status()
    return [r.json() for r in responses]


def spread(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return f"median {statistics.median(ordered):.1f} s, worst {ordered[-1]:.1f} s"


def clock() -> float:
    return asyncio.get_running_loop().time()


async def wait_running(client: httpx.AsyncClient, path: str, ids: list[str]) -> None:
    async def running() -> bool:
        return all(row["state"] == "running" for row in await states(client, path, ids))

    await poll(running, 60, f"{path}: all running")


@dataclass
class InFlight:
    """Connection tests, file triggers and timers in flight together when a fault strikes."""

    tests: list[str]
    task_instances: list[dict[str, Any]]  # the file triggers' first, then the timers'
    flags: list[Path]

    def fire_files(self) -> None:
        for flag in self.flags:
            flag.write_text("go")


@dataclass
class InFlightRig:
    """A stack with a worker and a triggerer, and the mix of work each trial puts in flight on it."""

    stack: Stack
    queue: str
    trigger_queue: str
    target: SlowTarget
    flag_dir: Path
    tests: int
    file_triggers: int
    timers: int

    @classmethod
    async def serve(
        cls,
        make_stack: Callable[..., Awaitable[Stack]],
        target: SlowTarget,
        flag_dir: Path,
        *,
        tests: int,
        file_triggers: int,
        timers: int,
    ) -> InFlightRig:
        stack = await make_stack(max_connection_test_concurrency=tests)
        queue = await stack.serve_queue()
        trigger_queue = await start_triggerer(stack)
        return cls(stack, queue, trigger_queue, target, flag_dir, tests, file_triggers, timers)

    async def start(self, client: httpx.AsyncClient, *, timer_delta: float) -> InFlight:
        """Running file triggers (waiting for their flags), timers due in ``timer_delta`` s, then
        tests whose drivers are at the target."""
        flags = [self.flag_dir / unique("flag") for _ in range(self.file_triggers)]
        kwargs = [{"filepath": str(flag), "poll_interval": 0.2} for flag in flags]
        file_tis = [await defer(client, FILE_TRIGGER, k, queue=self.trigger_queue) for k in kwargs]
        timer_tis = [
            await defer(client, TIMEDELTA_TRIGGER, {"delta": timer_delta}) for _ in range(self.timers)
        ]
        await wait_running(client, "/api/v2/triggers", [ti["trigger_id"] for ti in file_tis])
        # Last, as the target answers a few seconds after the tests start: their results come due in the fault.
        test_ids = []
        arrived = self.target.arrivals
        for _ in range(self.tests):
            body = {"uri": self.target.url, "queue": self.queue}
            test_ids.append((await client.post("/api/v2/connections/test", json=body)).json()["id"])
        await self.target.wait_arrivals(arrived + self.tests)
        return InFlight(test_ids, file_tis + timer_tis, flags)


async def wait_finished(client: httpx.AsyncClient, work: InFlight, timeout: float) -> None:
    """Every test succeeds and every trigger fires."""
    for test_id in work.tests:
        result = await wait_terminal(client, test_id, timeout=timeout)
        assert result["state"] == "success", result
    for ti in work.task_instances:
        assert (await wait_trigger(client, ti["trigger_id"], timeout=timeout))["state"] == "fired"


async def events_applied_once(client: httpx.AsyncClient, work: InFlight) -> list[dict[str, Any]]:
    """The task instances, each checked to hold its event exactly once."""
    finals = await states(client, "/api/v2/task-instances", [ti["id"] for ti in work.task_instances])
    assert [f["next_kwargs"].count('"event"') for f in finals] == [1] * len(finals)
    return finals
