"""The global-cap semaphore, on the time-skipping test server: FIFO grants, releases, lease expiry."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from airlock.protocol import SLOT_GRANTED_SIGNAL
from airlock.workloads import SlotRequest, SlotsState
from workflows.slots import ConnectionTestSlotsWorkflow

TEST_SERVER = str(Path(sys.executable).parent / "temporal-test-server")


@workflow.defn
class SlotHolderWorkflow:
    """Stands in for a connection test: waits for its grant, holds the slot until told to stop."""

    def __init__(self) -> None:
        self.granted = False
        self.done = False

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self) -> None:
        self.granted = True

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
                "release", workflow.info().workflow_id
            )


async def _granted(client: Client, ids: list[str]) -> list[str]:
    return [i for i in ids if await client.get_workflow_handle(i).query(SlotHolderWorkflow.has_slot)]


async def _settle() -> None:
    await asyncio.sleep(0.5)


async def test_fifo_grants_release_and_lease_expiry() -> None:
    async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER) as env:
        queue = f"slots-{uuid.uuid4().hex[:6]}"
        slots_id = f"{queue}-connection-test-slots"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ConnectionTestSlotsWorkflow, SlotHolderWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            holders = [f"holder-{n}" for n in range(5)]
            for n, holder in enumerate(holders):
                # holder-0 never releases: only its lease frees its slot.
                await env.client.start_workflow(
                    SlotHolderWorkflow.run, args=[slots_id, n != 0], id=holder, task_queue=queue
                )
                await env.client.start_workflow(
                    ConnectionTestSlotsWorkflow.run,
                    SlotsState(capacity=2, holders=[], waiters=[]),
                    id=slots_id,
                    task_queue=queue,
                    start_signal="acquire",
                    start_signal_args=[
                        SlotRequest(holder, capacity=2, lease_seconds=600 if n == 0 else 3600)
                    ],
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
            await _settle()
            assert await _granted(env.client, holders) == ["holder-0", "holder-1"]

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
            assert {h.workflow_id for h in state.holders} == {"holder-3", "holder-4"}
            assert state.waiters == []
