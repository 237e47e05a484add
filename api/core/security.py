"""Credentials: the admin token for the public API, JWTs for workers and for single workloads."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from api.core.config import Settings

WORKLOAD_SCOPE = "connection-test"
WORKER_SCOPE = "worker"
TRIGGER_SCOPE = "trigger"
TASK_INSTANCE_SCOPE = "task-instance"
_ALGORITHM = "HS256"
_ISSUER = "airlock"


class InvalidCredential(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    subject: str
    scope: str
    claims: dict[str, Any]


def admin_token_matches(settings: Settings, token: str) -> bool:
    return bool(settings.admin_token) and hmac.compare_digest(token.encode(), settings.admin_token.encode())


def mint(settings: Settings, *, subject: str, scope: str, ttl_seconds: float) -> str:
    now = int(time.time())
    claims = {
        "iss": _ISSUER,
        "aud": settings.jwt_audience,
        "sub": subject,
        "scope": scope,
        "iat": now,
        "exp": now + int(ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=_ALGORITHM)


def mint_workload_token(settings: Settings, test_id: str, ttl_seconds: float) -> str:
    return mint(settings, subject=f"connection-test:{test_id}", scope=WORKLOAD_SCOPE, ttl_seconds=ttl_seconds)


def mint_trigger_token(settings: Settings, trigger_id: str, ttl_seconds: float) -> str:
    return mint(settings, subject=f"trigger:{trigger_id}", scope=TRIGGER_SCOPE, ttl_seconds=ttl_seconds)


def mint_task_instance_token(settings: Settings, ti_id: str, ttl_seconds: float = 86400) -> str:
    return mint(
        settings, subject=f"task-instance:{ti_id}", scope=TASK_INSTANCE_SCOPE, ttl_seconds=ttl_seconds
    )


def mint_worker_token(settings: Settings, name: str, ttl_seconds: float = 365 * 86400) -> str:
    return mint(settings, subject=f"worker:{name}", scope=WORKER_SCOPE, ttl_seconds=ttl_seconds)


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
    if not isinstance(scope, str):
        raise InvalidCredential("token has no scope")
    return Principal(subject=str(claims["sub"]), scope=scope, claims=claims)
