"""The global-cap semaphore, on the time-skipping test server: FIFO grants, releases, lease expiry, its
bound; and the size of its largest state."""

from __future__ import annotations

import asyncio
import math
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from airlock.codec import make_data_converter, master_codec
from airlock.protocol import (
    SLOT_CAPACITY_ACTIVITY,
    SLOT_GRANTED_SIGNAL,
    SLOT_REFUSED_SIGNAL,
    connection_test_workflow_id,
    slots_workflow_id,
)
from airlock.workloads import MAX_SLOT_ENTRIES, SlotHolder, SlotRelease, SlotRequest, SlotsState, slot_lease
from api.core.config import MAX_CONCURRENCY_LIMIT, MAX_PENDING_TESTS_LIMIT
from tests.reliability import record
from workflows import slots
from workflows.slots import ConnectionTestSlotsWorkflow

TEST_SERVER = str(Path(sys.executable).parent / "temporal-test-server")


@workflow.defn
class SlotHolderWorkflow:
    """Stands in for a connection test: waits for its grant, holds the slot until told to stop."""

    def __init__(self) -> None:
        self.granted = False
        self.lease = ""
        self.done = False

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self, lease: str) -> None:
        self.granted = True
        self.lease = lease

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def has_slot(self) -> bool:
        return self.granted

    @workflow.run
    async def run(self, slots_id: str, release: bool) -> None:
        await workflow.wait_condition(lambda: self.granted)
        await workflow.wait_condition(lambda: self.done)
        if release:
            await workflow.get_external_workflow_handle(slots_id).signal(
                "release", SlotRelease(workflow.info().workflow_id, self.lease)
            )


async def _granted(client: Client, ids: list[str]) -> list[str]:
    return [i for i in ids if await client.get_workflow_handle(i).query(SlotHolderWorkflow.has_slot)]


@asynccontextmanager
async def semaphore(*holders: type, capacity: int) -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A time-skipping server and a worker running the semaphore (and ``holders``) on a fresh queue;
    the semaphore's capacity is ``capacity``, read as it reads the API's settings (a local activity)."""

    @activity.defn(name=SLOT_CAPACITY_ACTIVITY)
    async def slot_capacity() -> int:
        return capacity

    async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER) as env:
        queue = f"slots-{uuid.uuid4().hex[:6]}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ConnectionTestSlotsWorkflow, *holders],
            activities=[slot_capacity],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env, queue


async def _settle() -> None:
    await asyncio.sleep(0.5)


async def test_fifo_grants_release_and_lease_expiry() -> None:
    async with semaphore(SlotHolderWorkflow, capacity=2) as (env, queue):
        slots_id = slots_workflow_id(queue)
        holders = [f"holder-{n}" for n in range(5)]
        for n, holder in enumerate(holders):
            # holder-0 never releases: only its lease frees its slot.
            await env.client.start_workflow(
                SlotHolderWorkflow.run, args=[slots_id, n != 0], id=holder, task_queue=queue
            )
            await env.client.start_workflow(
                ConnectionTestSlotsWorkflow.run,
                SlotsState(capacity=2),
                id=slots_id,
                task_queue=queue,
                start_signal="acquire",
                start_signal_args=[SlotRequest(holder, capacity=2, lease_seconds=600 if n == 0 else 3600)],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        await _settle()
        assert await _granted(env.client, holders) == ["holder-0", "holder-1"]

        # A release that does not name the holder's lease is ignored: holder-0 keeps its slot.
        slots_handle = env.client.get_workflow_handle(slots_id)
        await slots_handle.signal("release", SlotRelease("holder-0", "not-its-lease"))
        await _settle()
        assert await _granted(env.client, holders) == ["holder-0", "holder-1"]
        assert "holder-0" in (await slots_handle.query(ConnectionTestSlotsWorkflow.state)).held

        await env.client.get_workflow_handle(holders[1]).signal(SlotHolderWorkflow.finish)
        await _settle()
        assert await _granted(env.client, holders) == ["holder-0", "holder-1", "holder-2"]

        await env.client.get_workflow_handle(holders[2]).signal(SlotHolderWorkflow.finish)
        await _settle()
        assert await _granted(env.client, holders) == holders[:4]

        # holder-0 never releases: it keeps its slot until its lease runs out, then holder-4 is next.
        await env.sleep(timedelta(seconds=300))
        assert "holder-4" not in await _granted(env.client, holders)
        await env.sleep(timedelta(seconds=400))
        await _settle()
        assert await _granted(env.client, holders) == holders
        state = await env.client.get_workflow_handle(slots_id).query(ConnectionTestSlotsWorkflow.state)
        assert set(state.held) == {"holder-3", "holder-4"}
        assert state.waiting == {}


@workflow.defn
class BoundedHolderWorkflow:
    """A test waiting for its slot that may be refused one, as ConnectionTestWorkflow is."""

    def __init__(self) -> None:
        self.answer: str | None = None

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self, lease: str) -> None:
        self.answer = "granted"

    @workflow.signal(name=SLOT_REFUSED_SIGNAL)
    def slot_refused(self, reason: str) -> None:
        self.answer = f"refused: {reason}"

    @workflow.query
    def outcome(self) -> str | None:
        return self.answer

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.answer is not None)
        await workflow.wait_condition(lambda: False, timeout=timedelta(hours=1))
        return self.answer or ""


async def test_the_semaphore_refuses_past_its_bound_and_carries_its_state_over(monkeypatch) -> None:
    """Past MAX_SLOT_ENTRIES (lowered here to 4) a request is refused with the reason, not kept; the
    state survives continue-as-new in its compact form, FIFO order included."""
    monkeypatch.setattr(slots, "MAX_SLOT_ENTRIES", 4)
    monkeypatch.setattr(slots, "CONTINUE_AS_NEW_AFTER_EVENTS", 20)
    async with semaphore(BoundedHolderWorkflow, capacity=1) as (env, queue):
        slots_id = slots_workflow_id(queue)
        ids = [f"bounded-{n}" for n in range(7)]
        for workflow_id in ids:
            await env.client.start_workflow(BoundedHolderWorkflow.run, id=workflow_id, task_queue=queue)
            await env.client.start_workflow(
                ConnectionTestSlotsWorkflow.run,
                SlotsState(capacity=1),
                id=slots_id,
                task_queue=queue,
                start_signal="acquire",
                start_signal_args=[SlotRequest(workflow_id, capacity=1, lease_seconds=3600)],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        await _settle()
        answers = [await env.client.get_workflow_handle(i).query(BoundedHolderWorkflow.outcome) for i in ids]
        assert answers[0] == "granted"
        assert answers[1:4] == [None, None, None]
        for answer in answers[4:]:
            assert answer is not None and answer.startswith("refused: 4 connection tests hold or wait")
        handle = env.client.get_workflow_handle(slots_id)
        first_run = (await handle.describe()).run_id
        # Releases and re-acquires grow the history past CONTINUE_AS_NEW_AFTER_EVENTS.
        for _ in range(10):
            await handle.signal("acquire", SlotRequest(ids[1], capacity=1, lease_seconds=3600))
        seed = (await handle.query(ConnectionTestSlotsWorkflow.state)).lease_seed
        await handle.signal("release", SlotRelease(ids[0], slot_lease(seed, ids[0])))
        await _settle()
        assert (await handle.describe()).run_id != first_run, "the semaphore did not continue as new"
        state = await handle.query(ConnectionTestSlotsWorkflow.state)
        assert list(state.held) == [ids[1]] and list(state.waiting) == ids[2:4]
        assert state.holders == [] and state.waiters == [] and state.refused == []


async def test_worst_case_state_is_far_below_the_payload_limit(dev_secrets) -> None:
    """The largest state the semaphore can carry across continue-as-new, encoded as Temporal gets it
    (JSON, then the payload codec): every entry a connection test's workflow id, every number as long as
    it gets. The API's caps at their maxima fit in the bound."""
    now = 4_102_444_800  # 2100-01-01: more digits than any expiry before it
    worst_lease = 10**9  # 31 years: more digits than any real lease
    ids = [connection_test_workflow_id(str(uuid.uuid4())) for _ in range(MAX_SLOT_ENTRIES)]
    half = MAX_SLOT_ENTRIES // 2
    state = SlotsState(
        capacity=MAX_SLOT_ENTRIES,
        held={i: now + worst_lease for i in ids[:half]},
        waiting={i: worst_lease for i in ids[half:]},
        refused=[connection_test_workflow_id(str(uuid.uuid4())) for _ in range(slots.MAX_PENDING_REFUSALS)],
        lease_seed=uuid.uuid4().hex,
    )
    converter = make_data_converter(master_codec("k1", dev_secrets.payload_key))
    payloads = await converter.encode([state])
    size = sum(p.ByteSize() for p in payloads)
    assert size < 512 * 1024, f"{size} bytes"
    assert (await converter.decode(payloads, [SlotsState]))[0] == state
    # The API never lets more tests wait or hold a slot than the semaphore keeps.
    assert MAX_PENDING_TESTS_LIMIT + MAX_CONCURRENCY_LIMIT <= MAX_SLOT_ENTRIES
    record(
        "semaphore state at its bound",
        1,
        f"{size / 1024:.0f} KiB encoded",
        f"{MAX_SLOT_ENTRIES} entries + {slots.MAX_PENDING_REFUSALS} pending refusals; Temporal refuses 2048 KiB",
    )


async def test_a_state_in_the_earlier_form_is_still_read() -> None:
    """A semaphore that continued as new before the compact form existed resumes with its holders and
    waiters, in order."""
    async with semaphore(capacity=1) as (env, queue):
        expiry = (await env.get_current_time()).timestamp() + 600.5
        handle = await env.client.start_workflow(
            ConnectionTestSlotsWorkflow.run,
            SlotsState(
                capacity=1,
                holders=[SlotHolder("old-holder", expiry)],
                waiters=[SlotRequest("old-w1", 1, 30.2), SlotRequest("old-w2", 1, 60)],
            ),
            id=f"{queue}-connection-test-slots",
            task_queue=queue,
        )
        state = await handle.query(ConnectionTestSlotsWorkflow.state)
        assert state.held == {"old-holder": math.ceil(expiry)}
        assert list(state.waiting.items()) == [("old-w1", 31), ("old-w2", 60)]
        assert state.holders == [] and state.waiters == []
