from __future__ import annotations

from typing import Any

import structlog
from cadwyn import VersionedAPIRouter
from fastapi import BackgroundTasks, status
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.execution import (
    ConnectionTestClaim,
    ConnectionTestClaimed,
    ConnectionTestConnection,
    ConnectionTestStatePatch,
)
from airlock.logging import bind_work
from airlock.states import ConnectionTestState
from airlock.summaries import shorten, target_of
from airlock.workloads import ConnectionTestOutcome
from api.core.security import Principal, mint_workload_token
from api.db.models import ConnectionTest
from api.deps import Runtime, RuntimeDep, SessionDep
from api.execution.security import TestTokenDep, WorkerDep, check_holder
from api.services import connection_tests, connections, slots
from api.services.errors import Conflict
from api.temporal.client import wake_slot_holders
from workflows.connection_test import START_TO_CLOSE_MARGIN

log = structlog.get_logger(__name__)
router = VersionedAPIRouter(prefix="/connection-tests", tags=["connection tests"])

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or forged token"},
    403: {"description": "wrong scope"},
}


@router.post(
    "/{test_id}/claim",
    responses={
        401: {"description": "missing, revoked or forged credential"},
        403: {"description": "not a worker of the test's queue"},
        404: {"description": "no such test"},
        409: {"description": "not dispatched, or ended"},
    },
)
async def claim(
    test_id: str, body: ConnectionTestClaim, worker: WorkerDep, session: SessionDep, runtime: RuntimeDep
) -> ConnectionTestClaimed:
    """A worker takes the test it was dispatched, with its own credential: the test is running on it,
    and it gets the connection's fields and a token for this test that dies when the test ends."""
    bind_work(test_id=test_id, queue=None, worker=body.worker)  # a refused claim names it too
    test = await connection_tests.claim(session, test_id, worker, body.worker)
    bind_work(test_id=test_id, queue=test.queue, worker=body.worker)
    log.info("connection test running", conn_type=test.conn_type, target=target_of(test.host, test.port))
    ttl = test.timeout + START_TO_CLOSE_MARGIN + 30
    return ConnectionTestClaimed(
        token=mint_workload_token(runtime.settings, test_id, worker.name, ttl),
        timeout=test.timeout,
        connection=_connection(test, runtime),
    )


@router.get(
    "/{test_id}/connection",
    responses={**_AUTH_RESPONSES, 404: {"description": "no such test"}, 409: {"description": "ended"}},
)
async def get_connection(
    test_id: str, principal: TestTokenDep, session: SessionDep, runtime: RuntimeDep
) -> ConnectionTestConnection:
    """The decrypted connection fields of the test the token was handed out for, while it runs."""
    test = await _held(session, test_id, principal)
    if ConnectionTestState(test.state).is_terminal:
        raise Conflict(f"connection test {test_id} has ended ({test.state})")
    return _connection(test, runtime)


def _connection(test: ConnectionTest, runtime: Runtime) -> ConnectionTestConnection:
    fields = connections.fields_of(test, runtime.box)
    return ConnectionTestConnection.model_validate(fields.model_dump(by_alias=True))


@router.patch(
    "/{test_id}/state",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_AUTH_RESPONSES,
        404: {"description": "no such test"},
        409: {"description": "already ended"},
    },
)
async def patch_state(
    test_id: str,
    body: ConnectionTestStatePatch,
    principal: TestTokenDep,
    session: SessionDep,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> None:
    """Report that the test is running, or its result. Terminal is final: a second result is a 409."""
    # The queue is bound once the service has loaded the row; a refused report still names the test.
    bind_work(test_id=test_id, queue=None, worker=body.worker)
    await _held(session, test_id, principal)
    if body.state == ConnectionTestState.RUNNING:
        await connection_tests.mark_running(session, test_id, body.worker)
        test = await _bound(session, test_id)
        log.info("connection test running", conn_type=test.conn_type, target=target_of(test.host, test.port))
        return
    outcome = ConnectionTestOutcome(
        ok=body.state == ConnectionTestState.SUCCESS, message=body.result_message or "", worker=body.worker
    )
    cap = runtime.settings.max_connection_test_concurrency
    recorded, granted = await slots.finish(session, runtime.box, cap, test_id, outcome)
    await _bound(session, test_id)
    if not recorded:
        raise Conflict(f"connection test {test_id} already ended")
    # After the commit (the session's, once this returns): the tests that got the freed slot.
    background.add_task(_nudge, runtime, granted)
    log.info("connection test finished", outcome=body.state, message=shorten(outcome.message))


async def _nudge(runtime: Runtime, granted: list[str]) -> None:
    # A coroutine: Starlette runs a plain function given to BackgroundTasks in a thread, off the loop.
    wake_slot_holders(runtime.temporal, granted)


async def _held(session: AsyncSession, test_id: str, principal: Principal) -> ConnectionTest:
    test = await connection_tests.get(session, test_id)
    bind_work(test_id=test_id, queue=test.queue, worker=test.worker)
    check_holder(principal, test.credential, f"connection test {test_id}")
    return test


async def _bound(session: AsyncSession, test_id: str) -> ConnectionTest:
    # The row is in the session already (the service loaded it): no query.
    test = await connection_tests.get(session, test_id)
    bind_work(test_id=test_id, queue=test.queue, worker=test.worker)
    return test
