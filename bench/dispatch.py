"""What one unit of Temporal dispatch costs on the dev server, both ways it can be configured.

Run from the repository root::

    .venv/bin/python bench/dispatch.py [--runs N]

A workflow of one no-op activity (``bench/floor.py``: a workflow task, an activity task, a workflow
task), run N times back to back and N times 0.3 s apart, on two dev servers: one with the server's
own dynamic config, one with ``airlock.devstack.DEV_DYNAMIC_CONFIG`` (what ``make dev``, the tests and
the other benchmarks run). With the defaults the history service polls its transfer queue at most 20
times a second, so back-to-back work waits for those polls; spaced work does not. This is the floor
the other benchmarks compare against, both ways. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client
from temporalio.worker import Worker

from airlock.devstack import DEV_DYNAMIC_CONFIG
from bench.connection_tests import machine_info, start_temporal
from bench.floor import OneActivityWorkflow, floor_mark

SPACING = 0.3  # seconds between spaced runs
WARMUP = 5


async def _latencies(client: Client, queue: str, n: int, gap: float) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await client.execute_workflow(
            OneActivityWorkflow.run, "probe", id=f"dispatch-{uuid.uuid4().hex}", task_queue=queue
        )
        samples.append((time.perf_counter() - started) * 1000)
        if gap:
            await asyncio.sleep(gap)
    return samples


def _figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"{statistics.median(ordered):8.1f} {ordered[int(len(ordered) * 0.99)]:8.1f}"


async def measure(address: str, runs: int) -> tuple[str, str]:
    client = await Client.connect(address)
    queue = f"dispatch-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[OneActivityWorkflow], activities=[floor_mark]):
        await _latencies(client, queue, WARMUP, 0)
        back_to_back = await _latencies(client, queue, runs, 0)
        spaced = await _latencies(client, queue, runs, SPACING)
    return _figures(back_to_back), _figures(spaced)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40, help="runs per figure (default 40)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as cleanup:
        for label, dynamic_config in (("server defaults", None), ("DEV_DYNAMIC_CONFIG", {})):
            address, _ = start_temporal(cleanup, Path(work), dynamic_config=dynamic_config)
            rows.append((label, *await measure(address, args.runs)))
    print(f"\nOne-activity workflow, start to result (ms): N={args.runs} each, spaced runs {SPACING} s apart")
    print(f"machine: {machine_info()}")
    print(f"DEV_DYNAMIC_CONFIG: {DEV_DYNAMIC_CONFIG}\n")
    print(f"{'dev server':22} {'back-to-back p50 p99':>20} {'spaced p50 p99':>20}")
    for label, back_to_back, spaced in rows:
        print(f"{label:22} {back_to_back:>20} {spaced:>20}")


if __name__ == "__main__":
    asyncio.run(main())
