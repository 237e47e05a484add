from __future__ import annotations

import structlog
from fastapi import APIRouter, Query, status

from airlock.logging import bind_work
from airlock.secrets import connection_secrets
from airlock.states import ConnectionTestState
from airlock.summaries import target_of
from api.db.models import ConnectionTest
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import (
    MAX_DB_INT,
    ConnectionTestList,
    ConnectionTestRequest,
    ConnectionTestResponse,
)
from api.services import connection_tests, connections
from api.temporal.launch import launch_connection_test

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/connections/test", tags=["connection tests"])


def to_response(test: ConnectionTest) -> ConnectionTestResponse:
    return ConnectionTestResponse.model_validate(test, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "saved connection not found"},
        409: {"description": "the connection already has an active test"},
        429: {"description": "as many tests wait in the queue, or in all, as may (Retry-After)"},
    },
)
async def enqueue_test(body: ConnectionTestRequest, runtime: RuntimeDep) -> ConnectionTestResponse:
    """Queue a test of a saved connection or of unsaved fields; poll ``GET .../test/{id}`` for the result.
    The answer comes once the test is stored; its workflow starts after (a test whose workflow cannot
    start ends ``failed``, saying so)."""
    async with runtime.sessions.begin() as session:
        test = await connection_tests.submit(session, runtime.settings, runtime.box, body)
    bind_work(test_id=test.id, queue=test.queue, worker=None)
    target = target_of(test.host, test.port)
    if test.state != ConnectionTestState.PENDING:
        message = test.result_message
        log.info("connection test failed at once", conn_type=test.conn_type, target=target, message=message)
        return to_response(test)
    log.info("connection test submitted", conn_type=test.conn_type, target=target)
    launch_connection_test(runtime, test, connection_secrets(connections.fields_of(test, runtime.box)))
    return to_response(test)


@router.get("")
async def list_tests(
    session: SessionDep,
    state: ConnectionTestState | None = None,
    connection_id: str | None = Query(None, max_length=250),
    queue: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> ConnectionTestList:
    rows, total = await connection_tests.list_(
        session, state=state, connection_id=connection_id, queue=queue, limit=limit, offset=offset
    )
    return ConnectionTestList(tests=[to_response(t) for t in rows], total_entries=total)


@router.get("/{test_id}", responses={404: {"description": "not found"}})
async def get_test(test_id: str, session: SessionDep) -> ConnectionTestResponse:
    test = await connection_tests.get(session, test_id)
    bind_work(test_id=test.id, queue=test.queue, worker=test.worker)  # the access log line names it
    return to_response(test)
