"""Execution API authentication: every route needs a bearer JWT; each route checks its scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.core.security import (
    TASK_INSTANCE_SCOPE,
    TRIGGER_SCOPE,
    WORKER_SCOPE,
    WORKLOAD_SCOPE,
    InvalidCredential,
    Principal,
    verify,
)
from api.deps import RuntimeDep

_bearer = HTTPBearer(auto_error=False, description="A workload or worker JWT minted by the API")


def authenticate(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return verify(runtime.settings, credentials.credentials)
    except InvalidCredential as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_test_token(test_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != WORKLOAD_SCOPE or principal.subject != f"connection-test:{test_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this connection test")
    return principal


def require_worker(principal: PrincipalDep) -> Principal:
    if principal.scope != WORKER_SCOPE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a worker credential is required")
    return principal


TestTokenDep = Annotated[Principal, Depends(require_test_token)]
WorkerDep = Annotated[Principal, Depends(require_worker)]


def require_trigger_token(trigger_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != TRIGGER_SCOPE or principal.subject != f"trigger:{trigger_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this trigger")
    return principal


def require_task_instance_token(task_instance_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != TASK_INSTANCE_SCOPE or principal.subject != f"task-instance:{task_instance_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this task instance")
    return principal


TriggerTokenDep = Annotated[Principal, Depends(require_trigger_token)]
TaskInstanceTokenDep = Annotated[Principal, Depends(require_task_instance_token)]
