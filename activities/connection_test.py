"""The connection-test activity: runs on a worker in the target network, on the queue the user named."""

from __future__ import annotations

import asyncio
import ssl
import time

import httpx
import structlog
from temporalio import activity

from activities.api_errors import reported_to_temporal
from activities.testers import available_conn_types, fork_server_preload
from airlock.execution import ConnectionTestClaim, ConnectionTestClaimed
from airlock.logging import bind_work, hide_in_logs
from airlock.protocol import CONNECTION_TEST_ACTIVITY
from airlock.secrets import connection_secrets, scrub
from airlock.summaries import shorten, target_of
from airlock.version import LATEST_EXECUTION_API_VERSION
from airlock.workloads import ConnectionTestOutcome, RunConnectionTestInput
from worker import metrics
from worker.client import ExecutionAPIClient
from worker.config import WorkerSettings
from worker.isolation import ForkServer
from worker.role import Role

log = structlog.get_logger(__name__)

CHILD_TARGET = "activities.testers.child:run"
# How long the test waits for the Execution API to come back before it gives up.
API_OUTAGE_TOLERANCE = 10.0


class ConnectionTestActivities:
    def __init__(
        self,
        *,
        api_url: str,
        api_tls: ssl.SSLContext | bool,
        credential: str,
        identity: str,
        conn_types: list[str],
        heartbeat_interval: float = 1.0,
        api_version: str = LATEST_EXECUTION_API_VERSION,
    ) -> None:
        self._api_version = api_version
        self._api_url = api_url
        self._credential = credential
        self._identity = identity
        self._conn_types = conn_types
        self._heartbeat_interval = heartbeat_interval
        # The drivers are imported once, in the fork server; each test forks a fresh child from it.
        self._forks = ForkServer(preload=fork_server_preload(conn_types))
        # One connection pool for every test's Execution API calls.
        self._transport = httpx.AsyncHTTPTransport(retries=2, verify=api_tls)
        self.job_id: str | None = None

    def start(self) -> None:
        self._forks.start()

    @activity.defn(name=CONNECTION_TEST_ACTIVITY)
    async def run_connection_test(self, workload: RunConnectionTestInput) -> ConnectionTestOutcome:
        queue = activity.info().task_queue
        bind_work(test_id=workload.test_id, queue=queue, worker=self._identity)
        # The metrics' conn_type: one this worker tests, so that the label's values stay its testers'.
        conn_type = "unknown"
        try:
            claimed = await self._claim(workload)
            if claimed.connection.conn_type in self._conn_types:
                conn_type = claimed.connection.conn_type
            outcome = await self._run(claimed, queue, conn_type)
        except asyncio.CancelledError:
            log.info("connection test cancelled: driver process killed")
            metrics.connection_test_run(queue, conn_type, "cancelled")
            raise
        result = "success" if outcome.ok else "failed"
        metrics.connection_test_run(queue, conn_type, result)
        log.info("connection test finished", outcome=result, message=shorten(outcome.message))
        return outcome

    async def _claim(self, workload: RunConnectionTestInput) -> ConnectionTestClaimed:
        api = ExecutionAPIClient(
            self._api_url,
            self._credential,
            api_version=self._api_version,
            transport=self._transport,
            retry_for=API_OUTAGE_TOLERANCE,
            on_retry=activity.heartbeat,
        )
        with reported_to_temporal():
            async with api:
                # The claim, with this worker's own credential, marks the test running here.
                claim = ConnectionTestClaim(worker=self._identity, job_id=self.job_id)
                return await api.connection_tests.claim(workload.test_id, claim)

    async def _run(self, claimed: ConnectionTestClaimed, queue: str, conn_type: str) -> ConnectionTestOutcome:
        fields, timeout = claimed.connection, claimed.timeout
        hide_in_logs(*connection_secrets(fields))
        log.info(
            "connection test running", conn_type=fields.conn_type, target=target_of(fields.host, fields.port)
        )
        if fields.conn_type not in self._conn_types:
            return self._outcome(
                False,
                f"worker {self._identity} cannot test conn_type {fields.conn_type!r} "
                f"(it can test: {', '.join(self._conn_types) or 'nothing'})",
            )
        started = time.monotonic()
        try:
            result = await self._forks.run(
                CHILD_TARGET,
                # The queue picks the test's egress policy in the child (worker/egress.py).
                {"fields": fields.model_dump(by_alias=True), "timeout": timeout, "queue": queue},
                timeout=timeout,
                on_tick=activity.heartbeat,
                tick=self._heartbeat_interval,
            )
        finally:
            # Killed at its timeout or cancelled too: the time it held a child process.
            metrics.driver_ran(queue, conn_type, time.monotonic() - started)
        if result.timed_out:
            return self._outcome(False, f"timed out after {timeout} s (driver process killed)")
        if result.output is None:
            reason = result.error or f"it died (exit status {result.exitcode}) without a result"
            return self._outcome(False, f"the tester process gave no result: {reason}")
        message = scrub(str(result.output.get("message", "")), fields.password)
        elapsed = time.monotonic() - started
        return self._outcome(bool(result.output.get("ok")), f"{message} ({elapsed:.2f} s)")

    def _outcome(self, ok: bool, message: str) -> ConnectionTestOutcome:
        return ConnectionTestOutcome(ok=ok, message=message, worker=self._identity)


def connection_test_role(settings: WorkerSettings, identity: str) -> Role:
    """The ``worker`` role: connection tests of the conn_types whose testers load here."""
    conn_types = available_conn_types()
    tests = ConnectionTestActivities(
        api_url=settings.api_url,
        api_tls=settings.api_tls(),
        credential=settings.worker_token,
        identity=identity,
        conn_types=conn_types,
        heartbeat_interval=settings.activity_heartbeat_interval,
        api_version=settings.execution_api_version,
    )
    tests.start()

    def note_job(job_id: str) -> None:
        tests.job_id = job_id

    return Role(
        "worker",
        [tests.run_connection_test],
        settings.max_concurrent_tests,
        conn_types,
        on_registered=note_job,
    )
