"""Execution API authentication: every route needs a bearer credential; each route checks its kind.

A worker presents its provisioned credential (``aw1.<name>.<secret>``, looked up by hash); a claimed
workload's token names the worker credential it was handed to, and stops working as soon as that
credential is revoked or the workload moves to another worker or ends.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airlock.execution import WORKER_CREDENTIAL_PREFIX
from api.core.security import (
    TASK_INSTANCE_SCOPE,
    TRIGGER_SCOPE,
    WORKER_CLAIM,
    WORKER_SCOPE,
    WORKLOAD_SCOPE,
    InvalidCredential,
    Principal,
    verify,
)
from api.db.models import WorkerCredential
from api.deps import RuntimeDep, SessionDep
from api.services import workers

_bearer = HTTPBearer(auto_error=False, description="A worker's credential, or a workload's JWT")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    runtime: RuntimeDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    token = credentials.credentials
    if token.startswith(WORKER_CREDENTIAL_PREFIX):
        worker = await workers.authenticate(session, token)
        if worker is None:
            raise _unauthorized("unknown, revoked or expired worker credential")
        return Principal(subject=worker.name, scope=WORKER_SCOPE, claims={}, worker=worker)
    try:
        principal = verify(runtime.settings, token)
    except InvalidCredential as exc:
        raise _unauthorized(str(exc)) from None
    holder = principal.claims.get(WORKER_CLAIM)
    if holder is not None and await workers.active(session, str(holder)) is None:
        raise _unauthorized("the worker this token was handed to is revoked")
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_worker(principal: PrincipalDep) -> WorkerCredential:
    if principal.scope != WORKER_SCOPE or principal.worker is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a worker credential is required")
    return principal.worker


def require_triggerer(worker: Annotated[WorkerCredential, Depends(require_worker)]) -> WorkerCredential:
    if not worker.triggerer:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only a triggerer's credential runs triggers")
    return worker


def require_test_token(test_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != WORKLOAD_SCOPE or principal.subject != f"connection-test:{test_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this connection test")
    return principal


def require_trigger_token(trigger_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != TRIGGER_SCOPE or principal.subject != f"trigger:{trigger_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this trigger")
    return principal


def require_task_instance_token(task_instance_id: str, principal: PrincipalDep) -> Principal:
    if principal.scope != TASK_INSTANCE_SCOPE or principal.subject != f"task-instance:{task_instance_id}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token is not valid for this task instance")
    return principal


def check_holder(principal: Principal, holder: str | None, workload: str) -> None:
    """A workload token acts only while the worker it was handed to still holds the workload."""
    if holder is None or principal.claims.get(WORKER_CLAIM) != holder:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"this token's worker no longer holds {workload}: claim it again"
        )


WorkerDep = Annotated[WorkerCredential, Depends(require_worker)]
TriggererDep = Annotated[WorkerCredential, Depends(require_triggerer)]
TestTokenDep = Annotated[Principal, Depends(require_test_token)]
TriggerTokenDep = Annotated[Principal, Depends(require_trigger_token)]
TaskInstanceTokenDep = Annotated[Principal, Depends(require_task_instance_token)]
