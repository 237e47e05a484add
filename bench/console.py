"""The console's pages: how long each takes to answer with the database empty and with it full, in
the same run.

Run from the repository root::

    .venv/bin/python bench/console.py [--tests 10000] [--triggers 10000] [--workers 100] [--requests 30]

One run starts a headless Temporal dev server and the API in-process (SQLite in a temporary
directory, as ``airlock api`` runs it: uvloop, no workflow sandbox), signs in to the console like a
browser (the form, the cookie) and times ``GET`` of each page: the wall time of the request over
loopback, p50 and p99 over ``--requests``, after one untimed request. First on the empty database,
the baseline; then after seeding it straight through SQLAlchemy with ``--tests`` connection tests
(every state, over 100 connections and 20 queues), ``--triggers`` triggers (every state, spread over
the jobs), 100 saved connections, ``--workers`` live jobs and as many worker credentials. The bar is
100 ms per page with 10,000 tests, 10,000 triggers and 100 workers.
Nothing is asserted: the figures are printed with the machine's.
"""

# ruff: noqa: E402  (the repository root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from airlock.devstack import ensure_secrets, free_port
from airlock.logging import configure_logging
from airlock.states import ConnectionTestState, TriggerState
from api.db.migrate import upgrade
from api.db.models import Connection, ConnectionTest, Job, Trigger, WorkerCredential
from api.db.session import sync_url
from bench.connection_tests import PRODUCT_SANDBOX, machine_info, run_like_the_api, start_temporal
from tests.stack import ApiServer, stack_settings

CONNECTIONS = 100
QUEUES = 20
PAGES = (
    "/ui/connections",
    "/ui/connections?offset=50",
    "/ui/connections/new",
    "/ui/tests",
    "/ui/tests?state=failed",
    "/ui/tests?queue=queue-7",
    "/ui/tests?connection_id=conn-42&offset=50",
    "/ui/tests/{test_id}",
    "/ui/triggers",
    "/ui/triggers?state=running",
    "/ui/triggers/{trigger_id}",
    "/ui/workers",
)


def seed(database_url: str, tests: int, workers: int, connections: int, triggers: int) -> dict[str, str]:
    """Fill the database; return one test's and one trigger's id (their pages are timed too)."""
    now = datetime.now(UTC)
    states = list(ConnectionTestState)
    test_rows: list[dict[str, Any]] = []
    for n in range(tests):
        created = now - timedelta(seconds=tests - n)
        state = states[n % len(states)]
        ended = state.is_terminal
        test_rows.append(
            {
                "id": str(uuid.uuid4()),
                "connection_id": f"conn-{n % CONNECTIONS}",
                "state": state.value,
                "result_message": f"PostgreSQL 15: select 1 ok ({n % 97 / 100:.2f} s)" if ended else None,
                "queue": f"queue-{n % QUEUES}",
                "timeout": 60,
                "worker": f"host-{n % workers}:{1000 + n % 7}"
                if state != ConnectionTestState.PENDING
                else None,
                "conn_type": "postgres",
                "host": "10.0.0.5",
                "port": 5432,
                "created_at": created,
                "updated_at": created,
                "started_at": created + timedelta(milliseconds=150) if ended else None,
                "finished_at": created + timedelta(milliseconds=400) if ended else None,
            }
        )
    saved = [
        {"connection_id": f"conn-{n}", "conn_type": "postgres", "host": f"db-{n}.example", "port": 5432}
        for n in range(connections)
    ]
    jobs = [
        {
            "id": str(uuid.uuid4()),
            "kind": "worker" if n % 5 else "triggerer",
            "hostname": f"host-{n}",
            "credential": f"edge-{n}",
            "queues": [f"queue-{n % QUEUES}"],
            "conn_types": ["postgres", "mysql", "http", "tcp"],
            "capacity": None if n % 5 else 1000,
            "state": "running",
            "started_at": now,
            "latest_heartbeat": now,
        }
        for n in range(workers)
    ]
    credentials = [
        {
            "name": f"edge-{n}",
            "queues": [f"queue-{n % QUEUES}"],
            "triggerer": not n % 5,
            "secret_hash": "0" * 64,
            "created_at": now,
            "expires_at": now + timedelta(days=365),
        }
        for n in range(workers)
    ]
    trigger_states = list(TriggerState)
    trigger_rows = [
        {
            "id": str(uuid.uuid4()),
            "classpath": "airlock.triggers.HttpTrigger",
            "queue": f"queue-{n % QUEUES}",
            "state": trigger_states[n % len(trigger_states)].value,
            "job_id": jobs[n % len(jobs)]["id"] if jobs else None,
            "created_at": now - timedelta(seconds=triggers - n),
            "updated_at": now,
        }
        for n in range(triggers)
    ]
    engine = create_engine(sync_url(database_url))
    with Session(engine) as db, db.begin():
        for model, rows in (
            (Connection, saved),
            (ConnectionTest, test_rows),
            (Job, jobs),
            (WorkerCredential, credentials),
            (Trigger, trigger_rows),
        ):
            if rows:
                db.execute(insert(model), rows)
    engine.dispose()
    return {"test_id": str(test_rows[-1]["id"]), "trigger_id": str(trigger_rows[-1]["id"])}


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    form = await client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = await client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
    assert answer.status_code == 303, answer.text


async def time_pages(client: httpx.AsyncClient, requests: int, ids: dict[str, str]) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    for template in PAGES:
        path = template.format(**ids)
        samples = []
        for n in range(requests + 1):
            started = time.perf_counter()
            answer = await client.get(path)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200, (path, answer.status_code)
            if n:  # the first request of each page is a warm-up
                samples.append(elapsed)
        timings[template] = samples
    return timings


def _p(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000


async def bench(
    args: argparse.Namespace, work: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    with contextlib.ExitStack() as processes:
        address, _ = start_temporal(processes, work)
        secrets = ensure_secrets(work / "secrets")
        database_url = f"sqlite:///{work / 'airlock.db'}"
        # The seeded active tests and triggers have no workflow: the reapers would spend the run ending
        # them, which is no page's cost.
        settings = stack_settings(
            secrets,
            address,
            database_url,
            workflow_sandbox=PRODUCT_SANDBOX,
            connection_test_reaper_interval=3600,
            trigger_reaper_interval=3600,
        )
        upgrade(settings.database_url)
        api = ApiServer(settings, free_port())
        await api.start()
        try:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
                await sign_in(client, secrets.admin_token)
                # The baseline: one test and one trigger (their pages need one), nothing else.
                one = seed(database_url, 1, 0, 0, 1)
                empty = await time_pages(client, args.requests, one)
                ids = seed(database_url, args.tests, args.workers, CONNECTIONS, args.triggers)
                full = await time_pages(client, args.requests, ids)
        finally:
            await api.stop()
    return empty, full


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (default 30)")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="airlock-bench-console-") as tmp,
        open(Path(tmp) / "api.log", "a") as log,
    ):
        configure_logging(stream=log)
        empty, full = run_like_the_api(bench(args, Path(tmp)))
    print(f"\nconsole pages, {args.requests} requests each; {machine_info()}")
    print(
        f"baseline: 1 test, 1 trigger; full: {args.tests} tests, {args.triggers} triggers, "
        f"{CONNECTIONS} connections, {args.workers} jobs and credentials\n"
    )
    print(f"{'page':44} {'empty p50':>10} {'p99':>7} {'full p50':>10} {'p99':>7}  (ms)")
    for page in PAGES:
        e, f = empty[page], full[page]
        print(f"{page:44} {_p(e, 50):10.1f} {_p(e, 99):7.1f} {_p(f, 50):10.1f} {_p(f, 99):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
