"""Credentials: the admin token for the public API, JWTs for single workloads and task instances.

Workers hold provisioned credentials instead (api/services/workers.py)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from api.core.config import Settings
from api.db.models import WorkerCredential

WORKLOAD_SCOPE = "connection-test"
WORKER_SCOPE = "worker"
TRIGGER_SCOPE = "trigger"
TASK_INSTANCE_SCOPE = "task-instance"
WORKER_CLAIM = "wkr"
_ALGORITHM = "HS256"
_ISSUER = "airlock"


class InvalidCredential(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    subject: str
    scope: str
    claims: dict[str, Any]
    # Set for a worker's provisioned credential: its queues and role.
    worker: WorkerCredential | None = None


def workflow_grant(settings: Settings, workflow_id: str) -> str:
    """The grant the API puts in the (control-key sealed) input of a workflow it starts: control
    activities act only for a workflow that presents its own."""
    message = b"airlock workflow grant\x00" + workflow_id.encode()
    return hmac.new(settings.jwt_secret.encode(), message, hashlib.sha256).hexdigest()


def admin_token_matches(settings: Settings, token: str) -> bool:
    return bool(settings.admin_token) and hmac.compare_digest(token.encode(), settings.admin_token.encode())


def mint(
    settings: Settings, *, subject: str, scope: str, ttl_seconds: float, worker: str | None = None
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": _ISSUER,
        "aud": settings.jwt_audience,
        "sub": subject,
        "scope": scope,
        "iat": now,
        "exp": now + int(ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if worker is not None:
        # The worker credential that claimed the workload: the token acts for that worker only.
        claims[WORKER_CLAIM] = worker
    return jwt.encode(claims, settings.jwt_secret, algorithm=_ALGORITHM)


def mint_workload_token(settings: Settings, test_id: str, worker: str, ttl_seconds: float) -> str:
    return mint(
        settings,
        subject=f"connection-test:{test_id}",
        scope=WORKLOAD_SCOPE,
        ttl_seconds=ttl_seconds,
        worker=worker,
    )


def mint_trigger_token(settings: Settings, trigger_id: str, worker: str, ttl_seconds: float) -> str:
    return mint(
        settings, subject=f"trigger:{trigger_id}", scope=TRIGGER_SCOPE, ttl_seconds=ttl_seconds, worker=worker
    )


def mint_task_instance_token(settings: Settings, ti_id: str, ttl_seconds: float = 86400) -> str:
    return mint(
        settings, subject=f"task-instance:{ti_id}", scope=TASK_INSTANCE_SCOPE, ttl_seconds=ttl_seconds
    )


def verify(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidCredential("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidCredential(f"invalid token ({type(exc).__name__})") from None
    scope = claims.get("scope")
    if not isinstance(scope, str) or scope == WORKER_SCOPE:
        # Worker JWTs of earlier releases are refused: a worker is provisioned (airlock workers add).
        raise InvalidCredential("token has no valid scope")
    return Principal(subject=str(claims["sub"]), scope=scope, claims=claims)
