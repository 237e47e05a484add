"""The connection-test activity: runs on a worker in the target network, on the queue the user named."""

from __future__ import annotations

import time

from temporalio import activity

from activities.testers import scrub
from airlock.states import ConnectionTestState
from airlock.workloads import CONNECTION_TEST_ACTIVITY, ConnectionTestOutcome, RunConnectionTestInput
from worker.client import ExecutionAPIClient
from worker.isolation import run_child

CHILD_MODULE = "activities.testers.child"
# How long the test waits for the Execution API to come back before it gives up.
API_OUTAGE_TOLERANCE = 10.0


class ConnectionTestActivities:
    def __init__(
        self, *, api_url: str, identity: str, conn_types: list[str], heartbeat_interval: float = 1.0
    ) -> None:
        self._api_url = api_url
        self._identity = identity
        self._conn_types = conn_types
        self._heartbeat_interval = heartbeat_interval

    @activity.defn(name=CONNECTION_TEST_ACTIVITY)
    async def run_connection_test(self, workload: RunConnectionTestInput) -> ConnectionTestOutcome:
        api = ExecutionAPIClient(
            self._api_url, workload.token, retry_for=API_OUTAGE_TOLERANCE, on_retry=activity.heartbeat
        )
        async with api:
            await api.set_test_state(workload.test_id, ConnectionTestState.RUNNING, worker=self._identity)
            fields = await api.get_test_connection(workload.test_id)
        if fields.conn_type not in self._conn_types:
            return self._outcome(
                False,
                f"worker {self._identity} cannot test conn_type {fields.conn_type!r} "
                f"(it can test: {', '.join(self._conn_types) or 'nothing'})",
            )
        started = time.monotonic()
        result = await run_child(
            CHILD_MODULE,
            {"fields": fields.model_dump(by_alias=True), "timeout": workload.timeout},
            timeout=workload.timeout,
            on_tick=activity.heartbeat,
            tick=self._heartbeat_interval,
        )
        if result.timed_out:
            return self._outcome(False, f"timed out after {workload.timeout} s (driver process killed)")
        if result.output is None:
            detail = scrub(
                result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "", fields.password
            )
            return self._outcome(
                False,
                f"tester process exited with status {result.returncode} without a result. {detail}".strip(),
            )
        message = scrub(str(result.output.get("message", "")), fields.password)
        elapsed = time.monotonic() - started
        return self._outcome(bool(result.output.get("ok")), f"{message} ({elapsed:.2f} s)")

    def _outcome(self, ok: bool, message: str) -> ConnectionTestOutcome:
        return ConnectionTestOutcome(ok=ok, message=message, worker=self._identity)
