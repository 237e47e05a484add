"""Operators terminate or reset Airlock's workflows from the Temporal side (UI or CLI): every row
still ends, with a reason, and nothing that had ended changes."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from airlock.devstack import temporal_binary
from airlock.protocol import connection_test_workflow_id
from api.temporal.client import connect
from tests.faults.support import clock, poll, spread, states, wait_running
from tests.reliability import record
from tests.stack import Stack, wait_terminal
from tests.targets import slow_http
from tests.test_triggers import FILE_TRIGGER, defer, start_triggerer, wait_trigger

TRIALS = 3


def reset(address: str, workflow_id: str, reason: str) -> None:
    """What an operator runs: `temporal workflow reset` back to the first workflow task."""
    subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "reset",
            "--address",
            address,
            "--workflow-id",
            workflow_id,
            "--type",
            "FirstWorkflowTask",
            "--reason",
            reason,
        ],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
async def test_connection_tests_terminated_or_reset_in_temporal_still_end(make_stack) -> None:
    stack: Stack = await make_stack(connection_test_reaper_interval=0.5, max_connection_test_concurrency=10)
    queue = await stack.serve_queue()
    temporal = await connect(stack.settings)
    to_terminal: list[float] = []
    with slow_http(6.0) as target:
        async with stack.client() as client:

            async def submit() -> str:
                r = await client.post("/api/v2/connections/test", json={"uri": target.url, "queue": queue})
                assert r.status_code == 202, r.text
                return str(r.json()["id"])

            terminated = [await submit() for _ in range(TRIALS)]
            reset_running = [await submit() for _ in range(TRIALS)]
            await wait_running(client, "/api/v2/connections/test", terminated + reset_running)
            started = clock()
            for test_id in terminated:
                await temporal.get_workflow_handle(connection_test_workflow_id(test_id)).terminate(
                    reason="operator says stop"
                )
            for test_id in reset_running:
                reset(stack.temporal_address, connection_test_workflow_id(test_id), "operator reran it")
            ends = {t: await wait_terminal(client, t, timeout=90) for t in terminated + reset_running}
            to_terminal.append(clock() - started)
            # Reset after the end: the rerun finds the row terminal and changes nothing.
            ended = [await submit() for _ in range(TRIALS)]
            finals = {t: await wait_terminal(client, t, timeout=60) for t in ended}
            for test_id in ended:
                reset(stack.temporal_address, connection_test_workflow_id(test_id), "operator reran it")
            for test_id in ended:
                await temporal.get_workflow_handle(connection_test_workflow_id(test_id)).result()
                assert (await client.get(f"/api/v2/connections/test/{test_id}")).json() == finals[test_id]
    for test_id in terminated:
        assert ends[test_id]["state"] == "failed"
        assert "terminated in Temporal (operator says stop)" in ends[test_id]["result_message"]
    for test_id in reset_running:
        # A reset reruns the test from the start: it runs again and records its own result.
        assert ends[test_id]["state"] == "success", ends[test_id]
    record(
        "connection-test workflow terminated or reset in Temporal",
        3 * TRIALS,
        f"{TRIALS} terminated: failed with the operator's reason (reaper); {TRIALS} reset while running: "
        f"ran again and succeeded; {TRIALS} reset after the end: row unchanged",
        f"terminate/reset to terminal: {spread(to_terminal)}",
    )


@pytest.mark.slow
async def test_triggers_terminated_or_reset_in_temporal_still_end(make_stack, tmp_path: Path) -> None:
    stack: Stack = await make_stack(trigger_reaper_interval=0.5)
    queue = await start_triggerer(stack)
    temporal = await connect(stack.settings)
    async with stack.client() as client:
        flags = [tmp_path / f"flag-{n}" for n in range(3 * TRIALS)]
        tis = [
            await defer(client, FILE_TRIGGER, {"filepath": str(p), "poll_interval": 0.2}, queue=queue)
            for p in flags
        ]
        terminated, reset_running, reset_fired = tis[:TRIALS], tis[TRIALS : 2 * TRIALS], tis[2 * TRIALS :]
        await wait_running(client, "/api/v2/triggers", [ti["trigger_id"] for ti in tis])
        for path in flags[2 * TRIALS :]:
            path.write_text("go")
        fired = {ti["id"]: await wait_trigger(client, ti["trigger_id"]) for ti in reset_fired}
        started = clock()
        for ti in terminated:
            await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").terminate(
                reason="operator pulled it"
            )
        for ti in reset_running + reset_fired:
            reset(stack.temporal_address, f"trigger-{ti['trigger_id']}", "operator reran it")
        for ti in reset_running:
            # The reset closed the earlier run: the reaper sees a closed trigger workflow and must
            # leave it, since the new run carries on.
            closed = f"WorkflowId = 'trigger-{ti['trigger_id']}' AND ExecutionStatus != 'Running'"

            async def visible(closed: str = closed) -> bool:
                return (await temporal.count_workflows(closed)).count >= 1

            await poll(visible, 10, "the reset run shows as closed in visibility")
        ended = {ti["id"]: await wait_trigger(client, ti["trigger_id"], timeout=60) for ti in terminated}
        to_terminal = clock() - started
        await asyncio.sleep(3)  # several reaper passes over the reset runs
        for path in flags[TRIALS : 2 * TRIALS]:
            path.write_text("go")
        ended |= {ti["id"]: await wait_trigger(client, ti["trigger_id"], timeout=60) for ti in reset_running}
        for ti in reset_fired:
            await temporal.get_workflow_handle(f"trigger-{ti['trigger_id']}").result()
            assert (await client.get(f"/api/v2/triggers/{ti['trigger_id']}")).json() == fired[ti["id"]]
        finals = {
            f["id"]: f for f in await states(client, "/api/v2/task-instances", [ti["id"] for ti in tis])
        }
    for ti in terminated:
        assert ended[ti["id"]]["state"] == "failed"
        assert "terminated in Temporal (operator pulled it)" in ended[ti["id"]]["failure"]
        assert finals[ti["id"]]["next_method"] == "__fail__"
    for ti in reset_running:
        assert ended[ti["id"]]["state"] == "fired", ended[ti["id"]]
    for ti in reset_running + reset_fired:
        assert finals[ti["id"]]["state"] == "scheduled"
        assert finals[ti["id"]]["next_kwargs"].count('"event"') == 1
    record(
        "trigger workflow terminated or reset in Temporal",
        3 * TRIALS,
        f"{TRIALS} terminated: failed with the operator's reason (reaper), task resumed in __fail__; "
        f"{TRIALS} reset while running: ran again and fired once; {TRIALS} reset after firing: unchanged, "
        "no second event",
        f"terminate to terminal: {to_terminal:.1f} s for all {TRIALS}",
    )
