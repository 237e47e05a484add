"""The global cap on running connection tests, kept in the metadata database (api/services/slots.py):
slots go in submission order and never past the cap, however the requests for them race, on SQLite,
PostgreSQL and MariaDB; and nothing a worker can send through Temporal lets a waiting test run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from temporalio.client import Client
from temporalio.converter import DataConverter

from airlock.protocol import SLOT_GRANTED_SIGNAL, connection_test_workflow_id
from airlock.workloads import ConnectionTestOutcome
from api.core.crypto import SecretBox
from api.db.migrate import upgrade
from api.db.models import ConnectionTest, utcnow
from api.db.session import create_engine, sessionmaker
from api.services import slots
from api.temporal.client import connect
from tests.stack import Stack, started, wait_terminal
from tests.test_segments import SealAs, _worker_codec

ALL_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mysql"], indirect=True)
CAP = 3


@ALL_DATABASES
async def test_slots_go_in_submission_order_and_never_past_the_cap(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    sessions = sessionmaker(engine)
    box = SecretBox(Fernet.generate_key().decode())
    start = utcnow()
    ids = [str(uuid.UUID(int=i)) for i in range(12)]
    try:
        async with sessions.begin() as session:
            session.add_all(
                ConnectionTest(
                    id=test_id,
                    state="pending",
                    queue="q",
                    timeout=5,
                    conn_type="tcp",
                    created_at=start + timedelta(milliseconds=i),
                )
                for i, test_id in enumerate(ids)
            )

        async def take(test_id: str) -> list[str]:
            async with sessions.begin() as session:
                _, granted = await slots.take(session, CAP, test_id)
                return granted

        async def finish(test_id: str) -> list[str]:
            async with sessions.begin() as session:
                changed, granted = await slots.finish(
                    session, box, CAP, test_id, ConnectionTestOutcome(True, "ok")
                )
                assert changed
                return granted

        async def states() -> dict[str, str]:
            async with sessions() as session:
                rows = await session.execute(select(ConnectionTest.id, ConnectionTest.state))
                return {test_id: state for test_id, state in rows}

        # Every test asks at once: the three oldest get a slot, each exactly once.
        granted = [g for each in await asyncio.gather(*(take(t) for t in reversed(ids))) for g in each]
        assert sorted(granted) == ids[:CAP]
        assert [t for t, s in (await states()).items() if s == "queued"] == ids[:CAP]

        # The holders end while the others ask again: each freed slot goes to the next oldest, once.
        racing = await asyncio.gather(*(finish(t) for t in ids[:CAP]), *(take(t) for t in ids[CAP:]))
        granted = [g for each in racing for g in each]
        assert sorted(granted) == ids[CAP : 2 * CAP]
        now = await states()
        assert [t for t in ids if now[t] == "queued"] == ids[CAP : 2 * CAP]
        assert [t for t in ids if now[t] == "success"] == ids[:CAP]

        # Finishing a test twice frees its slot once.
        async with sessions.begin() as session:
            changed, granted = await slots.finish(
                session, box, CAP, ids[0], ConnectionTestOutcome(False, "x")
            )
        assert (changed, granted) == (False, [])
    finally:
        await engine.dispose()


async def test_a_nudge_from_a_worker_does_not_run_a_waiting_test(make_stack: Any, silent_server: int) -> None:
    """A worker's Temporal client can signal a waiting test's workflow ``slot_granted``, sealed with its
    own key or not sealed at all: the workflow asks the API again, and the API keeps it waiting while
    the only slot is held."""
    stack: Stack = await make_stack(max_connection_test_concurrency=1)
    queue = await stack.serve_queue("nudge")
    env = await stack.provision("nudger", [queue])
    target = {"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 10}
    async with stack.client() as api:
        holder = (await api.post("/api/v2/connections/test", json=target)).json()["id"]
        while (await api.get(f"/api/v2/connections/test/{holder}")).json()["state"] != "running":
            await asyncio.sleep(0.1)
        waiter = (await api.post("/api/v2/connections/test", json=target)).json()["id"]
        await started(
            (await connect(stack.settings)).get_workflow_handle(connection_test_workflow_id(waiter))
        )
        converters = [DataConverter(payload_codec=SealAs(_worker_codec(env), queue)), DataConverter()]
        for converter in converters:
            client = await Client.connect(stack.temporal_address, data_converter=converter)
            await client.get_workflow_handle(connection_test_workflow_id(waiter)).signal(SLOT_GRANTED_SIGNAL)
        # Long enough for the nudged workflow to ask the API again, well within the holder's 10 s.
        await asyncio.sleep(1.5)
        waiting = (await api.get(f"/api/v2/connections/test/{waiter}")).json()
        assert waiting["state"] == "pending", waiting
        first = await wait_terminal(api, holder)
        second = await wait_terminal(api, waiter)
    assert second["started_at"] >= first["finished_at"], (first, second)


async def test_a_waiting_test_whose_nudge_was_lost_is_nudged_by_the_reaper(
    make_stack: Any, silent_server: int
) -> None:
    """An API replica that stops between granting a slot and nudging the test leaves it ``queued``
    with its workflow still waiting: the next reaper pass nudges it, and it runs."""
    stack: Stack = await make_stack(max_connection_test_concurrency=1, connection_test_reaper_interval=1)
    queue = await stack.serve_queue("lost")
    assert stack.api.server is not None
    runtime = stack.api.server.config.app.state.runtime
    async with stack.client() as api:
        holder = (
            await api.post(
                "/api/v2/connections/test",
                json={"uri": f"http://127.0.0.1:{silent_server}/", "queue": queue, "timeout": 5},
            )
        ).json()["id"]
        waiter = (
            await api.post("/api/v2/connections/test", json={"uri": "tcp://127.0.0.1:1", "queue": queue})
        ).json()["id"]
        while (await api.get(f"/api/v2/connections/test/{holder}")).json()["state"] != "running":
            await asyncio.sleep(0.1)
        # What another replica's record would do, without the nudge that follows it.
        async with runtime.sessions.begin() as session:
            _, granted = await slots.finish(
                session, runtime.box, 1, holder, ConnectionTestOutcome(False, "ended elsewhere")
            )
        assert granted == [waiter]
        ended = await wait_terminal(api, waiter, timeout=60)
    assert ended["state"] == "failed" and ended["worker"], ended
