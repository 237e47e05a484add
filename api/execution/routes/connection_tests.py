from __future__ import annotations

from typing import Any

import structlog
from cadwyn import VersionedAPIRouter
from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.execution import ConnectionTestConnection, ConnectionTestStatePatch
from airlock.logging import bind_work
from airlock.states import ConnectionTestState
from airlock.summaries import shorten, target_of
from airlock.workloads import ConnectionTestOutcome
from api.db.models import ConnectionTest
from api.deps import RuntimeDep, SessionDep
from api.execution.security import TestTokenDep
from api.services import connection_tests, connections
from api.services.errors import Conflict

log = structlog.get_logger(__name__)
router = VersionedAPIRouter(prefix="/connection-tests", tags=["connection tests"])

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or forged token"},
    403: {"description": "wrong scope"},
}


@router.get("/{test_id}/connection", responses={**_AUTH_RESPONSES, 404: {"description": "no such test"}})
async def get_connection(
    test_id: str, _: TestTokenDep, session: SessionDep, runtime: RuntimeDep
) -> ConnectionTestConnection:
    """The decrypted connection fields of the test the token was minted for."""
    test = await connection_tests.get(session, test_id)
    bind_work(test_id=test_id, queue=test.queue, worker=test.worker)
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
    test_id: str, body: ConnectionTestStatePatch, _: TestTokenDep, session: SessionDep, runtime: RuntimeDep
) -> None:
    """Report that the test is running, or its result. Terminal is final: a second result is a 409."""
    # The queue is bound once the service has loaded the row; a refused report still names the test.
    bind_work(test_id=test_id, queue=None, worker=body.worker)
    if body.state == ConnectionTestState.RUNNING:
        await connection_tests.mark_running(session, test_id, body.worker)
        test = await _bound(session, test_id)
        log.info("connection test running", conn_type=test.conn_type, target=target_of(test.host, test.port))
        return
    outcome = ConnectionTestOutcome(
        ok=body.state == ConnectionTestState.SUCCESS, message=body.result_message or "", worker=body.worker
    )
    recorded = await connection_tests.finish(session, runtime.box, test_id, outcome)
    await _bound(session, test_id)
    if not recorded:
        raise Conflict(f"connection test {test_id} already ended")
    log.info("connection test finished", outcome=body.state, message=shorten(outcome.message))


async def _bound(session: AsyncSession, test_id: str) -> ConnectionTest:
    # The row is in the session already (the service loaded it): no query.
    test = await connection_tests.get(session, test_id)
    bind_work(test_id=test_id, queue=test.queue, worker=test.worker)
    return test
