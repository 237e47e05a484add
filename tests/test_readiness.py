"""``/health`` is liveness, ``/ready`` readiness: the metadata database and Temporal are stopped for
real, each in turn, and ``/ready`` names which one failed while ``/health`` keeps answering.

The database is a private throwaway cluster and Temporal a dev server of this test's own: the
session's services are never stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airlock.devstack import free_port, temporal_command
from api.db.migrate import upgrade
from tests.conftest import SEARCH_ATTRIBUTES
from tests.faults.test_temporal_restart import TemporalServer
from tests.pgcluster import PgCluster, private_cluster
from tests.stack import ApiServer, stack_settings


@pytest.fixture
def private_pg() -> Iterator[PgCluster]:
    with private_cluster(free_port(), databases=["airlock"]) as cluster:
        yield cluster


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[TemporalServer]:
    port = free_port()
    options = {"ip": "127.0.0.1", "port": port, "headless": True, "search_attributes": SEARCH_ATTRIBUTES}
    server = TemporalServer(temporal_command(options), port, tmp_path / "temporal.log")
    server.start()
    yield server
    server.stop()


async def _until(client: httpx.AsyncClient, status: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.get("/ready")
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            body: dict[str, Any] = answer.json()
            return body
        await asyncio.sleep(0.3)


async def test_ready_names_the_dependency_that_stopped_and_health_stays_up(
    dev_secrets: Any, private_pg: PgCluster, own_temporal: TemporalServer
) -> None:
    database_url = private_pg.url(database="airlock")
    # No control worker: this API only answers, so stopping its Temporal leaves nothing to drain.
    settings = stack_settings(dev_secrets, own_temporal.address, database_url, run_control_worker=False)
    upgrade(settings.database_url)
    api = ApiServer(settings, free_port())
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
            assert (await _until(client, 200)) == {
                "status": "ready",
                "checks": {"database": "ok", "temporal": "ok"},
            }

            private_pg.stop()
            down = await _until(client, 503)
            assert down["status"] == "not ready" and down["checks"]["temporal"] == "ok", down
            assert down["checks"]["database"].startswith(("unavailable (", "no answer within")), down
            assert "127.0.0.1" not in str(down) and "airlock" not in str(down)  # no address, no name
            assert (await client.get("/health")).json() == {"status": "ok"}
            private_pg.start()
            await _until(client, 200)

            own_temporal.stop()
            down = await _until(client, 503)
            assert down["status"] == "not ready" and down["checks"]["database"] == "ok", down
            assert down["checks"]["temporal"].startswith(("unavailable (", "no answer within")), down
            assert (await client.get("/health")).status_code == 200
            own_temporal.start()
            assert (await _until(client, 200))["status"] == "ready"
    finally:
        await api.stop()
