from __future__ import annotations

from typing import Any

from cadwyn import VersionedAPIRouter
from fastapi import status

from airlock.execution import ConnectionTestConnection, ConnectionTestStatePatch
from airlock.states import ConnectionTestState
from airlock.workloads import ConnectionTestOutcome
from api.deps import RuntimeDep, SessionDep
from api.execution.security import TestTokenDep
from api.services import connection_tests, connections
from api.services.errors import Conflict

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
    if body.state == ConnectionTestState.RUNNING:
        await connection_tests.mark_running(session, test_id, body.worker)
        return
    outcome = ConnectionTestOutcome(
        ok=body.state == ConnectionTestState.SUCCESS, message=body.result_message or "", worker=body.worker
    )
    recorded = await connection_tests.finish(session, runtime.box, test_id, outcome)
    if not recorded:
        raise Conflict(f"connection test {test_id} already ended")
